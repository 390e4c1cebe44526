//! The multi-host fabric of docs/design.md on one machine: an `underlay`
//! namespace with bridge `ul0`, hypervisor hosts `h1..hN` as namespaces
//! (each a [`Lab`]: bridge `br0`, guest ports) with an underlay NIC `eth0`
//! and a kernel VXLAN device `vx0` in `br0`, guests on any host in one
//! vSwitch subnet. Without havip this is the plain kernel VXLAN bridge a
//! user would run (ordinary traffic between hosts, the benchmark's
//! baseline); with an agent per host, the HaVip path.
//!
//! ```text
//!  h1-a [eth0]─[hv-a] br0 ─ vx0 ┐        underlay: ul0 10.99.0.1/24
//!                 h1: eth0 10.99.0.11 ─[ul-h1]┐
//!  h2-b [eth0]─[hv-b] br0 ─ vx0 ┐            ├ ul0
//!                 h2: eth0 10.99.0.12 ─[ul-h2]┘
//! ```
//!
//! Sizing: guest ports and `vx0` have MTU 1500, the underlay NICs 1600, so
//! a full 1500-byte guest frame plus the 50 bytes of VXLAN encapsulation
//! (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8) crosses the underlay
//! unfragmented, both through `vx0` and through havip's XDP encap.
//!
//! Everything is named from one [`lab::unique_name`] (`hvtf<pid>-<n>`), so
//! `cargo xtask clean-host` (prefix `hvt`) removes what a killed run left;
//! no interface is ever created in the caller's namespace. Dropping the
//! [`Fabric`] removes every namespace (and with them their links and the
//! processes still inside), also when a test panics.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

use crate::{
    etcd::Etcd,
    lab::{self, mac_string, Guest, Lab, Netns},
    scenario::Scratch,
};

/// Underlay subnet: the bridge is .1, host `hN` is .(10+N).
pub const UNDERLAY_BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const UNDERLAY_PREFIX_LEN: u8 = 24;
/// MTU of the underlay NICs and bridge: 1500 + 50 bytes of VXLAN.
pub const UNDERLAY_MTU: u32 = 1600;
/// MTU of guest ports and `vx0`.
pub const GUEST_MTU: u32 = 1500;
/// IANA VXLAN port (RFC 7348), as the kernel device and havip use it.
pub const VXLAN_PORT: u16 = 4789;
/// Hosts are numbered 1..=MAX_HOSTS (VTEP .11 .. .(10+MAX_HOSTS)).
pub const MAX_HOSTS: usize = 200;
/// Names of the fixed interfaces inside each host namespace.
pub const UNDERLAY_IF: &str = "eth0";
pub const BRIDGE_IF: &str = "br0";
pub const VXLAN_IF: &str = "vx0";
/// Name of the underlay bridge (inside the underlay namespace).
pub const UNDERLAY_BRIDGE: &str = "ul0";

/// The vSwitch every guest of the fabric is in.
#[derive(Clone, Debug)]
pub struct VSwitchSpec {
    /// Guest subnet, e.g. `10.0.1.0/24`.
    pub cidr: String,
    /// VXLAN network identifier (24 bits).
    pub vni: u32,
    /// The MAC havip writes as source of forwarded frames.
    pub gateway_mac: [u8; 6],
}

impl VSwitchSpec {
    /// `(network, prefix length)` of [`VSwitchSpec::cidr`].
    ///
    /// # Errors
    /// Not `a.b.c.d/len` with len ≤ 32.
    pub fn network(&self) -> Result<(Ipv4Addr, u8)> {
        let (ip, len) = self
            .cidr
            .split_once('/')
            .with_context(|| format!("vSwitch cidr {} has no /len", self.cidr))?;
        let ip: Ipv4Addr = ip
            .parse()
            .with_context(|| format!("vSwitch cidr {}", self.cidr))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .with_context(|| format!("vSwitch cidr {}: bad prefix length", self.cidr))?;
        Ok((ip, len))
    }

    /// Whether `ip` is in the subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> Result<bool> {
        let (net, len) = self.network()?;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        Ok(u32::from(ip) & mask == u32::from(net) & mask)
    }
}

