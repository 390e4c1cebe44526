//! `build`, `build-and-run`, `bench`: the eBPF object first (Debian toolchain), then
//! the userspace workspace, whose build script embeds that object.

use std::{
    ffi::OsString,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{
    setup,
    util::{self, fmt_duration, step},
};

/// The eBPF crate (its own workspace) and its output, relative to the repository root.
const EBPF_DIR: &str = "havip-ebpf";
const EBPF_OBJECT: &str = "havip-ebpf/target/bpfel-unknown-none/release/havip";
/// Binaries `cargo xtask build` must produce.
const BINARIES: &[&str] = &["havip-agent", "havipctl"];

pub fn ebpf_object_path() -> PathBuf {
    util::root().join(EBPF_OBJECT)
}

/// Set up, build the eBPF object and the userspace. Returns the binaries' directory.
pub fn build(debug: bool) -> Result<PathBuf> {
    let start = Instant::now();
    setup::setup()?;
    build_ebpf()?;
    let bin_dir = build_userspace(debug)?;
    println!(
        "==> build finished in {}: {} and {}/{{{}}}",
        fmt_duration(start.elapsed()),
        EBPF_OBJECT,
        bin_dir.display(),
        BINARIES.join(",")
    );
    Ok(bin_dir)
}

fn build_ebpf() -> Result<()> {
    let s =
        step("building eBPF object (havip-ebpf: Debian rustc 1.96, build-std core, bpf-linker)");
    let mut cmd = util::debian_cargo(&setup::tools_bin());
    cmd.current_dir(util::root().join(EBPF_DIR))
        .args(["build", "--release"])
        // Debian's stable rustc; build-std needs the unstable -Z flags.
        .env("RUSTC_BOOTSTRAP", "1");
    util::run(&mut cmd)?;
    let object = ebpf_object_path();
    let size = std::fs::metadata(&object)
        .with_context(|| {
            format!(
                "the eBPF build succeeded but {} is missing",
                object.display()
            )
        })?
        .len();
    s.done_with(format!("{EBPF_OBJECT} ({} KiB)", size.div_ceil(1024)));
    Ok(())
}

fn build_userspace(debug: bool) -> Result<PathBuf> {
    let profile = if debug { "debug" } else { "release" };
    let s = step(format!(
        "building userspace ({profile}: havip-agent, havipctl, ...)"
    ));
    let mut cmd = util::host_cargo();
    cmd.args(["build", "--workspace", "--exclude", "xtask"]);
    if !debug {
        cmd.arg("--release");
    }
    util::run(&mut cmd)?;
    let bin_dir = util::target_dir().join(profile);
    for bin in BINARIES {
        if !bin_dir.join(bin).is_file() {
            bail!(
                "the userspace build succeeded but {} is missing",
                bin_dir.join(bin).display()
            );
        }
    }
    s.done();
    Ok(bin_dir)
}

/// Maps `build-and-run` arguments to havip-agent's command line (see `--help`).
fn agent_args(args: &[String]) -> Vec<String> {
    let has_config = args
        .iter()
        .any(|a| a == "--config" || a.starts_with("--config="));
    match args.first() {
        None => vec!["demo".into()],
        Some(_) if has_config => std::iter::once("run".to_string())
            .chain(args.iter().cloned())
            .collect(),
        Some(first) if !first.starts_with('-') => args.to_vec(),
        Some(_) => std::iter::once("demo".to_string())
            .chain(args.iter().cloned())
            .collect(),
    }
}

/// Replaces this process with `program args` so that signals (Ctrl-C) and the exit
/// code are the program's own. Returns only on failure.
fn exec(program: &Path, args: &[impl AsRef<std::ffi::OsStr>]) -> Result<()> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    println!("    $ {}", util::render(&cmd));
    util::flush();
    let err = cmd.exec();
    Err(err).with_context(|| format!("cannot execute {}", program.display()))
}

pub fn build_and_run(debug: bool, args: &[String]) -> Result<()> {
    let bin_dir = build(debug)?;
    let agent = bin_dir.join("havip-agent");
    let argv = agent_args(args);
    if !util::is_root() {
        println!("    warning: havip-agent needs root to load XDP programs and create namespaces");
    }
    let what = if argv.first().map(String::as_str) == Some("demo") {
        "running the demo: havip-agent demo (Ctrl-C stops it and cleans up)".to_string()
    } else {
        format!("running havip-agent {}", argv.join(" "))
    };
    step(what);
    exec(&agent, &argv)
}

pub fn bench(quick: bool, args: &[String]) -> Result<()> {
    let bin_dir = build(false)?;
    let bench = bin_dir.join("havip-bench");
    if !bench.is_file() {
        bail!(
            "{} does not exist: no `havip-bench` binary is built by the workspace yet",
            bench.display()
        );
    }
    let mut argv: Vec<OsString> = Vec::new();
    if quick {
        argv.push("--quick".into());
    }
    argv.extend(args.iter().map(OsString::from));
    step(format!(
        "running havip-bench{}",
        if quick { " --quick" } else { "" }
    ));
    exec(&bench, &argv)
}

#[cfg(test)]
mod tests {
    use super::agent_args;

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn maps_agent_args() {
        assert_eq!(agent_args(&[]), v(&["demo"]));
        assert_eq!(
            agent_args(&v(&["--config", "a.toml", "-v"])),
            v(&["run", "--config", "a.toml", "-v"])
        );
        assert_eq!(
            agent_args(&v(&["--config=a.toml"])),
            v(&["run", "--config=a.toml"])
        );
        assert_eq!(agent_args(&v(&["status"])), v(&["status"]));
        assert_eq!(agent_args(&v(&["--keep"])), v(&["demo", "--keep"]));
    }
}
