//! [`EipLab`]: the [`HaLab`] plus an "internet" namespace behind an uplink
//! and an EIP in front of the lab's HaVip. Used by `tests/eip.rs` and the
//! EIP benchmark.
//!
//! Topology (host namespace = the lab's):
//! - `hv-up` (uplink, flag `UPLINK`, XDP attached, 203.0.113.1/24, not in
//!   the bridge) ⟷ `eth0` of the internet namespace (203.0.113.2/24, the
//!   EIP on-link: it ARPs for the EIP and the uplink answers with the
//!   HaVip's virtual MAC);
//! - guests `a` and `b` send to the internet through the vSwitch gateway:
//!   a static neighbour `10.77.<subnet>.254` at the gateway MAC and a route
//!   `203.0.113.0/24 via .254 src <HaVip>` (so even unbound UDP replies
//!   leave from the HaVip);
//! - the host forwards IPv4 (`bpf_fib_lookup` requires it) and has a
//!   permanent neighbour entry for the internet side (the SNAT path does
//!   not resolve neighbours: see docs/design.md, section EIP).

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    time::Duration,
};

use havip::dataplane::{AttachMode, DesiredEip, DesiredPort};
use havip_common::port_flags;

use crate::{
    lab::{self, Netns},
    spawn_in, EchoServer, HaLab, LAB_GATEWAY_MAC, LAB_HAVIP_ID, LAB_VSWITCH,
};

/// The EIP in front of the lab's HaVip.
pub const EIP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
/// The host's address on the uplink.
pub const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
/// The internet client's address.
pub const INTERNET_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);
/// Host side of the uplink veth.
pub const UPLINK_IF: &str = "hv-up";

pub struct EipLab {
    pub ha: HaLab,
    pub internet: Netns,
    pub uplink_ifindex: u32,
}

impl EipLab {
    /// The lab with the EIP associated (HaVip 10.77.`subnet`.100, owner a).
    pub fn new(subnet: u8) -> Self {
        Self::build(subnet, true)
    }

    /// As [`EipLab::new`], the members' route to the internet without
    /// `src <HaVip>`: keepalived removes the HaVip from both members when it
    /// starts (which would take such a route with it) and adds it on the
    /// master; answers on TCP connections and to pings still leave from the
    /// HaVip (the address they were sent to).
    pub fn for_keepalived(subnet: u8) -> Self {
        Self::build(subnet, false)
    }

