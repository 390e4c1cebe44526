//! A veth/bridge lab with the XDP program attached (`HaLab`).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    sync::Mutex,
    time::Duration,
};

use havip::dataplane::{
    loader, reconcile, AttachMode, Dataplane, Desired, DesiredBinding, DesiredHavip, DesiredPort,
};

use crate::lab::{self, Guest, Lab};
use havip_common::{port_flags, virtual_mac, DataplaneConfig, HavipKey, OwnerEntry};

use crate::*;

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
        let pin = PinDir::for_test();
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
            ..Desired::default()
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
            changed_ns: current.changed_ns,
            ..control_owner(
                current.epoch + 1,
                LAB_HAVIP_ID,
                binding.ifindex,
                binding.mac,
            )
        };
        write_owner(&self.dp, self.key, next);
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
