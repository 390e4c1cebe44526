//! `havip-bench`: the havip fast path measured side by side with what a user
//! would pick instead, in one run, on this machine, in network namespaces
//! (method: docs/benchmark.md; issue 5).
//!
//! A run is a list of [`Section`]s sharing one [`Bench`] (parameters,
//! progress display, the lazily built lab [`Env`]) and one [`Report`]. Each
//! section writes its own stable JSON keys; a measurement that needs none of
//! the lab (e.g. control-plane ops/s) is just another `Section` added to
//! [`sections`].
//!
//! Outputs (in `--out`, default `target/bench/`): `report.json`,
//! `report.md`, `throughput.png`, `scale.png`, `ns_per_pkt.png`.

pub mod control;
pub mod cost;
pub mod crosshost;
pub mod eip;
pub mod env;
pub mod failover;
pub mod goals;
pub mod interrupt;
pub mod keepalived;
pub mod paths;
pub mod plot;
pub mod progs;
pub mod report;
pub mod route;
pub mod stats;
pub mod throughput;
pub mod topo;

use std::{
    collections::BTreeMap,
    fs,
    io::IsTerminal,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

pub use env::Env;
pub use report::Report;

/// The report keys issue 5 promises, always present in `report.json`.
pub const STABLE_KEYS: [&str; 19] = [
    "xdp_pps",
    "bare_redirect_pps",
    "bridge_pps",
    "bridge_nf_off_pps",
    "tc_pps",
    "drop_ceiling_pps",
    "ratio_vs_bridge",
    "ratio_vs_tc",
    "ratio_vs_bare_redirect",
    "ratio_vs_ceiling",
    "scale_pps",
    "ns_per_pkt",
    "failover_us_p50",
    "failover_us_p99",
    "keepalived_loss_ms",
    "control_plane",
    route::KEY_XDP,
    route::KEY_KERNEL,
    route::KEY_RATIO,
];

/// How much work a run does.
#[derive(Clone, Debug)]
pub struct Params {
    pub quick: bool,
    /// Repetitions of every throughput and ns/packet measurement.
    pub reps: usize,
    /// Frames per throughput measurement on the XDP paths (drop, bare, havip, scale).
    pub packets_fast: u32,
    /// Frames per throughput measurement on the skb paths (tc, bridges).
    pub packets_slow: u32,
    /// `repeat` of the non-live ns/packet runs.
    pub ns_repeat: u32,
    /// Calls of the repeat-1 ns/packet series (paths that rewrite their frame).
    pub ns_single_calls: u32,
    /// Owner switches measured by the failover section.
    pub failover_switches: u32,
    /// HaVip counts of the scale section.
    pub scale_counts: Vec<u32>,
    /// CPU the generator (and so all softirq work) runs on.
    pub generator_cpu: usize,
    /// Measuring threads run SCHED_FIFO (see [`progs::pin_thread`]).
    pub realtime: bool,
}

impl Params {
    pub fn new(quick: bool, realtime: bool) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let generator_cpu = if cpus > 1 { 1 } else { 0 };
        if quick {
            Self {
                quick,
                reps: 3,
                packets_fast: 5_000_000,
                packets_slow: 2_000_000,
                ns_repeat: 1_000_000,
                ns_single_calls: 5_000,
                failover_switches: 2_000,
                scale_counts: vec![1, 1024, 65_536],
                generator_cpu,
                realtime,
            }
        } else {
            Self {
                quick,
                reps: 5,
                packets_fast: 20_000_000,
                packets_slow: 5_000_000,
                ns_repeat: 10_000_000,
                ns_single_calls: 20_000,
                failover_switches: 10_000,
                scale_counts: vec![1, 1024, 65_536],
                generator_cpu,
                realtime,
            }
        }
    }
}

/// Progress display: a bar on a terminal, plain lines otherwise.
pub struct Progress {
    bar: ProgressBar,
    tty: bool,
    start: Instant,
}

