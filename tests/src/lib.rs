//! Test harness for havip: namespace and pin-dir guards, a Katran-style
//! `BPF_PROG_TEST_RUN` fixture bed (`TestBed`, `Case`), a veth/bridge lab with
//! the XDP program attached (`HaLab`) and traffic helpers (UDP counters, TCP
//! echo, ping).
//!
//! Everything here panics with a message on failure: tests keep their stack
//! traces and never return `Result`. Namespaces are named `hvt*` and pin
//! dirs `/sys/fs/bpf/havip-test-*`: guards remove them, and `cargo xtask
//! clean-host` removes what a killed run left behind.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Write},
    marker::PhantomData,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use aya::programs::{ProgramError, TestRun, TestRunOptions};
use havip::{
    dataplane::{
        events::{self, DataplaneEvent},
        loader, reconcile, stats, AttachMode, Dataplane, Desired, DesiredBinding, DesiredHavip,
        DesiredPort,
    },
    frames,
    lab::{self, Guest, Lab, Netns},
};
use havip_common::{
    owner_flags, port_flags, virtual_mac, DataplaneConfig, DropReason, Handled, HavipKey,
    OwnerEntry, TrafficCounter,
};

pub mod campaign;

/// XDP verdicts (`enum xdp_action` in `include/uapi/linux/bpf.h`).
pub mod action {
    pub const ABORTED: u32 = 0;
    pub const DROP: u32 = 1;
    pub const PASS: u32 = 2;
    pub const TX: u32 = 3;
    pub const REDIRECT: u32 = 4;

    /// `XDP_DROP` and friends, for failure messages.
    pub fn name(action: u32) -> String {
        match action {
            ABORTED => "XDP_ABORTED".into(),
            DROP => "XDP_DROP".into(),
            PASS => "XDP_PASS".into(),
            TX => "XDP_TX".into(),
            REDIRECT => "XDP_REDIRECT".into(),
            other => format!("unknown action {other}"),
        }
    }
}

/// Polls `cond` every millisecond until it holds or `timeout` passes.
/// Returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Path of a named namespace's handle.
pub fn netns_path(ns: &Netns) -> String {
    format!("/run/netns/{}", ns.name())
}

// ---------------------------------------------------------------------------
// Guards
// ---------------------------------------------------------------------------

/// Moves the current thread into a network namespace and moves it back on
/// drop (aya's `NetNsGuard`). Only this thread changes namespace, so the
/// guard is `!Send`. Mount namespace (and so bpffs) is unaffected.
pub struct NetnsGuard {
    previous: File,
    target: String,
    _not_send: PhantomData<*const ()>,
}

impl NetnsGuard {
    /// Enters `ns` on the calling thread.
    pub fn enter(ns: &Netns) -> Self {
        Self::enter_path(&netns_path(ns))
    }

    /// Enters the namespace whose handle is at `path` on the calling thread.
    pub fn enter_path(path: &str) -> Self {
        let previous = File::open("/proc/thread-self/ns/net")
            .unwrap_or_else(|e| panic!("opening /proc/thread-self/ns/net: {e}"));
        let target = File::open(path).unwrap_or_else(|e| panic!("opening netns {path}: {e}"));
        // SAFETY: valid fd; CLONE_NEWNET only affects the calling thread.
        if unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            panic!("setns({path}): {}", std::io::Error::last_os_error());
        }
        Self {
            previous,
            target: path.to_owned(),
            _not_send: PhantomData,
        }
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // SAFETY: valid fd opened in `enter_path`.
        if unsafe { libc::setns(self.previous.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            let msg = format!(
                "leaving netns {}: setns back failed: {}",
                self.target,
                std::io::Error::last_os_error()
            );
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// A pin directory `/sys/fs/bpf/havip-test-<unique>` for one test's maps and
/// links; `loader::teardown` (unpin everything, detach links) runs on drop.
pub struct PinDir {
    path: PathBuf,
}

impl PinDir {
    pub fn new() -> Self {
        let path = PathBuf::from(format!("/sys/fs/bpf/havip-test-{}", lab::unique_name("")));
        // A run killed before its guards ran can leave a dir with our name:
        // never adopt its maps.
        loader::teardown(&path)
            .unwrap_or_else(|e| panic!("removing stale pin dir {}: {e}", path.display()));
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for PinDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(e) = loader::teardown(&self.path) {
            let msg = format!("tearing down pin dir {}: {e}", self.path.display());
            if std::thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
    }
}

/// Pins the current thread to the CPU it runs on and restores its affinity
/// on drop: per-CPU state (the event rate limiter) then has one slot.
pub struct CpuPin {
    previous: libc::cpu_set_t,
    pub cpu: usize,
}

impl CpuPin {
    pub fn current() -> Self {
        // SAFETY: plain syscalls on this thread (pid 0) with a zeroed set.
        unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut previous)
                != 0
            {
                panic!("sched_getaffinity: {}", std::io::Error::last_os_error());
            }
            let cpu = usize::try_from(libc::sched_getcpu())
                .unwrap_or_else(|_| panic!("sched_getcpu: {}", std::io::Error::last_os_error()));
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) != 0 {
                panic!("sched_setaffinity: {}", std::io::Error::last_os_error());
            }
            Self { previous, cpu }
        }
    }
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        // SAFETY: restores the set read in `current`.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.previous);
        }
    }
}

