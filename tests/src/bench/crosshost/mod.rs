//! Cross-host figures (issue 10), section `crosshost`:
//!
//! - **throughput** from a client on host A to a HaVip owned on host B,
//!   three paths interleaved in every repetition on one two-host lab:
//!
//!   ```text
//!   client [c0] ⇄ [hc0] host A [ua] ⇄ (underlay wire) ⇄ [ub] host B [ho0] ⇄ [o0] owner
//!   ```
//!
//!   * havip: the product on hc0, ua (host A, owner REMOTE: VXLAN encap in
//!     XDP) and ub, ho0 (host B: decap in XDP, redirect to the owner);
//!   * bare redirect: the bench's MAC-rewrite + DEVMAP program on hc0 (to
//!     ua) and on ub (to ho0): the same two XDP hops with no lookups and no
//!     encapsulation, the floor of any XDP forwarder on this path;
//!   * kernel VXLAN + bridge: what a user builds instead: on each host a
//!     Linux bridge with the instance port and a kernel VXLAN device (VNI,
//!     UDP 4789, static FDB entries, `bridge-nf-call-*` off), no XDP;
//!
//!   delivered = frames counted by an XDP counter on o0 / generator time
//!   (the same generator and counter as the single-host throughput);
//! - **failover** across hosts with real agents on etcd (three hosts, see
//!   `crate::multihost`): a client on h3 streams UDP to the HaVip; a claim
//!   (gratuitous ARP) from the member on h1 or h2 alternately; latency =
//!   first datagram at the new owner after the claim was sent (so: XDP claim
//!   on the owner's host, publish to etcd, watch on h3, remote owner
//!   installed, encap to the new host);
//! - **etcd control plane**: associate/unassociate ops/s through the etcd
//!   store (same churn as the redb figures, `crate::control_bench`), one
//!   control plane with 1 and 16 callers, and two control planes (two
//!   hosts' APIs) with 8 callers each on the same etcd.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use aya::programs::xdp::XdpLinkId;
use havip::{
    cluster::{self, Cluster, LocalHost},
    control::ControlPlane,
    dataplane::{
        self,
        desired::{DesiredVxlan, LocalVtep, RemoteOwner, RemoteVtep},
        stats, AttachMode, Dataplane, Desired, DesiredBinding, DesiredHavip, DesiredPort, Maps,
    },
    model::MacAddr,
    store::{EtcdConfig, EtcdStore},
};
use havip_common::{port_flags, virtual_mac, DataplaneConfig, Handled};
use serde_json::json;

use super::{
    env::{Env, Sample, HAVIP_BASE, VSWITCH},
    goals,
    progs::{self, BenchProgs},
    report::{summary_value, Report},
    stats::{percentile, Summary},
    topo::{self, CLIENT_MAC, GATEWAY_MAC, OWNER_A_MAC},
    Bench, Params, Section,
};
use crate::{
    control_bench,
    etcd::Etcd,
    lab::{self, mac_string, Netns},
    multihost::{MultiHost, GUESTS, VIP},
    scenario::Stream,
};

pub const KEY_THROUGHPUT: &str = "crosshost_throughput";
pub const KEY_FAILOVER: &str = "crosshost_failover";
pub const KEY_CONTROL: &str = "crosshost_control_plane";

mod control;
mod failover;
mod xlab;

use self::{control::control, failover::failover, xlab::*};

/// The section: throughput, failover, etcd control plane.
pub struct CrossHost;

impl Section for CrossHost {
    fn name(&self) -> &'static str {
        "crosshost"
    }

    fn steps(&self, params: &Params) -> u64 {
        (params.reps * XPath::ALL.len()) as u64 + 2
    }

    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()> {
        let mut failed = Vec::new();
        if let Err(e) = throughput(bench, report) {
            failed.push(format!("throughput: {e:#}"));
        }
        if let Err(e) = failover(bench, report) {
            failed.push(format!("failover: {e:#}"));
        }
        bench.progress.inc();
        if let Err(e) = control(bench, report) {
            failed.push(format!("etcd control plane: {e:#}"));
        }
        bench.progress.inc();
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("{}", failed.join("; "))
        }
    }
}

