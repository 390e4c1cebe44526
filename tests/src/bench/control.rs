//! Control-plane figures (issue 4): associate/unassociate ops/s and the
//! agent's cold start with 10,000 HaVips, from `havip_tests::control_bench`.

use anyhow::Result;
use serde_json::json;

use super::{goals, report::Report, Bench, Section};
use crate::control_bench;

pub const KEY: &str = "control_plane";

pub struct ControlPlaneSection;

impl Section for ControlPlaneSection {
    fn name(&self) -> &'static str {
        "control_plane"
    }

    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()> {
        super::interrupt::check()?;
        let havips = 10_000;
        let ops = if bench.params.quick { 8_000 } else { 32_000 };
        bench.progress.step(format!(
            "control plane: {havips} HaVips, {ops} associate/unassociate ops"
        ));
        let f = control_bench::measure(havips, ops)?;
        report.set(
            KEY,
            json!({
                "havips": f.havips,
                "ops_measured": f.ops_measured,
                "seed_s": {"unit": "s", "value": f.seed_s},
                "ops_per_sec_1_caller": {"unit": "ops/s", "value": f.ops_per_sec_1_caller},
                "ops_per_sec_16_callers": {"unit": "ops/s", "value": f.ops_per_sec_16_callers},
                "api_ops_per_sec_16_clients": {"unit": "ops/s", "value": f.api_ops_per_sec_16_clients},
                "store_open_ms": {"unit": "ms", "value": f.store_open_ms},
                "agent_cold_start_ms": {"unit": "ms", "value": f.agent_cold_start_ms},
                "agent_warm_start_ms": {"unit": "ms", "value": f.agent_warm_start_ms},
                "method": "havip_tests::control_bench::measure: redb store, every op durable; associate + unassociate \
                           of a third ENI on bound HaVips; cold start = store open + desired state + load and \
                           attach the XDP program + reconcile all HaVips into empty maps",
            }),
        );
        report.target(goals::CONTROL_OPS, Some(f.ops_per_sec_16_callers));
        report.target(goals::CONTROL_API_OPS, Some(f.api_ops_per_sec_16_clients));
        report.target(goals::CONTROL_COLD_START, Some(f.agent_cold_start_ms));
        report.md(
            "Control plane (10,000 HaVips)",
            format!(
                "| measurement | value |\n| --- | --- |\n\
                 | associate/unassociate, 1 caller (durable, one fsync per op) | {:.0} ops/s |\n\
                 | associate/unassociate, 16 concurrent callers (group commit) | **{:.0} ops/s** |\n\
                 | the same through the HTTP API, 16 hyper clients on the unix socket | {:.0} ops/s ({:.2}x in-process) |\n\
                 | store open + load | {:.1} ms |\n\
                 | agent cold start (store, XDP load + attach, reconcile 10,000 HaVips) | **{:.0} ms** |\n\
                 | agent warm restart (pinned maps and links adopted) | {:.0} ms |\n\
                 | creating and binding 10,000 HaVips (batched) | {:.2} s |\n",
                f.ops_per_sec_1_caller,
                f.ops_per_sec_16_callers,
                f.api_ops_per_sec_16_clients,
                f.api_ops_per_sec_16_clients / f.ops_per_sec_16_callers,
                f.store_open_ms,
                f.agent_cold_start_ms,
                f.agent_warm_start_ms,
                f.seed_s
            ),
        );
        bench.progress.log(format!(
            "  control plane: {:.0} ops/s (16 callers), {:.0} ops/s over HTTP, cold start {:.0} ms",
            f.ops_per_sec_16_callers, f.api_ops_per_sec_16_clients, f.agent_cold_start_ms
        ));
        Ok(())
    }
}