impl Progress {
    pub fn new(total: u64) -> Self {
        let tty = std::io::stderr().is_terminal();
        let bar = if tty {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:32} {pos}/{len} {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        } else {
            ProgressBar::hidden()
        };
        Self {
            bar,
            tty,
            start: Instant::now(),
        }
    }

    /// What is being measured now.
    pub fn step(&self, msg: impl Into<String>) {
        let msg = msg.into();
        if !self.tty {
            eprintln!("[{:>6.1}s] {msg}", self.start.elapsed().as_secs_f64());
        }
        self.bar.set_message(msg);
    }

    /// One unit of work done.
    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// A line that stays (results, warnings).
    pub fn log(&self, msg: impl AsRef<str>) {
        if self.tty {
            self.bar.println(msg.as_ref());
        } else {
            eprintln!(
                "[{:>6.1}s] {}",
                self.start.elapsed().as_secs_f64(),
                msg.as_ref()
            );
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Measures every `(path, label)` of `paths` `reps` times, the paths
    /// interleaved within each repetition (so drift hits them all alike),
    /// and logs each sample; returns the samples by path. `section` names
    /// the steps; a path that delivered nothing fails the run.
    ///
    /// # Errors
    /// From `measure`, or nothing arrived.
    pub fn interleaved<P: Copy + Ord>(
        &self,
        section: &str,
        reps: usize,
        paths: &[(P, &str)],
        mut measure: impl FnMut(P) -> Result<env::Sample>,
    ) -> Result<BTreeMap<P, Vec<env::Sample>>> {
        let mut samples: BTreeMap<P, Vec<env::Sample>> = BTreeMap::new();
        for rep in 1..=reps {
            for &(path, label) in paths {
                self.step(format!("{section} {rep}/{reps}: {label}"));
                let sample = measure(path)?;
                if sample.delivered == 0 {
                    anyhow::bail!("{label}: nothing arrived");
                }
                self.log(format!(
                    "  {label:<22} rep {rep}: {:>6.2} Mpps ({:.1} % of {} frames delivered; other CPU {:.0} % busy)",
                    sample.pps() / 1e6,
                    100.0 * sample.delivered as f64 / sample.sent as f64,
                    sample.sent,
                    100.0 * sample.others_busy
                ));
                samples.entry(path).or_default().push(sample);
                self.inc();
            }
        }
        Ok(samples)
    }
}

/// Shared by the sections of one run.
pub struct Bench {
    pub params: Params,
    pub progress: Progress,
    env: Option<Env>,
}

impl Bench {
    /// The lab (namespaces, loaded programs, the product configured with one
    /// HaVip), built on first use.
    pub fn env(&mut self) -> Result<&mut Env> {
        if self.env.is_none() {
            self.progress
                .step("building the lab (namespaces, veths, programs)");
            let env = Env::create(&self.params)?;
            self.env = Some(env);
        }
        self.env
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("lab not built"))
    }

    /// Split borrow: the lab and the progress display at once.
    pub fn env_and_progress(&mut self) -> Result<(&mut Env, &Progress, &Params)> {
        self.env()?;
        let env = self
            .env
            .as_mut()
            .ok_or_else(|| anyhow::anyhow!("lab not built"))?;
        Ok((env, &self.progress, &self.params))
    }
}

/// One part of the report. Sections run in order; a failing section is
/// reported (its keys stay absent or null) and the run goes on.
pub trait Section {
    /// Stable name, for `--only`.
    fn name(&self) -> &'static str;
    /// Progress units this section will report with [`Progress::inc`]
    /// (default: one).
    fn steps(&self, _params: &Params) -> u64 {
        1
    }
    /// Measures and writes its keys into `report`.
    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()>;
}

/// A key this build cannot measure yet: written as `null` with a note, so
/// the report's keys are stable. Replace it in [`sections`] with the real
/// section when one exists.
pub struct NotMeasured {
    pub key: &'static str,
    pub section: &'static str,
    pub note: &'static str,
}

impl Section for NotMeasured {
    fn name(&self) -> &'static str {
        self.section
    }
    fn steps(&self, _: &Params) -> u64 {
        0
    }
    fn run(&mut self, _: &mut Bench, report: &mut Report) -> Result<()> {
        report.not_measured(self.key, self.note);
        Ok(())
    }
}

