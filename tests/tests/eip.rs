//! EIP end to end, on veths with the program attached natively: an
//! "internet" namespace behind the uplink reaches the HaVip's owner through
//! the EIP with TCP, UDP and ping, and the answers come back from the EIP
//! (the client's stack checks every checksum, and its connected sockets
//! take answers only from the EIP). A claim by the standby (a gratuitous
//! ARP sent from its namespace, and a real keepalived failover) moves the
//! EIP's traffic; after unassociating, nothing is translated. Topology:
//! `havip_tests::eiplab`.

use std::time::Duration;

use havip_common::Handled;
use havip_tests::{
    eiplab::{EipLab, UdpEcho, EIP, INTERNET_IP},
    fixtures, icmp_in_echos,
    keepalived::{Keepalived, Vrrp},
    lab, ping,
    scenario::Scratch,
    tcp_exchange, wait_until, TcpEcho,
};

const TCP_PORT: u16 = 8080;
const UDP_PORT: u16 = 5353;

/// TCP connections and a UDP exchange from the internet to the EIP, with
/// echo servers on both members: returns (TCP connections a, b accepted,
/// UDP datagrams a, b answered). Panics unless every exchange completed.
fn exchange(lab: &EipLab, rounds: usize) -> (usize, usize, usize, usize) {
    let (a, b) = (&lab.ha.guest("a").ns, &lab.ha.guest("b").ns);
    let (tcp_a, tcp_b) = (TcpEcho::start(a, TCP_PORT), TcpEcho::start(b, TCP_PORT));
    let (udp_a, udp_b) = (UdpEcho::start(a, UDP_PORT), UdpEcho::start(b, UDP_PORT));
    for i in 0..rounds {
        let msg = format!("tcp round {i} to the EIP").into_bytes();
        let echoed = tcp_exchange(&lab.internet, EIP, TCP_PORT, &msg);
        assert_eq!(echoed, msg, "TCP echo through the EIP, round {i}");
        let msg = format!("udp round {i} to the EIP").into_bytes();
        let answer = lab.udp_exchange(EIP, UDP_PORT, &msg, Duration::from_secs(3));
        assert_eq!(
            answer.as_deref(),
            Some(&msg[..]),
            "UDP answer from {EIP}:{UDP_PORT}, round {i}"
        );
    }
    let udp_from = |peers: Vec<std::net::SocketAddrV4>| {
        peers.iter().filter(|p| *p.ip() == INTERNET_IP).count()
    };
    (
        from_internet(tcp_a.stop()),
        from_internet(tcp_b.stop()),
        udp_from(udp_a.stop()),
        udp_from(udp_b.stop()),
    )
}

/// How many of the TCP `peers` are the internet host.
fn from_internet(peers: Vec<std::net::SocketAddr>) -> usize {
    peers
        .iter()
        .filter(|p| p.ip() == std::net::IpAddr::V4(INTERNET_IP))
        .count()
}

/// The internet host pings the EIP 5 times: returns the echo requests (a,
/// b) received meanwhile. Panics unless every ping was answered.
fn ping_eip(lab: &EipLab) -> (u64, u64) {
    let (a, b) = (&lab.ha.guest("a").ns, &lab.ha.guest("b").ns);
    let (a0, b0) = (icmp_in_echos(a), icmp_in_echos(b));
    ping(&lab.internet, EIP, 5);
    (icmp_in_echos(a) - a0, icmp_in_echos(b) - b0)
}

