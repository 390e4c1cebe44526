//! havip-bench: the benchmark of issue 5 (`cargo xtask bench [--quick]`).
//! Needs root: it creates network namespaces and loads XDP programs. All it
//! creates is removed at the end, on error and on Ctrl-C.

use std::path::PathBuf;

use clap::Parser;
use havip_tests::bench::{self, Options};

/// Benchmark the havip data plane against its alternatives.
#[derive(Parser, Debug)]
#[command(name = "havip-bench")]
struct Args {
    /// Short run (3 repetitions, fewer packets): under 5 minutes.
    #[arg(long)]
    quick: bool,
    /// Output directory for report.json, report.md and the PNG plots.
    #[arg(long, default_value_os_t = default_out())]
    out: PathBuf,
    /// Run only these sections (throughput, scale, ns_per_pkt, failover,
    /// keepalived, control_plane, routes, eip, crosshost); may be repeated or
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Do not run the measuring threads SCHED_FIFO (they are by default, so
    /// that other work on the machine cannot preempt a measurement).
    #[arg(long)]
    no_realtime: bool,
    /// Profiling aid: only run the product's forward path (non-live
    /// test_run, pinned to CPU 1) for SECS seconds, for perf or
    /// `bpftool prog profile`; writes no report.
    #[arg(long, value_name = "SECS")]
    spin_forward: Option<u64>,
}

/// `target/bench` of the workspace this binary was built from.
fn default_out() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench"))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("havip-bench needs root (network namespaces, XDP)");
        return std::process::ExitCode::FAILURE;
    }
    let out_dir = std::fs::canonicalize(&args.out)
        .or_else(|_| {
            std::fs::create_dir_all(&args.out).and_then(|()| std::fs::canonicalize(&args.out))
        })
        .unwrap_or(args.out);
    let opts = Options {
        quick: args.quick,
        out_dir: out_dir.clone(),
        only: args.only,
        realtime: !args.no_realtime,
        spin_forward: args.spin_forward,
    };
    if opts.spin_forward.is_some() {
        return match bench::run(&opts) {
            Ok(_) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("havip-bench: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    match bench::run(&opts) {
        Ok(report) => {
            let failed = report
                .json
                .get("failures")
                .and_then(|f| f.as_array())
                .is_some_and(|f| !f.is_empty());
            println!("{}", report.to_markdown(""));
            println!(
                "wrote {}/report.json, report.md and plots",
                out_dir.display()
            );
            if failed {
                eprintln!("some sections failed: see the notes in report.md");
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("havip-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
