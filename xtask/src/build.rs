//! `build`, `build-and-run`, `bench`: the eBPF objects first (Debian toolchain), then
//! the userspace workspace, whose build scripts embed them (the product's object in
//! `havip-userspace`, the bench-only programs in `tests`).

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
/// Binaries `cargo xtask build` must produce: the product's (`havip-userspace`)
/// and the harness's (`tests`: the demo and the benchmark).
const BINARIES: &[&str] = &["havip-agent", "havipctl", "havip-demo", "havip-bench"];

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
        "building userspace ({profile}: havip-agent, havipctl, havip-demo, havip-bench)"
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

/// The demo binary (tests crate) and the agent binary (havip-userspace).
const DEMO: &str = "havip-demo";
const AGENT: &str = "havip-agent";

/// Maps `build-and-run` arguments to the binary to run and its command line
/// (see `--help`): the demo, or the agent.
fn run_args(args: &[String]) -> (&'static str, Vec<String>) {
    let has_config = args
        .iter()
        .any(|a| a == "--config" || a.starts_with("--config="));
    match args.first() {
        None => (DEMO, Vec::new()),
        Some(_) if has_config => (
            AGENT,
            std::iter::once("run".to_string())
                .chain(args.iter().cloned())
                .collect(),
        ),
        Some(first) if !first.starts_with('-') => (AGENT, args.to_vec()),
        Some(_) => (DEMO, args.to_vec()),
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
    let (program, argv) = run_args(args);
    if !util::is_root() {
        println!("    warning: {program} needs root to load XDP programs and create namespaces");
    }
    let what = if program == DEMO {
        format!("running the demo: {DEMO} (Ctrl-C stops it and cleans up)")
    } else {
        format!("running {program} {}", argv.join(" "))
    };
    step(what);
    exec(&bin_dir.join(program), &argv)
}

pub fn bench(quick: bool, args: &[String]) -> Result<()> {
    let bin_dir = build(false)?;
    let bench = bin_dir.join("havip-bench");
    if !bench.is_file() {
        bail!(
            "{} does not exist: the workspace build did not produce `havip-bench` (tests crate)",
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
    use super::{run_args, AGENT, DEMO};

    fn v(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn maps_run_args() {
        assert_eq!(run_args(&[]), (DEMO, v(&[])));
        assert_eq!(
            run_args(&v(&["--config", "a.toml", "-v"])),
            (AGENT, v(&["run", "--config", "a.toml", "-v"]))
        );
        assert_eq!(
            run_args(&v(&["--config=a.toml"])),
            (AGENT, v(&["run", "--config=a.toml"]))
        );
        assert_eq!(run_args(&v(&["status"])), (AGENT, v(&["status"])));
        assert_eq!(run_args(&v(&["--hold"])), (DEMO, v(&["--hold"])));
    }
}
