//! Standbys use their own HaVip (issue 9), with real keepalived (unicast
//! VRRP): the BACKUP member's ARP request for the HaVip is answered with the
//! virtual MAC and its UDP and TCP to the HaVip reach the MASTER, whose
//! listeners see the standby's own address. After a failover (the master's
//! link goes down, the standby takes over; the old master comes back as the
//! new standby, nopreempt) the same holds the other way round. The master
//! never sees a conflict for its own address: it stays MASTER, keeps the
//! HaVip, and the owner's epoch does not move while the standby talks to it.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use havip::status;
use havip_tests::{
    keepalived::{require_keepalived, Keepalived, Vrrp},
    lab::{self, Netns},
    scenario::{owner_mac, Scratch, Stream, Trio},
    spawn_ready, tcp_exchange, wait_until, TcpEcho,
};

const NET: u8 = 13;
const UDP_PORT: u16 = 9300;
const TCP_PORT: u16 = 9301;
/// Datagrams of one steady-state burst, one every [`INTERVAL`].
const BURST: Duration = Duration::from_millis(1500);
const INTERVAL: Duration = Duration::from_millis(1);
const TCP_EXCHANGES: usize = 5;

/// UDP receiver recording (source, sequence number) of each datagram of a
/// [`Stream`] (the first 8 bytes of the payload, big-endian).
struct SeqSink {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<(Ipv4Addr, u64)>>>,
}

impl SeqSink {
    fn start(ns: &Netns, port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, name) = (stop.clone(), ns.name().to_owned());
        let handle = spawn_ready(ns, "UDP sink", move |ready_tx| {
            let sock = UdpSocket::bind(("0.0.0.0", port))
                .unwrap_or_else(|e| panic!("binding UDP :{port} in {name}: {e}"));
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("read timeout");
            let _ = ready_tx.send(());
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            loop {
                match sock.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(from))) if n >= 8 => {
                        let mut seq = [0u8; 8];
                        seq.copy_from_slice(&buf[..8]);
                        got.push((*from.ip(), u64::from_be_bytes(seq)));
                    }
                    Ok(_) => {}
                    Err(_) if s.load(Ordering::Relaxed) => return got,
                    Err(_) => {}
                }
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops once the socket is drained; the datagrams per source.
    fn stop(mut self) -> BTreeMap<Ipv4Addr, Vec<u64>> {
        self.stop.store(true, Ordering::Relaxed);
        let got = self
            .handle
            .take()
            .map(|h| h.join().expect("UDP sink thread"))
            .unwrap_or_default();
        let mut by_src: BTreeMap<Ipv4Addr, Vec<u64>> = BTreeMap::new();
        for (src, seq) in got {
            by_src.entry(src).or_default().push(seq);
        }
        by_src
    }
}

impl Drop for SeqSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Member<'a> {
    name: &'static str,
    ns: &'a Netns,
    mac: [u8; 6],
    ip: Ipv4Addr,
}

/// What one steady-state phase (one standby talking to one master) showed.
#[derive(Debug)]
struct Phase {
    sent: u64,
    /// Distinct sequence numbers the master received from the standby.
    at_master: usize,
    /// Datagrams anyone else received (wrong member, or a wrong source).
    stray: usize,
    tcp_ok: usize,
    tcp_peers_at_master: Vec<SocketAddr>,
    tcp_peers_at_standby: Vec<SocketAddr>,
    epoch_before: u64,
    epoch_after: u64,
    standby_neigh: String,
}

fn epoch(scratch: &Scratch, vip: Ipv4Addr) -> u64 {
    status::read(&scratch.pin_dir)
        .expect("status")
        .havips
        .into_iter()
        .find(|h| h.address == vip.to_string())
        .map(|h| h.epoch)
        .expect("HaVip in the maps")
}

