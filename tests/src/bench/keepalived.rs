//! Keepalived loss windows (issue 3 item 6), measured by the end-to-end
//! scenario of `havip_tests::keepalived` (real keepalived in unicast VRRP, the
//! agent, a numbered UDP stream at 1,000 pps): the master's link goes down,
//! the loss window is the longest run of datagrams nobody received.

use anyhow::Result;
use serde_json::{json, Map, Value};

use super::{report::Report, Bench, Params, Section};
use crate::keepalived::{self, Vrrp};

pub const KEY: &str = "keepalived_loss_ms";

/// The two settings of the reference in docs/benchmark.md: VRRPv2 with advert_int 1,
/// VRRPv3 with advert_int 0.1.
pub const RUNS: [(&str, Vrrp); 2] = [
    (
        "vrrp2_advert_int_1s",
        Vrrp {
            version: 2,
            advert_int: 1.0,
            nopreempt: false,
        },
    ),
    (
        "vrrp3_advert_int_0.1s",
        Vrrp {
            version: 3,
            advert_int: 0.1,
            nopreempt: true,
        },
    ),
];

pub struct KeepalivedLoss;

/// First line of the outer context and the root cause (the scenario's
/// errors carry the whole agent log).
fn compact(e: &anyhow::Error) -> String {
    let outer = e.to_string();
    let first = outer
        .lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches(':');
    let root = e.root_cause().to_string();
    let root = root.lines().last().unwrap_or_default();
    if first == root {
        first.to_owned()
    } else {
        format!("{first}: {root}")
    }
}

impl Section for KeepalivedLoss {
    fn name(&self) -> &'static str {
        "keepalived"
    }

    fn steps(&self, _: &Params) -> u64 {
        RUNS.len() as u64
    }

    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()> {
        let mut value = Map::new();
        value.insert("unit".into(), json!("ms"));
        value.insert(
            "method".into(),
            json!("havip_tests::keepalived::failover: keepalived in two instance namespaces, the agent in the host \
                   namespace, UDP at 1,000 pps to the HaVip; the master's link goes down; loss window = \
                   longest run of datagrams nobody received"),
        );
        let mut table = String::from(
            "| VRRP | loss window at failover | election | after recovery | loss window of the switch back |\n\
             | --- | --- | --- | --- | --- |\n",
        );
        for (label, vrrp) in RUNS {
            super::interrupt::check()?;
            bench.progress.step(format!(
                "keepalived failover: VRRPv{} advert_int {} s",
                vrrp.version, vrrp.advert_int
            ));
            // The scenario is timing-sensitive (VRRP elections) on a busy
            // machine: one more try before giving up.
            let r = match keepalived::failover(vrrp).or_else(|first| {
                bench.progress.log(format!(
                    "  keepalived VRRPv{}: {}; trying once more",
                    vrrp.version,
                    compact(&first)
                ));
                keepalived::failover(vrrp)
            }) {
                Ok(r) => r,
                Err(e) => {
                    report.not_measured(
                        KEY,
                        &format!("keepalived scenario failed twice: {}", compact(&e)),
                    );
                    return Err(anyhow::anyhow!(
                        "keepalived scenario failed twice: {}",
                        compact(&e)
                    ));
                }
            };
            bench.progress.log(format!(
                "  keepalived VRRPv{} advert {} s: loss window {:.0} ms",
                vrrp.version, vrrp.advert_int, r.loss_window_ms
            ));
            table.push_str(&format!(
                "| v{} advert_int {} s{} | **{:.0} ms** | {} ms | master {} | {:.0} ms |\n",
                vrrp.version,
                vrrp.advert_int,
                if vrrp.nopreempt { ", nopreempt" } else { "" },
                r.loss_window_ms,
                r.election_ms,
                r.master_after_recovery,
                r.recovery_loss_window_ms
            ));
            value.insert(
                label.into(),
                serde_json::to_value(&r).unwrap_or(Value::Null),
            );
            bench.progress.inc();
        }
        report.set(KEY, Value::Object(value));
        report.md("Keepalived failover (end to end)", table);
        Ok(())
    }
}
