//! `havip-demo`: a self-contained run of the agent on network
//! namespaces. A client and two instances (a, b) hang off a bridge in a host
//! namespace; the agent runs in the host namespace with a HaVip bound to a
//! and b. The demo shows traffic following the owner, an ARP claim moving
//! it, a spoofed claim refused, and cleans up after itself (also on Ctrl-C).
//! [`run_multihost`] (`--hosts 2|3`): the same HaVip with members on two
//! hosts, etcd and one agent per host; a claim moves the owner across hosts.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use havip::status;

use crate::{
    frames,
    lab::{self, Lab},
    multihost::{host_of, MultiHost, VIP as MH_VIP},
    scenario::{lab_config, owner_mac, AgentProcess, LabHavip, Scratch},
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

const HAVIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);
const CIDR: &str = "10.0.1.0/24";
const CLIENT: ([u8; 6], Ipv4Addr) = ([0x02, 0, 0, 0, 0x0c, 0x01], Ipv4Addr::new(10, 0, 1, 10));
const NODE_A: ([u8; 6], Ipv4Addr) = ([0x02, 0, 0, 0, 0x0a, 0x01], Ipv4Addr::new(10, 0, 1, 11));
const NODE_B: ([u8; 6], Ipv4Addr) = ([0x02, 0, 0, 0, 0x0b, 0x01], Ipv4Addr::new(10, 0, 1, 12));
const PREFIX: &str = "havip-demo-";

/// Removes namespaces a killed earlier demo may have left.
fn remove_stale() {
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(name) = line.split_whitespace().next() {
                if name.starts_with(PREFIX) {
                    let _ = Command::new("ip").args(["netns", "del", name]).status();
                }
            }
        }
    }
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        check_interrupt()?;
        if ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out waiting for {what}")
}

/// `count` UDP datagrams from `client` to `vip`:9000; returns how many
/// were sent and what `a` and `b` received.
fn udp_to_pair(
    client: &lab::Netns,
    a: &lab::Netns,
    b: &lab::Netns,
    vip: Ipv4Addr,
    count: u64,
) -> Result<(u64, u64, u64)> {
    let quiet = Duration::from_millis(500);
    let limit = Duration::from_secs(10);
    let ra = lab::udp_receiver(a, 9000, quiet, limit)?;
    let rb = lab::udp_receiver(b, 9000, quiet, limit)?;
    let sent = lab::udp_send(
        client,
        SocketAddrV4::new(vip, 9000),
        count,
        64,
        Duration::from_micros(200),
    )?;
    let a = ra
        .join()
        .map_err(|_| anyhow::anyhow!("receiver a panicked"))??;
    let b = rb
        .join()
        .map_err(|_| anyhow::anyhow!("receiver b panicked"))??;
    Ok((sent, a, b))
}

/// UDP from the client to the HaVip; returns what a and b received.
fn udp_round(lab: &Lab, count: u64) -> Result<(u64, u64)> {
    let (sent, a, b) = udp_to_pair(
        &lab.guests[0].ns,
        &lab.guests[1].ns,
        &lab.guests[2].ns,
        HAVIP,
        count,
    )?;
    println!("    client sent {sent} UDP datagrams to {HAVIP}: instance a received {a}, instance b received {b}");
    Ok((a, b))
}

