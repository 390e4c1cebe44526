//! VPC routes with a HaVip next hop, end to end through the API of a real
//! agent: a client whose route to `172.16.<net>.0/24` goes via the vSwitch
//! gateway (a static neighbour for the gateway MAC) sends UDP there; the
//! HaVip's owner receives it (its stack takes the prefix as local, so its
//! sockets see the datagrams with the client's source and the routed
//! destination); after the standby's claim the standby receives it; the
//! most specific of two routes wins; deleting the route stops it; the
//! quota of 5 routes per VPC is enforced by the API; with real keepalived
//! in the owner and the standby, stopping the master's keepalived moves the
//! routed traffic to the new master. Without a route the
//! bridge floods the gateway-MAC frames and no guest accepts them.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::Path,
    time::{Duration, Instant},
};

use aya::maps::{lpm_trie::LpmTrie, Map, MapData};
use havip::{
    api::Client,
    model::{CreateRoute, DeleteRoute, Ipv4Cidr, RouteEntry},
};
use havip_common::{names, route_scope, RouteNextHop, RoutePrefix};
use havip_tests::{
    frames,
    keepalived::{Keepalived, Vrrp},
    lab,
    scenario::{lab_config, owner_mac, AgentProcess, LabHavip, Stream, Trio},
    wait_until,
};

/// One reconcile of the agent, with margin: what an API change may take to
/// reach the maps.
const RECONCILE: Duration = Duration::from_secs(3);
const WINDOW: Duration = Duration::from_millis(700);
const GATEWAY_MAC: &str = "02:00:00:00:00:01";

/// The trio (c, a, b in `10.0.<net>.0/24`) with two HaVips bound to a and
/// b: `.100` (`havip-rt1`, owner a) and `.101` (`havip-rt2`, owner b);
/// c routes `172.16.<net>.0/24` via the gateway, a and b take that prefix
/// as local. The agent is started.
struct Routed {
    t: Trio,
    agent: AgentProcess,
    client: Client,
    net: u8,
}

