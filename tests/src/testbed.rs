//! The `BPF_PROG_TEST_RUN` fixture bed: ports, addresses, `Case`, `TestBed`.

use std::net::Ipv4Addr;

use aya::programs::{ProgramError, TestRun, TestRunOptions};
use havip::dataplane::{
    events::{self, DataplaneEvent},
    loader, reconcile, Dataplane, Desired, DesiredBinding, DesiredHavip, DesiredPort, DesiredVxlan,
    LocalVtep, RemoteVtep,
};

use crate::lab::{self, Netns};
use havip_common::{
    owner_flags, port_flags, virtual_mac, DataplaneConfig, Handled, HavipKey, OwnerEntry,
    TrafficCounter,
};

use crate::*;

/// Host ports of the fixture bed. All but `Unknown` are in `PORTS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// Instance port of vSwitch 1 whose ENI (`OWNER_MAC`) is the initial
    /// owner of `HAVIP_A`; bound to `HAVIP_A` and `HAVIP_NO_OWNER`.
    Owner,
    /// Instance port of vSwitch 1 (`STANDBY_MAC`), bound like `Owner`.
    Standby,
    /// Instance port of vSwitch 1 (`CLIENT_MAC`), bound to nothing.
    Client,
    /// Uplink of vSwitch 1 (remote hosts behind it, e.g. `REMOTE_MAC`).
    Uplink,
    /// Instance port of vSwitch 2 (`OTHER_MAC`), owner of `HAVIP_VS2`.
    Other,
    /// A real device the agent never configured.
    Unknown,
    /// The underlay NIC (flag `VTEP`, MTU 1600). Not in [`Port::ALL`] (the
    /// frame campaign draws from that list); configured as this host's VTEP
    /// only by [`TestBed::with_vxlan`].
    Vtep,
}

impl Port {
    pub const ALL: [Port; 6] = [
        Port::Owner,
        Port::Standby,
        Port::Client,
        Port::Uplink,
        Port::Other,
        Port::Unknown,
    ];

    /// Interface name inside the bed's namespace.
    pub fn ifname(self) -> &'static str {
        match self {
            Port::Owner => "owner",
            Port::Standby => "standby",
            Port::Client => "client",
            Port::Uplink => "uplink",
            Port::Other => "other",
            // The guest end of a veth: real, never in PORTS.
            Port::Unknown => "client-g",
            Port::Vtep => "vtep",
        }
    }
}

/// Addresses of the fixture bed.
pub mod bed {
    use std::net::Ipv4Addr;

    pub const VSWITCH: u32 = 1;
    pub const VSWITCH2: u32 = 2;
    pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    pub const GATEWAY2_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
    pub const OWNER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0a, 0x01];
    pub const STANDBY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0b, 0x01];
    pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0c, 0x01];
    pub const OTHER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0d, 0x01];
    pub const REMOTE_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0e, 0x01];
    pub const SPOOF_MAC: [u8; 6] = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
    pub const MULTICAST_MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];

    pub const OWNER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 10);
    pub const STANDBY_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 11);
    pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 5);
    pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 200);
    pub const OTHER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 5);
    /// A vSwitch-1 address that is not a HaVip.
    pub const PLAIN_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 50);

    /// This host's VTEP (`TestBed::with_vxlan`): address and underlay MAC.
    pub const LOCAL_VTEP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 11);
    pub const LOCAL_VTEP_MAC: [u8; 6] = [0x02, 0x99, 0x00, 0x00, 0x00, 0x0b];
    /// Another host's VTEP, in `VTEPS`.
    pub const REMOTE_VTEP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 12);
    pub const REMOTE_VTEP_MAC: [u8; 6] = [0x02, 0x99, 0x00, 0x00, 0x00, 0x0c];
    /// A VTEP address with no `VTEPS` entry.
    pub const UNKNOWN_VTEP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 13);
    /// MTU of the underlay port: 1500-byte guest packets + 50 bytes of VXLAN fit.
    pub const VTEP_MTU: u32 = 1600;
    /// VNIs of vSwitch 1 and 2.
    pub const VNI: u32 = 1001;
    pub const VNI2: u32 = 1002;
    /// MAC of the HaVip owner's ENI on the remote host.
    pub const REMOTE_OWNER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x0f, 0x01];

    /// vSwitch 1, id 1, bound to Owner and Standby, initial owner Owner.
    pub const HAVIP_A: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);
    pub const HAVIP_A_ID: u32 = 1;
    /// vSwitch 1, id 2, bound to Owner and Standby, no owner yet.
    pub const HAVIP_NO_OWNER: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 101);
    pub const HAVIP_NO_OWNER_ID: u32 = 2;
    /// vSwitch 2, id 3, bound to Other, owner Other.
    pub const HAVIP_VS2: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 100);
    pub const HAVIP_VS2_ID: u32 = 3;
}

