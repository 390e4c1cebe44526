//! `clean-host`: remove what demos and tests may leave behind after a crash.
//!
//! The multi-host fabric's namespaces (`hvtf*`: underlay, hosts, guests) fall
//! under the `hvt` prefix; it creates no link in the root namespace. Its
//! etcd processes are found by their pid files under /run/havip/etcd and
//! their data dirs (`$TMPDIR/havip-etcd-*`) are removed after them.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::util::{self, step};

/// Names (network namespaces, links) that belong to havip demos and tests.
const PREFIXES: &[&str] = &["havip-", "hvt", "hvb"];
const PID_DIR: &str = "/run/havip";
const BPFFS: &str = "/sys/fs/bpf";
/// Pinned dirs: the agent's, and per-test/per-demo ones (`havip-test-*`, `havip-demo-*`).
const PIN_DIR: &str = "havip";
const PIN_PREFIX: &str = "havip-";
/// Scratch dirs (data + log) of the tests' etcd processes, under the temp dir.
const ETCD_DIR_PREFIX: &str = "havip-etcd-";
/// Process names a pid file under /run/havip may name.
const PID_FILE_PROGRAMS: &[&str] = &["keepalived", "etcd"];

fn ours(name: &str) -> bool {
    PREFIXES.iter().any(|p| name.starts_with(p))
}

pub fn clean_host(dry_run: bool) -> Result<()> {
    util::require_root("`cargo xtask clean-host`")?;
    let s = step(format!(
        "cleaning host{}: havip processes, namespaces, links, pinned objects",
        if dry_run {
            " (dry run: nothing is changed)"
        } else {
            ""
        }
    ));
    let act = |what: &str| {
        if dry_run {
            println!("    would {what}");
        }
        !dry_run
    };
    let mut removed = Vec::new();

    // 1. Agents first: stopped gracefully they detach and clean up after themselves.
    let mut pids = pid_file_processes(dry_run);
    for pid in processes_named("havip-agent") {
        if !pids.contains(&pid) {
            pids.push(pid);
        }
    }
    let n = terminate(&pids, dry_run);
    if n > 0 {
        removed.push(format!("{n} process(es) from pid files / havip-agent"));
    }

    // 2. Everything still running inside our namespaces (keepalived, socat, ...).
    let namespaces = netns_list();
    let mut inside = Vec::new();
    for ns in &namespaces {
        inside.extend(netns_pids(ns));
    }
    let n = terminate(&inside, dry_run);
    if n > 0 {
        removed.push(format!("{n} process(es) inside havip namespaces"));
    }

    // 3. Namespaces (their veth ends go with them), then root-namespace links.
    let mut n = 0;
    for ns in &namespaces {
        if !act(&format!("delete network namespace {ns}")) {
            n += 1;
        } else if quiet(Command::new("ip").args(["netns", "delete", ns])) {
            println!("    deleted network namespace {ns}");
            n += 1;
        } else {
            println!("    warning: cannot delete network namespace {ns}");
        }
    }
    if n > 0 {
        removed.push(format!("{n} network namespace(s)"));
    }
    let mut n = 0;
    for link in root_links() {
        // A veth peer disappears with its partner: check again before deleting.
        if !act(&format!("delete link {link}")) {
            n += 1;
        } else if root_links().contains(&link)
            && quiet(Command::new("ip").args(["link", "delete", &link]))
        {
            println!("    deleted link {link}");
            n += 1;
        }
    }
    if n > 0 {
        removed.push(format!("{n} link(s)"));
    }

    // 4. Pinned maps, programs and links (unpinning a link detaches its XDP program).
    let n = remove_paths(pin_dirs(), &act);
    if n > 0 {
        removed.push(format!("{n} pinned dir(s)"));
    }

    // 5. Data dirs of the tests' etcd (their processes were stopped in 1.).
    let n = remove_paths(etcd_dirs(), &act);
    if n > 0 {
        removed.push(format!("{n} etcd data dir(s)"));
    }

    let verb = if dry_run { "would remove" } else { "removed" };
    if removed.is_empty() {
        s.done_with("nothing to clean");
    } else {
        s.done_with(format!("{verb} {}", removed.join(", ")));
    }
    Ok(())
}