/// The sections of a run, in order.
pub fn sections() -> Vec<Box<dyn Section>> {
    vec![
        Box::new(paths::Interleaved::<throughput::Path>::default()),
        Box::new(throughput::Scale::default()),
        Box::new(cost::NsPerPacket),
        Box::new(failover::Failover),
        Box::new(keepalived::KeepalivedLoss),
        Box::new(control::ControlPlaneSection),
        Box::new(route::Routes::default()),
        Box::new(paths::Interleaved::<eip::EipPath>::default()),
        Box::new(crosshost::CrossHost),
    ]
}

/// Command-line options of `havip-bench`.
#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub out_dir: PathBuf,
    /// Only these sections (by [`Section::name`]); all if empty.
    pub only: Vec<String>,
    /// Run the measuring threads SCHED_FIFO (default).
    pub realtime: bool,
    /// Instead of the report: spin the product's forward path this long (profiling).
    pub spin_forward: Option<u64>,
}

fn machine() -> serde_json::Value {
    let read = |p: &str| fs::read_to_string(p).map(|s| s.trim().to_owned()).ok();
    let cpu_model = read("/proc/cpuinfo").and_then(|c| {
        c.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
    });
    let mem_kib = read("/proc/meminfo").and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    });
    json!({
        "kernel": read("/proc/sys/kernel/osrelease"),
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu_model": cpu_model,
        "memory_gib": mem_kib.map(|k| (k as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0),
    })
}

/// 1, 5 and 15-minute load averages: other work on a shared machine moves
/// the figures.
fn loadavg() -> Vec<f64> {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// UTC `YYYY-MM-DDTHH:MM:SSZ` of now.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    havip::control::history::rfc3339_secs(secs)
}

/// Runs the bench and writes the outputs. Returns the report.
pub fn run(opts: &Options) -> Result<Report> {
    interrupt::install();
    let params = Params::new(opts.quick, opts.realtime);
    let started = Instant::now();
    for stale in topo::sweep_stale() {
        eprintln!("removed stale bench state: {stale}");
    }
    let all: Vec<Box<dyn Section>> = match opts.spin_forward {
        Some(seconds) => vec![Box::new(cost::SpinForward { seconds })],
        None => sections(),
    };
    let mut sections: Vec<Box<dyn Section>> = all
        .into_iter()
        .filter(|s| opts.only.is_empty() || opts.only.iter().any(|o| o == s.name()))
        .collect();
    let total: u64 = sections.iter().map(|s| s.steps(&params)).sum();
    let mut bench = Bench {
        params,
        progress: Progress::new(total),
        env: None,
    };
    let mut report = Report::default();
    report.set("schema", json!(1));
    report.set("quick", json!(opts.quick));
    report.set("started_utc", json!(utc_now()));
    report.set("machine", machine());
    report.set("loadavg_start", json!(loadavg()));
    let p = &bench.params;
    report.set(
        "params",
        json!({
            "frame_bytes": 14 + 20 + 8 + progs::PAYLOAD_LEN,
            "repetitions": p.reps,
            "packets_per_measurement_xdp_paths": p.packets_fast,
            "packets_per_measurement_skb_paths": p.packets_slow,
            "ns_per_pkt_repeat": p.ns_repeat,
            "ns_per_pkt_single_calls": p.ns_single_calls,
            "failover_switches": p.failover_switches,
            "generator_cpu": p.generator_cpu,
            "measuring_threads_sched_fifo": p.realtime,
            "live_frames_batch": 64,
        }),
    );
    let mut failures = Vec::new();
    for section in &mut sections {
        if let Err(e) = interrupt::check() {
            failures.push(format!("{}: {e}", section.name()));
            break;
        }
        if let Err(e) = section.run(&mut bench, &mut report) {
            let msg = format!("section {} failed: {e:#}", section.name());
            bench.progress.log(&msg);
            report.note(msg.clone());
            failures.push(msg);
            if interrupt::interrupted() {
                break;
            }
        }
    }
    if let Some(env) = bench.env.as_mut() {
        report.set("product", env.product_info());
    }
    // Every stable key is present: null (with a note) when its section
    // failed or was not selected.
    for key in STABLE_KEYS {
        if !report.json.contains_key(key) {
            report.not_measured(
                key,
                "not measured in this run (section failed or not selected)",
            );
        }
    }
    bench.progress.step("cleaning up");
    // Detach, unpin and delete the namespaces before writing anything.
    drop(bench.env.take());
    bench.progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    report.set("duration_s", json!((elapsed * 10.0).round() / 10.0));
    report.set("loadavg_end", json!(loadavg()));
    report.set("failures", json!(failures));
    if interrupt::interrupted() {
        anyhow::bail!("interrupted: everything created was removed; no report written");
    }
    if opts.spin_forward.is_none() {
        write_outputs(opts, &mut report)?;
    }
    Ok(report)
}