impl Routed {
    fn new(tag: &str, net: u8) -> Self {
        let t = Trio::new(tag, net, None, false).expect("topology");
        let havip = |id: &str, last: u8, master: &str| LabHavip {
            id: id.into(),
            address: Ipv4Addr::new(10, 0, net, last),
            members: vec!["a".into(), "b".into()],
            master: Some(master.into()),
        };
        let config = lab_config(
            &t.scratch,
            &t.lab,
            &format!("10.0.{net}.0/24"),
            &[havip("havip-rt1", 100, "a"), havip("havip-rt2", 101, "b")],
        );
        std::fs::write(&t.config, config).expect("writing the config");
        let gw = format!("10.0.{net}.1");
        let dest = format!("172.16.{net}.0/24");
        let c = &t.lab.guests[0].ns;
        for cmd in [
            vec![
                "ip",
                "neigh",
                "replace",
                &gw,
                "lladdr",
                GATEWAY_MAC,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
            vec!["ip", "route", "add", &dest, "via", &gw],
        ] {
            c.exec(&cmd)
                .unwrap_or_else(|e| panic!("{}: {e:#}", cmd.join(" ")));
        }
        for g in &t.lab.guests[1..] {
            g.ns.exec(&["ip", "route", "add", "local", &dest, "dev", "lo"])
                .expect("local route");
        }
        let agent = t.start_agent().expect("agent");
        let client = Client::unix(t.scratch.socket());
        Self {
            t,
            agent,
            client,
            net,
        }
    }

    fn dest(&self, last: u8) -> Ipv4Addr {
        Ipv4Addr::new(172, 16, self.net, last)
    }

    /// Creates a route in the lab's VPC; returns its id.
    fn create(&self, destination: &str, havip: &str) -> String {
        let r: RouteEntry = self
            .client
            .apply(create_op(destination, havip))
            .unwrap_or_else(|e| panic!("CreateRoute {destination} via {havip}: {e}"));
        r.id
    }

    /// Waits until `ROUTES` holds `n` entries; returns how long it took.
    fn routes_become(&self, n: usize) -> Duration {
        let start = Instant::now();
        assert!(
            wait_until(RECONCILE, || routes_in_map(&self.t.scratch.pin_dir)
                == Some(n)),
            "ROUTES does not hold {n} entries (holds {:?}); agent log:\n{}",
            routes_in_map(&self.t.scratch.pin_dir),
            self.agent.log_text()
        );
        start.elapsed()
    }

    /// Sends to `dst` from c for [`WINDOW`]: (sent, at a, at b).
    fn traffic(&self, dst: Ipv4Addr, port: u16) -> (u64, usize, usize) {
        let g = &self.t.lab.guests;
        let stream = Stream::start(
            &g[0].ns,
            SocketAddrV4::new(dst, port),
            Duration::from_millis(1),
            &[("a", &g[1].ns), ("b", &g[2].ns)],
        )
        .expect("stream");
        std::thread::sleep(WINDOW);
        let r = stream.finish().expect("report");
        println!(
            "traffic to {dst}: sent {}, a {}, b {}",
            r.sent,
            r.count("a"),
            r.count("b")
        );
        (r.sent, r.count("a"), r.count("b"))
    }

    /// Nearly everything c sends to `dst` reaches `to` ("a" or "b"),
    /// nothing the other one.
    fn assert_flows_to(&self, dst: Ipv4Addr, to: &str, port: u16) {
        let (sent, a, b) = self.traffic(dst, port);
        let (got, other) = if to == "a" { (a, b) } else { (b, a) };
        assert!(
            got as u64 * 100 >= sent * 95,
            "only {got} of {sent} datagrams to {dst} reached {to}; agent log:\n{}",
            self.agent.log_text()
        );
        assert_eq!(other, 0, "datagrams to {dst} reached the other member");
    }

    fn assert_no_traffic(&self, dst: Ipv4Addr, port: u16) {
        let (sent, a, b) = self.traffic(dst, port);
        assert!(sent > 100, "the stream sent only {sent}");
        assert_eq!(
            (a, b),
            (0, 0),
            "datagrams to {dst} delivered without a route"
        );
    }
}

fn create_op(destination: &str, havip: &str) -> CreateRoute {
    CreateRoute {
        id: None,
        vpc: "vpc-lab".into(),
        destination: destination.parse::<Ipv4Cidr>().expect("CIDR"),
        next_hop_havip: havip.into(),
    }
}

/// Entries in the pinned `ROUTES`, `None` if it cannot be read.
fn routes_in_map(pin_dir: &Path) -> Option<usize> {
    let data = MapData::from_pin(pin_dir.join(names::ROUTES)).ok()?;
    let map = Map::from_map_data(data).ok()?;
    let trie: LpmTrie<MapData, RoutePrefix, RouteNextHop> = map.try_into().ok()?;
    // Each route is stored twice (VPC and next-hop vSwitch scope): count
    // the VPC-scoped ones.
    Some(
        trie.keys()
            .filter_map(Result::ok)
            .filter(|k| k.data().scope == route_scope::VPC.to_be_bytes())
            .count(),
    )
}

#[test]
fn routed_traffic_reaches_the_owner_follows_a_claim_and_stops_with_the_route() {
    let r = Routed::new("hvtrt", 41);
    let dst = r.dest(9);
    r.assert_no_traffic(dst, 9410);

    let id = r.create(&format!("172.16.{}.0/24", r.net), "havip-rt1");
    r.routes_become(1);
    r.assert_flows_to(dst, "a", 9411);

    // The standby claims the next-hop HaVip (gratuitous ARP, as keepalived
    // sends on becoming master): the route follows at once.
    let b = r.t.lab.guest("b").expect("guest b");
    let vip = Ipv4Addr::new(10, 0, r.net, 100);
    lab::send_raw(&b.ns, "eth0", vec![frames::garp(b.mac, vip).bytes()]).expect("garp");
    let want = lab::mac_string(b.mac);
    assert!(
        wait_until(Duration::from_secs(2), || {
            owner_mac(&r.t.scratch.pin_dir, vip).as_deref() == Some(want.as_str())
        }),
        "b did not take over {vip}"
    );
    r.assert_flows_to(dst, "b", 9412);

    let deleted = Instant::now();
    let _: havip::api::Deleted = r.client.apply(DeleteRoute { id }).expect("DeleteRoute");
    r.routes_become(0);
    println!(
        "route gone from ROUTES {:?} after the API answered",
        deleted.elapsed()
    );
    r.assert_no_traffic(dst, 9413);
}

#[test]
fn the_most_specific_route_wins_and_the_quota_holds() {
    let r = Routed::new("hvtrq", 42);
    r.create(&format!("172.16.{}.0/24", r.net), "havip-rt1");
    r.create(&format!("172.16.{}.7/32", r.net), "havip-rt2");
    r.routes_become(2);
    r.assert_flows_to(r.dest(7), "b", 9420);
    r.assert_flows_to(r.dest(9), "a", 9421);

    for n in 0..3 {
        r.create(&format!("172.{}.0.0/16", 17 + n), "havip-rt1");
    }
    r.routes_become(5);
    let err = r
        .client
        .apply::<RouteEntry>(create_op("172.30.0.0/16", "havip-rt2"))
        .expect_err("a sixth route in the VPC must be refused");
    assert_eq!(err.code(), Some("QuotaExceeded.HaVipRoutesPerVpc"), "{err}");
    assert_eq!(r.client.list_routes().expect("routes").len(), 5);
    assert_eq!(
        routes_in_map(&r.t.scratch.pin_dir),
        Some(5),
        "ROUTES unchanged"
    );
    // The routes still route.
    r.assert_flows_to(r.dest(7), "b", 9422);
}

#[test]
fn routed_traffic_follows_a_keepalived_failover() {
    let r = Routed::new("hvtrk", 43);
    let vip = Ipv4Addr::new(10, 0, r.net, 100);
    let (a, b) = (
        r.t.lab.guest("a").expect("a"),
        r.t.lab.guest("b").expect("b"),
    );
    let vrrp = Vrrp {
        version: 3,
        advert_int: 0.5,
        nopreempt: false,
    };
    let dir = &r.t.scratch.dir;
    let owner_is = |mac: [u8; 6], within: Duration| {
        let want = lab::mac_string(mac);
        wait_until(within, || {
            owner_mac(&r.t.scratch.pin_dir, vip).as_deref() == Some(want.as_str())
        })
    };
    let ka = Keepalived::start(&a.ns, dir, a.ip, b.ip, vip, 150, vrrp).expect("keepalived a");
    let _kb = Keepalived::start(&b.ns, dir, b.ip, a.ip, vip, 100, vrrp).expect("keepalived b");
    assert!(
        owner_is(a.mac, Duration::from_secs(10)),
        "a does not own {vip}"
    );
    r.create(&format!("172.16.{}.0/24", r.net), "havip-rt1");
    r.routes_become(1);
    let dst = r.dest(9);
    r.assert_flows_to(dst, "a", 9430);

    // a's keepalived stops (priority 0 advert): b becomes MASTER and
    // announces the HaVip with gratuitous ARPs.
    let stopped = Instant::now();
    drop(ka);
    assert!(
        owner_is(b.mac, Duration::from_secs(10)),
        "b did not take over {vip} after a's keepalived stopped; agent log:\n{}",
        r.agent.log_text()
    );
    println!(
        "b owns {vip} {:?} after a's keepalived was stopped",
        stopped.elapsed()
    );
    r.assert_flows_to(dst, "b", 9431);
}
