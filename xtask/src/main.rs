//! `cargo xtask`: set-up, build, test, lint, demo and host clean-up for havip.
//!
//! The eBPF object is built by Debian's toolchain (rustc-web 1.96 + rust-web-src,
//! bpf-linker 0.13 on LLVM 22); everything else by the rustup toolchain that runs
//! this program. See `docs/toolchain.md` for why.

mod build;
mod clean;
mod fuzz;
mod package;
mod setup;
mod test;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Set up the machine, build, test and run havip",
    after_help = "Set-up installs Debian packages and bpf-linker (root needed the first time). \
                  Tools dir: $HAVIP_TOOLS_DIR (default /opt/havip/tools)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build needs (apt packages, bpf-linker 0.13.0, bpffs mount).
    /// Idempotent; a quick no-op when everything is there.
    Setup,
    /// Set up, build the eBPF objects, then the userspace workspace (havip-agent, havipctl;
    /// havip-demo, havip-bench from the tests crate).
    Build {
        /// Build the userspace in the dev profile (target/debug); the eBPF object is
        /// always a release build.
        #[arg(long)]
        debug: bool,
    },
    /// Lint: `cargo fmt --check` (workspace and havip-ebpf) and
    /// `cargo clippy --workspace --all-targets -- -D warnings`.
    Lint,
    /// Lint, build, then `cargo test --release --workspace` (needs root).
    ///
    /// Arguments after `--` go to the test binaries (filters, --nocapture, ...).
    /// $HAVIP_TEST_THREADS sets --test-threads (default: libtest's).
    Test {
        /// Skip the lint step.
        #[arg(long)]
        no_lint: bool,
        /// Test only these packages instead of the whole workspace.
        #[arg(long, short = 'p', value_name = "PACKAGE")]
        package: Vec<String>,
        /// Filters and options for the test binaries.
        #[arg(last = true, value_name = "TEST_ARGS")]
        args: Vec<String>,
    },
    /// Build, then run the demo or the agent (replaces this process, so Ctrl-C reaches it).
    ///
    /// No arguments: `havip-demo` (self-contained demo in network namespaces; the
    /// binary of the tests crate, it runs the real havip-agent).
    ///
    /// `-- --config FILE [ARGS]`: `havip-agent run --config FILE [ARGS]`.
    ///
    /// `-- SUBCOMMAND [ARGS]` (e.g. `-- status`): `havip-agent SUBCOMMAND [ARGS]`.
    ///
    /// `-- --flag ...` without --config: `havip-demo --flag ...` (e.g. `--hold`).
    BuildAndRun {
        /// Use the dev-profile userspace build (target/debug).
        #[arg(long)]
        debug: bool,
        /// Arguments for havip-demo or havip-agent (see above).
        #[arg(last = true, value_name = "ARGS")]
        args: Vec<String>,
    },
    /// Build, then run `target/release/havip-bench [--quick] [ARGS]` (tests crate;
    /// method in docs/benchmark.md, report in target/bench/).
    Bench {
        /// Short run (passed on to havip-bench).
        #[arg(long)]
        quick: bool,
        /// Further arguments for havip-bench.
        #[arg(last = true, value_name = "BENCH_ARGS")]
        args: Vec<String>,
    },
    /// Build, then run the randomized frame campaign through BPF_PROG_TEST_RUN
    /// (`havip-campaign`, root): every frame checked against the data plane's
    /// invariants; exits non-zero on a violation with its seed, index and frame.
    Fuzz {
        /// Frames to generate.
        #[arg(long, default_value_t = 1_000_000)]
        frames: u64,
        /// Seed of the generator (a failing seed and index replay exactly).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Build, then the Debian package `target/debian/havip_<version>_<arch>.deb`
    /// (dpkg-deb): stripped havip-agent and havipctl, the systemd unit, the
    /// default config /etc/havip/havip.toml (conffile), completions, man pages,
    /// licences and the deployment guide.
    Package {
        /// Use the release binaries already in target/release (no build).
        #[arg(long)]
        no_build: bool,
        /// Write the package into this directory.
        #[arg(long, value_name = "DIR")]
        out: Option<std::path::PathBuf>,
    },
    /// Remove leftovers of demos and tests on this host (root).
    ///
    /// Stops processes named in /run/havip/**/*.pid, any process named `havip-agent`
    /// (matched by name: this is a dev tool), and every process inside the network
    /// namespaces below (keepalived, socat, ...); deletes network namespaces and
    /// root-namespace links named `havip-*` or `hvt*`; removes the pinned dirs
    /// /sys/fs/bpf/havip and /sys/fs/bpf/havip-* (havip-test-*, havip-demo-*).
    /// A keepalived outside those namespaces is only stopped when a pid file under
    /// /run/havip names it.
    CleanHost {
        /// Only print what would be stopped and removed.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Setup => setup::setup(),
        Cmd::Build { debug } => build::build(debug).map(|_| ()),
        Cmd::Lint => setup::setup().and_then(|()| test::lint()),
        Cmd::Test {
            no_lint,
            package,
            args,
        } => test::test(no_lint, &package, &args),
        Cmd::BuildAndRun { debug, args } => build::build_and_run(debug, &args),
        Cmd::Bench { quick, args } => build::bench(quick, &args),
        Cmd::Fuzz { frames, seed } => fuzz::fuzz(frames, seed),
        Cmd::Package { no_build, out } => package::package(no_build, out).map(|_| ()),
        Cmd::CleanHost { dry_run } => clean::clean_host(dry_run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
