//! Every target the benchmark checks, in one table: the report key, what
//! is compared, the unit and the bound. Sections measure; this says what
//! a measurement must reach.

use serde::Serialize;
use Cmp::{AtLeast, AtMost};

/// Which way a target goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    AtLeast,
    AtMost,
}

/// One target: serialized with the measured value in `report.json`'s
/// `targets`, as `key`, `description`, `unit`, `target` and `cmp`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Goal {
    /// The report key the value comes from.
    pub key: &'static str,
    /// What is compared, for the report's table.
    pub description: &'static str,
    /// Unit of `target` and the value (`ratio`, `ns`, `pps`, ...).
    pub unit: &'static str,
    /// The bound the value must reach.
    pub target: f64,
    /// `at_least` or `at_most`: which side of `target` meets it.
    pub cmp: Cmp,
}

impl Goal {
    const fn new(
        key: &'static str,
        description: &'static str,
        unit: &'static str,
        cmp: Cmp,
        target: f64,
    ) -> Self {
        Self {
            key,
            description,
            unit,
            target,
            cmp,
        }
    }

    /// Whether `value` meets the goal.
    pub fn met_by(&self, value: f64) -> bool {
        match self.cmp {
            Cmp::AtLeast => value >= self.target,
            Cmp::AtMost => value <= self.target,
        }
    }
}

// Single-host throughput (section `throughput`).
pub const VS_BRIDGE: Goal = Goal::new(
    "ratio_vs_bridge",
    "havip ÷ default Linux bridge (throughput)",
    "ratio",
    AtLeast,
    6.5,
);
pub const VS_TC: Goal = Goal::new(
    "ratio_vs_tc",
    "havip ÷ tc clsact redirect (throughput)",
    "ratio",
    AtLeast,
    3.5,
);
pub const VS_BARE_REDIRECT: Goal = Goal::new(
    "ratio_vs_bare_redirect",
    "havip ÷ bare XDP redirect (throughput)",
    "ratio",
    AtLeast,
    0.95,
);
pub const VS_CEILING: Goal = Goal::new(
    "ratio_vs_ceiling",
    "havip ÷ XDP_DROP ceiling (throughput)",
    "ratio",
    AtLeast,
    0.62,
);
// Section `scale`.
pub const SCALE: Goal = Goal::new(
    "scale_ratio",
    "throughput at the most HaVips ÷ at the fewest (`scale_pps` has the counts)",
    "ratio",
    AtLeast,
    0.90,
);
// Section `cost`.
pub const FORWARD_NS_VS_BARE: Goal = Goal::new(
    "ratio_forward_ns_vs_bare",
    "havip forward ns/packet ÷ bare redirect ns/packet",
    "ratio",
    AtMost,
    1.3,
);
// Section `eip`.
pub const EIP_VS_NFT: Goal = Goal::new(
    "ratio_eip_vs_nft",
    "havip EIP DNAT ÷ nftables DNAT/SNAT with conntrack (throughput)",
    "ratio",
    AtLeast,
    4.0,
);
// Section `failover`.
pub const FAILOVER_P99: Goal = Goal::new(
    "failover_us_p99",
    "data-plane failover p99 (claim → first frame to the new owner)",
    "us",
    AtMost,
    50.0,
);
// Section `control`.
pub const CONTROL_OPS: Goal = Goal::new(
    "control_plane_ops_per_sec",
    "associate/unassociate ops/s (16 concurrent callers, durable)",
    "ops/s",
    AtLeast,
    10_000.0,
);
pub const CONTROL_API_OPS: Goal = Goal::new(
    "control_plane_api_ops_per_sec",
    "associate/unassociate ops/s over the HTTP API (16 hyper clients, kept-alive connections)",
    "ops/s",
    AtLeast,
    10_000.0,
);
pub const CONTROL_COLD_START: Goal = Goal::new(
    "control_plane_cold_start_ms",
    "agent cold start with 10,000 HaVips",
    "ms",
    AtMost,
    1_000.0,
);
// Section `crosshost`.
pub const CROSSHOST_VS_BARE: Goal = Goal::new(
    "crosshost_ratio_vs_bare_redirect",
    "cross-host havip XDP (encap+decap) / bare XDP redirect on the same two hops",
    "ratio",
    AtLeast,
    0.8,
);
pub const CROSSHOST_VS_KERNEL_VXLAN: Goal = Goal::new(
    "crosshost_ratio_vs_kernel_vxlan",
    "cross-host havip XDP / Linux bridge + kernel VXLAN on each host",
    "ratio",
    AtLeast,
    3.0,
);
pub const CROSSHOST_FAILOVER_P99: Goal = Goal::new(
    "crosshost_failover_ms_p99",
    "cross-host failover (claim on host B -> first frame from a client on another host at the new owner), p99",
    "ms",
    AtMost,
    10.0,
);
