//! The multi-host fabric without havip: guests on different hosts talk
//! through the kernel VXLAN bridge (the topology works, MTUs fit), and a
//! test etcd in the underlay keeps its data across a stop and a start.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    time::{Duration, Instant},
};

use havip_tests::{
    etcd::{Etcd, ETCD_PID_DIR},
    fabric::{Fabric, VSwitchSpec, UNDERLAY_MTU, VXLAN_IF},
    lab, ping, UdpCounter,
};

fn vswitch() -> VSwitchSpec {
    VSwitchSpec {
        cidr: "10.0.1.0/24".into(),
        vni: 1001,
        gateway_mac: [0x02, 0, 0, 0, 0, 0x01],
    }
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Sends `count` datagrams of `size` bytes from `from` to `dst` and returns
/// how many `dst`'s counter saw from `src`.
fn udp_through(
    fabric: &Fabric,
    from: (usize, &str),
    to: (usize, &str),
    count: u64,
    size: usize,
) -> (u64, u64) {
    let src = fabric.guest(from.0, from.1).expect("sender").ip;
    let dst_guest = fabric.guest(to.0, to.1).expect("receiver");
    let counter = UdpCounter::start(&dst_guest.ns, 7000);
    let sender = &fabric.guest(from.0, from.1).expect("sender").ns;
    let sent = lab::udp_send(
        sender,
        SocketAddrV4::new(dst_guest.ip, 7000),
        count,
        size,
        Duration::from_micros(200),
    )
    .expect("sending UDP");
    let got = counter.collect_for(Duration::from_millis(500));
    (sent, got.get(&src).copied().unwrap_or(0))
}

#[test]
fn fabric_kernel_vxlan_carries_guest_traffic_between_hosts() {
    let started = Instant::now();
    let mut fabric = Fabric::new(3, vswitch()).expect("building a 3-host fabric");
    // The same three guests the multi-host scenarios use.
    let guests = havip_tests::multihost::GUESTS;
    for (host, name, ip, mac) in guests {
        fabric
            .add_guest(host, name, ip, mac)
            .expect("adding a guest");
    }
    println!(
        "fabric of 3 hosts + 3 guests built in {:?}",
        started.elapsed()
    );
    let names = fabric.namespaces();
    assert_eq!(names.len(), 1 + 3 + 3, "underlay, hosts, guests: {names:?}");

    // Names and addresses as documented.
    for n in 1..=3 {
        let h = fabric.host(n).expect("host");
        assert_eq!(h.vtep, Ipv4Addr::new(10, 99, 0, 10 + n as u8));
        let eth0 = |attr: &str| {
            let out = h
                .ns()
                .exec(&["cat", &format!("/sys/class/net/eth0/{attr}")])
                .unwrap_or_else(|e| panic!("eth0 {attr}: {e:#}"));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        assert_eq!(eth0("mtu"), UNDERLAY_MTU.to_string());
        assert_eq!(eth0("address"), lab::mac_string(h.underlay_mac));
    }
    assert_eq!(fabric.port(2, "b").expect("port"), "hv-b");
    assert!(fabric.host(4).is_err(), "h4 does not exist");
    assert!(
        fabric
            .add_guest(1, "x", Ipv4Addr::new(10, 0, 2, 1), [2, 0, 0, 0, 0, 9])
            .is_err(),
        "a guest outside the vSwitch subnet is refused"
    );

    // Underlay reachability: every host reaches the bridge and the others.
    for n in 1..=3 {
        ping(
            fabric.host_ns(n).expect("ns"),
            Ipv4Addr::new(10, 99, 0, 1),
            2,
        );
    }

    // Guests across hosts, over vx0: small pings, then full 1500-byte
    // frames with DF (1472 bytes of ICMP payload): the 1600 underlay MTU
    // carries them encapsulated without fragmentation.
    let vx_before = fabric.host(1).expect("h1").packets(VXLAN_IF).expect("vx0");
    for (from, to) in [
        ((1, "a"), (2, "b")),
        ((1, "a"), (3, "c")),
        ((2, "b"), (3, "c")),
    ] {
        let dst = fabric.guest(to.0, to.1).expect("guest").ip;
        let ns = &fabric.guest(from.0, from.1).expect("guest").ns;
        ping(ns, dst, 3);
        ns.exec(&[
            "ping",
            "-q",
            "-n",
            "-c",
            "2",
            "-i",
            "0.05",
            "-W",
            "2",
            "-M",
            "do",
            "-s",
            "1472",
            &dst.to_string(),
        ])
        .unwrap_or_else(|e| panic!("1500-byte ping {from:?} -> {to:?}: {e:#}"));
    }

    // UDP between hosts, both directions, small and MTU-sized.
    for (from, to, size) in [
        ((1, "a"), (2, "b"), 64),
        ((3, "c"), (1, "a"), 1472),
        ((2, "b"), (3, "c"), 512),
    ] {
        let (sent, got) = udp_through(&fabric, from, to, 300, size);
        println!("UDP {from:?} -> {to:?} ({size} B): {got}/{sent}");
        assert_eq!(sent, 300, "sender {from:?} could not send");
        assert_eq!(
            got, sent,
            "UDP {from:?} -> {to:?} ({size} B) lost datagrams"
        );
    }

    // The traffic from h1 really went through the kernel VXLAN device.
    let vx_after = fabric.host(1).expect("h1").packets(VXLAN_IF).expect("vx0");
    let tx = vx_after.1 - vx_before.1;
    assert!(tx >= 300 + 10, "h1's vx0 sent only {tx} packets");

    drop(fabric);
    for ns in &names {
        assert!(!netns_exists(ns), "namespace {ns} left behind");
    }
}

#[test]
fn fabric_etcd_in_underlay_survives_stop_and_restart() {
    let fabric = Fabric::new(2, vswitch()).expect("building a 2-host fabric");
    let mut etcd = fabric.start_etcd().expect("starting etcd in the underlay");
    println!(
        "etcd at {} healthy after {:?}",
        etcd.endpoint(),
        etcd.last_start
    );
    let pid = etcd.pid().expect("running etcd has a pid");
    let pid_file = Path::new(ETCD_PID_DIR).join(format!("{}.pid", etcd.name()));
    assert_eq!(
        std::fs::read_to_string(&pid_file).expect("pid file").trim(),
        pid.to_string()
    );
    assert!(etcd.healthy());

    // A host reaches it over the underlay, as its agent will.
    let h2 = fabric.host_ns(2).expect("h2");
    etcd.ctl(Some(h2), &["put", "/havip/test/owners/hv-1", "h2"])
        .expect("put from h2");
    assert_eq!(
        etcd.get("/havip/test/owners/hv-1").expect("get"),
        Some("h2".into())
    );
    assert_eq!(etcd.get("/havip/test/missing").expect("get"), None);

    // Stopped: unreachable, pid file gone, data dir kept.
    etcd.stop().expect("stopping etcd");
    assert!(etcd.pid().is_none());
    assert!(!etcd.healthy(), "etcd still answers after stop");
    assert!(etcd
        .ctl(Some(h2), &["get", "/havip/test/owners/hv-1"])
        .is_err());
    assert!(!pid_file.exists(), "pid file kept after stop");
    assert!(etcd.data_dir().join("member").is_dir(), "data dir lost");

    // Started again on the same data dir: the key survived.
    etcd.start().expect("restarting etcd");
    println!("etcd restarted, healthy after {:?}", etcd.last_start);
    assert_ne!(etcd.pid(), Some(pid), "a new process");
    assert_eq!(
        etcd.get("/havip/test/owners/hv-1")
            .expect("get after restart"),
        Some("h2".into())
    );
    etcd.put("/havip/test/owners/hv-1", "h1")
        .expect("put after restart");
    assert_eq!(
        etcd.ctl(
            Some(h2),
            &["get", "--print-value-only", "/havip/test/owners/hv-1"]
        )
        .expect("get from h2")
        .trim(),
        "h1"
    );

    // Drop: process killed, data removed.
    let dir = etcd.data_dir();
    let new_pid = etcd.pid().expect("pid");
    drop(etcd);
    assert!(!dir.exists(), "etcd data dir left behind");
    assert!(
        !Path::new(&format!("/proc/{new_pid}")).exists(),
        "etcd still running"
    );
    assert!(!pid_file.exists(), "pid file left behind");
}

#[test]
fn fabric_etcd_on_localhost_restarts_with_its_data() {
    let mut etcd = Etcd::start_local().expect("starting etcd on 127.0.0.1");
    etcd.put("k", "v1").expect("put");
    etcd.kill();
    assert!(!etcd.healthy(), "killed etcd still answers");
    etcd.start().expect("restart after SIGKILL");
    assert_eq!(etcd.get("k").expect("get"), Some("v1".into()));
}

#[test]
fn fabric_refuses_bad_specs() {
    assert!(Fabric::new(0, vswitch()).is_err(), "no hosts");
    let mut bad = vswitch();
    bad.vni = 1 << 24;
    assert!(Fabric::new(1, bad).is_err(), "VNI above 24 bits");
    let mut bad = vswitch();
    bad.cidr = "10.0.1.0".into();
    assert!(Fabric::new(1, bad).is_err(), "cidr without a prefix length");
    let mut fabric = Fabric::new(1, vswitch()).expect("1-host fabric");
    let mac = [0x02, 0, 0, 0, 0x0a, 2];
    fabric
        .add_guest(1, "a", Ipv4Addr::new(10, 0, 1, 20), mac)
        .expect("guest a");
    assert!(
        fabric
            .add_guest(1, "a", Ipv4Addr::new(10, 0, 1, 21), mac)
            .is_err(),
        "a guest name used twice"
    );
    assert!(
        fabric
            .add_guest(
                1,
                "name-too-long-for-a-port",
                Ipv4Addr::new(10, 0, 1, 22),
                mac
            )
            .is_err(),
        "a name that does not fit an interface name"
    );
    let names = fabric.namespaces();
    drop(fabric);
    for ns in &names {
        assert!(!netns_exists(ns), "namespace {ns} left behind");
    }
}
