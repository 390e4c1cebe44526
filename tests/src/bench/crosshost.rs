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
    progs::{self, BenchProgs},
    report::{summary_value, Cmp, Report},
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

const VNI: u32 = 1001;
const VTEP_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
const VTEP_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 12);
const UA_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 0x0a];
const UB_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 0x0b];
/// Underlay MTU: 1500-byte guest packets + 50 bytes of VXLAN.
const UNDERLAY_MTU: &str = "1600";

/// The three cross-host paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum XPath {
    Havip,
    BareRedirect,
    KernelVxlan,
}

impl XPath {
    const ALL: [XPath; 3] = [XPath::BareRedirect, XPath::Havip, XPath::KernelVxlan];

    const fn key(self) -> &'static str {
        match self {
            XPath::Havip => "crosshost_xdp_pps",
            XPath::BareRedirect => "crosshost_bare_redirect_pps",
            XPath::KernelVxlan => "crosshost_kernel_vxlan_bridge_pps",
        }
    }

    const fn label(self) -> &'static str {
        match self {
            XPath::Havip => "havip XDP (encap on A, decap on B)",
            XPath::BareRedirect => "bare XDP redirect on both hops (no encap)",
            XPath::KernelVxlan => "Linux bridge + kernel VXLAN on each host",
        }
    }
}

/// A bpffs pin directory of this section, torn down on drop.
struct Pins(PathBuf);

