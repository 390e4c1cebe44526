//! `havip-agent status`: what the kernel holds now, read from the pinned maps
//! (works with or without a running agent).

use std::path::Path;

use anyhow::{Context, Result};
use havip_common::{HavipEntry, HavipKey, OwnerEntry, TrafficCounter};
use serde::Serialize;

use crate::{
    control::HavipCounters,
    dataplane::{
        loader::{attached_interfaces, ifindex_of, pinned_link_ifindex},
        stats, Maps,
    },
    mac::mac_string,
};

/// One HaVip as the kernel's table has it.
#[derive(Debug, Serialize)]
pub struct HavipStatus {
    /// Data-plane number of the HaVip's vSwitch (the control plane's
    /// `dp_id` of the vSwitch, not its `vsw-...` id).
    pub vswitch_id: u32,
    /// The HaVip's IPv4 address.
    pub address: String,
    /// Data-plane slot: the index of its kernel rows and counters (the
    /// `slot` of DescribeHaVips).
    pub id: u32,
    /// MAC answered for the address: `02:48` + the address's four bytes.
    pub virtual_mac: String,
    /// Port the owner sits behind; 0 = no owner (its traffic is dropped and
    /// counted). For an owner on another host: the local VTEP port.
    pub owner_ifindex: u32,
    /// Name of `owner_ifindex` in this namespace (none without an owner).
    pub owner_interface: Option<String>,
    /// The owner ENI's MAC, the destination of forwarded frames.
    pub owner_mac: Option<String>,
    /// Owner changes so far (incremented on each).
    pub epoch: u64,
    /// Bound members in the kernel's `BINDINGS` (at most 10).
    pub bindings: usize,
    /// Frames redirected to the owner since the HaVip was put in the kernel
    /// and their bytes: the `packets` and `bytes` keys, as DescribeHaVips
    /// has them.
    #[serde(flatten)]
    pub counters: HavipCounters,
}

