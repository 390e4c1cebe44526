//! `lint` and `test`.

use std::{
    env,
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::{
    build, setup,
    util::{self, fmt_duration, step},
};

/// rustfmt check of the workspace and of the eBPF crate, then clippy on the workspace.
/// Runs every check, then fails if any failed.
pub fn lint() -> Result<()> {
    let checks: [(&str, &[&str]); 3] = [
        ("cargo fmt --all --check", &["fmt", "--all", "--check"]),
        // havip-ebpf is its own workspace; rustfmt does not care about its target.
        (
            "cargo fmt --check (havip-ebpf)",
            &["fmt", "--manifest-path", "havip-ebpf/Cargo.toml", "--check"],
        ),
        (
            "cargo clippy --workspace --all-targets -- -D warnings",
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    let mut failed = Vec::new();
    for (title, args) in checks {
        let s = step(format!("lint: {title}"));
        match util::run(util::host_cargo().args(args)) {
            Ok(()) => s.done(),
            Err(e) => {
                println!("    FAILED: {e:#}");
                failed.push(title);
            }
        }
    }
    if !failed.is_empty() {
        bail!(
            "lint failed: {} (`cargo fmt --all` fixes formatting; \
             --no-lint skips lint in `cargo xtask test`)",
            failed.join("; ")
        );
    }
    Ok(())
}

pub fn test(no_lint: bool, packages: &[String], args: &[String]) -> Result<()> {
    let start = Instant::now();
    util::require_root(
        "`cargo xtask test` (the tests load XDP programs and create network namespaces)",
    )?;
    // Set-up first: clippy builds the workspace, and the etcd client's build
    // script needs protoc from the Debian packages.
    setup::setup()?;
    if !no_lint {
        lint()?;
    }
    build::build(false)?;

    let s = step("running tests: cargo test --release");
    let mut cmd = util::host_cargo();
    cmd.args(["test", "--release", "--no-fail-fast"]);
    if packages.is_empty() {
        cmd.arg("--workspace");
    } else {
        for p in packages {
            cmd.args(["--package", p]);
        }
    }
    cmd.arg("--");
    if let Some(threads) = env::var("HAVIP_TEST_THREADS")
        .ok()
        .filter(|t| !t.is_empty())
    {
        threads
            .parse::<u32>()
            .with_context(|| format!("HAVIP_TEST_THREADS={threads:?} is not a number"))?;
        cmd.args(["--test-threads", &threads]);
    }
    // Our stdout is piped (to collect results): keep libtest's colours on a terminal.
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(1) } == 1 && !args.iter().any(|a| a.starts_with("--color")) {
        cmd.args(["--color", "always"]);
    }
    cmd.args(args);
    let results = run_collecting(&mut cmd)?;
    s.done();
    results.print_summary(start);
    if !results.success {
        bail!("tests failed");
    }
    Ok(())
}

/// Totals over the `test result:` lines cargo test printed.
#[derive(Default, Debug, PartialEq)]
struct Results {
    success: bool,
    binaries: u32,
    passed: u64,
    failed: u64,
    ignored: u64,
    filtered_out: u64,
    failures: Vec<String>,
}

impl Results {
    /// Feeds one line of cargo test's stdout.
    fn line(&mut self, raw: &str) {
        let line = strip_ansi(raw);
        let line = line.trim_end();
        if let Some(rest) = line.strip_prefix("test result: ") {
            self.binaries += 1;
            // "ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            let rest = rest.split_once(". ").map_or(rest, |(_, r)| r);
            for part in rest.split(';') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u64>() else { continue };
                match what {
                    "passed" => self.passed += n,
                    "failed" => self.failed += n,
                    "ignored" => self.ignored += n,
                    "filtered" => self.filtered_out += n,
                    _ => {}
                }
            }
        } else if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            self.failures.push(name.to_string());
        }
    }

    fn print_summary(&self, start: Instant) {
        println!();
        if self.binaries == 0 {
            println!(
                "==> test summary: FAILED, no `test result:` line from cargo test \
                 (it failed before running tests; see above) ({})",
                fmt_duration(start.elapsed())
            );
            return;
        }
        let verdict = if self.success { "ok" } else { "FAILED" };
        println!(
            "==> test summary: {verdict}. {} passed; {} failed; {} ignored; {} filtered out \
             (from {} `test result:` lines of cargo test; xtask total {})",
            self.passed,
            self.failed,
            self.ignored,
            self.filtered_out,
            self.binaries,
            fmt_duration(start.elapsed())
        );
        for name in &self.failures {
            println!("    failed: {name}");
        }
        if !self.success && self.failed == 0 {
            println!(
                "    cargo test exited with an error although no test failed \
                 (build error or crash; see above)"
            );
        }
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte(@..~)
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Runs cargo test with stdout piped through us (echoed line by line) to collect results.
fn run_collecting(cmd: &mut Command) -> Result<Results> {
    println!("    $ {}", util::render(cmd));
    util::flush();
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", util::render(cmd)))?;
    let mut results = Results::default();
    if let Some(stdout) = child.stdout.take() {
        let mut out = std::io::stdout();
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            out.write_all(&buf)?;
            out.flush()?;
            results.line(&String::from_utf8_lossy(&buf));
        }
    }
    results.success = child.wait()?.success();
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cargo_test_output() {
        let mut r = Results::default();
        for l in [
            "running 2 tests",
            "test fixtures::vlan ... ok",
            "test veth::udp_reaches_owner ... FAILED",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 3 filtered out; finished in 1.20s",
            "\x1b[32mtest result: \x1b[0m\x1b[32mok\x1b[0m. 5 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.00s\n",
        ] {
            r.line(l);
        }
        assert_eq!(r.binaries, 2);
        assert_eq!(
            (r.passed, r.failed, r.ignored, r.filtered_out),
            (6, 1, 2, 3)
        );
        assert_eq!(r.failures, vec!["veth::udp_reaches_owner".to_string()]);
    }
}
