//! The route path (issue 11): frames from the client to the gateway MAC
//! for an address of a route whose next hop is HaVip 0, forwarded by
//! havip's XDP program to the HaVip's owner (o0), against the kernel doing
//! the same job: IPv4 forwarding in the host namespace with a route via
//! the owner (a static neighbour entry for its MAC). Both measured in the
//! same run, interleaved in every repetition.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context, Result};
use serde_json::json;

use super::{
    env::{Env, Sample},
    progs::Traffic,
    report::{median_ratio, Report},
    topo::{BenchLab, GATEWAY_MAC, OWNER_A_MAC},
    Bench, Params, Section,
};
use crate::{
    frames,
    lab::{self, mac_string},
};
use havip::dataplane::DesiredRoute;
use havip_common::Handled;

/// The routed prefix (outside the vSwitch) and the address the traffic goes to.
const ROUTE_NET: [u8; 4] = [198, 18, 0, 0];
const ROUTE_LEN: u8 = 24;
const ROUTED_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Kernel forwarding: the host's address on hc0 (the client's subnet), on
/// ho0, and the owner's address there (next hop of the kernel's route).
const HOST_CLIENT_SIDE: &str = "10.79.0.1/24";
const HOST_OWNER_SIDE: &str = "10.78.0.1/24";
const OWNER_NEXT_HOP: &str = "10.78.0.10";

pub const KEY_XDP: &str = "route_xdp_pps";
pub const KEY_KERNEL: &str = "route_kernel_forwarding_pps";
pub const KEY_RATIO: &str = "route_ratio_vs_kernel_forwarding";

/// The two paths: (kernel forwarding?, report key, label, what).
const PATHS: [(bool, &str, &str, &str); 2] = [
    (
        false,
        KEY_XDP,
        "havip XDP route",
        "havip_xdp on every host port: a route of the VPC (198.18.0.0/24) with HaVip 0 as next hop, owner ho0; IPv4 header untouched",
    ),
    (
        true,
        KEY_KERNEL,
        "kernel IPv4 forwarding",
        "no XDP on hc0: ip_forward=1 in the host namespace, route 198.18.0.0/24 via the owner (static neighbour), TTL decremented",
    ),
];

/// Route path throughput, havip XDP vs kernel IPv4 forwarding.
#[derive(Default)]
pub struct Routes {
    /// By path: `false` havip XDP, `true` kernel forwarding.
    samples: BTreeMap<bool, Vec<Sample>>,
}

/// Traffic to the routed address, sent to `dst_mac` (the gateway).
fn routed_traffic(dst_mac: [u8; 6]) -> Traffic {
    Traffic {
        dst_mac,
        dst: ROUTED_DST,
        dst_count: 1,
        ..Env::havip_traffic(1)
    }
}

/// `ROUTES` holds the bench's one route, next hop HaVip 0.
fn configure_route(env: &mut Env) -> Result<()> {
    let mut desired = env.desired(env.havip_count.max(1));
    desired.routes = vec![DesiredRoute {
        vpc_id: 1,
        addr: ROUTE_NET,
        len: ROUTE_LEN,
        next_hop: Env::havip0_key(),
        havip_id: 0,
    }];
    env.reconcile(&desired)
        .context("reconciling the bench route")
}

/// The host namespace as a router: addresses on hc0 and ho0, a route to
/// the routed prefix via the owner, forwarding on. Undone on drop.
struct KernelRouter {
    /// The host namespace's name.
    host: String,
}

impl KernelRouter {
    fn exec(&self, cmd: &[&str]) -> Result<Vec<u8>> {
        let mut args = vec!["netns", "exec", self.host.as_str()];
        args.extend_from_slice(cmd);
        Ok(lab::run("ip", &args)?.stdout)
    }

