//! Step printing, command running and paths shared by the subcommands.

use std::{
    env,
    ffi::{OsStr, OsString},
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// Repository root (the workspace that contains xtask/).
pub fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The userspace workspace's target dir (honours CARGO_TARGET_DIR like cargo does).
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root().join(dir),
        _ => root().join("target"),
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "{what} needs root (effective uid 0); re-run as root, e.g. `sudo -E cargo xtask ...`"
        );
    }
    Ok(())
}

pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:04.1}s", (s / 60.0) as u64, s % 60.0)
    }
}

/// A titled, timed step: prints `==> title` now and `    done: title (1.2s)` at the end.
pub struct Step {
    title: String,
    start: Instant,
}

pub fn step(title: impl Into<String>) -> Step {
    let title = title.into();
    println!("==> {title}");
    flush();
    Step {
        title,
        start: Instant::now(),
    }
}

impl Step {
    pub fn done(self) {
        println!(
            "    done: {} ({})",
            self.title,
            fmt_duration(self.start.elapsed())
        );
        flush();
    }

    pub fn done_with(self, note: impl AsRef<str>) {
        println!(
            "    done: {} ({}): {}",
            self.title,
            fmt_duration(self.start.elapsed()),
            note.as_ref()
        );
        flush();
    }
}

pub fn flush() {
    let _ = std::io::stdout().flush();
}

/// Shell-like rendering of a command line for the log.
pub fn render(cmd: &Command) -> String {
    let mut out = String::new();
    if let Some(dir) = cmd.get_current_dir() {
        out.push_str(&format!("(cd {} && ", dir.display()));
    }
    out.push_str(&quote(cmd.get_program()));
    for arg in cmd.get_args() {
        out.push(' ');
        out.push_str(&quote(arg));
    }
    if cmd.get_current_dir().is_some() {
        out.push(')');
    }
    out
}

fn quote(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited stdio; fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    println!("    $ {}", render(cmd));
    flush();
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", render(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", render(cmd));
    }
    Ok(())
}

/// Runs a command quietly and returns its stdout (None when it cannot start or fails).
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cargo of the toolchain running xtask (rustup stable), for the userspace workspace.
pub fn host_cargo() -> Command {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root());
    cmd
}

/// Environment variables a nested build with another cargo must not inherit from the
/// outer `cargo xtask` run (they point at rustup's toolchain, our target dir, ...).
fn inherited_build_var(key: &OsStr) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    const KEEP: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    if key == "CARGO" || key.starts_with("CARGO_") {
        return !KEEP.iter().any(|k| key.starts_with(k));
    }
    matches!(
        key,
        "RUSTC"
            | "RUSTC_WRAPPER"
            | "RUSTC_WORKSPACE_WRAPPER"
            | "RUSTC_BOOTSTRAP"
            | "RUSTDOC"
            | "RUSTFLAGS"
            | "RUSTDOCFLAGS"
            | "RUSTUP_TOOLCHAIN"
            | "OUT_DIR"
    )
}

/// PATH for Debian's toolchain: `<tools>/bin:/usr/bin:<rest>`, with rustup's proxy
/// and toolchain dirs removed so that `cargo`/`rustc` are Debian's 1.96.
pub fn debian_path(tools_bin: &Path) -> OsString {
    let mut dirs = vec![tools_bin.to_path_buf(), PathBuf::from("/usr/bin")];
    if let Some(path) = env::var_os("PATH") {
        for dir in env::split_paths(&path) {
            let text = dir.to_string_lossy();
            let rustup = dir.join("rustup").exists()
                || text.contains("/.rustup/")
                || text.ends_with("/.cargo/bin");
            if !rustup && !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
    }
    env::join_paths(dirs).unwrap_or_else(|_| OsString::from("/usr/bin"))
}

/// `/usr/bin/cargo` (Debian's 1.96) with a clean environment: RUSTC=/usr/bin/rustc,
/// PATH from [`debian_path`], nothing inherited from the outer cargo.
pub fn debian_cargo(tools_bin: &Path) -> Command {
    let mut cmd = Command::new("/usr/bin/cargo");
    for (key, _) in env::vars_os() {
        if inherited_build_var(&key) {
            cmd.env_remove(&key);
        }
    }
    cmd.env("PATH", debian_path(tools_bin))
        .env("RUSTC", "/usr/bin/rustc");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_outer_cargo_vars() {
        for k in [
            "CARGO",
            "CARGO_MANIFEST_DIR",
            "CARGO_TARGET_DIR",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_PKG_NAME",
            "RUSTUP_TOOLCHAIN",
            "RUSTFLAGS",
            "RUSTC_WRAPPER",
        ] {
            assert!(inherited_build_var(OsStr::new(k)), "{k}");
        }
        for k in [
            "CARGO_HOME",
            "CARGO_NET_OFFLINE",
            "PATH",
            "HOME",
            "RUSTUP_HOME",
        ] {
            assert!(!inherited_build_var(OsStr::new(k)), "{k}");
        }
    }

    #[test]
    fn quotes_for_log() {
        let mut c = Command::new("cargo");
        c.args(["build", "--features", "a b"]);
        assert_eq!(render(&c), "cargo build --features 'a b'");
    }
}