/// One hypervisor host: its namespace and guests (a [`Lab`]: namespace
/// `<fabric>-hN-h`, guests `<fabric>-hN-<guest>`, ports `hv-<guest>`), its
/// VTEP and the agent's scratch paths (config, store, API socket, pin dir).
#[derive(Debug)]
pub struct FabricHost {
    /// 1-based host number.
    pub n: usize,
    pub lab: Lab,
    /// VTEP address on `eth0`: 10.99.0.(10+n).
    pub vtep: Ipv4Addr,
    /// MAC of `eth0` (02:99:00:00:00:<10+n>).
    pub underlay_mac: [u8; 6],
    /// Per-host agent paths, removed on drop.
    pub scratch: Scratch,
}

impl FabricHost {
    /// The host namespace (where `br0`, `vx0`, `eth0`, the ports and the
    /// agent live).
    pub fn ns(&self) -> &Netns {
        &self.lab.host
    }

    /// ifindex of `ifname` in the host namespace.
    ///
    /// # Errors
    /// No such interface.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        self.lab.host.ifindex(ifname)
    }

    /// `ip -s` counters of `ifname` in the host namespace: (rx, tx) packets.
    ///
    /// # Errors
    /// No such interface.
    pub fn packets(&self, ifname: &str) -> Result<(u64, u64)> {
        let read = |what: &str| -> Result<u64> {
            let out = self.lab.host.exec(&[
                "cat",
                &format!("/sys/class/net/{ifname}/statistics/{what}_packets"),
            ])?;
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .with_context(|| format!("{what}_packets of {ifname}"))
        };
        Ok((read("rx")?, read("tx")?))
    }
}

/// The whole fabric; see the module doc. Drop order: hosts (their guests
/// first, see [`Lab`]) then the underlay.
#[derive(Debug)]
pub struct Fabric {
    pub hosts: Vec<FabricHost>,
    pub underlay: Netns,
    pub vswitch: VSwitchSpec,
    /// `hvtf<pid>-<n>`: prefix of every namespace of this fabric.
    pub prefix: String,
}

/// VTEP address of host `n` (1-based).
pub fn vtep_of(n: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, 0, (10 + n) as u8)
}

/// Underlay MAC of host `n` (1-based): locally administered, unique per fabric.
pub fn underlay_mac_of(n: usize) -> [u8; 6] {
    [0x02, 0x99, 0, 0, 0, (10 + n) as u8]
}