/// Runs the demo; `hold` keeps everything up until Ctrl-C at the end.
///
/// # Errors
/// Not root, missing tools, or the data plane not behaving as shown.
pub fn run(hold: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads XDP: run it as root");
    }
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as usize) };
    remove_stale();
    let scratch = Scratch::new("demo")?;

    println!("==> building the topology: host namespace with bridge br0; client, a, b");
    let mut lab = Lab::new(PREFIX)?;
    lab.add_guest("client", CLIENT.0, CLIENT.1)?;
    lab.add_guest("a", NODE_A.0, NODE_A.1)?;
    lab.add_guest("b", NODE_B.0, NODE_B.1)?;
    // Both instances hold the address, as keepalived's master would: only
    // the data plane decides who receives HaVip traffic.
    for g in &lab.guests[1..] {
        g.ns.exec(&["ip", "addr", "add", &format!("{HAVIP}/32"), "dev", "eth0"])?;
    }
    let config = scratch.dir.join("demo.toml");
    let havip = LabHavip {
        id: "havip-demo".into(),
        address: HAVIP,
        members: vec!["a".into(), "b".into()],
        master: Some("a".into()),
    };
    std::fs::write(&config, lab_config(&scratch, &lab, CIDR, &[havip]))?;
    println!("    config: {}", config.display());

    println!("==> starting havip-agent in namespace {}", lab.host.name());
    let mut agent = AgentProcess::start(
        lab.host.name(),
        &config,
        &scratch.dir.join("agent.log"),
        &["--teardown-on-exit"],
    )?;
    agent.wait_ready(&scratch, 1, Duration::from_secs(30))?;
    let a_mac = lab::mac_string(NODE_A.0);
    let b_mac = lab::mac_string(NODE_B.0);
    wait_for("instance a to be owner", Duration::from_secs(5), || {
        owner_mac(&scratch.pin_dir, HAVIP).as_deref() == Some(a_mac.as_str())
    })?;
    println!("    HaVip {HAVIP} owner: instance a ({a_mac})");
    let prog = std::process::Command::new("bpftool")
        .args(["prog", "show", "name", havip_common::names::PROG_XDP])
        .output();
    if let Ok(out) = prog {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("    bpftool: {}", line.trim());
        }
    }

    println!("==> ping from the client to the HaVip");
    let ping = lab.guests[0].ns.exec_status(&[
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "1",
        &HAVIP.to_string(),
    ])?;
    let ping_out = String::from_utf8_lossy(&ping.stdout);
    if let Some(line) = ping_out.lines().find(|l| l.contains("packets transmitted")) {
        println!("    {line}");
    }
    check_interrupt()?;

    println!("==> UDP to the HaVip while a is owner");
    let (a1, b1) = udp_round(&lab, 1000)?;
    check_interrupt()?;

    println!("==> instance b announces the HaVip (gratuitous ARP): it becomes owner");
    lab::send_raw(
        &lab.guests[2].ns,
        "eth0",
        vec![frames::garp(NODE_B.0, HAVIP).bytes()],
    )?;
    wait_for("the owner to move to b", Duration::from_secs(5), || {
        owner_mac(&scratch.pin_dir, HAVIP).as_deref() == Some(b_mac.as_str())
    })?;
    println!("    HaVip {HAVIP} owner: instance b ({b_mac})");
    let (a2, b2) = udp_round(&lab, 1000)?;
    check_interrupt()?;

    println!("==> the client (not bound) tries to take the HaVip with 100 gratuitous ARPs");
    let spoof: Vec<Vec<u8>> = (0..100)
        .map(|_| frames::garp(CLIENT.0, HAVIP).bytes())
        .collect();
    lab::send_raw(&lab.guests[0].ns, "eth0", spoof)?;
    std::thread::sleep(Duration::from_millis(300));
    let still_b = owner_mac(&scratch.pin_dir, HAVIP).as_deref() == Some(b_mac.as_str());
    println!(
        "    owner after the spoofing attempt: {}",
        if still_b {
            "still instance b (claims refused and counted)"
        } else {
            "CHANGED"
        }
    );

    println!(
        "==> status (havip-agent --netns {} status --pin-dir {})",
        lab.host.name(),
        scratch.pin_dir.display()
    );
    // Read in the host namespace so owner ports show by name.
    let pin_dir = scratch.pin_dir.clone();
    let st = lab.host.run(move || status::read(&pin_dir))??;
    print!("{st}");

    println!("==> delivered packet counts");
    println!("    while a was owner: a {a1}, b {b1}");
    println!("    after b's claim:    a {a2}, b {b2}");
    let ok = a1 > 0 && b1 == 0 && b2 > 0 && a2 == 0 && still_b;

    if hold {
        println!("==> holding the topology; Ctrl-C to clean up");
        while !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!("==> stopping the agent and cleaning up");
    agent.stop()?;
    drop(lab);
    drop(scratch);
    if !ok {
        bail!("the data plane did not behave as the demo expects (see counts above)");
    }
    println!("demo OK: traffic followed the owner; the unbound client could not take the HaVip");
    Ok(())
}

/// UDP from `c` to the HaVip of a multi-host lab; returns what a and b got.
fn udp_round_mh(mh: &MultiHost, count: u64) -> Result<(u64, u64)> {
    let guest = |name: &str| -> Result<&lab::Guest> {
        let n = host_of(name, mh.n_hosts).context("unknown guest")?;
        mh.fabric.guest(n, name)
    };
    let (sent, a, b) = udp_to_pair(
        &guest("c")?.ns,
        &guest("a")?.ns,
        &guest("b")?.ns,
        MH_VIP,
        count,
    )?;
    println!(
        "    client c (h{}) sent {sent} UDP datagrams to {MH_VIP}: a (h1) received {a}, b (h2) received {b}",
        host_of("c", mh.n_hosts).unwrap_or(0)
    );
    Ok((a, b))
}