fn throughput(bench: &mut Bench, report: &mut Report) -> Result<()> {
    bench
        .progress
        .step("cross-host: building the two-host lab (VXLAN in XDP vs kernel VXLAN)");
    let params = bench.params.clone();
    let mut lab = XLab::create(&params)?;
    let mut pps: Vec<(XPath, Vec<f64>)> = XPath::ALL.iter().map(|p| (*p, Vec::new())).collect();
    for rep in 0..params.reps {
        for (path, samples) in &mut pps {
            bench.progress.step(format!(
                "cross-host throughput {}/{}: {}",
                rep + 1,
                params.reps,
                path.label()
            ));
            let packets = match path {
                XPath::KernelVxlan => params.packets_slow,
                _ => params.packets_fast,
            };
            let s = lab.measure(*path, packets)?;
            samples.push(s.pps());
            bench.progress.inc();
        }
    }
    drop(lab);
    let median = |p: XPath| {
        pps.iter()
            .find(|(q, _)| *q == p)
            .and_then(|(_, v)| Summary::of(v))
    };
    let mut paths = serde_json::Map::new();
    let mut rows = String::new();
    for (path, samples) in &pps {
        let Some(s) = Summary::of(samples) else {
            continue;
        };
        paths.insert(path.key().to_owned(), summary_value("pps", &s));
        rows.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.0} |\n",
            path.label(),
            s.min,
            s.median,
            s.max
        ));
    }
    let (havip, bare, kernel) = (
        median(XPath::Havip).map(|s| s.median),
        median(XPath::BareRedirect).map(|s| s.median),
        median(XPath::KernelVxlan).map(|s| s.median),
    );
    let vs_bare = havip.zip(bare).map(|(h, b)| h / b);
    let vs_kernel = havip.zip(kernel).map(|(h, k)| h / k);
    paths.insert(
        "method".into(),
        json!(
            "client ns -> host A (havip encap in XDP) -> veth underlay (MTU 1600) -> host B \
               (decap in XDP) -> owner ns; generator and counter as in the single-host \
               throughput; paths interleaved in every repetition; kernel path: bridge + vxlan \
               device per host, static FDB, bridge-nf-call off; frames on the underlay are \
               50 bytes longer on the havip and kernel paths (VXLAN) than on the bare one"
        ),
    );
    report.set(KEY_THROUGHPUT, serde_json::Value::Object(paths));
    report.ratio(goals::CROSSHOST_VS_BARE, vs_bare);
    report.ratio(goals::CROSSHOST_VS_KERNEL_VXLAN, vs_kernel);
    let frame_len = Env::havip_traffic(1).frame().len();
    report.md(
        "Cross-host throughput (client on host A, owner on host B)",
        format!(
            "| path | min pps | median pps | max pps |\n| --- | --- | --- | --- |\n{rows}\n\
             havip / bare: **{}**, havip / kernel VXLAN bridge: **{}** (medians of this run).\n\n\
             Same two XDP hops (hc0 on A, ub on B) and the same {frame_len}-byte frames from the \
             client; on the underlay wire the havip and kernel VXLAN paths carry {} bytes \
             (+50: outer Ethernet, IPv4, UDP, VXLAN), the bare redirect {frame_len} (it \
             encapsulates nothing: the floor of any XDP forwarder on these hops).\n",
            vs_bare.map_or("-".into(), |v| format!("{v:.2}x")),
            vs_kernel.map_or("-".into(), |v| format!("{v:.2}x")),
            frame_len + havip_common::VXLAN_OVERHEAD,
        ),
    );
    bench.progress.log(format!(
        "  cross-host: havip {:.0} pps, bare {:.0} pps, kernel VXLAN bridge {:.0} pps",
        havip.unwrap_or(0.0),
        bare.unwrap_or(0.0),
        kernel.unwrap_or(0.0)
    ));
    Ok(())
}
