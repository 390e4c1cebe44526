//! The EIP NAT path (issue 11): frames from the client namespace to an EIP
//! entering hc0, delivered to the HaVip's owner o0, by
//! - havip: hc0 configured as the uplink, the EIP associated with HaVip 0,
//!   the product attached to every host port (DNAT in XDP, redirect);
//! - nftables: hc0 and ho0 routed by the host, `dnat to` the HaVip in
//!   prerouting and `snat to` the EIP in postrouting (conntrack on, one
//!   flow, so after the first frame every frame is a conntrack hit);
//! - kernel routing alone (no NAT, frames addressed to the HaVip): context;
//! - the bare XDP redirect (MAC rewrite + DEVMAP, no lookups): the floor.
//!
//! Keys: `eip_pps`, `eip_nft_pps`, `eip_kernel_forward_pps`,
//! `eip_bare_redirect_pps`, `ratio_eip_vs_nft` (goal ≥ 4),
//! `ratio_eip_vs_bare_redirect`.

use std::{collections::BTreeMap, net::Ipv4Addr};

use anyhow::{Context, Result};
use havip::dataplane::DesiredEip;
use havip_common::{port_flags, Handled};
use serde_json::json;

use super::{
    env::{Env, Sample, HAVIP_BASE},
    goals,
    paths::{Column, Measure, PathSet},
    progs::{self, Traffic},
    report::{median_ratio, Report},
    topo::{self, OWNER_A_MAC},
    Params,
};

/// The EIP in front of HaVip 0.
pub const BENCH_EIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 77);
/// The host's address on hc0 for the routed paths.
const HC0_IP: &str = "10.79.0.1/24";
const NFT_TABLE: &str = "havip_bench_eip";

/// The ways to the HaVip's owner of frames addressed to the EIP: havip
/// vs nftables vs kernel routing vs the bare redirect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EipPath {
    Havip,
    BareRedirect,
    Nft,
    KernelForward,
}

impl PathSet for EipPath {
    const SECTION: &'static str = "eip";
    const TITLE: &'static str = "EIP NAT path";
    const COLUMNS: &'static [Column] = &[Column::Delivered];
    const MEASURE: Measure<Self> = measure;
    const ALL: &'static [EipPath] = &[
        EipPath::Havip,
        EipPath::BareRedirect,
        EipPath::Nft,
        EipPath::KernelForward,
    ];

    fn key(self) -> &'static str {
        match self {
            EipPath::Havip => "eip_pps",
            EipPath::BareRedirect => "eip_bare_redirect_pps",
            EipPath::Nft => "eip_nft_pps",
            EipPath::KernelForward => "eip_kernel_forward_pps",
        }
    }

    fn label(self) -> &'static str {
        match self {
            EipPath::Havip => "havip EIP DNAT",
            EipPath::BareRedirect => "bare XDP redirect",
            EipPath::Nft => "nftables DNAT/SNAT",
            EipPath::KernelForward => "kernel routing",
        }
    }

    fn description(self) -> &'static str {
        match self {
            EipPath::Havip => "havip_xdp on every host port, hc0 = uplink, EIP → HaVip 0 (DNAT, checksums, owner lookup, redirect)",
            EipPath::BareRedirect => "MAC rewrite + DEVMAP redirect, no lookups, no NAT",
            EipPath::Nft => "host routing hc0 → ho0 with nftables dnat (prerouting) + snat (postrouting), conntrack",
            EipPath::KernelForward => "host routing hc0 → ho0 to the HaVip, no NAT, no nftables (context)",
        }
    }

    fn conclude(medians: &BTreeMap<EipPath, f64>, report: &mut Report) {
        let ratio = |other| median_ratio(medians, EipPath::Havip, other);
        report.ratio(goals::EIP_VS_NFT, ratio(EipPath::Nft));
        report.set(
            "ratio_eip_vs_bare_redirect",
            json!({"unit": "ratio", "value": ratio(EipPath::BareRedirect)}),
        );
    }
}

impl EipPath {
    const fn fast(self) -> bool {
        matches!(self, EipPath::Havip | EipPath::BareRedirect)
    }
}

/// Removes the routed set-up of the host namespace on drop.
struct Routed {
    host: String,
}

impl Routed {
    fn exec(&self, cmd: &[&str]) -> Result<()> {
        let mut args = vec!["netns", "exec", &self.host];
        args.extend_from_slice(cmd);
        crate::lab::run("ip", &args).map(|_| ())
    }
}