fn write_outputs(opts: &Options, report: &mut Report) -> Result<()> {
    fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    match plot::render_all(&opts.out_dir, report) {
        Ok(files) => {
            for f in files {
                report.note(format!("plot: {f}"));
            }
        }
        Err(e) => report.note(format!("plots not drawn: {e:#}")),
    }
    let json_path = opts.out_dir.join("report.json");
    fs::write(
        &json_path,
        serde_json::to_string_pretty(&report.to_json())? + "\n",
    )
    .with_context(|| format!("writing {}", json_path.display()))?;
    let header = markdown_header(report);
    let md_path = opts.out_dir.join("report.md");
    fs::write(&md_path, report.to_markdown(&header))
        .with_context(|| format!("writing {}", md_path.display()))?;
    Ok(())
}

fn markdown_header(report: &Report) -> String {
    let j = &report.json;
    let s = |k: &str| j.get(k).map(|v| v.to_string()).unwrap_or_default();
    let m = j.get("machine").cloned().unwrap_or_default();
    let quick = j.get("quick").and_then(|v| v.as_bool()).unwrap_or(false);
    let load = |k: &str| {
        j.get(k)
            .and_then(|v| v.as_array())
            .and_then(|a| a.first())
            .and_then(|v| v.as_f64())
            .map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"))
    };
    format!(
        "# havip benchmark{}\n\n{} · kernel {} · {} CPUs ({}) · run took {} s · load average {} at the start, {} at the end\n\n\
         Method: docs/benchmark.md — client ns [c0] ⇄ [hc0] host ns [ho0] ⇄ [o0] owner ns; \
         live-frame `BPF_PROG_TEST_RUN` generator (XDP_TX, 106-byte frames) pinned to one core \
         (SCHED_FIFO unless --no-realtime; all forwarding softirq work runs there too); \
         delivered = frames counted by an XDP counter on o0 (for the ceiling: on hc0) / generator \
         wall time; paths interleaved in every repetition; ratios are of medians from this run. \
         On a machine shared with other work the absolute figures move by tens of percent: \
         see the other-CPU column and the load averages.\n",
        if quick { " (--quick)" } else { "" },
        s("started_utc").trim_matches('"'),
        m.get("kernel").and_then(|v| v.as_str()).unwrap_or("?"),
        m.get("cpus").map(|v| v.to_string()).unwrap_or_default(),
        m.get("cpu_model").and_then(|v| v.as_str()).unwrap_or("?"),
        s("duration_s"),
        load("loadavg_start"),
        load("loadavg_end"),
    )
}