// ---------------------------------------------------------------------------
// Frame builders the `havip::frames` module does not have
// ---------------------------------------------------------------------------

/// Ones-complement sum over the IPv4 pseudo-header and `segment`.
fn l4_checksum(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, segment: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12 + segment.len());
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, protocol]);
    pseudo.extend_from_slice(&(segment.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(segment);
    frames::checksum(&pseudo)
}

/// TCP flag bits.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// TCP segment (20-byte header, no options) with a valid checksum.
pub fn tcp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    data: &[u8],
) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + data.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1000_0001u32.to_be_bytes()); // seq
    let ack = if flags & tcp_flags::ACK != 0 {
        0x2000_0001u32
    } else {
        0
    };
    t.extend_from_slice(&ack.to_be_bytes());
    t.push(5 << 4);
    t.push(flags);
    t.extend_from_slice(&64240u16.to_be_bytes()); // window
    t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    t.extend_from_slice(data);
    let c = l4_checksum(src, dst, 6, &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

/// ICMP echo request with a valid checksum.
pub fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = frames::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

/// `frame` with its 802.1Q tag turned into an 802.1ad (QinQ outer) tag.
pub fn as_8021ad(frame: &frames::Frame) -> Vec<u8> {
    assert!(frame.vlan.is_some(), "as_8021ad needs a tagged frame");
    let mut b = frame.bytes();
    b[12..14].copy_from_slice(&0x88a8u16.to_be_bytes());
    b
}

/// `frame` with a second (inner) 802.1Q tag `inner_vid`.
pub fn double_tagged(frame: &frames::Frame, inner_vid: u16) -> Vec<u8> {
    assert!(frame.vlan.is_some(), "double_tagged needs a tagged frame");
    let mut b = frame.bytes();
    let mut tag = frames::ETH_P_8021Q.to_be_bytes().to_vec();
    tag.extend_from_slice(&(inner_vid & 0x0fff).to_be_bytes());
    // After the outer tag (dst, src, 0x8100, tci) comes the inner tag.
    b.splice(16..16, tag);
    b
}

/// Hex dump with the first difference from `other` marked, for messages.
fn hex_diff(label: &str, got: &[u8], want: &[u8]) -> String {
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let hex = |b: &[u8]| {
        b.chunks(16)
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "      {:04x}: {}",
                    i * 16,
                    c.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "{label}: first difference at byte {first} (got {} bytes, want {})\n    got:\n{}\n    want:\n{}",
        got.len(),
        want.len(),
        hex(got),
        hex(want)
    )
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

/// One slot of `HANDLED` or `DROPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Handled(Handled),
    Drop(DropReason),
}

impl Counter {
    pub fn name(self) -> String {
        match self {
            Counter::Handled(h) => format!("HANDLED[{}]", h.name()),
            Counter::Drop(d) => format!("DROPS[{}]", d.name()),
        }
    }
}

impl From<Handled> for Counter {
    fn from(h: Handled) -> Self {
        Counter::Handled(h)
    }
}

impl From<DropReason> for Counter {
    fn from(d: DropReason) -> Self {
        Counter::Drop(d)
    }
}

/// Snapshot of every `HANDLED` and `DROPS` counter, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters(Vec<(Counter, TrafficCounter)>);

impl Counters {
    pub fn read(dp: &Dataplane) -> Self {
        let mut all: Vec<(Counter, TrafficCounter)> = stats::handled(&dp.maps)
            .into_iter()
            .map(|(h, c)| (Counter::Handled(h), c))
            .collect();
        all.extend(
            stats::drops(&dp.maps)
                .into_iter()
                .map(|(d, c)| (Counter::Drop(d), c)),
        );
        Self(all)
    }

    pub fn get(&self, counter: impl Into<Counter>) -> TrafficCounter {
        let counter = counter.into();
        self.0
            .iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, v)| *v)
            .unwrap_or_default()
    }

    /// Counters that moved since `before`, with how much.
    pub fn since(&self, before: &Counters) -> Vec<(Counter, TrafficCounter)> {
        self.0
            .iter()
            .filter_map(|(c, now)| {
                let then = before.get(*c);
                let d = TrafficCounter {
                    packets: now.packets - then.packets,
                    bytes: now.bytes - then.bytes,
                };
                (d != TrafficCounter::default()).then_some((*c, d))
            })
            .collect()
    }
}

