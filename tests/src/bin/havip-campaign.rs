//! `havip-campaign [--frames N] [--seed S]`: the full randomized frame
//! campaign (default 1,000,000 frames) through `BPF_PROG_TEST_RUN` on the
//! fixture bed. Prints frames per class and outcome, the invariants checked
//! and the time taken; exits 1 on any violation (with seed, index and frame
//! hex), 2 on bad arguments. Needs root. Run it with `cargo xtask fuzz`.

use std::{process::ExitCode, time::Instant};

use havip_tests::{
    campaign::{self, Config},
    TestBed,
};

const USAGE: &str = "usage: havip-campaign [--frames N] [--seed S]";

fn parse_args() -> Result<Config, String> {
    let mut frames = 1_000_000u64;
    let mut seed = 1u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.replace('_', "").parse(),
            };
            parsed.map_err(|e| format!("{name} {v}: {e}"))
        };
        match arg.as_str() {
            "--frames" => frames = value("--frames")?,
            "--seed" => seed = value("--seed")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Config::new(seed, frames))
}

fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("havip-campaign: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    println!(
        "havip-campaign: {} frames, seed {} (replay a failure with the same seed and \
         --frames index+1)",
        config.frames, config.seed
    );
    let start = Instant::now();
    let mut bed = TestBed::new();
    let report = campaign::run(&mut bed, &config, |done| {
        println!("  {done} frames in {:.1} s", start.elapsed().as_secs_f64());
    });
    println!("{report}");
    if report.violation_count == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "havip-campaign: {} violations (seed {})",
            report.violation_count, config.seed
        );
        ExitCode::FAILURE
    }
}
