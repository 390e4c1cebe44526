//! Forwarding throughput through the host, one path at a time, the paths
//! interleaved within every repetition (so drift hits them all alike), and
//! the scale run over 1 … 65,536 HaVips.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use havip_common::Handled;
use serde_json::json;

use super::{
    env::{Env, Sample},
    goals,
    paths::{Column, Measure, PathSet},
    progs,
    report::{median_ratio, pps_summary, Report},
    stats::Summary,
    topo, Bench, Params, Section,
};

/// A way through the host from hc0 to o0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Path {
    DropCeiling,
    BareRedirect,
    Havip,
    Tc,
    BridgeNfOff,
    Bridge,
    /// Informational: the bench-only sketch of a cheaper forward path.
    Sketch,
}

impl PathSet for Path {
    const SECTION: &'static str = "throughput";
    const TITLE: &'static str = "Throughput by path";
    const COLUMNS: &'static [Column] =
        &[Column::NsPerPacket, Column::Delivered, Column::OthersBusy];
    const MEASURE: Measure<Self> = measure_path;
    const ALL: &'static [Path] = &[
        Path::DropCeiling,
        Path::BareRedirect,
        Path::Havip,
        Path::Sketch,
        Path::Tc,
        Path::BridgeNfOff,
        Path::Bridge,
    ];

    /// The report key.
    fn key(self) -> &'static str {
        match self {
            Path::DropCeiling => "drop_ceiling_pps",
            Path::BareRedirect => "bare_redirect_pps",
            Path::Havip => "xdp_pps",
            Path::Tc => "tc_pps",
            Path::BridgeNfOff => "bridge_nf_off_pps",
            Path::Bridge => "bridge_pps",
            Path::Sketch => "sketch_array_forward_pps",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Path::DropCeiling => "XDP_DROP ceiling",
            Path::BareRedirect => "bare XDP redirect",
            Path::Havip => "havip XDP",
            Path::Tc => "tc clsact redirect",
            Path::BridgeNfOff => "bridge, nf-call off",
            Path::Bridge => "bridge (default)",
            Path::Sketch => "sketch (not product)",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Path::DropCeiling => "XDP_DROP on hc0 (counted there): the most this generator can push into hc0",
            Path::BareRedirect => "MAC rewrite + DEVMAP redirect, no lookups (floor of any XDP forwarder)",
            Path::Havip => "havip_xdp on every host port, configured by Dataplane + reconcile, 1 HaVip owned by ho0",
            Path::Tc => "clsact ingress on hc0, cls_bpf direct action: MAC rewrite + bpf_redirect",
            Path::BridgeNfOff => "Linux bridge hc0+ho0, net.bridge.bridge-nf-call-*=0",
            Path::Bridge => "Linux bridge hc0+ho0, net.bridge.bridge-nf-call-*=1 (the default)",
            Path::Sketch => "NOT the product: bench-only sketch of a forward path with no hash-map helper (arrays only; see the ns/packet ladder)",
        }
    }

    fn conclude(medians: &BTreeMap<Path, f64>, report: &mut Report) {
        let ratio = |other| median_ratio(medians, Path::Havip, other);
        report.ratio(goals::VS_BRIDGE, ratio(Path::Bridge));
        report.ratio(goals::VS_TC, ratio(Path::Tc));
        report.ratio(goals::VS_BARE_REDIRECT, ratio(Path::BareRedirect));
        report.ratio(goals::VS_CEILING, ratio(Path::DropCeiling));
        // Context, not targets.
        report.set(
            "ratio_vs_bridge_nf_off",
            json!({"unit": "ratio", "value": ratio(Path::BridgeNfOff)}),
        );
        let bare_vs_bridge = median_ratio(medians, Path::BareRedirect, Path::Bridge);
        report.set(
            "bare_redirect_ratio_vs_bridge",
            json!({"unit": "ratio", "value": bare_vs_bridge}),
        );
    }
}

impl Path {
    const fn fast(self) -> bool {
        matches!(
            self,
            Path::DropCeiling | Path::BareRedirect | Path::Havip | Path::Sketch
        )
    }
}