fn neigh(ns: &Netns, ip: Ipv4Addr) -> String {
    let out = ns
        .exec(&["ip", "neigh", "show", "to", &ip.to_string(), "dev", "eth0"])
        .expect("ip neigh");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn has_address(ns: &Netns, ip: Ipv4Addr) -> bool {
    let out = ns
        .exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        .expect("ip addr");
    String::from_utf8_lossy(&out.stdout).contains(&format!(" {ip}/32 "))
}

/// keepalived's state transitions of `ns` so far, from its log.
fn transitions(scratch: &Scratch, ns: &Netns, state: &str) -> usize {
    let log = std::fs::read_to_string(scratch.dir.join(format!("keepalived-{}.log", ns.name())))
        .unwrap_or_default();
    log.lines()
        .filter(|l| l.contains(&format!("Entering {state} STATE")))
        .count()
}

/// The standby sends a numbered UDP stream to the HaVip and opens TCP
/// connections to it; the master and the standby both listen.
fn phase(scratch: &Scratch, vip: Ipv4Addr, master: &Member, standby: &Member) -> Phase {
    let epoch_before = epoch(scratch, vip);
    let (sink_m, sink_s) = (
        SeqSink::start(master.ns, UDP_PORT),
        SeqSink::start(standby.ns, UDP_PORT),
    );
    let (echo_m, echo_s) = (
        TcpEcho::start(master.ns, TCP_PORT),
        TcpEcho::start(standby.ns, TCP_PORT),
    );
    let stream =
        Stream::start(standby.ns, SocketAddrV4::new(vip, UDP_PORT), INTERVAL, &[]).expect("stream");
    std::thread::sleep(BURST);
    let report = stream.finish().expect("stream report");
    let mut tcp_ok = 0;
    for i in 0..TCP_EXCHANGES {
        let msg = format!("standby {} exchange {i}", standby.name);
        if tcp_exchange(standby.ns, vip, TCP_PORT, msg.as_bytes()) == msg.as_bytes() {
            tcp_ok += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let (got_m, got_s) = (sink_m.stop(), sink_s.stop());
    let at_master = got_m.get(&standby.ip).map_or(0, |v| {
        v.iter().collect::<std::collections::BTreeSet<_>>().len()
    });
    let stray = got_m
        .iter()
        .filter(|(src, _)| **src != standby.ip)
        .map(|(_, v)| v.len())
        .sum::<usize>()
        + got_s.values().map(Vec::len).sum::<usize>();
    Phase {
        sent: report.sent,
        at_master,
        stray,
        tcp_ok,
        tcp_peers_at_master: echo_m.stop(),
        tcp_peers_at_standby: echo_s.stop(),
        epoch_before,
        epoch_after: epoch(scratch, vip),
        standby_neigh: neigh(standby.ns, vip),
    }
}

fn check(
    p: &Phase,
    scratch: &Scratch,
    vip: Ipv4Addr,
    master: &Member,
    standby: &Member,
    master_was_standby: bool,
) {
    println!(
        "standby {} -> master {}: sent {}, master got {} ({:.1}%), stray {}, tcp {}/{}, epoch {} -> {}, standby neigh {:?}",
        standby.name,
        master.name,
        p.sent,
        p.at_master,
        100.0 * p.at_master as f64 / p.sent.max(1) as f64,
        p.stray,
        p.tcp_ok,
        TCP_EXCHANGES,
        p.epoch_before,
        p.epoch_after,
        p.standby_neigh
    );
    assert!(p.sent >= 500, "the stream sent only {} datagrams", p.sent);
    assert!(
        p.at_master as u64 * 100 >= p.sent * 95,
        "only {} of {} datagrams from standby {} reached master {}",
        p.at_master,
        p.sent,
        standby.name,
        master.name
    );
    assert_eq!(p.stray, 0, "datagrams reached the wrong member");
    assert_eq!(p.tcp_ok, TCP_EXCHANGES, "TCP exchanges that echoed");
    let want = SocketAddr::V4(SocketAddrV4::new(standby.ip, 0));
    assert_eq!(p.tcp_peers_at_master.len(), TCP_EXCHANGES);
    assert!(
        p.tcp_peers_at_master.iter().all(|a| a.ip() == want.ip()),
        "the master's TCP peers are not the standby: {:?}",
        p.tcp_peers_at_master
    );
    assert!(
        p.tcp_peers_at_standby.is_empty(),
        "the standby accepted its own connections: {:?}",
        p.tcp_peers_at_standby
    );
    // The standby resolved the HaVip to its virtual MAC (answered in XDP).
    let vmac = lab::mac_string([
        0x02,
        0x48,
        vip.octets()[0],
        vip.octets()[1],
        vip.octets()[2],
        vip.octets()[3],
    ]);
    assert!(
        p.standby_neigh.contains(&vmac),
        "standby's neighbour entry for {vip}: {:?}, want {vmac}",
        p.standby_neigh
    );
    // No conflict at the master: it still holds the HaVip, owns it in the
    // kernel with an unchanged epoch, and never learnt a neighbour for it.
    assert!(has_address(master.ns, vip), "master lost {vip}");
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(master.mac)),
        "owner moved while the standby talked to the HaVip"
    );
    assert_eq!(
        p.epoch_before, p.epoch_after,
        "the standby's traffic moved the HaVip's epoch"
    );
    // A member that was a standby before keeps the entry it learnt then
    // (harmless: its local address wins); one that never was must have none.
    let master_neigh = neigh(master.ns, vip);
    if master_was_standby {
        println!(
            "master {}'s leftover neighbour entry: {master_neigh:?}",
            master.name
        );
    } else {
        assert!(
            master_neigh.is_empty(),
            "master has a neighbour entry for its own HaVip: {master_neigh:?}"
        );
    }
}

#[test]
fn standby_reaches_master_before_and_after_failover() {
    require_keepalived();
    let vrrp = Vrrp {
        version: 3,
        advert_int: 0.5,
        nopreempt: true,
    };
    let trio = Trio::new("hvts", NET, None, false).expect("topology");
    let agent = trio.start_agent().expect("agent");
    let (lab, scratch, vip) = (&trio.lab, &trio.scratch, trio.vip);
    let a = Member {
        name: "a",
        ns: &lab.guests[1].ns,
        mac: trio.a.0,
        ip: trio.a.1,
    };
    let b = Member {
        name: "b",
        ns: &lab.guests[2].ns,
        mac: trio.b.0,
        ip: trio.b.1,
    };
    let owner_is = |m: &Member, t: Duration| {
        let want = lab::mac_string(m.mac);
        wait_until(t, || {
            owner_mac(&scratch.pin_dir, vip).as_deref() == Some(want.as_str())
        })
    };

    // a first, so it wins the first election; then b joins as BACKUP.
    let _ka = Keepalived::start(a.ns, &scratch.dir, a.ip, b.ip, vip, 150, vrrp).expect("ka");
    assert!(
        owner_is(&a, Duration::from_secs(20)),
        "a never took the HaVip; agent log:\n{}",
        agent.log_text()
    );
    let _kb = Keepalived::start(b.ns, &scratch.dir, b.ip, a.ip, vip, 100, vrrp).expect("kb");
    std::thread::sleep(Duration::from_secs(3));
    assert!(owner_is(&a, Duration::from_secs(1)), "b took the HaVip");
    assert!(!has_address(b.ns, vip), "b holds {vip} as BACKUP");
    assert_eq!(transitions(scratch, b.ns, "MASTER"), 0, "b became MASTER");

    let p1 = phase(scratch, vip, &a, &b);
    check(&p1, scratch, vip, &a, &b, false);
    assert_eq!(
        transitions(scratch, a.ns, "MASTER"),
        1,
        "a left MASTER while the standby talked to it"
    );
    assert_eq!(
        transitions(scratch, a.ns, "BACKUP"),
        1,
        "a: only the start-up BACKUP"
    );

    // Failover: a's link goes down, b takes over.
    let down = Instant::now();
    a.ns.exec(&["ip", "link", "set", "eth0", "down"])
        .expect("a down");
    assert!(
        owner_is(&b, Duration::from_secs(20)),
        "b did not take over; agent log:\n{}",
        agent.log_text()
    );
    let failover = down.elapsed();
    // a comes back as the new standby (nopreempt): BACKUP, HaVip removed.
    a.ns.exec(&["ip", "link", "set", "eth0", "up"])
        .expect("a up");
    assert!(
        wait_until(Duration::from_secs(10), || !has_address(a.ns, vip)
            && transitions(scratch, a.ns, "BACKUP") >= 2),
        "a did not come back as BACKUP"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        owner_is(&b, Duration::from_secs(1)),
        "a took the HaVip back"
    );
    let masters_b = transitions(scratch, b.ns, "MASTER");

    let p2 = phase(scratch, vip, &b, &a);
    check(&p2, scratch, vip, &b, &a, true);
    assert_eq!(
        transitions(scratch, b.ns, "MASTER"),
        masters_b,
        "b left MASTER while the new standby talked to it"
    );
    println!(
        "failover (a's link down -> b owns the HaVip): {} ms",
        failover.as_millis()
    );
    drop((_ka, _kb));
}