fn describe_moves(moves: &[(Counter, TrafficCounter)]) -> String {
    if moves.is_empty() {
        return "no counter moved".into();
    }
    moves
        .iter()
        .map(|(c, d)| format!("{} +{} pkts/+{} bytes", c.name(), d.packets, d.bytes))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Fixture bed (BPF_PROG_TEST_RUN)
// ---------------------------------------------------------------------------

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

    /// `XDP_REDIRECT` to the owner with `output` as the rewritten frame.
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

    /// Proxy ARP reply `output`. The program sends it back out of the
    /// ingress port with a devmap redirect (not `XDP_TX`: veth would not
    /// kick a GRO-only peer's NAPI, see `havip-ebpf/src/arp.rs`), so the
    /// verdict is `XDP_REDIRECT`.
    pub fn proxy_reply(
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
            expect_counter: Handled::ProxyArpReplied.into(),
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
        let inside = NetnsGuard::enter(&ns);
        let ifindexes: Vec<(Port, u32)> = Port::ALL
            .iter()
            .map(|p| {
                let i = loader::ifindex_of(p.ifname())
                    .unwrap_or_else(|| panic!("bed: no interface {}", p.ifname()));
                (*p, i)
            })
            .collect();
        let pin = PinDir::new();
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

    /// [`TestBed::run`], returning the kernel's refusal instead of panicking.
    /// The kernel refuses frames shorter than an Ethernet header (`EINVAL`
    /// from `bpf_prog_test_run_xdp`, also when XDP metadata pads the buffer).
    pub fn try_run(&mut self, ingress: Port, frame: &[u8]) -> Result<(u32, Vec<u8>), ProgramError> {
        let ctx = xdp_md(0, frame.len() as u32, self.ifindex(ingress));
        let mut out = vec![0u8; frame.len() + 256];
        let program = self
            .dp
            .program()
            .unwrap_or_else(|e| panic!("the XDP program: {e:#?}"));
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
        let program = self
            .dp
            .program()
            .unwrap_or_else(|e| panic!("the XDP program: {e:#?}"));
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

// ---------------------------------------------------------------------------
// Namespace lab with the program attached
// ---------------------------------------------------------------------------

/// Gateway MAC of the lab's vSwitch.
pub const LAB_GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];
/// vSwitch id of the lab.
pub const LAB_VSWITCH: u32 = 7;
/// HaVip id in the lab.
pub const LAB_HAVIP_ID: u32 = 1;

/// [`Lab`] with guests `client`, `a` (initial owner) and `b` (standby) in
/// 10.77.`subnet`.0/24, the dataplane loaded in the host namespace and
/// attached natively to every `hv-*` port, and HaVip 10.77.`subnet`.100
/// bound to a and b. Both a and b carry the HaVip address, so only the
/// forwarding decides who receives its traffic.
///
/// The calling thread stays in the host namespace while the lab lives.
pub struct HaLab {
    pub dp: Dataplane,
    pub desired: Desired,
    pub havip: Ipv4Addr,
    pub key: HavipKey,
    // Drop order: unpin (detaches), leave the host namespace, delete all.
    _pin: PinDir,
    _inside: NetnsGuard,
    pub lab: Lab,
}

impl HaLab {
    pub fn new(subnet: u8) -> Self {
        let mut lab = Lab::new(&lab::unique_name("hvtl")).expect("creating the lab");
        let ip = |host| Ipv4Addr::new(10, 77, subnet, host);
        for (name, mac, host) in [
            ("client", [0x02, 0x00, 0x00, 0x00, 0x10, 0x01], 1),
            ("a", [0x02, 0x00, 0x00, 0x00, 0x10, 0x0a], 11),
            ("b", [0x02, 0x00, 0x00, 0x00, 0x10, 0x0b], 12),
        ] {
            lab.add_guest(name, mac, ip(host))
                .unwrap_or_else(|e| panic!("adding guest {name}: {e:#}"));
        }
        let havip = ip(100);
        for name in ["a", "b"] {
            let g = lab.guest(name).expect("guest just added");
            g.ns.exec(&["ip", "addr", "add", &format!("{havip}/32"), "dev", "eth0"])
                .unwrap_or_else(|e| panic!("adding the HaVip to {name}: {e:#}"));
        }
        let inside = NetnsGuard::enter(&lab.host);
        let pin = PinDir::new();
        let mut dp =
            Dataplane::load(pin.path()).unwrap_or_else(|e| panic!("loading the dataplane: {e:#?}"));
        for g in &lab.guests {
            dp.attach(&g.host_if, AttachMode::Native)
                .unwrap_or_else(|e| panic!("attaching natively to {}: {e:#?}", g.host_if));
        }
        let key = HavipKey {
            vswitch_id: LAB_VSWITCH,
            addr: havip.octets(),
        };
        let mut this = Self {
            dp,
            desired: Desired::default(),
            havip,
            key,
            _pin: pin,
            _inside: inside,
            lab,
        };
        let (a, b) = (this.binding("a"), this.binding("b"));
        this.desired = Desired {
            ports: this
                .lab
                .guests
                .iter()
                .map(|g| DesiredPort {
                    ifindex: this.port_ifindex(&g.host_if),
                    vswitch_id: LAB_VSWITCH,
                    vpc_id: 1,
                    flags: port_flags::INSTANCE,
                    gateway_mac: LAB_GATEWAY_MAC,
                })
                .collect(),
            havips: vec![DesiredHavip {
                key,
                vpc_id: 1,
                id: LAB_HAVIP_ID,
                virtual_mac: virtual_mac(havip.octets()),
                bindings: vec![a, b],
                initial_owner: Some(a),
            }],
            config: DataplaneConfig::default(),
        };
        this.reconcile();
        this
    }

    pub fn guest(&self, name: &str) -> &Guest {
        self.lab
            .guest(name)
            .unwrap_or_else(|e| panic!("lab guest {name}: {e:#}"))
    }

    /// ifindex of a host-side interface (`hv-<name>`).
    pub fn port_ifindex(&self, host_if: &str) -> u32 {
        loader::ifindex_of(host_if).unwrap_or_else(|| panic!("no host interface {host_if}"))
    }

    /// Binding of guest `name`'s ENI: its host port and MAC.
    pub fn binding(&self, name: &str) -> DesiredBinding {
        let g = self.guest(name);
        DesiredBinding {
            ifindex: self.port_ifindex(&g.host_if),
            mac: g.mac,
        }
    }

    pub fn reconcile(&mut self) {
        reconcile(&mut self.dp.maps, &self.desired).unwrap_or_else(|e| panic!("reconcile: {e:#?}"));
    }

    /// The HaVip's `OWNERS` entry.
    pub fn owner(&self) -> OwnerEntry {
        self.dp
            .maps
            .owners
            .get(&self.key, 0)
            .unwrap_or_else(|e| panic!("OWNERS[{:?}]: {e}", self.key))
    }

    /// Name of the guest that owns the HaVip now (`"none"` if no owner).
    pub fn owner_name(&self) -> String {
        let owner = self.owner();
        self.lab
            .guests
            .iter()
            .find(|g| self.port_ifindex(&g.host_if) == owner.ifindex && g.mac == owner.mac)
            .map_or_else(
                || format!("none (ifindex {})", owner.ifindex),
                |g| g.host_if.trim_start_matches("hv-").to_owned(),
            )
    }

    /// Makes guest `name` the owner by writing `OWNERS` through the maps API,
    /// as the control plane would (epoch + 1).
    pub fn set_owner_in_map(&mut self, name: &str) {
        let binding = self.binding(name);
        let current = self.owner();
        let next = OwnerEntry {
            epoch: current.epoch + 1,
            changed_ns: current.changed_ns,
            havip_id: LAB_HAVIP_ID,
            ifindex: binding.ifindex,
            mac: binding.mac,
            flags: owner_flags::BY_CONTROL,
        };
        self.dp
            .maps
            .owners
            .insert(self.key, next, 0)
            .unwrap_or_else(|e| panic!("writing OWNERS: {e}"));
    }

    pub fn counters(&self) -> Counters {
        Counters::read(&self.dp)
    }

    /// Sends `n` UDP datagrams from the client to `dst` (flow-controlled, see
    /// [`send_udp`]) and returns how many guests `a` and `b` received from
    /// the client's address. Waits until all `n` arrived somewhere (or 5 s).
    pub fn udp_to(&self, dst: Ipv4Addr, port: u16, n: usize) -> (u64, u64) {
        let client = self.guest("client");
        let rx_a = UdpCounter::start(&self.guest("a").ns, port);
        let rx_b = UdpCounter::start(&self.guest("b").ns, port);
        let (count_a, count_b, src) = (rx_a.counts.clone(), rx_b.counts.clone(), client.ip);
        let from = move |c: &Mutex<BTreeMap<Ipv4Addr, u64>>| {
            c.lock()
                .expect("counter lock")
                .get(&src)
                .copied()
                .unwrap_or(0)
        };
        send_udp(&client.ns, dst, port, n, 32, move || {
            from(&count_a) + from(&count_b)
        });
        let n = n as u64;
        wait_until(Duration::from_secs(5), || {
            rx_a.from(client.ip) + rx_b.from(client.ip) >= n
        });
        let (a, b) = (rx_a.stop(), rx_b.stop());
        (
            a.get(&client.ip).copied().unwrap_or(0),
            b.get(&client.ip).copied().unwrap_or(0),
        )
    }

    /// One TCP connection from the client to `dst`: returns the echoed bytes
    /// and how many connections `a` and `b` accepted from the client.
    pub fn tcp_to(&self, dst: Ipv4Addr, port: u16) -> (Vec<u8>, usize, usize) {
        let client = self.guest("client");
        let srv_a = TcpEcho::start(&self.guest("a").ns, port);
        let srv_b = TcpEcho::start(&self.guest("b").ns, port);
        let msg = format!("hello {dst}:{port}").into_bytes();
        let echoed = tcp_exchange(&client.ns, dst, port, &msg);
        let from_client = |peers: Vec<SocketAddr>| {
            peers
                .iter()
                .filter(|p| p.ip() == std::net::IpAddr::V4(client.ip))
                .count()
        };
        (echoed, from_client(srv_a.stop()), from_client(srv_b.stop()))
    }

    /// `ping -c count` from the client to `dst` (must get every reply):
    /// returns the echo requests `a` and `b` received meanwhile.
    pub fn ping_to(&self, dst: Ipv4Addr, count: u32) -> (u64, u64) {
        let (a, b) = (&self.guest("a").ns, &self.guest("b").ns);
        let (a0, b0) = (icmp_in_echos(a), icmp_in_echos(b));
        ping(&self.guest("client").ns, dst, count);
        (icmp_in_echos(a) - a0, icmp_in_echos(b) - b0)
    }
}

// ---------------------------------------------------------------------------
// Traffic helpers
// ---------------------------------------------------------------------------

/// Spawns `f` on a thread inside `ns`.
pub fn spawn_in<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let path = netns_path(ns);
    std::thread::spawn(move || {
        let _inside = NetnsGuard::enter_path(&path);
        f()
    })
}

/// Raises a socket's receive buffer past `rmem_max` (we are root), so a
/// burst is not lost while the counting thread is descheduled.
fn force_rcvbuf(fd: i32, bytes: i32) {
    // SAFETY: valid fd, int-sized option.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const i32).cast(),
            std::mem::size_of::<i32>() as u32,
        );
    }
}