#[test]
fn internet_reaches_the_owner_through_the_eip_and_follows_a_claim() {
    let mut lab = EipLab::new(61);
    let before = lab.ha.counters();

    // TCP, UDP and ping through the EIP reach a (the owner), answers come
    // back from the EIP.
    let rounds = 3;
    let (tcp_a, tcp_b, udp_a, udp_b) = exchange(&lab, rounds);
    assert_eq!((tcp_a, tcp_b), (rounds, 0), "TCP connections (a, b)");
    assert_eq!((udp_a, udp_b), (rounds, 0), "UDP datagrams answered (a, b)");
    assert_eq!(
        ping_eip(&lab),
        (5, 0),
        "echo requests to the EIP received by (a, b)"
    );
    let moved = lab.ha.counters();
    let dnat = moved.get(Handled::EipDnat).packets - before.get(Handled::EipDnat).packets;
    let snat = moved.get(Handled::EipSnat).packets - before.get(Handled::EipSnat).packets;
    assert!(
        dnat >= 5 + 2 * rounds as u64 && snat >= 5 + 2 * rounds as u64,
        "every exchange crossed both translations: eip_dnat +{dnat}, eip_snat +{snat}"
    );

    // The standby claims the HaVip: the EIP's traffic goes to b, and b's
    // answers leave from the EIP. No ARP on the internet side.
    let b_guest = lab.ha.guest("b");
    lab::send_raw(
        &b_guest.ns,
        "eth0",
        vec![fixtures::garp(b_guest.mac, lab.ha.havip)],
    )
    .expect("sending b's claim");
    assert!(
        wait_until(Duration::from_secs(3), || lab.ha.owner_name() == "b"),
        "b's claim must make it the owner, owner is {}",
        lab.ha.owner_name()
    );
    let (tcp_a, tcp_b, udp_a, udp_b) = exchange(&lab, rounds);
    assert_eq!((tcp_a, tcp_b), (0, rounds), "TCP after the claim (a, b)");
    assert_eq!((udp_a, udp_b), (0, rounds), "UDP after the claim (a, b)");
    assert_eq!(
        ping_eip(&lab),
        (0, 5),
        "echo requests after the claim (a, b)"
    );

    // Unassociated: nothing is translated any more.
    lab.unassociate();
    let (a, b) = (&lab.ha.guest("a").ns, &lab.ha.guest("b").ns);
    let before = lab.ha.counters();
    let udp_b = UdpEcho::start(b, UDP_PORT);
    let answer = lab.udp_exchange(EIP, UDP_PORT, b"after", Duration::from_millis(500));
    assert_eq!(answer, None, "no answer through an unassociated EIP");
    assert!(udp_b.stop().is_empty(), "b received nothing for the EIP");
    let (a0, b0) = (icmp_in_echos(a), icmp_in_echos(b));
    let eip = EIP.to_string();
    let out = lab
        .internet
        .exec_status(&["ping", "-q", "-n", "-c", "2", "-i", "0.1", "-W", "1", &eip])
        .expect("running ping");
    assert!(
        !out.status.success(),
        "ping through an unassociated EIP must fail"
    );
    assert_eq!(
        (icmp_in_echos(a) - a0, icmp_in_echos(b) - b0),
        (0, 0),
        "no echo request reaches a member"
    );
    let after = lab.ha.counters();
    for h in [Handled::EipDnat, Handled::EipSnat] {
        assert_eq!(
            after.get(h).packets,
            before.get(h).packets,
            "{} must not move once unassociated",
            h.name()
        );
    }

    // Associated again: the EIP works at once.
    lab.associate();
    let b = &lab.ha.guest("b").ns;
    let udp_b = UdpEcho::start(b, UDP_PORT);
    let answer = lab.udp_exchange(EIP, UDP_PORT, b"again", Duration::from_secs(3));
    assert_eq!(answer.as_deref(), Some(&b"again"[..]), "re-associated EIP");
    assert_eq!(udp_b.stop().len(), 1, "b answered once");
}

/// TCP connections and pings from the internet to the EIP: returns the
/// connections and echo requests (a, b) received. Panics unless every
/// connection echoed and every ping was answered (from the EIP: TCP
/// connects only if the SYN-ACK comes from it).
fn tcp_and_ping(lab: &EipLab, rounds: usize) -> ((usize, usize), (u64, u64)) {
    let (a, b) = (&lab.ha.guest("a").ns, &lab.ha.guest("b").ns);
    let (tcp_a, tcp_b) = (TcpEcho::start(a, TCP_PORT), TcpEcho::start(b, TCP_PORT));
    for i in 0..rounds {
        let msg = format!("tcp round {i}").into_bytes();
        assert_eq!(tcp_exchange(&lab.internet, EIP, TCP_PORT, &msg), msg);
    }
    let tcp = (from_internet(tcp_a.stop()), from_internet(tcp_b.stop()));
    (tcp, ping_eip(lab))
}

#[test]
fn the_eip_follows_a_real_keepalived_failover() {
    let lab = EipLab::for_keepalived(62);
    let scratch = Scratch::new("hvte").expect("scratch dir");
    let vrrp = Vrrp {
        version: 3,
        advert_int: 0.5,
        nopreempt: false,
    };
    let (a, b, vip) = (lab.ha.guest("a"), lab.ha.guest("b"), lab.ha.havip);
    let ka = Keepalived::start(&a.ns, &scratch.dir, a.ip, b.ip, vip, 150, vrrp)
        .expect("keepalived in a");
    let has_vip = |ns: &lab::Netns| {
        ns.exec(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {vip}/32 ")))
            .unwrap_or(false)
    };
    assert!(
        wait_until(Duration::from_secs(20), || has_vip(&a.ns)),
        "keepalived never made a MASTER"
    );
    let _kb = Keepalived::start(&b.ns, &scratch.dir, b.ip, a.ip, vip, 100, vrrp)
        .expect("keepalived in b");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(lab.ha.owner_name(), "a", "a (MASTER) owns the HaVip");
    let rounds = 3;
    assert_eq!(
        tcp_and_ping(&lab, rounds),
        ((rounds, 0), (5, 0)),
        "a serves the EIP"
    );

    // a's keepalived stops: b becomes MASTER, announces the HaVip with its
    // gratuitous ARPs, and the EIP's traffic follows with no ARP outside.
    drop(ka);
    assert!(
        wait_until(Duration::from_secs(20), || lab.ha.owner_name() == "b"),
        "b never took the HaVip after a's keepalived stopped; owner {}",
        lab.ha.owner_name()
    );
    assert!(has_vip(&b.ns), "b (MASTER) holds the HaVip");
    assert_eq!(
        tcp_and_ping(&lab, rounds),
        ((0, rounds), (0, 5)),
        "b serves the EIP after the failover"
    );
}