    fn build(subnet: u8, src_route: bool) -> Self {
        let mut ha = HaLab::new(subnet);
        let internet =
            Netns::create(&format!("{}i", ha.lab.prefix)).expect("creating the internet netns");
        let host = &ha.lab.host;
        lab::veth(host, UPLINK_IF, &internet, "eth0").expect("the uplink veth");
        let sh = |ns: &Netns, cmd: &[&str]| {
            ns.exec(cmd)
                .unwrap_or_else(|e| panic!("in {}: {}: {e:#}", ns.name(), cmd.join(" ")));
        };
        let (eip, up, inet) = (EIP.to_string(), UPLINK_IP, INTERNET_IP.to_string());
        sh(
            &internet,
            &["ip", "addr", "add", &format!("{inet}/24"), "dev", "eth0"],
        );
        sh(
            &internet,
            &["ip", "route", "add", &format!("{eip}/32"), "dev", "eth0"],
        );
        sh(
            &internet,
            &["ethtool", "-K", "eth0", "gro", "on", "tx", "off"],
        );
        sh(
            host,
            &["ethtool", "-K", UPLINK_IF, "gro", "on", "tx", "off"],
        );
        sh(
            host,
            &["ip", "addr", "add", &format!("{up}/24"), "dev", UPLINK_IF],
        );
        sh(host, &["sysctl", "-qw", "net.ipv4.conf.all.forwarding=1"]);
        let out = internet
            .exec(&["cat", "/sys/class/net/eth0/address"])
            .expect("the internet side's MAC");
        let mac = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        sh(
            host,
            &[
                "ip",
                "neigh",
                "replace",
                &inet,
                "lladdr",
                &mac,
                "dev",
                UPLINK_IF,
                "nud",
                "permanent",
            ],
        );
        let gw = Ipv4Addr::new(10, 77, subnet, 254).to_string();
        let havip = ha.havip.to_string();
        for name in ["a", "b"] {
            let g = &ha.guest(name).ns;
            sh(
                g,
                &[
                    "ip",
                    "neigh",
                    "replace",
                    &gw,
                    "lladdr",
                    &lab::mac_string(LAB_GATEWAY_MAC),
                    "dev",
                    "eth0",
                    "nud",
                    "permanent",
                ],
            );
            let mut route = vec!["ip", "route", "add", "203.0.113.0/24", "via", &gw];
            if src_route {
                route.extend(["src", havip.as_str()]);
            }
            sh(g, &route);
        }
        ha.dp
            .attach(UPLINK_IF, AttachMode::Native)
            .unwrap_or_else(|e| panic!("attaching natively to {UPLINK_IF}: {e:#?}"));
        let uplink_ifindex = ha.port_ifindex(UPLINK_IF);
        ha.desired.ports.push(DesiredPort {
            ifindex: uplink_ifindex,
            vswitch_id: LAB_VSWITCH,
            vpc_id: 1,
            flags: port_flags::UPLINK,
            gateway_mac: LAB_GATEWAY_MAC,
        });
        let mut this = Self {
            ha,
            internet,
            uplink_ifindex,
        };
        this.associate();
        this
    }

    /// Associates the EIP with the HaVip (maps written at once).
    pub fn associate(&mut self) {
        self.ha.desired.eips = vec![DesiredEip {
            address: EIP.octets(),
            havip: self.ha.key,
            havip_id: LAB_HAVIP_ID,
        }];
        self.ha.reconcile();
    }

    /// Unassociates the EIP (maps cleared at once).
    pub fn unassociate(&mut self) {
        self.ha.desired.eips.clear();
        self.ha.reconcile();
    }

    /// Sends one UDP datagram from the internet to `dst:port` on a
    /// *connected* socket and waits up to `timeout` for the answer: `Some`
    /// only if it came back from `dst:port` (the kernel drops anything else
    /// on a connected socket, and datagrams with a bad checksum).
    pub fn udp_exchange(
        &self,
        dst: Ipv4Addr,
        port: u16,
        msg: &[u8],
        timeout: Duration,
    ) -> Option<Vec<u8>> {
        let msg = msg.to_vec();
        spawn_in(&self.internet, move || {
            let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
            socket.connect(SocketAddrV4::new(dst, port)).ok()?;
            socket.set_read_timeout(Some(timeout)).ok()?;
            socket.send(&msg).ok()?;
            let mut buf = [0u8; 2048];
            let n = socket.recv(&mut buf).ok()?;
            Some(buf[..n].to_vec())
        })
        .join()
        .ok()
        .flatten()
    }
}

/// UDP echo server on `0.0.0.0:port` in a namespace thread: answers every
/// datagram to its sender and records the senders.
pub type UdpEcho = EchoServer<SocketAddrV4>;

impl EchoServer<SocketAddrV4> {
    /// Returns once the socket is bound.
    pub fn start(ns: &Netns, port: u16) -> Self {
        let open = move || {
            let socket = UdpSocket::bind(("0.0.0.0", port))?;
            socket.set_read_timeout(Some(Duration::from_millis(20)))?;
            Ok(socket)
        };
        let mut buf = [0u8; 2048];
        Self::spawn(ns, "UDP", port, open, move |socket, peers| {
            if let Ok((n, std::net::SocketAddr::V4(from))) = socket.recv_from(&mut buf) {
                peers.lock().expect("peers lock").push(from);
                let _ = socket.send_to(&buf[..n], from);
            }
        })
    }
}