impl Drop for Routed {
    fn drop(&mut self) {
        let havip = HAVIP_BASE.to_string();
        let route = format!("{havip}/32");
        for cmd in [
            &["nft", "delete", "table", "ip", NFT_TABLE][..],
            &["ip", "addr", "del", HC0_IP, "dev", "hc0"],
            &["ip", "route", "del", &route, "dev", "ho0"],
            &["ip", "neigh", "del", &havip, "dev", "ho0"],
        ] {
            let _ = self.exec(cmd);
        }
    }
}

/// The host routes hc0 → ho0 (optionally with the nftables NAT).
fn routed(env: &Env, nat: bool) -> Result<Routed> {
    let r = Routed {
        host: env.lab.host.name().to_owned(),
    };
    let havip = HAVIP_BASE.to_string();
    r.exec(&["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"])?;
    r.exec(&["ip", "addr", "add", HC0_IP, "dev", "hc0"])?;
    r.exec(&["ip", "route", "add", &format!("{havip}/32"), "dev", "ho0"])?;
    r.exec(&[
        "ip",
        "neigh",
        "replace",
        &havip,
        "lladdr",
        &lab_mac(OWNER_A_MAC),
        "dev",
        "ho0",
        "nud",
        "permanent",
    ])?;
    if nat {
        let eip = BENCH_EIP;
        let rules = format!(
            "table ip {NFT_TABLE} {{\n\
             chain pre {{ type nat hook prerouting priority dstnat; ip daddr {eip} dnat to {havip}; }}\n\
             chain post {{ type nat hook postrouting priority srcnat; ip saddr {havip} snat to {eip}; }}\n\
             }}\n"
        );
        let file = std::env::temp_dir().join(format!("havip-bench-eip-{}.nft", std::process::id()));
        std::fs::write(&file, rules).context("writing the nftables ruleset")?;
        let path = file.to_string_lossy().into_owned();
        let loaded = r.exec(&["nft", "-f", &path]);
        let _ = std::fs::remove_file(&file);
        loaded.context("loading the nftables ruleset (is nftables installed?)")?;
    }
    Ok(r)
}

fn lab_mac(mac: [u8; 6]) -> String {
    crate::lab::mac_string(mac)
}

/// MAC of hc0 (destination of routed frames).
fn hc0_mac(env: &Env) -> Result<[u8; 6]> {
    let out = env.lab.host.exec(&["cat", "/sys/class/net/hc0/address"])?;
    crate::frames::parse_mac(String::from_utf8_lossy(&out.stdout).trim())
        .context("parsing hc0's MAC")
}

/// Configures the product: hc0 as uplink of the vSwitch, EIP → HaVip 0.
fn configure_eip(env: &mut Env) -> Result<()> {
    let mut desired = env.desired(1);
    for p in &mut desired.ports {
        if p.ifindex == env.lab.hc0 {
            p.flags = port_flags::UPLINK;
        }
    }
    desired.eips = vec![DesiredEip {
        address: BENCH_EIP.octets(),
        havip: Env::havip0_key(),
        havip_id: 0,
    }];
    env.reconcile(&desired).context("reconciling the EIP")
}

fn measure(env: &mut Env, path: EipPath, params: &Params) -> Result<Sample> {
    let packets = if path.fast() {
        params.packets_fast
    } else {
        params.packets_slow
    };
    let to_eip = Traffic {
        dst: BENCH_EIP,
        ..Env::havip_traffic(1)
    };
    match path {
        EipPath::Havip => {
            env.ensure_owner_a()?;
            configure_eip(env)?;
            let sample = env.measure_havip(&to_eip, packets, Handled::EipDnat);
            let reset = env.configure(1);
            let sample = sample?;
            reset?;
            Ok(sample)
        }
        EipPath::BareRedirect => {
            let progs = &mut env.progs;
            let link = topo::in_ns(&env.lab.host, || progs.attach_xdp(progs::PROG_BARE, "hc0"))?;
            let sample = env.measure(&to_eip, packets);
            let detached = env.progs.detach_xdp(progs::PROG_BARE, link);
            let sample = sample?;
            detached?;
            env.lab.wait_no_xdp("hc0")?;
            Ok(sample)
        }
        EipPath::Nft | EipPath::KernelForward => {
            let nat = path == EipPath::Nft;
            let mac = hc0_mac(env)?;
            let traffic = Traffic {
                dst_mac: mac,
                dst: if nat { BENCH_EIP } else { HAVIP_BASE },
                ..Env::havip_traffic(1)
            };
            let routed = routed(env, nat)?;
            let sample = env.measure(&traffic, packets);
            drop(routed);
            sample
        }
    }
}
