//! Network-namespace labs for the demo, the tests and the benchmarks: named
//! namespaces and veth pairs that are removed when their guard drops (also
//! when a test panics), and helpers to run code inside a namespace.
//!
//! Everything here shells out to iproute2/ethtool, as an operator would.

use std::{
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{bail, Context, Result};
pub use havip::{
    mac::mac_string,
    netns::{enter, enter_named},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call: `<prefix><pid>-<n>` (≤ 15 chars
/// when `prefix` is ≤ 4 chars, so it also fits an interface name).
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}-{n}", std::process::id() % 100_000)
}

/// Runs a command, failing with its stderr if it exits non-zero.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name`; fails if it exists.
    pub fn create(name: &str) -> Result<Self> {
        run("ip", &["netns", "add", name])?;
        let ns = Self {
            name: name.to_owned(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace (`ip netns exec`).
    pub fn exec(&self, cmd: &[&str]) -> Result<Output> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        run("ip", &args)
    }

    /// Like [`Netns::exec`] but returns the output whatever the exit status.
    pub fn exec_status(&self, cmd: &[&str]) -> Result<Output> {
        let mut args = vec!["netns", "exec", &self.name];
        args.extend_from_slice(cmd);
        Command::new("ip")
            .args(&args)
            .output()
            .with_context(|| format!("running in {}: {}", self.name, cmd.join(" ")))
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a new thread that has entered this namespace (network
    /// namespace only: the mount namespace and so bpffs stay the host's).
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let path = format!("/run/netns/{}", self.name);
        let handle = std::thread::spawn(move || -> Result<T> {
            enter(&path)?;
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("thread in netns {} panicked", self.name))?
    }

    /// Turns IPv6 off in the namespace (`all` and `default`): no router or
    /// neighbour solicitations among frames a test or benchmark counts.
    pub fn disable_ipv6(&self) -> Result<()> {
        for knob in ["all", "default"] {
            self.exec(&[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{knob}.disable_ipv6=1"),
            ])?;
        }
        Ok(())
    }

    /// Sets the MAC address of `ifname` inside the namespace.
    pub fn set_mac(&self, ifname: &str, mac: [u8; 6]) -> Result<()> {
        self.exec(&["ip", "link", "set", ifname, "address", &mac_string(mac)])?;
        Ok(())
    }

    /// ifindex of `ifname` inside the namespace.
    pub fn ifindex(&self, ifname: &str) -> Result<u32> {
        let out = self.exec(&["cat", &format!("/sys/class/net/{ifname}/ifindex")])?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .with_context(|| format!("ifindex of {ifname} in {}", self.name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, then remove the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    // SAFETY: plain syscall.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Creates veth `a` in `ns_a` paired with `b` in `ns_b`, both up.
pub fn veth(ns_a: &Netns, a: &str, ns_b: &Netns, b: &str) -> Result<()> {
    ns_a.exec(&[
        "ip",
        "link",
        "add",
        a,
        "type",
        "veth",
        "peer",
        "name",
        b,
        "netns",
        ns_b.name(),
    ])?;
    ns_a.exec(&["ip", "link", "set", a, "up"])?;
    ns_b.exec(&["ip", "link", "set", b, "up"])?;
    Ok(())
}

/// One guest: a namespace with `eth0` whose host side is `host_if`.
#[derive(Debug)]
pub struct Guest {
    pub ns: Netns,
    pub host_if: String,
    pub mac: [u8; 6],
    pub ip: std::net::Ipv4Addr,
}

/// Host namespace with a bridge and guests plugged into it, the topology of
/// docs/design.md: XDP goes on the host-side veths, the bridge is the
/// ordinary path.
#[derive(Debug)]
pub struct Lab {
    pub host: Netns,
    pub guests: Vec<Guest>,
    pub prefix: String,
}

/// Prefix length of lab subnets.
pub const LAB_PREFIX_LEN: u8 = 24;

impl Lab {
    /// Host namespace `<prefix>h` with bridge `br0`; no guests yet.
    pub fn new(prefix: &str) -> Result<Self> {
        let host = Netns::create(&format!("{prefix}h"))?;
        host.exec(&["ip", "link", "add", "br0", "type", "bridge"])?;
        host.exec(&["ip", "link", "set", "br0", "up"])?;
        // br_netfilter is built in: keep bridged frames out of iptables.
        for knob in [
            "bridge-nf-call-iptables",
            "bridge-nf-call-ip6tables",
            "bridge-nf-call-arptables",
        ] {
            let _ = host.exec(&["sysctl", "-qw", &format!("net.bridge.{knob}=0")]);
        }
        Ok(Self {
            host,
            guests: Vec::new(),
            prefix: prefix.to_owned(),
        })
    }

    /// Adds guest `name` (namespace `<prefix><name>`, host port `hv-<name>`)
    /// with `mac` and `ip`/24 on its `eth0`. GRO is turned on for the guest
    /// side: XDP_REDIRECT into a veth is dropped unless its peer has GRO or
    /// an XDP program. Tx checksum offload is off so UDP survives redirect.
    pub fn add_guest(
        &mut self,
        name: &str,
        mac: [u8; 6],
        ip: std::net::Ipv4Addr,
    ) -> Result<&Guest> {
        let ns = Netns::create(&format!("{}{name}", self.prefix))?;
        let host_if = format!("hv-{name}");
        veth(&self.host, &host_if, &ns, "eth0")?;
        let mac_s = mac_string(mac);
        ns.exec(&["ip", "link", "set", "eth0", "address", &mac_s])?;
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{ip}/{LAB_PREFIX_LEN}"),
            "dev",
            "eth0",
        ])?;
        ns.exec(&["ethtool", "-K", "eth0", "gro", "on", "tx", "off"])?;
        self.host
            .exec(&["ethtool", "-K", &host_if, "gro", "on", "tx", "off"])?;
        self.host
            .exec(&["ip", "link", "set", &host_if, "master", "br0"])?;
        self.guests.push(Guest {
            ns,
            host_if,
            mac,
            ip,
        });
        self.guests
            .last()
            .ok_or_else(|| anyhow::anyhow!("guest list empty after push"))
    }

    pub fn guest(&self, name: &str) -> Result<&Guest> {
        let ns_name = format!("{}{name}", self.prefix);
        self.guests
            .iter()
            .find(|g| g.ns.name() == ns_name)
            .ok_or_else(|| anyhow::anyhow!("no guest {name}"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Guests before the host: their veths vanish with them.
        self.guests.clear();
    }
}

/// Sends raw Ethernet frames out of `ifname` inside `ns` (AF_PACKET), as a
/// guest would: spoofed sources and malformed frames included.
pub fn send_raw(ns: &Netns, ifname: &str, frames: Vec<Vec<u8>>) -> Result<usize> {
    let ifname = ifname.to_owned();
    ns.run(move || send_raw_here(&ifname, &frames))?
}

/// [`send_raw`] from the calling thread's namespace.
pub fn send_raw_here(ifname: &str, frames: &[Vec<u8>]) -> Result<usize> {
    let ifindex = havip::dataplane::loader::ifindex_of(ifname)
        .ok_or_else(|| anyhow::anyhow!("no interface {ifname}"))?;
    // SAFETY: plain syscalls on an fd we own and close.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        let mut sent = 0;
        for frame in frames {
            let n = libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            if n >= 0 {
                sent += 1;
            }
        }
        libc::close(fd);
        Ok(sent)
    }
}

/// Counts UDP datagrams arriving on `port` inside `ns` until `quiet` passes
/// with nothing received (after at least one) or `limit` passes in total.
/// Runs in the background; join the handle for the count.
pub fn udp_receiver(
    ns: &Netns,
    port: u16,
    quiet: std::time::Duration,
    limit: std::time::Duration,
) -> Result<std::thread::JoinHandle<Result<u64>>> {
    let path = format!("/run/netns/{}", ns.name());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || -> Result<u64> {
        enter(&path)?;
        let socket = std::net::UdpSocket::bind(("0.0.0.0", port))?;
        socket.set_read_timeout(Some(std::time::Duration::from_millis(50)))?;
        let _ = ready_tx.send(());
        let start = std::time::Instant::now();
        let mut last = std::time::Instant::now();
        let mut count = 0u64;
        let mut buf = [0u8; 2048];
        while start.elapsed() < limit {
            match socket.recv(&mut buf) {
                Ok(_) => {
                    count += 1;
                    last = std::time::Instant::now();
                }
                Err(_) if count > 0 && last.elapsed() > quiet => break,
                Err(_) => {}
            }
        }
        Ok(count)
    });
    let _ = ready_rx.recv_timeout(std::time::Duration::from_secs(5));
    Ok(handle)
}

/// Sends `count` UDP datagrams of `size` bytes from inside `ns` to `dst`,
/// paced every `gap`.
pub fn udp_send(
    ns: &Netns,
    dst: std::net::SocketAddrV4,
    count: u64,
    size: usize,
    gap: std::time::Duration,
) -> Result<u64> {
    ns.run(move || -> Result<u64> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        let payload = vec![0x5au8; size];
        let mut sent = 0;
        for _ in 0..count {
            if socket.send_to(&payload, dst).is_ok() {
                sent += 1;
            }
            if !gap.is_zero() {
                std::thread::sleep(gap);
            }
        }
        Ok(sent)
    })?
}