/// One fixture: a frame entering `ingress` and what must come out.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub ingress: Port,
    pub input: Vec<u8>,
    pub expect_action: u32,
    /// The whole output frame; `None` = not checked (dropped frames).
    pub expect_output: Option<Vec<u8>>,
    /// The one counter that must move, by one frame of `input.len()` bytes.
    pub expect_counter: Counter,
}

impl Case {
    /// `XDP_PASS` with the frame untouched, counted as `Handled::Passed`.
    pub fn pass(name: impl Into<String>, ingress: Port, input: Vec<u8>) -> Self {
        Self::untouched(name, ingress, input, Handled::Passed)
    }

    /// `XDP_PASS` with the frame untouched, counted as `Handled::PassedMalformed`.
    pub fn malformed(name: impl Into<String>, ingress: Port, input: Vec<u8>) -> Self {
        Self::untouched(name, ingress, input, Handled::PassedMalformed)
    }

    /// `XDP_PASS` with the frame untouched, counted as `handled`.
    pub fn untouched(
        name: impl Into<String>,
        ingress: Port,
        input: Vec<u8>,
        handled: Handled,
    ) -> Self {
        Self {
            name: name.into(),
            ingress,
            expect_output: Some(input.clone()),
            input,
            expect_action: action::PASS,
            expect_counter: handled.into(),
        }
    }

    /// `XDP_DROP` counted under `counter` (a `DropReason`, or a `Handled`
    /// outcome that drops such as a claim).
    pub fn drop(
        name: impl Into<String>,
        ingress: Port,
        input: Vec<u8>,
        counter: impl Into<Counter>,
    ) -> Self {
        Self {
            name: name.into(),
            ingress,
            input,
            expect_action: action::DROP,
            expect_output: None,
            expect_counter: counter.into(),
        }
    }

    /// `XDP_REDIRECT` to the owner with `output` as the rewritten frame,
    /// counted as `Handled::Forwarded` (other outcomes: [`Case::counted`]).
    pub fn redirect(
        name: impl Into<String>,
        ingress: Port,
        input: Vec<u8>,
        output: Vec<u8>,
    ) -> Self {
        Self {
            name: name.into(),
            ingress,
            input,
            expect_action: action::REDIRECT,
            expect_output: Some(output),
            expect_counter: Handled::Forwarded.into(),
        }
    }

    /// The same case counted under `counter` instead. A proxy ARP reply is
    /// `Case::redirect(..).counted(Handled::ProxyArpReplied)`: the program
    /// sends it back out of the ingress port with a devmap redirect (not
    /// `XDP_TX`: veth would not kick a GRO-only peer's NAPI, see
    /// `havip-ebpf/src/act/proxy_arp.rs`), so the verdict is `XDP_REDIRECT`.
    pub fn counted(self, counter: impl Into<Counter>) -> Self {
        Self {
            expect_counter: counter.into(),
            ..self
        }
    }
}

/// `struct xdp_md` as `BPF_PROG_TEST_RUN` takes it in `ctx_in`.
fn xdp_md(data: u32, data_end: u32, ingress_ifindex: u32) -> [u8; 24] {
    let mut ctx = [0u8; 24];
    ctx[0..4].copy_from_slice(&data.to_ne_bytes());
    ctx[4..8].copy_from_slice(&data_end.to_ne_bytes());
    // data_meta (8..12) must be 0; rx_queue_index (16..20) 0; egress (20..24) 0.
    ctx[12..16].copy_from_slice(&ingress_ifindex.to_ne_bytes());
    ctx
}

