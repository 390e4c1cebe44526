//! The two-host lab of the cross-host throughput figures, and the kernel
//! VXLAN + bridge path it is compared with.

use super::*;

pub(super) const VNI: u32 = 1001;
pub(super) const VTEP_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
pub(super) const VTEP_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 12);
pub(super) const UA_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 0x0a];
pub(super) const UB_MAC: [u8; 6] = [0x02, 0x99, 0, 0, 0, 0x0b];
/// Underlay MTU: 1500-byte guest packets + 50 bytes of VXLAN.
pub(super) const UNDERLAY_MTU: &str = "1600";

/// The three cross-host paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum XPath {
    Havip,
    BareRedirect,
    KernelVxlan,
}

impl XPath {
    pub(super) const ALL: [XPath; 3] = [XPath::BareRedirect, XPath::Havip, XPath::KernelVxlan];

    pub(super) const fn key(self) -> &'static str {
        match self {
            XPath::Havip => "crosshost_xdp_pps",
            XPath::BareRedirect => "crosshost_bare_redirect_pps",
            XPath::KernelVxlan => "crosshost_kernel_vxlan_bridge_pps",
        }
    }

    pub(super) const fn label(self) -> &'static str {
        match self {
            XPath::Havip => "havip XDP (encap on A, decap on B)",
            XPath::BareRedirect => "bare XDP redirect on both hops (no encap)",
            XPath::KernelVxlan => "Linux bridge + kernel VXLAN on each host",
        }
    }
}

/// A bpffs pin directory of this section, torn down on drop.
pub(super) struct Pins(PathBuf);

impl Pins {
    pub(super) fn new(role: &str) -> Self {
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
pub(super) struct XLab {
    pub(super) dp_a: Dataplane,
    pub(super) dp_b: Dataplane,
    pub(super) maps_a: Maps,
    pub(super) maps_b: Maps,
    /// Generator, counter on o0, bare redirect on hc0 (to ua).
    pub(super) progs_a: BenchProgs,
    /// Bare redirect on ub (to ho0).
    pub(super) progs_b: BenchProgs,
    pub(super) counter: Option<XdpLinkId>,
    pub(super) _pins: (Pins, Pins),
    pub(super) client: Netns,
    pub(super) host_a: Netns,
    pub(super) host_b: Netns,
    pub(super) _owner: Netns,
    c0: u32,
    pub(super) generator_cpu: usize,
    pub(super) realtime: bool,
}

/// Prefix of the cross-host lab's namespaces (`hvx<pid><role>`).
const NS_PREFIX: &str = "hvx";
/// The ports the product's program runs on for the havip path: host A's
/// client port and uplink, host B's uplink and owner port.
const HAVIP_PORTS_A: [&str; 2] = ["hc0", "ua"];
const HAVIP_PORTS_B: [&str; 2] = ["ub", "ho0"];

impl XLab {
    pub(super) fn create(params: &Params) -> Result<Self> {
        let [client, host_a, host_b, owner] =
            topo::quiet_namespaces(NS_PREFIX, ['c', 'a', 'b', 'o'])?;
        lab::veth(&client, "c0", &host_a, "hc0")?;
        lab::veth(&host_a, "ua", &host_b, "ub")?;
        lab::veth(&host_b, "ho0", &owner, "o0")?;
        client.set_mac("c0", CLIENT_MAC)?;
        owner.set_mac("o0", OWNER_A_MAC)?;
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
    pub(super) fn configure(&mut self) -> Result<()> {
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
        // One host's maps: its two ports, the HaVip with `bindings`, its own
        // VTEP, the other host's and the remote owners it knows.
        let host = |mut ports: Vec<DesiredPort>, bindings, local, peer, remote_owners| {
            ports.sort_by_key(|p| p.ifindex);
            Desired {
                ports,
                havips: vec![havip(bindings)],
                config: DataplaneConfig::default(),
                vxlan: DesiredVxlan {
                    local: Some(local),
                    remote_vteps: vec![peer],
                    vnis: vec![(VSWITCH, VNI)],
                    remote_owners,
                },
                ..Desired::default()
            }
        };
        let want_a = host(
            vec![instance(hc0), vtep(ua)],
            Vec::new(),
            LocalVtep::new(ua, VTEP_A.octets(), UA_MAC),
            RemoteVtep {
                addr: VTEP_B.octets(),
                mac: UB_MAC,
            },
            vec![(
                key,
                RemoteOwner {
                    vtep: VTEP_B.octets(),
                    mac: OWNER_A_MAC,
                    epoch: 1,
                    havip_id: 0,
                },
            )],
        );
        let want_b = host(
            vec![vtep(ub), instance(ho0)],
            vec![DesiredBinding {
                ifindex: ho0,
                mac: OWNER_A_MAC,
            }],
            LocalVtep::new(ub, VTEP_B.octets(), UB_MAC),
            RemoteVtep {
                addr: VTEP_A.octets(),
                mac: UA_MAC,
            },
            Vec::new(),
        );
        for (ns, dp, want, name) in [
            (&self.host_a, &mut self.dp_a, want_a, "A"),
            (&self.host_b, &mut self.dp_b, want_b, "B"),
        ] {
            topo::in_ns(ns, || {
                dataplane::reconcile(&mut dp.maps, &want).map_err(anyhow::Error::from)
            })
            .with_context(|| format!("reconciling host {name}"))?;
        }
        Ok(())
    }

    pub(super) fn handled(maps: &Maps, what: Handled) -> u64 {
        stats::handled(maps)
            .into_iter()
            .find(|(h, _)| *h == what)
            .map_or(0, |(_, c)| c.packets)
    }

    /// Sets a path up, measures `packets` frames, takes it down.
    pub(super) fn measure(&mut self, path: XPath, packets: u32) -> Result<Sample> {
        match path {
            XPath::Havip => {
                for (ns, dp, ports) in [
                    (&self.host_a, &mut self.dp_a, HAVIP_PORTS_A),
                    (&self.host_b, &mut self.dp_b, HAVIP_PORTS_B),
                ] {
                    topo::in_ns(ns, || {
                        for p in ports {
                            dp.attach(p, AttachMode::Native)?;
                        }
                        Ok(())
                    })?;
                }
                let encap = Self::handled(&self.maps_a, Handled::ForwardedRemote);
                let decap = Self::handled(&self.maps_b, Handled::Decapsulated);
                let sample = self.generate(&Env::havip_traffic(1), packets);
                let encap =
                    Self::handled(&self.maps_a, Handled::ForwardedRemote).saturating_sub(encap);
                let decap =
                    Self::handled(&self.maps_b, Handled::Decapsulated).saturating_sub(decap);
                for p in HAVIP_PORTS_A {
                    self.dp_a.detach(p)?;
                }
                for p in HAVIP_PORTS_B {
                    self.dp_b.detach(p)?;
                }
                wait_no_xdp(&self.host_a, &HAVIP_PORTS_A)?;
                wait_no_xdp(&self.host_b, &HAVIP_PORTS_B)?;
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

    pub(super) fn generate(&mut self, traffic: &progs::Traffic, packets: u32) -> Result<Sample> {
        super::super::interrupt::check()?;
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
        for p in HAVIP_PORTS_A {
            let _ = self.dp_a.detach(p);
        }
        for p in HAVIP_PORTS_B {
            let _ = self.dp_b.detach(p);
        }
    }
}

pub(super) fn wait_no_xdp(ns: &Netns, ifnames: &[&str]) -> Result<()> {
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
pub(super) fn kernel_vxlan(host_a: &Netns, host_b: &Netns) -> Result<()> {
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