impl Fabric {
    /// Builds the underlay and `n_hosts` hosts with no guests yet.
    ///
    /// # Errors
    /// `n_hosts` is 0 or above [`MAX_HOSTS`], a bad vSwitch spec, or an
    /// iproute2/ethtool/sysctl command failed (everything built so far is
    /// removed again).
    pub fn new(n_hosts: usize, vswitch: VSwitchSpec) -> Result<Self> {
        if n_hosts == 0 || n_hosts > MAX_HOSTS {
            bail!("a fabric has 1..={MAX_HOSTS} hosts, not {n_hosts}");
        }
        if vswitch.vni == 0 || vswitch.vni >= 1 << 24 {
            bail!("VNI {} is not in 1..2^24", vswitch.vni);
        }
        vswitch.network()?;
        let prefix = lab::unique_name("hvtf");
        let underlay = Netns::create(&format!("{prefix}-ul"))?;
        underlay.exec(&["ip", "link", "add", UNDERLAY_BRIDGE, "type", "bridge"])?;
        underlay.exec(&[
            "ip",
            "link",
            "set",
            UNDERLAY_BRIDGE,
            "mtu",
            &UNDERLAY_MTU.to_string(),
            "up",
        ])?;
        underlay.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{UNDERLAY_BRIDGE_IP}/{UNDERLAY_PREFIX_LEN}"),
            "dev",
            UNDERLAY_BRIDGE,
        ])?;
        bridge_nf_off(&underlay);
        let mut fabric = Self {
            hosts: Vec::with_capacity(n_hosts),
            underlay,
            vswitch,
            prefix,
        };
        for n in 1..=n_hosts {
            let host = fabric.build_host(n, n_hosts)?;
            fabric.hosts.push(host);
        }
        Ok(fabric)
    }

    fn build_host(&self, n: usize, n_hosts: usize) -> Result<FabricHost> {
        let lab = Lab::new(&format!("{}-h{n}-", self.prefix))?;
        let scratch = Scratch::new(&format!("hvtf-h{n}-"))?;
        let ns = &lab.host;
        let (vtep, mac) = (vtep_of(n), underlay_mac_of(n));
        let mtu = UNDERLAY_MTU.to_string();
        // Underlay NIC: a veth from the underlay bridge.
        let ul_port = format!("ul-h{n}");
        lab::veth(&self.underlay, &ul_port, ns, UNDERLAY_IF)?;
        self.underlay
            .exec(&["ip", "link", "set", &ul_port, "mtu", &mtu])?;
        self.underlay
            .exec(&["ip", "link", "set", &ul_port, "master", UNDERLAY_BRIDGE])?;
        ns.exec(&[
            "ip",
            "link",
            "set",
            UNDERLAY_IF,
            "address",
            &mac_string(mac),
            "mtu",
            &mtu,
        ])?;
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{vtep}/{UNDERLAY_PREFIX_LEN}"),
            "dev",
            UNDERLAY_IF,
        ])?;
        // GRO on the NIC: havip's XDP redirects decapsulated frames from it and
        // encapsulated ones into its peer's side of the underlay.
        ns.exec(&["ethtool", "-K", UNDERLAY_IF, "gro", "on"])?;
        self.underlay
            .exec(&["ethtool", "-K", &ul_port, "gro", "on"])?;
        // Kernel VXLAN in br0: learning on, flood to every other VTEP.
        ns.exec(&[
            "ip",
            "link",
            "add",
            VXLAN_IF,
            "type",
            "vxlan",
            "id",
            &self.vswitch.vni.to_string(),
            "dstport",
            &VXLAN_PORT.to_string(),
            "local",
            &vtep.to_string(),
            "dev",
            UNDERLAY_IF,
            "learning",
        ])?;
        ns.exec(&[
            "ip",
            "link",
            "set",
            VXLAN_IF,
            "mtu",
            &GUEST_MTU.to_string(),
            "master",
            BRIDGE_IF,
            "up",
        ])?;
        for other in (1..=n_hosts).filter(|o| *o != n) {
            ns.exec(&[
                "bridge",
                "fdb",
                "append",
                "00:00:00:00:00:00",
                "dev",
                VXLAN_IF,
                "dst",
                &vtep_of(other).to_string(),
            ])?;
        }
        Ok(FabricHost {
            n,
            lab,
            vtep,
            underlay_mac: mac,
            scratch,
        })
    }

    /// Host `n` (1-based).
    ///
    /// # Errors
    /// No such host.
    pub fn host(&self, n: usize) -> Result<&FabricHost> {
        n.checked_sub(1)
            .and_then(|i| self.hosts.get(i))
            .with_context(|| format!("no host h{n} (fabric has {})", self.hosts.len()))
    }

    fn host_mut(&mut self, n: usize) -> Result<&mut FabricHost> {
        let count = self.hosts.len();
        n.checked_sub(1)
            .and_then(|i| self.hosts.get_mut(i))
            .with_context(|| format!("no host h{n} (fabric has {count})"))
    }

    /// Pulls (`up = false`) or plugs back host `n`'s underlay cable: its
    /// port `ul-hN` on the underlay bridge goes down or up (the host's
    /// `eth0` loses its carrier: no VXLAN, no etcd from that host).
    ///
    /// # Errors
    /// No such host, or iproute2 failed.
    pub fn set_underlay_link(&self, n: usize, up: bool) -> Result<()> {
        self.host(n)?;
        let state = if up { "up" } else { "down" };
        self.underlay
            .exec(&["ip", "link", "set", &format!("ul-h{n}"), state])?;
        Ok(())
    }

    /// Namespace of host `n`.
    ///
    /// # Errors
    /// No such host.
    pub fn host_ns(&self, n: usize) -> Result<&Netns> {
        Ok(self.host(n)?.ns())
    }

    /// VTEP address of host `n`.
    ///
    /// # Errors
    /// No such host.
    pub fn vtep(&self, n: usize) -> Result<Ipv4Addr> {
        Ok(self.host(n)?.vtep)
    }

    /// Underlay MAC of host `n`.
    ///
    /// # Errors
    /// No such host.
    pub fn underlay_mac(&self, n: usize) -> Result<[u8; 6]> {
        Ok(self.host(n)?.underlay_mac)
    }

    /// Adds guest `name` on host `n`: namespace `<fabric>-hN-<name>` with
    /// `eth0` (`mac`, `ip`/len of the vSwitch, MTU 1500), port `hv-<name>`
    /// in the host's `br0`. GRO on and tx checksum offload off on both veth
    /// ends, as [`Lab::add_guest`] does for XDP redirects.
    ///
    /// # Errors
    /// `ip` outside the vSwitch, a name too long for an interface (`hv-` +
    /// 12 characters), a name used twice, or a command failed.
    pub fn add_guest(
        &mut self,
        n: usize,
        name: &str,
        ip: Ipv4Addr,
        mac: [u8; 6],
    ) -> Result<&Guest> {
        if !self.vswitch.contains(ip)? {
            bail!("guest {name}: {ip} is not in {}", self.vswitch.cidr);
        }
        if name.is_empty() || name.len() > 12 || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            bail!("guest name {name:?}: 1..=12 ASCII letters or digits");
        }
        if self.guest(n, name).is_ok() {
            bail!("guest {name} already on h{n}");
        }
        let (_, len) = self.vswitch.network()?;
        let host = self.host_mut(n)?;
        host.lab.add_guest(name, mac, ip)?;
        let guest = host
            .lab
            .guests
            .last()
            .context("guest list empty after add_guest")?;
        if len != lab::LAB_PREFIX_LEN {
            guest.ns.exec(&["ip", "addr", "flush", "dev", "eth0"])?;
            guest
                .ns
                .exec(&["ip", "addr", "add", &format!("{ip}/{len}"), "dev", "eth0"])?;
        }
        Ok(guest)
    }

    /// Guest `name` on host `n`.
    ///
    /// # Errors
    /// No such host or guest.
    pub fn guest(&self, n: usize, name: &str) -> Result<&Guest> {
        self.host(n)?.lab.guest(name)
    }

    /// Host-side port (in host `n`'s namespace) of guest `name`: `hv-<name>`.
    ///
    /// # Errors
    /// No such host or guest.
    pub fn port(&self, n: usize, name: &str) -> Result<&str> {
        Ok(&self.guest(n, name)?.host_if)
    }

    /// Every guest with its host number.
    pub fn guests(&self) -> impl Iterator<Item = (usize, &Guest)> {
        self.hosts
            .iter()
            .flat_map(|h| h.lab.guests.iter().map(move |g| (h.n, g)))
    }

    /// Starts an etcd in the underlay namespace on 10.99.0.1 (every host
    /// reaches it over its `eth0`). Drop the [`Etcd`] before the fabric, or
    /// the fabric's drop kills it with the underlay namespace.
    ///
    /// # Errors
    /// As [`Etcd::start_in`].
    pub fn start_etcd(&self) -> Result<Etcd> {
        Etcd::start_in(&self.underlay, UNDERLAY_BRIDGE_IP)
    }

    /// Turns IPv6 off in every namespace of the fabric (no router or
    /// neighbour solicitations flooded over the VXLAN mesh while a benchmark
    /// counts frames). Guests added later keep IPv6.
    ///
    /// # Errors
    /// A sysctl failed.
    pub fn disable_ipv6(&self) -> Result<()> {
        let mut all: Vec<&Netns> = vec![&self.underlay];
        for h in &self.hosts {
            all.push(&h.lab.host);
            all.extend(h.lab.guests.iter().map(|g| &g.ns));
        }
        for ns in all {
            ns.disable_ipv6()?;
        }
        Ok(())
    }

    /// Names of every namespace of the fabric (for leak checks).
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![self.underlay.name().to_owned()];
        for h in &self.hosts {
            v.push(h.lab.host.name().to_owned());
            v.extend(h.lab.guests.iter().map(|g| g.ns.name().to_owned()));
        }
        v
    }
}

/// br_netfilter is built in: keep bridged frames out of iptables.
fn bridge_nf_off(ns: &Netns) {
    for knob in ["iptables", "ip6tables", "arptables"] {
        let _ = ns.exec(&[
            "sysctl",
            "-qw",
            &format!("net.bridge.bridge-nf-call-{knob}=0"),
        ]);
    }
}