    fn setup(lab: &BenchLab) -> Result<Self> {
        let router = Self {
            host: lab.host.name().to_owned(),
        };
        let route = format!("{}/{ROUTE_LEN}", Ipv4Addr::from(ROUTE_NET));
        let owner_mac = mac_string(OWNER_A_MAC);
        for cmd in [
            vec!["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"],
            vec!["sysctl", "-qw", "net.ipv4.conf.hc0.rp_filter=0"],
            vec!["ip", "addr", "add", HOST_CLIENT_SIDE, "dev", "hc0"],
            vec!["ip", "addr", "add", HOST_OWNER_SIDE, "dev", "ho0"],
            vec![
                "ip",
                "neigh",
                "replace",
                OWNER_NEXT_HOP,
                "lladdr",
                &owner_mac,
                "dev",
                "ho0",
                "nud",
                "permanent",
            ],
            vec![
                "ip",
                "route",
                "replace",
                &route,
                "via",
                OWNER_NEXT_HOP,
                "dev",
                "ho0",
            ],
            vec!["sysctl", "-qw", "net.ipv4.ip_forward=1"],
        ] {
            router.exec(&cmd)?;
        }
        Ok(router)
    }

    /// hc0's own MAC: what the client's frames to its router carry.
    fn hc0_mac(&self) -> Result<[u8; 6]> {
        let out = self.exec(&["cat", "/sys/class/net/hc0/address"])?;
        let text = String::from_utf8_lossy(&out);
        frames::parse_mac(text.trim()).context("parsing hc0's MAC")
    }
}

impl Drop for KernelRouter {
    fn drop(&mut self) {
        let route = format!("{}/{ROUTE_LEN}", Ipv4Addr::from(ROUTE_NET));
        for cmd in [
            vec!["sysctl", "-qw", "net.ipv4.ip_forward=0"],
            vec!["ip", "route", "del", &route],
            vec!["ip", "neigh", "del", OWNER_NEXT_HOP, "dev", "ho0"],
            vec!["ip", "addr", "del", HOST_OWNER_SIDE, "dev", "ho0"],
            vec!["ip", "addr", "del", HOST_CLIENT_SIDE, "dev", "hc0"],
        ] {
            let _ = self.exec(&cmd);
        }
    }
}

fn measure_xdp(env: &mut Env, packets: u32) -> Result<Sample> {
    env.measure_havip(&routed_traffic(GATEWAY_MAC), packets, Handled::Routed)
}

fn measure_kernel(env: &mut Env, packets: u32) -> Result<Sample> {
    let router = KernelRouter::setup(&env.lab)?;
    let mac = router.hc0_mac()?;
    let sample = env.measure(&routed_traffic(mac), packets);
    drop(router);
    sample
}

impl Section for Routes {
    fn name(&self) -> &'static str {
        "routes"
    }

    fn steps(&self, params: &Params) -> u64 {
        (params.reps * 2) as u64
    }

    fn run(&mut self, bench: &mut Bench, report: &mut Report) -> Result<()> {
        let (env, progress, params) = bench.env_and_progress()?;
        let params = params.clone();
        env.configure(1)?;
        env.ensure_owner_a()?;
        configure_route(env)?;
        let paths = PATHS.map(|(kernel, _, label, _)| (kernel, label));
        let result = progress.interleaved("routes", params.reps, &paths, |kernel| {
            if kernel {
                measure_kernel(env, params.packets_slow)
            } else {
                measure_xdp(env, params.packets_fast)
            }
        });
        // Back to the other sections' configuration (no route).
        let reset = env.configure(1);
        self.samples = result?;
        reset?;

        let mut table = String::from(
            "| path | median Mpps | min | max | delivered | what |\n| --- | --- | --- | --- | --- | --- |\n",
        );
        let medians = report.throughputs(&mut table, &self.samples, &PATHS, |t| {
            format!("{:.1} % |", 100.0 * t.delivered)
        });
        let ratio = median_ratio(&medians, false, true);
        report.set(KEY_RATIO, json!({"unit": "ratio", "value": ratio}));
        if let Some(r) = ratio {
            table.push_str(&format!("\nhavip route ÷ kernel forwarding: **{r:.2}×**\n"));
        }
        report.md("Route path (VPC route with a HaVip next hop)", table);
        Ok(())
    }
}