/// An `OWNERS` entry as the control plane sets it (`BY_CONTROL`): port
/// `ifindex` with `mac` at `epoch` (0 and zeros: no owner).
pub fn control_owner(epoch: u64, havip_id: u32, ifindex: u32, mac: [u8; 6]) -> OwnerEntry {
    OwnerEntry {
        epoch,
        changed_ns: 0,
        havip_id,
        ifindex,
        mac,
        flags: owner_flags::BY_CONTROL,
        ..OwnerEntry::default()
    }
}

/// Sets `OWNERS[key]` of `dp` to `owner`; panics with the key on failure.
pub fn write_owner(dp: &Dataplane, key: HavipKey, owner: OwnerEntry) {
    dp.maps
        .owners
        .insert(key, owner, 0)
        .unwrap_or_else(|e| panic!("writing OWNERS[{key:?}]: {e}"));
}

/// Ethernet header length: the shortest frame `BPF_PROG_TEST_RUN` takes.
pub const ETH_HLEN: usize = 14;

/// A namespace with one veth pair per [`Port`], the dataplane loaded with
/// its own pin dir and the standard HaVips reconciled (see [`bed`]).
/// The calling thread stays inside the namespace while the bed lives
/// (`BPF_PROG_TEST_RUN` resolves `ingress_ifindex` in the caller's netns).
pub struct TestBed {
    pub dp: Dataplane,
    pub desired: Desired,
    ifindexes: Vec<(Port, u32)>,
    // Drop order matters: unpin, then leave the namespace, then delete it.
    _pin: PinDir,
    _inside: NetnsGuard,
    _ns: Netns,
}

impl TestBed {
    /// The standard bed; panics with the reason if anything fails.
    pub fn new() -> Self {
        let ns = Netns::create(&lab::unique_name("hvtf")).expect("creating the bed's netns");
        for port in [
            Port::Owner,
            Port::Standby,
            Port::Client,
            Port::Uplink,
            Port::Other,
            Port::Vtep,
        ] {
            let host = port.ifname();
            let guest = format!("{host}-g");
            for cmd in [
                vec![
                    "ip", "link", "add", host, "type", "veth", "peer", "name", &guest,
                ],
                vec!["ip", "link", "set", host, "up"],
                vec!["ip", "link", "set", &guest, "up"],
            ] {
                ns.exec(&cmd)
                    .unwrap_or_else(|e| panic!("bed {}: {}: {e:#}", ns.name(), cmd.join(" ")));
            }
        }
        let mtu = bed::VTEP_MTU.to_string();
        ns.exec(&["ip", "link", "set", Port::Vtep.ifname(), "mtu", &mtu])
            .unwrap_or_else(|e| panic!("bed {}: vtep mtu: {e:#}", ns.name()));
        let inside = NetnsGuard::enter(&ns);
        let ifindexes: Vec<(Port, u32)> = Port::ALL
            .iter()
            .chain([Port::Vtep].iter())
            .map(|p| {
                let i = loader::ifindex_of(p.ifname())
                    .unwrap_or_else(|| panic!("bed: no interface {}", p.ifname()));
                (*p, i)
            })
            .collect();
        let pin = PinDir::for_test();
        let dp = Dataplane::load(pin.path()).unwrap_or_else(|e| {
            panic!("loading the dataplane in {}: {e:#?}", pin.path().display())
        });
        let mut bed = Self {
            dp,
            desired: Desired::default(),
            ifindexes,
            _pin: pin,
            _inside: inside,
            _ns: ns,
        };
        bed.desired = bed.standard_desired();
        bed.reconcile();
        let stray = bed.events();
        assert!(stray.is_empty(), "fresh bed has events: {stray:?}");
        bed
    }

    /// The standard bed plus this host's VTEP on [`Port::Vtep`]
    /// (`LOCAL_VTEP`), `REMOTE_VTEP` in `VTEPS` and VNIs for both vSwitches.
    pub fn with_vxlan() -> Self {
        use bed::*;
        let mut bed = Self::new();
        let vtep = bed.ifindex(Port::Vtep);
        bed.reconcile_with(|d| {
            d.ports.push(DesiredPort {
                ifindex: vtep,
                vswitch_id: 0,
                vpc_id: 0,
                flags: port_flags::VTEP,
                gateway_mac: [0; 6],
            });
            d.vxlan = DesiredVxlan {
                local: Some(LocalVtep::new(vtep, LOCAL_VTEP.octets(), LOCAL_VTEP_MAC)),
                remote_vteps: vec![RemoteVtep {
                    addr: REMOTE_VTEP.octets(),
                    mac: REMOTE_VTEP_MAC,
                }],
                vnis: vec![(VSWITCH, VNI), (VSWITCH2, VNI2)],
                remote_owners: Vec::new(),
            };
        });
        bed
    }