/// Every host's view of the owner, one line each.
fn print_owners(mh: &MultiHost) {
    for n in 1..=mh.n_hosts {
        match mh.owner(n) {
            Some((mac, epoch)) => println!("    h{n}: owner {mac}, epoch {epoch}"),
            None => println!("    h{n}: no owner"),
        }
    }
}

/// A claim by guest `who`; waits until every host names it owner.
fn move_owner(mh: &MultiHost, who: &str) -> Result<()> {
    let n = host_of(who, mh.n_hosts).context("unknown guest")?;
    println!("==> instance {who} on h{n} announces the HaVip (gratuitous ARP)");
    let mac = crate::multihost::GUESTS
        .iter()
        .find(|g| g.1 == who)
        .map(|g| g.3)
        .context("unknown guest")?;
    let t = Instant::now();
    mh.claim(who)?;
    let (_, epoch, _) = mh.converged(Some(mac), Duration::from_secs(10))?;
    println!(
        "    every host installed {who} (epoch {epoch}) {:.1} ms after the claim",
        t.elapsed().as_secs_f64() * 1000.0
    );
    print_owners(mh);
    Ok(())
}

/// The multi-host demo (`havip-demo --hosts N`, N = 2 or 3): hosts as
/// namespaces on an underlay bridge, etcd in the underlay, one agent per
/// host; members a (h1) and b (h2), client c on the last host. Traffic
/// follows the owner across hosts (VXLAN in XDP), claims move it.
///
/// # Errors
/// Not root, etcd or an agent not starting, or traffic not following the
/// owner.
pub fn run_multihost(n_hosts: usize, hold: bool) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo creates network namespaces and loads XDP: run it as root");
    }
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe { libc::signal(libc::SIGINT, on_sigint as *const () as usize) };
    println!(
        "==> building {n_hosts} hosts (namespaces with br0, a kernel VXLAN device and eth0 on \
         the underlay bridge), etcd in the underlay, one havip-agent per host"
    );
    let t = Instant::now();
    let mh = MultiHost::with_hosts(n_hosts, "a")?;
    println!(
        "    up in {:.1} s: etcd {}, key prefix {}",
        t.elapsed().as_secs_f64(),
        mh.etcd.endpoint(),
        mh.prefix
    );
    for n in 1..=n_hosts {
        let h = mh.fabric.host(n)?;
        let guests: Vec<&str> = crate::multihost::GUESTS
            .iter()
            .filter(|g| g.0.min(n_hosts) == n)
            .map(|g| g.1)
            .collect();
        println!(
            "    h{n}: namespace {}, VTEP {}, guests {}",
            h.ns().name(),
            h.vtep,
            guests.join(", ")
        );
    }
    let a_mac = crate::multihost::GUESTS[0].3;
    mh.converged(Some(a_mac), Duration::from_secs(15))?;
    println!("==> the HaVip {MH_VIP} is owned by a on h1, as every host sees it:");
    print_owners(&mh);
    check_interrupt()?;

    println!("==> UDP from c to the HaVip (tunnelled in XDP to h1 when c is elsewhere)");
    let (a1, b1) = udp_round_mh(&mh, 1000)?;
    check_interrupt()?;
    move_owner(&mh, "b")?;
    let (a2, b2) = udp_round_mh(&mh, 1000)?;
    check_interrupt()?;
    move_owner(&mh, "a")?;
    let (a3, b3) = udp_round_mh(&mh, 1000)?;
    check_interrupt()?;

    println!("==> havipctl cluster on h1");
    let (_, text) = mh.havipctl(1, &["cluster"])?;
    for line in text.lines() {
        println!("    {line}");
    }
    println!("==> delivered packet counts");
    println!("    owner a (h1): a {a1}, b {b1}");
    println!("    owner b (h2): a {a2}, b {b2}");
    println!("    owner a again: a {a3}, b {b3}");
    let ok = a1 > 0 && b1 == 0 && b2 > 0 && a2 == 0 && a3 > 0 && b3 == 0;

    if hold {
        println!(
            "==> holding the topology; try: havipctl --socket {} cluster; Ctrl-C to clean up",
            mh.fabric.host(1)?.scratch.socket().display()
        );
        while !INTERRUPTED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    println!("==> stopping the agents and etcd, cleaning up");
    drop(mh);
    if !ok {
        bail!("traffic did not follow the owner across hosts (see counts above)");
    }
    println!("demo OK: the owner moved across hosts and traffic from c followed it");
    Ok(())
}