/// UDP receiver on `0.0.0.0:port` in a namespace thread, counting datagrams
/// per source address until stopped.
pub struct UdpCounter {
    counts: Arc<Mutex<BTreeMap<Ipv4Addr, u64>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl UdpCounter {
    /// Returns once the socket is bound.
    pub fn start(ns: &Netns, port: u16) -> Self {
        let counts = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (c, s, name) = (counts.clone(), stop.clone(), ns.name().to_owned());
        let handle = spawn_in(ns, move || {
            let sock = UdpSocket::bind(("0.0.0.0", port))
                .unwrap_or_else(|e| panic!("binding UDP :{port} in {name}: {e}"));
            force_rcvbuf(sock.as_raw_fd(), 8 << 20);
            sock.set_read_timeout(Some(Duration::from_millis(5)))
                .expect("setting a read timeout");
            let _ = ready_tx.send(());
            let mut buf = [0u8; 2048];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((_, SocketAddr::V4(from))) => {
                        *c.lock()
                            .expect("counter lock")
                            .entry(*from.ip())
                            .or_insert(0) += 1;
                    }
                    Ok(_) => {}
                    // Timeout: only stop once the socket is empty.
                    Err(_) if s.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("UDP receiver in {} did not start", ns.name()));
        Self {
            counts,
            stop,
            handle: Some(handle),
        }
    }

    /// Datagrams received so far from `src`.
    pub fn from(&self, src: Ipv4Addr) -> u64 {
        self.counts
            .lock()
            .expect("counter lock")
            .get(&src)
            .copied()
            .unwrap_or(0)
    }

    /// Counts for `duration`, then stops: the datagrams per source.
    pub fn collect_for(self, duration: Duration) -> BTreeMap<Ipv4Addr, u64> {
        std::thread::sleep(duration);
        self.stop()
    }

    /// Stops after draining the socket; returns the counts per source.
    pub fn stop(mut self) -> BTreeMap<Ipv4Addr, u64> {
        self.finish();
        self.counts.lock().expect("counter lock").clone()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() && !std::thread::panicking() {
                panic!("UDP receiver thread panicked");
            }
        }
    }
}

impl Drop for UdpCounter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Sends `n` datagrams from inside `ns` to `dst:port`, never more than
/// `window` ahead of what `delivered()` reports (the receivers' count), so
/// no queue on the way (neighbour queue, veth rings of 256 frames, socket
/// buffers) can overflow however slowly a loaded machine runs its softirqs.
/// If nothing is delivered for 500 ms the sender goes on regardless: the
/// receivers' counts then show the loss.
pub fn send_udp(
    ns: &Netns,
    dst: Ipv4Addr,
    port: u16,
    n: usize,
    window: u64,
    delivered: impl Fn() -> u64 + Send + 'static,
) {
    let name = ns.name().to_owned();
    spawn_in(ns, move || {
        let sock =
            UdpSocket::bind(("0.0.0.0", 0)).unwrap_or_else(|e| panic!("UDP socket in {name}: {e}"));
        for i in 0..n {
            let ahead = |d: u64| i as u64 >= d + window;
            if ahead(delivered()) {
                wait_until(Duration::from_millis(500), || !ahead(delivered()));
            }
            let payload = format!("havip datagram {i}");
            sock.send_to(payload.as_bytes(), SocketAddrV4::new(dst, port))
                .unwrap_or_else(|e| {
                    panic!("sending datagram {i} to {dst}:{port} from {name}: {e}")
                });
        }
    })
    .join()
    .unwrap_or_else(|_| panic!("UDP sender in {} panicked", ns.name()));
}

/// TCP echo server on `0.0.0.0:port` in a namespace thread: echoes what each
/// connection sends until it closes, and records the peers it accepted.
pub struct TcpEcho {
    peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl TcpEcho {
    /// Returns once the socket listens.
    pub fn start(ns: &Netns, port: u16) -> Self {
        let peers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (p, s, name) = (peers.clone(), stop.clone(), ns.name().to_owned());
        let handle = spawn_in(ns, move || {
            let listener = TcpListener::bind(("0.0.0.0", port))
                .unwrap_or_else(|e| panic!("listening on TCP :{port} in {name}: {e}"));
            listener
                .set_nonblocking(true)
                .expect("non-blocking listener");
            let _ = ready_tx.send(());
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, peer)) => {
                        p.lock().expect("peers lock").push(peer);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut buf = [0u8; 4096];
                        while let Ok(n @ 1..) = conn.read(&mut buf) {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("TCP echo server in {} did not start", ns.name()));
        Self {
            peers,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the server; returns the peers of the accepted connections.
    pub fn stop(mut self) -> Vec<SocketAddr> {
        self.finish();
        self.peers.lock().expect("peers lock").clone()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            if h.join().is_err() && !std::thread::panicking() {
                panic!("TCP echo thread panicked");
            }
        }
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Connects from inside `ns` to `dst:port`, sends `msg`, half-closes and
/// returns everything echoed back. Panics if the connection fails.
pub fn tcp_exchange(ns: &Netns, dst: Ipv4Addr, port: u16, msg: &[u8]) -> Vec<u8> {
    let (name, msg) = (ns.name().to_owned(), msg.to_vec());
    spawn_in(ns, move || {
        let to = SocketAddr::V4(SocketAddrV4::new(dst, port));
        let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("TCP connect {to} from {name}: {e}"));
        conn.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("read timeout");
        conn.write_all(&msg)
            .unwrap_or_else(|e| panic!("TCP send to {to} from {name}: {e}"));
        conn.shutdown(std::net::Shutdown::Write)
            .unwrap_or_else(|e| panic!("TCP shutdown to {to} from {name}: {e}"));
        let mut echoed = Vec::new();
        conn.read_to_end(&mut echoed)
            .unwrap_or_else(|e| panic!("TCP read from {to} in {name}: {e}"));
        echoed
    })
    .join()
    .unwrap_or_else(|_| panic!("TCP client in {} panicked", ns.name()))
}

/// `ping -c count` from `ns` to `dst`; panics unless every reply came back.
pub fn ping(ns: &Netns, dst: Ipv4Addr, count: u32) {
    let count = count.to_string();
    let dst = dst.to_string();
    ns.exec(&[
        "ping", "-q", "-n", "-c", &count, "-i", "0.02", "-W", "2", &dst,
    ])
    .unwrap_or_else(|e| panic!("ping {dst} from {}: {e:#}", ns.name()));
}

/// `Icmp: InEchos` of `ns` (echo requests received), from /proc/net/snmp.
pub fn icmp_in_echos(ns: &Netns) -> u64 {
    let out = ns
        .exec(&["cat", "/proc/net/snmp"])
        .unwrap_or_else(|e| panic!("reading /proc/net/snmp in {}: {e:#}", ns.name()));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut icmp = text.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(header), Some(values)) = (icmp.next(), icmp.next()) else {
        panic!("no Icmp lines in /proc/net/snmp of {}", ns.name());
    };
    header
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(h, _)| *h == "InEchos")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no Icmp InEchos in /proc/net/snmp of {}", ns.name()))
}

/// Sends raw frames out of `eth0` of `guest` (as the guest would), in
/// batches of 64: before each batch waits (up to 2 s) until `seen()` (an
/// XDP counter) shows the previous ones arrived, so the host veth's
/// 256-frame ring never overflows on a loaded machine. Returns frames sent.
pub fn send_frames(guest: &Guest, frames: Vec<Vec<u8>>, seen: impl Fn() -> u64) -> u64 {
    let mut sent = 0u64;
    for batch in frames.chunks(64) {
        wait_until(Duration::from_secs(2), || seen() >= sent);
        let n = lab::send_raw(&guest.ns, "eth0", batch.to_vec())
            .unwrap_or_else(|e| panic!("sending raw frames from {}: {e:#}", guest.ns.name()));
        assert_eq!(n, batch.len(), "raw frames sent from {}", guest.ns.name());
        sent += n as u64;
    }
    sent
}
