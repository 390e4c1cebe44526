//! Real keepalived (unicast VRRP) in two instances of a [`Lab`], the agent
//! in the host namespace, and a numbered UDP stream from a client: measures
//! how traffic follows the VRRP master through a failure and a recovery.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::{
    lab::{self, enter},
    scenario::{owner_mac, Scratch, Stream, Trio},
};

/// Panics unless the `keepalived` binary runs (`cargo xtask setup`
/// installs it): a missing peer is a failed test, never a skipped one.
pub fn require_keepalived() {
    assert!(
        std::process::Command::new("keepalived")
            .arg("--version")
            .output()
            .is_ok(),
        "keepalived is not installed (cargo xtask setup installs it)"
    );
}

/// VRRP settings of one run.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Vrrp {
    /// 2 or 3 (3 allows sub-second adverts).
    pub version: u8,
    pub advert_int: f64,
    pub nopreempt: bool,
}

/// keepalived in one namespace; stopped on drop.
pub struct Keepalived {
    child: Child,
    pub conf: PathBuf,
}

impl Keepalived {
    /// Starts keepalived in `ns` as a BACKUP with `priority`, announcing
    /// `vip` and talking unicast VRRP to `peer`.
    pub fn start(
        ns: &lab::Netns,
        dir: &std::path::Path,
        own_ip: Ipv4Addr,
        peer: Ipv4Addr,
        vip: Ipv4Addr,
        priority: u8,
        vrrp: Vrrp,
    ) -> Result<Self> {
        let name = ns.name().to_owned();
        let conf = dir.join(format!("keepalived-{name}.conf"));
        let text = format!(
            "global_defs {{\n  router_id {name}\n  vrrp_version {version}\n  vrrp_garp_master_repeat 3\n  vrrp_garp_master_delay 1\n  script_user root\n}}\n\
             vrrp_instance HAVIP {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {adv}\n{nopreempt}\
               unicast_src_ip {own_ip}\n  unicast_peer {{\n    {peer}\n  }}\n  virtual_ipaddress {{\n    {vip}/32 dev eth0\n  }}\n}}\n",
            version = vrrp.version,
            adv = vrrp.advert_int,
            nopreempt = if vrrp.nopreempt { "  nopreempt\n" } else { "" },
        );
        std::fs::write(&conf, text)?;
        let log = std::fs::File::create(dir.join(format!("keepalived-{name}.log")))?;
        let child = ns
            .command("keepalived")
            .args(["-n", "-l", "-D", "--vrrp", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join(format!("keepalived-{name}.pid")))
            .arg("-r")
            .arg(dir.join(format!("keepalived-{name}-vrrp.pid")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting keepalived (apt-get install keepalived)")?;
        Ok(Self { child, conf })
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        // SAFETY: signal to our own child; keepalived stops its children.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one failover run showed.
#[derive(Clone, Debug, Serialize)]
pub struct FailoverReport {
    pub vrrp: Vrrp,
    /// Time from the agent being ready to keepalived's first master owning the HaVip.
    pub election_ms: u64,
    pub sent: u64,
    pub received_a: usize,
    pub received_b: usize,
    /// Datagrams sent after a's link went down that reached a (must be 0).
    pub to_a_while_down: usize,
    /// Longest run of datagrams nobody received around the failure.
    pub loss_window_ms: f64,
    /// Who is master after a came back: "a" (preempted back) or "b".
    pub master_after_recovery: String,
    /// Loss window of the switch back (preempt), 0 without one.
    pub recovery_loss_window_ms: f64,
    /// TCP connections to the HaVip: who answered before and after failover.
    pub tcp_before: String,
    pub tcp_after: String,
}

fn tcp_server(ns: &lab::Netns, port: u16, name: &'static str) -> Result<()> {
    let path = format!("/run/netns/{}", ns.name());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || -> Result<()> {
        enter(&path)?;
        let l = TcpListener::bind(("0.0.0.0", port))?;
        let _ = tx.send(());
        // Lives as long as the namespace: accept errors end it.
        for conn in l.incoming() {
            let mut c = conn?;
            let _ = c.write_all(name.as_bytes());
        }
        Ok(())
    });
    let _ = rx.recv_timeout(Duration::from_secs(5));
    Ok(())
}

fn tcp_ask(ns: &lab::Netns, dst: SocketAddrV4) -> Result<String> {
    ns.run(move || -> Result<String> {
        let mut s = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })?
}

fn wait_owner(
    scratch: &Scratch,
    vip: Ipv4Addr,
    mac: [u8; 6],
    timeout: Duration,
) -> Result<Duration> {
    let want = lab::mac_string(mac);
    let start = Instant::now();
    while start.elapsed() < timeout {
        if owner_mac(&scratch.pin_dir, vip).as_deref() == Some(want.as_str()) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("owner of {vip} did not become {want} within {timeout:?}")
}

/// Runs the whole scenario: elect, fail a (link down), recover a.
///
/// # Errors
/// Set-up failures, or the HaVip not following the VRRP master.
pub fn failover(vrrp: Vrrp) -> Result<FailoverReport> {
    // keepalived adds the HaVip to its master's eth0 itself.
    let trio = Trio::new("hvtk", 9, None, false)?;
    let agent = trio.start_agent()?;
    let (lab, scratch, vip, a, b) = (&trio.lab, &trio.scratch, trio.vip, trio.a, trio.b);
    let (ns_c, ns_a, ns_b) = (&lab.guests[0].ns, &lab.guests[1].ns, &lab.guests[2].ns);
    tcp_server(ns_a, 9100, "a")?;
    tcp_server(ns_b, 9100, "b")?;
    let ready = Instant::now();
    // a first: with nopreempt, whoever wins the first election keeps the
    // HaVip, and on a loaded machine b could otherwise win it.
    let _ka = Keepalived::start(ns_a, &scratch.dir, a.1, b.1, vip, 150, vrrp)?;
    wait_owner(scratch, vip, a.0, Duration::from_secs(20))
        .with_context(|| format!("first election; agent log:\n{}", agent.log_text()))?;
    let election_ms = ready.elapsed().as_millis() as u64;
    let _kb = Keepalived::start(ns_b, &scratch.dir, b.1, a.1, vip, 100, vrrp)?;
    // Let b settle as backup (it must not take the HaVip from a).
    std::thread::sleep(Duration::from_secs_f64((vrrp.advert_int * 4.0).max(1.0)));
    wait_owner(scratch, vip, a.0, Duration::from_secs(5)).context("b took the HaVip from a")?;

    let interval = Duration::from_millis(1);
    let dst = SocketAddrV4::new(vip, 9000);
    let tcp_before = tcp_ask(ns_c, SocketAddrV4::new(vip, 9100))?;
    let stream = Stream::start(ns_c, dst, interval, &[("a", ns_a), ("b", ns_b)])?;
    std::thread::sleep(Duration::from_millis(500));
    ns_a.exec(&["ip", "link", "set", "eth0", "down"])?;
    let fail_seq = stream.approx_seq(interval);
    wait_owner(scratch, vip, b.0, Duration::from_secs(20)).context("failover to b")?;
    std::thread::sleep(Duration::from_millis(300));
    let tcp_after = tcp_ask(ns_c, SocketAddrV4::new(vip, 9100))?;
    ns_a.exec(&["ip", "link", "set", "eth0", "up"])?;
    let recover_seq = stream.approx_seq(interval);
    let master_after_recovery = if vrrp.nopreempt {
        // Several advert intervals: a must stay backup.
        std::thread::sleep(Duration::from_secs_f64((vrrp.advert_int * 5.0).max(1.5)));
        if owner_mac(&scratch.pin_dir, vip) == Some(lab::mac_string(b.0)) {
            "b"
        } else {
            "a"
        }
    } else {
        wait_owner(scratch, vip, a.0, Duration::from_secs(20)).context("preempt back to a")?;
        std::thread::sleep(Duration::from_millis(300));
        "a"
    }
    .to_owned();
    std::thread::sleep(Duration::from_millis(300));
    let report = stream.finish()?;

    // Loss windows: the longest run nobody received, in each phase.
    let window = |from: u64, to: u64| -> f64 {
        let mut got = std::collections::BTreeSet::new();
        for v in report.received.values() {
            for (s, _) in v {
                if *s >= from && *s < to {
                    got.insert(*s);
                }
            }
        }
        let (mut longest, mut run) = (0u64, 0u64);
        let last = got.iter().next_back().copied().unwrap_or(from);
        for s in from..=last {
            if got.contains(&s) {
                run = 0;
            } else {
                run += 1;
                longest = longest.max(run);
            }
        }
        longest as f64 * interval.as_secs_f64() * 1000.0
    };
    let to_a_while_down = report.received.get("a").map_or(0, |v| {
        v.iter()
            .filter(|(s, _)| *s > fail_seq + 5 && *s < recover_seq)
            .count()
    });
    Ok(FailoverReport {
        vrrp,
        election_ms,
        sent: report.sent,
        received_a: report.count("a"),
        received_b: report.count("b"),
        to_a_while_down,
        loss_window_ms: window(fail_seq.saturating_sub(50), recover_seq),
        master_after_recovery,
        recovery_loss_window_ms: window(recover_seq, report.sent),
        tcp_before,
        tcp_after,
    })
}