/// One outcome counter of the XDP program, summed over CPUs.
#[derive(Debug, Serialize)]
pub struct Counter {
    /// The outcome (`Handled`) or drop reason (`DropReason`), snake_case.
    pub name: &'static str,
    /// Frames counted since the maps were created.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// One port as the kernel has it: a pinned link and/or a `PORTS` entry.
#[derive(Debug, Serialize)]
pub struct PortStatus {
    /// Interface name.
    pub interface: String,
    /// `attached`, `no-redirect` (in `PORTS` but not `TX_PORTS`: a veth whose
    /// peer has neither GRO nor XDP), `down` (the link's interface is gone,
    /// or it now names another interface), or `unlinked` (no pinned link).
    pub state: &'static str,
    /// The interface's ifindex now (in this network namespace).
    pub ifindex: Option<u32>,
    /// The ifindex the pinned link is attached to (0: detached).
    pub link_ifindex: Option<u32>,
    /// `native` or `generic` as netlink reports it, when attached.
    pub xdp_mode: Option<&'static str>,
}

/// `havip-agent status`: the whole kernel side.
#[derive(Debug, Serialize)]
pub struct Status {
    /// bpffs directory the maps and links were read from.
    pub pin_dir: String,
    /// Interfaces with a pinned XDP link.
    pub interfaces: Vec<String>,
    /// Every port the kernel knows (pinned link or `PORTS` entry).
    pub ports: Vec<PortStatus>,
    /// Every HaVip in the kernel's table, by vSwitch then address.
    pub havips: Vec<HavipStatus>,
    /// Frames handled, by outcome (every outcome, zeros included).
    pub handled: Vec<Counter>,
    /// Frames dropped, by reason (every reason, zeros included).
    pub drops: Vec<Counter>,
    /// Security events not sent because of `security_events_per_sec`.
    pub security_events_suppressed: u64,
    /// Events lost to a full ring buffer (the agent fell behind).
    pub events_lost: u64,
}

/// Interface name of `ifindex` in the current namespace.
pub fn ifname_of(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buffer of IF_NAMESIZE as the call requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name into buf.
    let name = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// XDP attach mode of `ifname` (IFLA_XDP_ATTACHED), from iproute2's JSON
/// output, as an operator would read it with `ip -d link`.
fn xdp_mode(ifname: &str) -> Option<&'static str> {
    let out = std::process::Command::new("ip")
        .args(["-d", "-j", "link", "show", "dev", ifname])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mode = v.get(0)?.get("xdp")?.get("mode")?.as_u64()?;
    // XDP_ATTACHED_DRV = 1, SKB = 2, HW = 3, MULTI = 4.
    Some(match mode {
        1 => "native",
        2 => "generic",
        3 => "offload",
        _ => "multi",
    })
}

fn ports(maps: &Maps, pin_dir: &Path) -> Vec<PortStatus> {
    let tx: std::collections::BTreeSet<u32> = maps.tx_ports.keys().filter_map(Result::ok).collect();
    let mut out = Vec::new();
    for name in attached_interfaces(pin_dir) {
        let pin = pin_dir.join(crate::paths::LINKS_SUBDIR).join(&name);
        let link_ifindex = pinned_link_ifindex(&pin);
        let ifindex = ifindex_of(&name);
        let live = ifindex.is_some() && link_ifindex == ifindex;
        let state = if !live {
            "down"
        } else if ifindex.is_some_and(|i| tx.contains(&i)) {
            "attached"
        } else {
            "no-redirect"
        };
        out.push(PortStatus {
            xdp_mode: if live { xdp_mode(&name) } else { None },
            interface: name,
            state,
            ifindex,
            link_ifindex,
        });
    }
    out
}

fn counter(name: &'static str, c: TrafficCounter) -> Counter {
    Counter {
        name,
        packets: c.packets,
        bytes: c.bytes,
    }
}

/// Reads the pinned maps under `pin_dir`.
pub fn read(pin_dir: &Path) -> Result<Status> {
    let maps = Maps::open_pinned(pin_dir).with_context(|| {
        format!(
            "no havip data plane pinned at {} (is the agent running?)",
            pin_dir.display()
        )
    })?;
    Ok(from_maps(&maps, pin_dir))
}

/// Builds the status from open maps.
pub fn from_maps(maps: &Maps, pin_dir: &Path) -> Status {
    let entries: Vec<(HavipKey, HavipEntry)> = maps.havips.iter().filter_map(Result::ok).collect();
    let bindings: Vec<_> = maps.bindings.keys().filter_map(Result::ok).collect();
    let mut havips: Vec<HavipStatus> = entries
        .into_iter()
        .map(|(key, entry)| {
            let owner: OwnerEntry = maps.owners.get(&key, 0).unwrap_or_default();
            let traffic = stats::havip(maps, entry.id);
            HavipStatus {
                vswitch_id: key.vswitch_id,
                address: std::net::Ipv4Addr::from(key.addr).to_string(),
                id: entry.id,
                virtual_mac: mac_string(entry.virtual_mac),
                owner_ifindex: owner.ifindex,
                owner_interface: owner
                    .has_owner()
                    .then(|| ifname_of(owner.ifindex))
                    .flatten(),
                owner_mac: owner.has_owner().then(|| mac_string(owner.mac)),
                epoch: owner.epoch,
                bindings: bindings.iter().filter(|b| b.havip_id == entry.id).count(),
                counters: HavipCounters {
                    packets: traffic.packets,
                    bytes: traffic.bytes,
                },
            }
        })
        .collect();
    havips.sort_by_key(|h| (h.vswitch_id, h.address.clone()));
    let (suppressed, lost) = stats::event_losses(maps);
    Status {
        pin_dir: pin_dir.display().to_string(),
        interfaces: attached_interfaces(pin_dir),
        ports: ports(maps, pin_dir),
        havips,
        handled: stats::handled(maps)
            .into_iter()
            .map(|(h, c)| counter(h.name(), c))
            .collect(),
        drops: stats::drops(maps)
            .into_iter()
            .map(|(d, c)| counter(d.name(), c))
            .collect(),
        security_events_suppressed: suppressed,
        events_lost: lost,
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pin dir:    {}", self.pin_dir)?;
        writeln!(f, "attached:   {}", self.interfaces.join(", "))?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<16} {:<12} {:>8} {:>8} {:<8}",
            "PORT", "STATE", "IFINDEX", "LINK", "XDP"
        )?;
        for p in &self.ports {
            let num = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |i| i.to_string());
            writeln!(
                f,
                "{:<16} {:<12} {:>8} {:>8} {:<8}",
                p.interface,
                p.state,
                num(p.ifindex),
                num(p.link_ifindex),
                p.xdp_mode.unwrap_or("-")
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "{:<8} {:<16} {:>6} {:<18} {:<12} {:<18} {:>6} {:>5} {:>12} {:>14}",
            "VSWITCH",
            "HAVIP",
            "ID",
            "VIRTUAL MAC",
            "OWNER PORT",
            "OWNER MAC",
            "EPOCH",
            "BOUND",
            "PACKETS",
            "BYTES"
        )?;
        for h in &self.havips {
            writeln!(
                f,
                "{:<8} {:<16} {:>6} {:<18} {:<12} {:<18} {:>6} {:>5} {:>12} {:>14}",
                h.vswitch_id,
                h.address,
                h.id,
                h.virtual_mac,
                h.owner_interface
                    .clone()
                    .unwrap_or_else(|| if h.owner_ifindex == 0 {
                        "-".into()
                    } else {
                        h.owner_ifindex.to_string()
                    }),
                h.owner_mac.as_deref().unwrap_or("-"),
                h.epoch,
                h.bindings,
                h.counters.packets,
                h.counters.bytes
            )?;
        }
        writeln!(f)?;
        writeln!(f, "{:<28} {:>12} {:>14}", "HANDLED", "PACKETS", "BYTES")?;
        for c in &self.handled {
            writeln!(f, "{:<28} {:>12} {:>14}", c.name, c.packets, c.bytes)?;
        }
        writeln!(f)?;
        writeln!(f, "{:<28} {:>12} {:>14}", "DROPPED", "PACKETS", "BYTES")?;
        for c in &self.drops {
            writeln!(f, "{:<28} {:>12} {:>14}", c.name, c.packets, c.bytes)?;
        }
        writeln!(
            f,
            "\nsecurity events suppressed by rate limit: {}; events lost (ring full): {}",
            self.security_events_suppressed, self.events_lost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn havip_counters_are_keys_of_the_havip_in_json() {
        let h = HavipStatus {
            vswitch_id: 1,
            address: "10.0.0.9".into(),
            id: 3,
            virtual_mac: "02:48:0a:00:00:09".into(),
            owner_ifindex: 0,
            owner_interface: None,
            owner_mac: None,
            epoch: 0,
            bindings: 2,
            counters: HavipCounters {
                packets: 7,
                bytes: 700,
            },
        };
        let j = serde_json::to_value(&h).expect("serializable");
        assert_eq!(j["packets"], 7);
        assert_eq!(j["bytes"], 700);
        assert!(j.get("counters").is_none(), "{j}");
    }
}