impl Pins {
    fn new(role: &str) -> Self {
        Self(Path::new("/sys/fs/bpf").join(format!(
            "{}{}-x{role}",
            topo::PIN_PREFIX,
            std::process::id()
        )))
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = dataplane::loader::teardown(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The two-host lab. Drop order: programs and links, pins, namespaces.
struct XLab {
    dp_a: Dataplane,
    dp_b: Dataplane,
    maps_a: Maps,
    maps_b: Maps,
    /// Generator, counter on o0, bare redirect on hc0 (to ua).
    progs_a: BenchProgs,
    /// Bare redirect on ub (to ho0).
    progs_b: BenchProgs,
    counter: Option<XdpLinkId>,
    _pins: (Pins, Pins),
    client: Netns,
    host_a: Netns,
    host_b: Netns,
    _owner: Netns,
    c0: u32,
    generator_cpu: usize,
    realtime: bool,
}

fn ns_name(role: char) -> String {
    format!("hvx{}{role}", std::process::id())
}

impl XLab {
    fn create(params: &Params) -> Result<Self> {
        let client = Netns::create(&ns_name('c'))?;
        let host_a = Netns::create(&ns_name('a'))?;
        let host_b = Netns::create(&ns_name('b'))?;
        let owner = Netns::create(&ns_name('o'))?;
        for ns in [&client, &host_a, &host_b, &owner] {
            for knob in ["all", "default"] {
                ns.exec(&[
                    "sysctl",
                    "-qw",
                    &format!("net.ipv6.conf.{knob}.disable_ipv6=1"),
                ])?;
            }
        }
        lab::veth(&client, "c0", &host_a, "hc0")?;
        lab::veth(&host_a, "ua", &host_b, "ub")?;
        lab::veth(&host_b, "ho0", &owner, "o0")?;
        client.exec(&[
            "ip",
            "link",
            "set",
            "c0",
            "address",
            &mac_string(CLIENT_MAC),
        ])?;
        owner.exec(&[
            "ip",
            "link",
            "set",
            "o0",
            "address",
            &mac_string(OWNER_A_MAC),
        ])?;
        for (ns, ifname, mac, addr) in [
            (&host_a, "ua", UA_MAC, VTEP_A),
            (&host_b, "ub", UB_MAC, VTEP_B),
        ] {
            ns.exec(&[
                "ip",
                "link",
                "set",
                ifname,
                "address",
                &mac_string(mac),
                "mtu",
                UNDERLAY_MTU,
            ])?;
            ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", ifname])?;
        }
        // The underlay neighbours, as a routed underlay would know them.
        host_a.exec(&[
            "ip",
            "neigh",
            "replace",
            &VTEP_B.to_string(),
            "lladdr",
            &mac_string(UB_MAC),
            "dev",
            "ua",
            "nud",
            "permanent",
        ])?;
        host_b.exec(&[
            "ip",
            "neigh",
            "replace",
            &VTEP_A.to_string(),
            "lladdr",
            &mac_string(UA_MAC),
            "dev",
            "ub",
            "nud",
            "permanent",
        ])?;
        // Frames XDP-transmitted by the generator on c0 are only accepted by
        // hc0 with GRO on (or an XDP program on it).
        host_a.exec(&["ethtool", "-K", "hc0", "gro", "on"])?;
        kernel_vxlan(&host_a, &host_b)?;

        let c0 = client.ifindex("c0")?;
        let ua = host_a.ifindex("ua")?;
        let ho0 = host_b.ifindex("ho0")?;
        let pins = (Pins::new("a"), Pins::new("b"));
        let mut dp_a = Dataplane::load(&pins.0 .0).context("loading havip for host A")?;
        let mut dp_b = Dataplane::load(&pins.1 .0).context("loading havip for host B")?;
        // The ring buffers are not read here: claims do not happen.
        drop(dp_a.maps.events.take());
        drop(dp_b.maps.events.take());
        let maps_a = Maps::open_pinned(&pins.0 .0)?;
        let maps_b = Maps::open_pinned(&pins.1 .0)?;
        let mut progs_a = BenchProgs::load(OWNER_A_MAC, GATEWAY_MAC, 0)?;
        let mut progs_b = BenchProgs::load(OWNER_A_MAC, GATEWAY_MAC, 0)?;
        topo::in_ns(&host_a, || progs_a.set_bare_target(ua))?;
        topo::in_ns(&host_b, || progs_b.set_bare_target(ho0))?;
        let counter = {
            let p = &mut progs_a;
            topo::in_ns(&owner, || p.attach_xdp(progs::PROG_COUNT, "o0"))?
        };
        let mut lab = Self {
            dp_a,
            dp_b,
            maps_a,
            maps_b,
            progs_a,
            progs_b,
            counter: Some(counter),
            _pins: pins,
            client,
            host_a,
            host_b,
            _owner: owner,
            c0,
            generator_cpu: params.generator_cpu,
            realtime: params.realtime,
        };
        lab.configure()?;
        Ok(lab)
    }

    /// The product's maps on both hosts, as two agents would write them:
    /// host A knows the owner as REMOTE on VTEP B, host B has it local.
    fn configure(&mut self) -> Result<()> {
        let key = Env::havip0_key();
        let (hc0, ua) = (self.host_a.ifindex("hc0")?, self.host_a.ifindex("ua")?);
        let (ub, ho0) = (self.host_b.ifindex("ub")?, self.host_b.ifindex("ho0")?);
        let instance = |ifindex| DesiredPort {
            ifindex,
            vswitch_id: VSWITCH,
            vpc_id: 1,
            flags: port_flags::INSTANCE,
            gateway_mac: GATEWAY_MAC,
        };
        let vtep = |ifindex| DesiredPort {
            ifindex,
            vswitch_id: 0,
            vpc_id: 0,
            flags: port_flags::VTEP,
            gateway_mac: [0; 6],
        };
        let havip = |bindings: Vec<DesiredBinding>| DesiredHavip {
            key,
            vpc_id: 1,
            id: 0,
            virtual_mac: virtual_mac(HAVIP_BASE.octets()),
            initial_owner: bindings.first().copied(),
            bindings,
        };
        let mut ports_a = vec![instance(hc0), vtep(ua)];
        ports_a.sort_by_key(|p| p.ifindex);
        let want_a = Desired {
            ports: ports_a,
            havips: vec![havip(Vec::new())],
            config: DataplaneConfig::default(),
            vxlan: DesiredVxlan {
                local: Some(LocalVtep::new(ua, VTEP_A.octets(), UA_MAC)),
                remote_vteps: vec![RemoteVtep {
                    addr: VTEP_B.octets(),
                    mac: UB_MAC,
                }],
                vnis: vec![(VSWITCH, VNI)],
                remote_owners: vec![(
                    key,
                    RemoteOwner {
                        vtep: VTEP_B.octets(),
                        mac: OWNER_A_MAC,
                        epoch: 1,
                        havip_id: 0,
                    },
                )],
            },
            ..Desired::default()
        };
        let mut ports_b = vec![vtep(ub), instance(ho0)];
        ports_b.sort_by_key(|p| p.ifindex);
        let want_b = Desired {
            ports: ports_b,
            havips: vec![havip(vec![DesiredBinding {
                ifindex: ho0,
                mac: OWNER_A_MAC,
            }])],
            config: DataplaneConfig::default(),
            vxlan: DesiredVxlan {
                local: Some(LocalVtep::new(ub, VTEP_B.octets(), UB_MAC)),
                remote_vteps: vec![RemoteVtep {
                    addr: VTEP_A.octets(),
                    mac: UA_MAC,
                }],
                vnis: vec![(VSWITCH, VNI)],
                remote_owners: Vec::new(),
            },
            ..Desired::default()
        };
        let dp_a = &mut self.dp_a;
        topo::in_ns(&self.host_a, || {
            dataplane::reconcile(&mut dp_a.maps, &want_a).map_err(anyhow::Error::from)
        })
        .context("reconciling host A")?;
        let dp_b = &mut self.dp_b;
        topo::in_ns(&self.host_b, || {
            dataplane::reconcile(&mut dp_b.maps, &want_b).map_err(anyhow::Error::from)
        })
        .context("reconciling host B")?;
        Ok(())
    }

    fn handled(maps: &Maps, what: Handled) -> u64 {
        stats::handled(maps)
            .into_iter()
            .find(|(h, _)| *h == what)
            .map_or(0, |(_, c)| c.packets)
    }

    /// Sets a path up, measures `packets` frames, takes it down.
    fn measure(&mut self, path: XPath, packets: u32) -> Result<Sample> {
        match path {
            XPath::Havip => {
                let dp_a = &mut self.dp_a;
                topo::in_ns(&self.host_a, || {
                    for p in ["hc0", "ua"] {
                        dp_a.attach(p, AttachMode::Native)?;
                    }
                    Ok(())
                })?;
                let dp_b = &mut self.dp_b;
                topo::in_ns(&self.host_b, || {
                    for p in ["ub", "ho0"] {
                        dp_b.attach(p, AttachMode::Native)?;
                    }
                    Ok(())
                })?;
                let encap = Self::handled(&self.maps_a, Handled::ForwardedRemote);
                let decap = Self::handled(&self.maps_b, Handled::Decapsulated);
                let sample = self.generate(&Env::havip_traffic(1), packets);
                let encap =
                    Self::handled(&self.maps_a, Handled::ForwardedRemote).saturating_sub(encap);
                let decap =
                    Self::handled(&self.maps_b, Handled::Decapsulated).saturating_sub(decap);
                for p in ["hc0", "ua"] {
                    self.dp_a.detach(p)?;
                }
                for p in ["ub", "ho0"] {
                    self.dp_b.detach(p)?;
                }
                wait_no_xdp(&self.host_a, &["hc0", "ua"])?;
                wait_no_xdp(&self.host_b, &["ub", "ho0"])?;
                let sample = sample?;
                if sample.delivered > 0 && (encap < sample.delivered || decap < sample.delivered) {
                    bail!(
                        "havip path: {} delivered but only {encap} encapsulated on A, {decap} \
                         decapsulated on B (frames took another way)",
                        sample.delivered
                    );
                }
                Ok(sample)
            }
            XPath::BareRedirect => {
                let pa = &mut self.progs_a;
                let la = topo::in_ns(&self.host_a, || pa.attach_xdp(progs::PROG_BARE, "hc0"))?;
                let pb = &mut self.progs_b;
                let lb = topo::in_ns(&self.host_b, || pb.attach_xdp(progs::PROG_BARE, "ub"))?;
                let sample = self.generate(&Env::havip_traffic(1), packets);
                self.progs_a.detach_xdp(progs::PROG_BARE, la)?;
                self.progs_b.detach_xdp(progs::PROG_BARE, lb)?;
                wait_no_xdp(&self.host_a, &["hc0"])?;
                wait_no_xdp(&self.host_b, &["ub"])?;
                sample
            }
            // Always in place; only used while no XDP runs on the hosts.
            XPath::KernelVxlan => self.generate(&Env::bridge_traffic(), packets),
        }
    }

    fn generate(&mut self, traffic: &progs::Traffic, packets: u32) -> Result<Sample> {
        super::interrupt::check()?;
        self.progs_a.set_traffic(&traffic.config())?;
        let frame = traffic.frame();
        let before = self.progs_a.rx_count()?;
        let (p, c0, cpu, rt) = (&self.progs_a, self.c0, self.generator_cpu, self.realtime);
        let wall = topo::in_ns(&self.client, || {
            progs::pin_thread(cpu, rt)?;
            p.generate(&frame, c0, packets)
        })?;
        std::thread::sleep(Duration::from_millis(30));
        let delivered = self.progs_a.rx_count()?.saturating_sub(before);
        Ok(Sample {
            sent: u64::from(packets),
            delivered,
            wall,
            others_busy: 0.0,
        })
    }
}

impl Drop for XLab {
    fn drop(&mut self) {
        if let Some(link) = self.counter.take() {
            let _ = self.progs_a.detach_xdp(progs::PROG_COUNT, link);
        }
        for p in ["hc0", "ua"] {
            let _ = self.dp_a.detach(p);
        }
        for p in ["ub", "ho0"] {
            let _ = self.dp_b.detach(p);
        }
    }
}

fn wait_no_xdp(ns: &Netns, ifnames: &[&str]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    for ifname in ifnames {
        loop {
            let out = ns.exec(&["ip", "-d", "link", "show", "dev", ifname])?;
            if !String::from_utf8_lossy(&out.stdout).contains("prog/xdp") {
                break;
            }
            if Instant::now() > deadline {
                bail!("{ifname} still runs an XDP program 5 s after it was detached");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// The kernel path: on each host a bridge `br0` with the instance port and
/// `vx0` (VNI 1001, UDP 4789, underlay `ua`/`ub`), the owner's MAC static in
/// both FDBs (nothing flooded), bridge netfilter off.
fn kernel_vxlan(host_a: &Netns, host_b: &Netns) -> Result<()> {
    let owner = mac_string(OWNER_A_MAC);
    for (ns, local, remote, underlay, port) in [
        (host_a, VTEP_A, VTEP_B, "ua", "hc0"),
        (host_b, VTEP_B, VTEP_A, "ub", "ho0"),
    ] {
        ns.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        for knob in ["iptables", "ip6tables", "arptables"] {
            // Absent without br_netfilter: then it is off anyway.
            let _ = ns.exec_status(&[
                "sysctl",
                "-qw",
                &format!("net.bridge.bridge-nf-call-{knob}=0"),
            ]);
        }
        ns.exec(&[
            "ip",
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            &VNI.to_string(),
            "local",
            &local.to_string(),
            "remote",
            &remote.to_string(),
            "dstport",
            "4789",
            "dev",
            underlay,
            "nolearning",
        ])?;
        for dev in ["vx0", port] {
            ns.exec(&["ip", "link", "set", dev, "master", "br0"])?;
        }
        ns.exec(&["ip", "link", "set", "vx0", "up"])?;
        ns.exec(&["ip", "link", "set", "br0", "up"])?;
    }
    host_a.exec(&[
        "bridge", "fdb", "replace", &owner, "dev", "vx0", "master", "static",
    ])?;
    host_b.exec(&[
        "bridge", "fdb", "replace", &owner, "dev", "ho0", "master", "static",
    ])?;
    // Without STP the ports forward at once; wait until the kernel says so.
    let deadline = Instant::now() + Duration::from_secs(5);
    for (ns, port) in [(host_a, "hc0"), (host_b, "ho0")] {
        loop {
            let out = ns.exec(&["cat", &format!("/sys/class/net/{port}/brport/state")])?;
            if String::from_utf8_lossy(&out.stdout).trim() == "3" {
                break;
            }
            if Instant::now() > deadline {
                bail!("bridge port {port} did not reach the forwarding state");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

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
               device per host, static FDB, bridge-nf-call off"
        ),
    );
    report.set(KEY_THROUGHPUT, serde_json::Value::Object(paths));
    report.ratio(
        "crosshost_ratio_vs_bare_redirect",
        "cross-host havip XDP (encap+decap) / bare XDP redirect on the same two hops",
        Cmp::AtLeast,
        0.8,
        vs_bare,
    );
    report.ratio(
        "crosshost_ratio_vs_kernel_vxlan",
        "cross-host havip XDP / Linux bridge + kernel VXLAN on each host",
        Cmp::AtLeast,
        3.0,
        vs_kernel,
    );
    report.md(
        "Cross-host throughput (client on host A, owner on host B)",
        format!(
            "| path | min pps | median pps | max pps |\n| --- | --- | --- | --- |\n{rows}\n\
             havip / bare: **{}**, havip / kernel VXLAN bridge: **{}** (medians of this run).\n",
            vs_bare.map_or("-".into(), |v| format!("{v:.2}x")),
            vs_kernel.map_or("-".into(), |v| format!("{v:.2}x")),
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

/// Stream interval of the failover measurement (resolution of a latency).
const STREAM_INTERVAL: Duration = Duration::from_micros(200);

fn failover(bench: &mut Bench, report: &mut Report) -> Result<()> {
    super::interrupt::check()?;
    let switches = if bench.params.quick { 20 } else { 100 };
    bench
        .progress
        .step("cross-host failover: 3 hosts, etcd, 3 agents");
    let mh = MultiHost::new("a")?;
    mh.converged(None, Duration::from_secs(15))?;
    let guest = |name: &str| {
        GUESTS
            .iter()
            .find(|g| g.1 == name)
            .map(|g| (g.0, g.3))
            .context("guest")
    };
    let (na, _) = guest("a")?;
    let (nb, _) = guest("b")?;
    let (nc, _) = guest("c")?;
    let a_ns = &mh.fabric.guest(na, "a")?.ns;
    let b_ns = &mh.fabric.guest(nb, "b")?.ns;
    let c_ns = &mh.fabric.guest(nc, "c")?.ns;
    let stream = Stream::start(
        c_ns,
        SocketAddrV4::new(VIP, 7900),
        STREAM_INTERVAL,
        &[("a", a_ns), ("b", b_ns)],
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let mut claims: Vec<(&str, Instant)> = Vec::with_capacity(switches);
    for i in 0..switches {
        super::interrupt::check()?;
        bench.progress.step(format!(
            "cross-host failover {}/{switches}: claim on h{}",
            i + 1,
            if i % 2 == 0 { nb } else { na }
        ));
        let who = if i % 2 == 0 { "b" } else { "a" };
        let t = Instant::now();
        mh.claim(who)?;
        claims.push((who, t));
        mh.converged(Some(guest(who)?.1), Duration::from_secs(10))?;
        // Let the stream settle on the new owner before the next claim.
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(50));
    let rep = stream.finish()?;
    let mut lat_ms = Vec::with_capacity(claims.len());
    for (who, t) in &claims {
        let first = rep
            .received
            .get(*who)
            .and_then(|v| v.iter().map(|(_, at)| *at).filter(|at| at > t).min());
        match first {
            Some(at) => lat_ms.push((at - *t).as_secs_f64() * 1000.0),
            None => bail!("no datagram reached {who} after its claim"),
        }
    }
    drop(mh);
    let mut sorted = lat_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 50.0), percentile(&sorted, 99.0));
    let max = sorted.last().copied().unwrap_or(0.0);
    report.set(
        KEY_FAILOVER,
        json!({
            "switches": claims.len(),
            "p50_ms": {"unit": "ms", "value": p50},
            "p99_ms": {"unit": "ms", "value": p99},
            "max_ms": {"unit": "ms", "value": max},
            "stream_interval_us": STREAM_INTERVAL.as_micros() as u64,
            "samples_ms": lat_ms,
            "method": "3 hosts (namespaces) with their agents on one etcd; client on h3 streams UDP \
                       to the HaVip every 200 us; a gratuitous ARP from the member on h2, then h1, \
                       alternately; latency = first datagram at the new owner after the claim was \
                       sent (XDP claim, publish to etcd, watch on h3, remote owner installed, \
                       encap to the new host); resolution: the stream interval",
        }),
    );
    report.target(
        "crosshost_failover_ms_p99",
        "cross-host failover (claim on host B -> first frame from a client on another host at the new owner), p99",
        "ms",
        Cmp::AtMost,
        10.0,
        Some(p99),
    );
    report.md(
        "Cross-host failover (claim -> first frame from a client on a third host)",
        format!(
            "{} switches: p50 **{p50:.2} ms**, p99 **{p99:.2} ms**, max {max:.2} ms \
             (stream every {} us).\n",
            claims.len(),
            STREAM_INTERVAL.as_micros()
        ),
    );
    bench.progress.log(format!(
        "  cross-host failover: p50 {p50:.2} ms, p99 {p99:.2} ms over {} switches",
        claims.len()
    ));
    Ok(())
}

/// A control plane on etcd that follows the others' commits (the agent's
/// sync task, on `rt`), as one host's agent has it.
fn etcd_control_plane(
    etcd: &Etcd,
    prefix: &str,
    host: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<Arc<ControlPlane>> {
    let store = EtcdStore::connect(&EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: prefix.into(),
        ..EtcdConfig::default()
    })?;
    let handle = store.handle();
    let cp = Arc::new(ControlPlane::with_store(store)?);
    let local = LocalHost {
        id: host.into(),
        interface: "lo".into(),
        vtep: Ipv4Addr::LOCALHOST,
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
    };
    rt.spawn(cluster::sync::run(Cluster::new(handle, local, cp.clone())));
    Ok(cp)
}

fn control(bench: &mut Bench, report: &mut Report) -> Result<()> {
    super::interrupt::check()?;
    let havips = 1_000;
    let ops = if bench.params.quick { 2_000 } else { 8_000 };
    bench.progress.step(format!(
        "cross-host control plane: etcd store, {havips} HaVips, {ops} associate/unassociate ops"
    ));
    let etcd = Etcd::start_local()?;
    let prefix = format!("/{}", lab::unique_name("hvbx"));
    let rt = tokio::runtime::Runtime::new()?;
    let cp = etcd_control_plane(&etcd, &prefix, "bench-1", &rt)?;
    let t = Instant::now();
    // 40 HaVips (and their bindings) per commit: one etcd txn stays under
    // etcd's default limit of 128 operations.
    control_bench::seed_batched(&cp, havips, 40)?;
    let seed_s = t.elapsed().as_secs_f64();
    let one = control_bench::churn(&cp, havips, ops / 4, 1)?;
    let sixteen = control_bench::churn(&cp, havips, ops, 16)?;
    // Two hosts' control planes on the same etcd, 8 callers each: every
    // commit is a compare on the shared revision, so they contend.
    // Two hosts' control planes on the same etcd (each on a fresh prefix,
    // seeded again), each churning its own half of the HaVips, with 1
    // caller each, then 8 callers each.
    let half = havips / 2;
    let two_planes = |callers: usize| -> Result<f64> {
        let prefix = format!("/{}", lab::unique_name("hvbx"));
        let cp1 = etcd_control_plane(&etcd, &prefix, "bench-1", &rt)?;
        control_bench::seed_batched(&cp1, havips, 40)?;
        let cp2 = etcd_control_plane(&etcd, &prefix, "bench-2", &rt)?;
        let t = Instant::now();
        std::thread::scope(|s| -> Result<f64> {
            let h1 = s.spawn(|| control_bench::churn_from(&cp1, 0, half, ops / 2, callers));
            let h2 = s.spawn(|| control_bench::churn_from(&cp2, half, half, ops / 2, callers));
            h1.join()
                .map_err(|_| anyhow::anyhow!("churn on host 1 panicked"))??;
            h2.join()
                .map_err(|_| anyhow::anyhow!("churn on host 2 panicked"))??;
            Ok(ops as f64 / t.elapsed().as_secs_f64())
        })
    };
    let mut two = Vec::new();
    for callers in [1, 8] {
        match two_planes(callers) {
            Ok(v) => two.push((callers, Some(v), None)),
            Err(e) => {
                report.note(format!(
                    "etcd, two control planes with {callers} callers each: {e:#}"
                ));
                two.push((callers, None, Some(format!("{e:#}"))));
            }
        }
    }
    let two_hosts = two.iter().find(|t| t.0 == 8).and_then(|t| t.1);
    let two_hosts_1 = two.iter().find(|t| t.0 == 1).and_then(|t| t.1);
    let two_hosts_error = two.iter().find(|t| t.0 == 8).and_then(|t| t.2.clone());
    drop(cp);
    rt.shutdown_background();
    report.set(
        KEY_CONTROL,
        json!({
            "havips": havips,
            "ops_measured": ops,
            "seed_s": {"unit": "s", "value": seed_s},
            "ops_per_sec_1_caller": {"unit": "ops/s", "value": one},
            "ops_per_sec_16_callers": {"unit": "ops/s", "value": sixteen},
            "ops_per_sec_2_hosts_1_caller_each": {"unit": "ops/s", "value": two_hosts_1},
            "ops_per_sec_2_hosts_8_callers_each": {"unit": "ops/s", "value": two_hosts},
            "error_2_hosts_1_caller_each": two.iter().find(|t| t.0 == 1).and_then(|t| t.2.clone()),
            "error_2_hosts_8_callers_each": two_hosts_error,
            "two_hosts": "two control planes, each following etcd (the agent's sync task), \
                          8 callers each on disjoint halves of the HaVips; their commits race \
                          on the shared revision (a loser re-reads, validates again, retries)",
            "method": "havip_tests::control_bench churn (associate + unassociate of a third ENI on \
                       bound HaVips) on the etcd store: one etcd txn per commit, compared on the \
                       shared commit revision; etcd (Debian etcd-server) on 127.0.0.1, data under \
                       the temp dir, started by the bench",
        }),
    );
    report.md(
        "Control plane on etcd (1,000 HaVips)",
        format!(
            "| measurement | value |\n| --- | --- |\n\
             | associate/unassociate, 1 caller | {one:.0} ops/s |\n\
             | associate/unassociate, 16 callers | **{sixteen:.0} ops/s** |\n\
             | two hosts' control planes, 1 caller each, one etcd | {} |\n\
             | two hosts' control planes, 8 callers each, one etcd | {} |\n\
             | creating and binding 1,000 HaVips (batched) | {seed_s:.2} s |\n",
            two_hosts_1.map_or_else(
                || "failed (see the notes)".to_owned(),
                |v| format!("{v:.0} ops/s")
            ),
            two_hosts.map_or_else(
                || format!("failed: {}", two_hosts_error.as_deref().unwrap_or("-")),
                |v| format!("{v:.0} ops/s")
            ),
        ),
    );
    bench.progress.log(format!(
        "  etcd control plane: {one:.0} ops/s (1 caller), {sixteen:.0} ops/s (16 callers), {} (2 hosts)",
        two_hosts.map_or("-".into(), |v| format!("{v:.0} ops/s"))
    ));
    Ok(())
}