/// Removes each path (a directory with its contents), or with `act`
/// refusing (dry run) only says so. Returns how many were (or would be)
/// removed.
fn remove_paths(paths: impl IntoIterator<Item = PathBuf>, act: &impl Fn(&str) -> bool) -> usize {
    let mut n = 0;
    for path in paths {
        if !act(&format!("remove {}", path.display())) {
            n += 1;
            continue;
        }
        let result = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => {
                println!("    removed {}", path.display());
                n += 1;
            }
            Err(e) => println!("    warning: cannot remove {}: {e}", path.display()),
        }
    }
    n
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.output().map(|o| o.status.success()).unwrap_or(false)
}

fn comm(pid: i32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|c| c.trim().to_string())
}

/// Alive and not a zombie.
fn running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Processes named by `*.pid` files under /run/havip (any depth); the files are removed.
fn pid_file_processes(dry_run: bool) -> Vec<i32> {
    let mut files = Vec::new();
    collect_pid_files(Path::new(PID_DIR), &mut files);
    let mut pids = Vec::new();
    for file in files {
        let pid = fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        match pid.map(|p| (p, comm(p))) {
            Some((pid, Some(name)))
                if pid > 1
                    && (name.starts_with("havip")
                        || PID_FILE_PROGRAMS.contains(&name.as_str()))
                    && running(pid) =>
            {
                println!("    {}: pid {pid} ({name})", file.display());
                pids.push(pid);
            }
            Some((pid, Some(name))) if running(pid) => println!(
                "    {}: pid {pid} is `{name}`, not a havip process: left alone",
                file.display()
            ),
            _ => {}
        }
        if !dry_run {
            let _ = fs::remove_file(&file);
        }
    }
    pids
}

fn collect_pid_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect_pid_files(&path, out),
            Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "pid") => out.push(path),
            _ => {}
        }
    }
}

fn processes_named(name: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && comm(pid).as_deref() == Some(name) && running(pid))
        .collect()
}

/// SIGTERM, wait up to 3 s, then SIGKILL. Returns how many were (or would be) signalled.
fn terminate(pids: &[i32], dry_run: bool) -> usize {
    let me = std::process::id() as i32;
    let pids: Vec<i32> = pids
        .iter()
        .copied()
        .filter(|&p| p > 1 && p != me && running(p))
        .collect();
    for &pid in &pids {
        let name = comm(pid).unwrap_or_else(|| "?".into());
        if dry_run {
            println!("    would stop pid {pid} ({name})");
            continue;
        }
        println!("    stopping pid {pid} ({name})");
        // SAFETY: plain kill(2) on a pid we just saw running.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    if dry_run {
        return pids.len();
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && pids.iter().any(|&p| running(p)) {
        thread::sleep(Duration::from_millis(50));
    }
    for &pid in pids.iter().filter(|&&p| running(p)) {
        println!("    pid {pid} ignored SIGTERM: SIGKILL");
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    pids.len()
}

/// `ip netns list` prints "name (id: 3)" or "name".
fn netns_list() -> Vec<String> {
    util::output(Command::new("ip").args(["netns", "list"]))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| ours(n))
        .map(str::to_string)
        .collect()
}

fn netns_pids(ns: &str) -> Vec<i32> {
    util::output(Command::new("ip").args(["netns", "pids", ns]))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Links of the root namespace with our prefixes (`ip -o link` prints "7: name@peer: <...>").
fn root_links() -> Vec<String> {
    util::output(Command::new("ip").args(["-o", "link", "show"]))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| ours(n))
        .collect()
}

fn pin_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(BPFFS) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name == PIN_DIR || name.starts_with(PIN_PREFIX)
        })
        .map(|e| e.path())
        .collect()
}

fn etcd_dirs() -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(ETCD_DIR_PREFIX))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}