    pub fn ifindex(&self, port: Port) -> u32 {
        self.ifindexes
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, i)| *i)
            .unwrap_or_else(|| panic!("bed has no port {port:?}"))
    }

    /// Binding of `port`'s ENI (its MAC) for `Desired`.
    pub fn binding(&self, port: Port, mac: [u8; 6]) -> DesiredBinding {
        DesiredBinding {
            ifindex: self.ifindex(port),
            mac,
        }
    }

    fn standard_desired(&self) -> Desired {
        use bed::*;
        let port = |p: Port, vswitch_id, flags, gateway_mac| DesiredPort {
            ifindex: self.ifindex(p),
            vswitch_id,
            vpc_id: 1,
            flags,
            gateway_mac,
        };
        let owner = self.binding(Port::Owner, OWNER_MAC);
        let standby = self.binding(Port::Standby, STANDBY_MAC);
        let other = self.binding(Port::Other, OTHER_MAC);
        let havip =
            |vswitch_id, addr: Ipv4Addr, id, bindings: Vec<DesiredBinding>, initial| DesiredHavip {
                key: HavipKey {
                    vswitch_id,
                    addr: addr.octets(),
                },
                vpc_id: 1,
                id,
                virtual_mac: virtual_mac(addr.octets()),
                bindings,
                initial_owner: initial,
            };
        Desired {
            ports: vec![
                port(Port::Owner, VSWITCH, port_flags::INSTANCE, GATEWAY_MAC),
                port(Port::Standby, VSWITCH, port_flags::INSTANCE, GATEWAY_MAC),
                port(Port::Client, VSWITCH, port_flags::INSTANCE, GATEWAY_MAC),
                port(Port::Uplink, VSWITCH, port_flags::UPLINK, GATEWAY_MAC),
                port(Port::Other, VSWITCH2, port_flags::INSTANCE, GATEWAY2_MAC),
            ],
            havips: vec![
                havip(
                    VSWITCH,
                    HAVIP_A,
                    HAVIP_A_ID,
                    vec![owner, standby],
                    Some(owner),
                ),
                havip(
                    VSWITCH,
                    HAVIP_NO_OWNER,
                    HAVIP_NO_OWNER_ID,
                    vec![owner, standby],
                    None,
                ),
                havip(VSWITCH2, HAVIP_VS2, HAVIP_VS2_ID, vec![other], Some(other)),
            ],
            config: DataplaneConfig::default(),
            ..Desired::default()
        }
    }

    /// Writes `self.desired` to the maps.
    pub fn reconcile(&mut self) {
        reconcile(&mut self.dp.maps, &self.desired).unwrap_or_else(|e| panic!("reconcile: {e:#?}"));
    }

    /// Edits `self.desired` and reconciles.
    pub fn reconcile_with(&mut self, edit: impl FnOnce(&mut Desired)) {
        edit(&mut self.desired);
        self.reconcile();
    }

    /// Runs `frame` through the program as if received on `ingress`:
    /// returns the verdict and the frame as the program left it.
    pub fn run(&mut self, ingress: Port, frame: &[u8]) -> (u32, Vec<u8>) {
        self.try_run(ingress, frame).unwrap_or_else(|e| {
            panic!(
                "BPF_PROG_TEST_RUN of a {}-byte frame from {ingress:?}: {e:#?}",
                frame.len()
            )
        })
    }

    /// The bed's XDP program (the bed loaded it: a failure here is a broken
    /// fixture).
    fn program(&mut self) -> &mut aya::programs::Xdp {
        self.dp
            .program()
            .unwrap_or_else(|e| panic!("the XDP program: {e:#?}"))
    }

    /// [`TestBed::run`], returning the kernel's refusal instead of panicking.
    /// The kernel refuses frames shorter than an Ethernet header (`EINVAL`
    /// from `bpf_prog_test_run_xdp`, also when XDP metadata pads the buffer).
    pub fn try_run(&mut self, ingress: Port, frame: &[u8]) -> Result<(u32, Vec<u8>), ProgramError> {
        let ctx = xdp_md(0, frame.len() as u32, self.ifindex(ingress));
        let mut out = vec![0u8; frame.len() + 256];
        let program = self.program();
        let opts = TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        };
        let result = program.test_run(opts)?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// Runs `frame` `repeat` times in one `BPF_PROG_TEST_RUN` (the kernel
    /// reruns the program on the same buffer); returns the last verdict.
    pub fn run_repeat(&mut self, ingress: Port, frame: &[u8], repeat: u32) -> u32 {
        assert!(frame.len() >= ETH_HLEN, "run_repeat takes whole frames");
        let ctx = xdp_md(0, frame.len() as u32, self.ifindex(ingress));
        let program = self.program();
        let opts = TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&ctx),
            repeat,
            ..TestRunOptions::default()
        };
        program
            .test_run(opts)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN x{repeat} from {ingress:?}: {e:#?}"))
            .return_value
    }

    pub fn counters(&self) -> Counters {
        Counters::read(&self.dp)
    }

    /// `HAVIP_STATS[havip_id]`: the frames forwarded to that HaVip.
    pub fn forwarded(&self, havip_id: u32) -> TrafficCounter {
        havip::dataplane::stats::havip(&self.dp.maps, havip_id)
    }

    /// Asserts `HAVIP_STATS[havip_id]` counts `packets` forwarded frames
    /// (`why` says what the count shows).
    #[track_caller]
    pub fn assert_forwarded(&self, havip_id: u32, packets: u64, why: &str) {
        assert_eq!(
            self.forwarded(havip_id).packets,
            packets,
            "HAVIP_STATS[{havip_id}]: {why}"
        );
    }

    /// `OWNERS[(vSwitch 1, addr)]`.
    pub fn owner(&self, addr: Ipv4Addr) -> OwnerEntry {
        self.owner_in(bed::VSWITCH, addr)
    }

    /// `OWNERS[(vswitch_id, addr)]`.
    pub fn owner_in(&self, vswitch_id: u32, addr: Ipv4Addr) -> OwnerEntry {
        let key = HavipKey {
            vswitch_id,
            addr: addr.octets(),
        };
        self.dp
            .maps
            .owners
            .get(&key, 0)
            .unwrap_or_else(|e| panic!("OWNERS[{key:?}]: {e}"))
    }

    /// Asserts the `EVENTS` ring buffer is empty (`why`: what emits none).
    pub fn assert_no_events(&mut self, why: &str) {
        let events = self.events();
        assert!(events.is_empty(), "{why}: {events:?}");
    }

    /// Everything in the `EVENTS` ring buffer, oldest first.
    pub fn events(&mut self) -> Vec<DataplaneEvent> {
        let ring = self
            .dp
            .maps
            .events
            .as_mut()
            .expect("the EVENTS ring buffer was taken");
        let mut out = Vec::new();
        events::drain(ring, |e| out.push(e));
        out
    }

    /// Runs one case; `Err` describes every way it failed.
    pub fn try_case(&mut self, case: &Case) -> Result<(), String> {
        let before = self.counters();
        let (verdict, output) = self.run(case.ingress, &case.input);
        let moves = self.counters().since(&before);
        let mut errors = Vec::new();
        if verdict != case.expect_action {
            errors.push(format!(
                "verdict {} (want {})",
                action::name(verdict),
                action::name(case.expect_action)
            ));
        }
        if let Some(want) = &case.expect_output {
            if &output != want {
                errors.push(hex_diff("output frame", &output, want));
            }
        }
        let want_moves = vec![(
            case.expect_counter,
            TrafficCounter {
                packets: 1,
                bytes: case.input.len() as u64,
            },
        )];
        if moves != want_moves {
            errors.push(format!(
                "counters: {} (want {})",
                describe_moves(&moves),
                describe_moves(&want_moves)
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n    "))
        }
    }

    /// Runs a fixture table in order; panics listing every failed case.
    pub fn check(&mut self, cases: &[Case]) {
        let failures: Vec<String> = cases
            .iter()
            .filter_map(|case| {
                self.try_case(case).err().map(|e| {
                    format!(
                        "  [{}] ({} bytes from {:?}):\n    {e}",
                        case.name,
                        case.input.len(),
                        case.ingress
                    )
                })
            })
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} fixtures failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
    }
}

impl Default for TestBed {
    fn default() -> Self {
        Self::new()
    }
}
