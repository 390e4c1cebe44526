//! `havip-demo`: a self-contained run of the agent on network
//! namespaces. A client and two instances (a, b) hang off a bridge in a host
//! namespace; the agent runs in the host namespace with a HaVip bound to a
//! and b. The demo shows traffic following the owner, an ARP claim moving
//! it, a spoofed claim refused, and cleans up after itself (also on Ctrl-C).

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use havip::status;

use crate::{
    frames,
    lab::{self, Lab},
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

/// UDP from the client to the HaVip; returns what a and b received.
fn udp_round(lab: &Lab, count: u64) -> Result<(u64, u64)> {
    let quiet = Duration::from_millis(500);
    let limit = Duration::from_secs(10);
    let ra = lab::udp_receiver(&lab.guests[1].ns, 9000, quiet, limit)?;
    let rb = lab::udp_receiver(&lab.guests[2].ns, 9000, quiet, limit)?;
    let sent = lab::udp_send(
        &lab.guests[0].ns,
        SocketAddrV4::new(HAVIP, 9000),
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
