//! Garbage on the wire while traffic flows: random and malformed frames from
//! a bound member and from an unbound guest must neither disturb forwarding
//! nor move the HaVip nor upset the agent.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    time::Duration,
};

use havip::status;
use havip_tests::{
    frames::{self, Frame},
    lab,
    scenario::{owner_mac, AgentProcess, Stream, Trio},
};

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 7, 100);
/// Client (c) and instance addresses of `Trio::new(_, 7, ..)`.
const C: ([u8; 6], Ipv4Addr) = ([2, 0, 0, 0, 0x0c, 7], Ipv4Addr::new(10, 0, 7, 10));
const A: [u8; 6] = [2, 0, 0, 0, 0x0a, 7];
const B: [u8; 6] = [2, 0, 0, 0, 0x0b, 7];

/// xorshift64*: deterministic garbage, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Random frames, truncated headers and ARP/IPv4 frames naming the HaVip
/// with random fields, all with the sender's own source MAC.
fn garbage(rng: &mut Rng, src: [u8; 6], count: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(count);
    let garp = frames::garp(src, VIP).bytes();
    let data = frames::udp_frame(frames::virtual_mac_of(VIP), src, C.1, VIP, 1, 9000, b"x").bytes();
    for i in 0..count {
        let mut f = match i % 6 {
            // Pure noise of random length.
            0 => {
                let n = 14 + (rng.next() % 200) as usize;
                rng.bytes(n)
            }
            // ARP for the HaVip with random opcode/targets/lengths.
            1 => {
                let mut f = garp.clone();
                let k = 14 + (rng.next() % 28) as usize;
                f[k] = rng.next() as u8;
                f
            }
            // Truncated ARP naming the HaVip.
            2 => garp[..14 + (rng.next() % 28) as usize].to_vec(),
            // IPv4 to the HaVip with a corrupted header byte (never the
            // payload's first 8 bytes, the stream's sequence numbers).
            3 => {
                let mut f = data.clone();
                let k = 14 + (rng.next() % 20) as usize;
                f[k] = rng.next() as u8;
                f
            }
            // Truncated IPv4.
            4 => data[..14 + (rng.next() % 20) as usize].to_vec(),
            // VLAN-tagged noise.
            _ => {
                let dst: [u8; 6] = rng.bytes(6).try_into().unwrap_or([0; 6]);
                let vid = (rng.next() % 4096) as u16;
                Frame::new(dst, src, 0x0800, rng.bytes(30))
                    .vlan(vid)
                    .bytes()
            }
        };
        // Keep the sender's own source MAC: a guest cannot do otherwise on
        // a real tap with MAC filtering, and it keeps the bridge's FDB sane.
        if f.len() >= 12 {
            f[6..12].copy_from_slice(&src);
        }
        out.push(f);
    }
    out
}

#[test]
fn random_and_malformed_frames_during_traffic() {
    let t = Trio::new("hvtb", 7, Some("a"), true).expect("topology");
    let (scratch, lab, config) = (&t.scratch, &t.lab, &t.config);
    let mut agent =
        AgentProcess::start(lab.host.name(), config, &scratch.dir.join("agent.log"), &[])
            .expect("agent");
    agent
        .wait_ready(scratch, 1, Duration::from_secs(30))
        .expect("agent ready");

    let (ns_c, ns_a, ns_b) = (&lab.guests[0].ns, &lab.guests[1].ns, &lab.guests[2].ns);
    let stream = Stream::start(
        ns_c,
        SocketAddrV4::new(VIP, 9000),
        Duration::from_micros(500),
        &[("a", ns_a), ("b", ns_b)],
    )
    .expect("stream");
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..10 {
        // From the unbound client, and from the standby b.
        // In slices: a veth whose peer runs XDP queues at most 256 frames,
        // and a burst of 500 can overflow it and drop a stream frame on the
        // client's own port (a host-queue loss, not the product's).
        for (c, b) in garbage(&mut rng, C.0, 500)
            .chunks(50)
            .zip(garbage(&mut rng, B, 500).chunks(50))
        {
            lab::send_raw(ns_c, "eth0", c.to_vec()).expect("client garbage");
            lab::send_raw(ns_b, "eth0", b.to_vec()).expect("standby garbage");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(30));
    }
    std::thread::sleep(Duration::from_millis(200));
    let report = stream.finish().expect("stream report");

    // Mutated GARPs from b can still be valid claims (b is bound): the
    // owner may move to b, never to the unbound client.
    let owner = owner_mac(&scratch.pin_dir, VIP);
    assert!(
        owner == Some(lab::mac_string(A)) || owner == Some(lab::mac_string(B)),
        "garbage gave the HaVip to {owner:?}"
    );
    println!(
        "sent {}, a {}, b {}",
        report.sent,
        report.count("a"),
        report.count("b")
    );
    assert_eq!(
        (report.count("a") + report.count("b")) as u64,
        report.sent,
        "stream frames lost while garbage was sent"
    );
    let st = status::read(&scratch.pin_dir).expect("status");
    let malformed = st
        .handled
        .iter()
        .find(|c| c.name == "passed_malformed")
        .map_or(0, |c| c.packets);
    assert!(malformed > 0, "no malformed frame was counted");
    // The agent survived and still answers.
    assert!(
        agent.child.try_wait().expect("wait").is_none(),
        "agent died:\n{}",
        agent.log_text()
    );
    assert!(std::os::unix::net::UnixStream::connect(scratch.socket()).is_ok());
    agent.stop().expect("stop");
}