/// Runs one measurement of `path`: sets it up, measures, takes it down.
fn measure_path(env: &mut Env, path: Path, params: &Params) -> Result<Sample> {
    let packets = if path.fast() {
        params.packets_fast
    } else {
        params.packets_slow
    };
    match path {
        Path::DropCeiling | Path::BareRedirect | Path::Sketch => {
            // The ceiling counts where it drops (hc0): same counter, same map.
            let name = match path {
                Path::DropCeiling => progs::PROG_COUNT,
                Path::BareRedirect => progs::PROG_BARE,
                _ => progs::PROG_SKETCH_ARRAY,
            };
            let progs = &mut env.progs;
            let link = topo::in_ns(&env.lab.host, || progs.attach_xdp(name, "hc0"))?;
            let sample = env.measure(&Env::havip_traffic(1), packets);
            let detached = env.progs.detach_xdp(name, link);
            let sample = sample?;
            detached?;
            env.lab.wait_no_xdp("hc0")?;
            Ok(sample)
        }
        Path::Havip => {
            env.ensure_owner_a()?;
            env.measure_havip(&Env::havip_traffic(1), packets, Handled::Forwarded)
        }
        Path::Tc => {
            let tc = env.progs.attach_tc(&env.lab.host, "hc0")?;
            let sample = env.measure(&Env::havip_traffic(1), packets);
            drop(tc);
            sample
        }
        Path::Bridge | Path::BridgeNfOff => {
            let _bridge = env.lab.bridge(path == Path::Bridge)?;
            env.measure(&Env::bridge_traffic(), packets)
        }
    }
}

/// The havip fast path with traffic spread over 1, 1,024 and 65,536 HaVips.
#[derive(Default)]
pub struct Scale {
    samples: BTreeMap<u32, Vec<Sample>>,
    reconcile_s: BTreeMap<u32, Vec<f64>>,
}

impl Section for Scale {
    fn name(&self) -> &'static str {
        "scale"
    }

    fn steps(&self, params: &Params) -> u64 {
        (params.reps * params.scale_counts.len()) as u64
    }

    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()> {
        let (env, progress, params) = bench.env_and_progress()?;
        let params = params.clone();
        env.configure(1)?;
        env.ensure_owner_a()?;
        env.attach_havip()?;
        let result = self.measure_all(env, progress, &params);
        let detached = env.detach_havip();
        let reset = env.configure(1);
        result?;
        detached?;
        reset?;

        let mut value = json!({"unit": "pps"});
        let mut table = String::from(
            "| HaVips configured (traffic spread over all) | median Mpps | min | max | reconcile time |\n\
             | --- | --- | --- | --- | --- |\n",
        );
        let mut medians = BTreeMap::new();
        for (&n, samples) in &self.samples {
            let Some(s) = pps_summary(samples) else {
                continue;
            };
            medians.insert(n, s.median);
            let rec = self
                .reconcile_s
                .get(&n)
                .and_then(|v| Summary::of(v))
                .map(|r| r.max);
            value[n.to_string()] = json!({
                "min": s.min, "median": s.median, "max": s.max, "samples": s.samples,
                "reconcile_s_max": rec,
                "other_cpus_busy": samples.iter().map(|x| x.others_busy).collect::<Vec<_>>(),
            });
            table.push_str(&format!(
                "| {n} | **{:.2}** | {:.2} | {:.2} | {} |\n",
                s.median / 1e6,
                s.min / 1e6,
                s.max / 1e6,
                rec.map_or_else(|| "-".into(), |r| format!("{r:.2} s"))
            ));
        }
        // Same-repetition ratios too (less sensitive to drift between reps).
        let first_n = params.scale_counts.first().copied().unwrap_or(1);
        let last_n = params.scale_counts.last().copied().unwrap_or(65_536);
        if let (Some(a), Some(b)) = (self.samples.get(&last_n), self.samples.get(&first_n)) {
            let paired: Vec<f64> = a.iter().zip(b).map(|(l, f)| l.pps() / f.pps()).collect();
            value[format!("ratio_{last_n}_vs_{first_n}_per_rep")] = json!(paired);
        }
        report.set("scale_pps", value);
        report.ratio(goals::SCALE, median_ratio(&medians, last_n, first_n));
        report.md("Scale", table);
        Ok(())
    }
}

impl Scale {
    fn measure_all(
        &mut self,
        env: &mut Env,
        progress: &super::Progress,
        params: &Params,
    ) -> Result<()> {
        for rep in 0..params.reps {
            // Serpentine order: one big reconcile per repetition, not two.
            let mut counts = params.scale_counts.clone();
            if rep % 2 == 1 {
                counts.reverse();
            }
            for n in counts {
                progress.step(format!("scale {}/{}: {n} HaVips", rep + 1, params.reps));
                if env.havip_count != n {
                    let took = env.configure(n)?;
                    self.reconcile_s
                        .entry(n)
                        .or_default()
                        .push(took.as_secs_f64());
                }
                let sample = env.measure(&Env::havip_traffic(n), params.packets_fast)?;
                if sample.delivered == 0 {
                    bail!("scale {n}: nothing arrived at o0");
                }
                progress.log(format!(
                    "  scale {n:>6} HaVips rep {}: {:>6.2} Mpps",
                    rep + 1,
                    sample.pps() / 1e6
                ));
                self.samples.entry(n).or_default().push(sample);
                progress.inc();
            }
        }
        Ok(())
    }
}
