//! The bench topology (see docs/benchmark.md):
//!
//! ```text
//! client ns [c0] ⇄ [hc0] host ns [ho0] ⇄ [o0] owner ns     (member A, owner)
//!                             [ho1] ⇄ [o1] owner-b ns   (member B, failover)
//! ```
//!
//! hc0 is where the forwarding under test runs. Every namespace is created
//! here, named `hvb<pid><role>`, and deleted when [`BenchLab`] drops (also on
//! panic); [`sweep_stale`] removes what a killed run left behind.

use std::{
    fs,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::lab::{self, mac_string, Netns};

/// Prefix of every namespace and bpffs pin directory this bench creates.
pub const NS_PREFIX: &str = "hvb";
pub const PIN_PREFIX: &str = "havip-bench-";
const BPFFS: &str = "/sys/fs/bpf";

pub const CLIENT_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const OWNER_A_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x01];
pub const OWNER_B_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x01, 0x02];
/// Source MAC the forwarders write (the host's gateway MAC).
pub const GATEWAY_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0xfe];

/// Runs `f` on a thread that entered `ns` (network namespace only; bpffs and
/// everything else stay the process's), and waits for it.
pub fn in_ns<T: Send>(ns: &Netns, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::scope(|s| {
        s.spawn(|| {
            lab::enter(&path)?;
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", ns.name()))?
    })
}

/// The namespaces and veths of one run, with ifindexes resolved.
#[derive(Debug)]
pub struct BenchLab {
    pub client: Netns,
    pub host: Netns,
    pub owner_a: Netns,
    pub owner_b: Netns,
    /// c0, in the client namespace.
    pub c0: u32,
    /// hc0, ho0, ho1, in the host namespace.
    pub hc0: u32,
    pub ho0: u32,
    pub ho1: u32,
}

/// Namespaces `<prefix><pid><role>`, one per role, with IPv6 off in each
/// (no autoconfiguration chatter: a receiver counts every frame). Those
/// already made are removed if one fails.
pub fn quiet_namespaces<const N: usize>(prefix: &str, roles: [char; N]) -> Result<[Netns; N]> {
    let mut made = Vec::with_capacity(N);
    for role in roles {
        let ns = Netns::create(&format!("{prefix}{}{role}", std::process::id()))?;
        ns.disable_ipv6()?;
        made.push(ns);
    }
    made.try_into()
        .map_err(|_| anyhow::anyhow!("{N} namespaces expected"))
}

impl BenchLab {
    pub fn create() -> Result<Self> {
        let [client, host, owner_a, owner_b] = quiet_namespaces(NS_PREFIX, ['c', 'h', 'o', 'b'])?;
        lab::veth(&client, "c0", &host, "hc0")?;
        lab::veth(&host, "ho0", &owner_a, "o0")?;
        lab::veth(&host, "ho1", &owner_b, "o1")?;
        client.set_mac("c0", CLIENT_MAC)?;
        owner_a.set_mac("o0", OWNER_A_MAC)?;
        owner_b.set_mac("o1", OWNER_B_MAC)?;
        // Frames XDP-transmitted by the generator on c0 are only accepted by
        // hc0 with GRO on (or an XDP program on it).
        host.exec(&["ethtool", "-K", "hc0", "gro", "on"])?;
        let c0 = client.ifindex("c0")?;
        let hc0 = host.ifindex("hc0")?;
        let ho0 = host.ifindex("ho0")?;
        let ho1 = host.ifindex("ho1")?;
        Ok(Self {
            client,
            host,
            owner_a,
            owner_b,
            c0,
            hc0,
            ho0,
            ho1,
        })
    }

    /// Sets `net.bridge.bridge-nf-call-{iptables,ip6tables,arptables}` in the host namespace.
    pub fn set_bridge_nf(&self, on: bool) -> Result<()> {
        for knob in ["iptables", "ip6tables", "arptables"] {
            self.host.exec(&[
                "sysctl",
                "-qw",
                &format!("net.bridge.bridge-nf-call-{knob}={}", u8::from(on)),
            ])?;
        }
        Ok(())
    }

    /// Puts hc0 and ho0 in bridge `br0` (o0's MAC learned statically on ho0,
    /// so nothing is flooded); removed when the guard drops.
    pub fn bridge(&self, netfilter: bool) -> Result<BridgeGuard> {
        self.host
            .exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        let guard = BridgeGuard {
            host: self.host.name().to_owned(),
        };
        self.set_bridge_nf(netfilter)?;
        for port in ["hc0", "ho0"] {
            self.host
                .exec(&["ip", "link", "set", port, "master", "br0"])?;
        }
        self.host.exec(&["ip", "link", "set", "br0", "up"])?;
        self.host.exec(&[
            "bridge",
            "fdb",
            "replace",
            &mac_string(OWNER_A_MAC),
            "dev",
            "ho0",
            "master",
            "static",
        ])?;
        // Without STP the ports forward at once; wait until the kernel says so.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self.host.exec(&[
                "cat",
                "/sys/class/net/hc0/brport/state",
                "/sys/class/net/ho0/brport/state",
            ])?;
            // 3 = BR_STATE_FORWARDING
            if String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .all(|s| s == "3")
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("bridge ports of br0 did not reach the forwarding state");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(guard)
    }

    /// Waits until `ifname` of the host namespace runs no XDP program: an
    /// unpinned link is released from a workqueue, a little later.
    pub fn wait_no_xdp(&self, ifname: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let out = self
                .host
                .exec(&["ip", "-d", "link", "show", "dev", ifname])?;
            if !String::from_utf8_lossy(&out.stdout).contains("prog/xdp") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{ifname} still runs an XDP program 5 s after it was detached");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the clsact qdisc of hc0 (and the filters on it), if any.
    pub fn remove_clsact(&self) {
        let _ = self
            .host
            .exec_status(&["tc", "qdisc", "del", "dev", "hc0", "clsact"]);
    }
}

/// Deletes `br0` of the host namespace on drop.
pub struct BridgeGuard {
    host: String,
}

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "exec", &self.host, "ip", "link", "del", "br0"])
            .output();
    }
}

pub use crate::guards::PinDir;

impl PinDir {
    /// The bpffs directory the product's maps and links are pinned in for
    /// this run; everything under it is detached and unpinned on drop.
    pub fn for_bench() -> Self {
        Self::lenient(Path::new(BPFFS).join(format!("{PIN_PREFIX}{}", std::process::id())))
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes namespaces and pin directories left by bench runs that were
/// killed (their pid is gone). Returns what was removed.
pub fn sweep_stale() -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(entries) = fs::read_dir(BPFFS) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name
                .strip_prefix(PIN_PREFIX)
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !pid_alive(pid) {
                PinDir::remove(&entry.path());
                removed.push(entry.path().display().to_string());
            }
        }
    }
    if let Ok(entries) = fs::read_dir("/run/netns") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            let (digits, role) = rest.split_at(rest.len().saturating_sub(1));
            if !matches!(role, "c" | "h" | "o" | "b") {
                continue;
            }
            let Ok(pid) = digits.parse::<u32>() else {
                continue;
            };
            if !pid_alive(pid) {
                let _ = lab::run("ip", &["netns", "del", &name]);
                removed.push(format!("netns {name}"));
            }
        }
    }
    removed
}

/// ifindex of `ifname` in the calling thread's namespace.
pub fn ifindex_here(ifname: &str) -> Result<u32> {
    havip::dataplane::loader::ifindex_of(ifname).with_context(|| format!("no interface {ifname}"))
}
