//! Owner history and the event stream through a real agent: three GARP
//! failovers are listed by `havipctl havip history` in order with
//! wall-clock times, and `havipctl events --follow --json` receives each
//! owner change shortly after its claim (measured and printed).

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use havip::{control::history::Event, model::OwnerTrigger};
use havip_tests::{
    frames, lab,
    scenario::{agent_binary, Trio},
};

const NET: u8 = 41;

/// Kills the `havipctl events` child (by its own handle) on every exit path.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn havipctl() -> Command {
    Command::new(
        agent_binary()
            .expect("agent binary")
            .with_file_name("havipctl"),
    )
}

#[test]
fn three_failovers_are_in_the_history_and_on_the_event_stream() {
    let t = Trio::new("hvth", NET, Some("a"), true).expect("topology");
    let _agent = t.start_agent().expect("agent");
    let id = "havip-hvth";
    let (ns_a, ns_b) = (&t.lab.guests[1].ns, &t.lab.guests[2].ns);

    let mut child = Child(
        havipctl()
            .arg("--socket")
            .arg(t.scratch.socket())
            .args(["--json", "events", "--follow"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("havipctl events"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    // Subscribed: an API change comes back on the stream.
    let ok = havipctl()
        .arg("--socket")
        .arg(t.scratch.socket())
        .args(["havip", "modify", id, "--description", "watched"])
        .stdout(Stdio::null())
        .status()
        .expect("havipctl modify");
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, line) = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the API change on the event stream");
        let e: Event = serde_json::from_str(&line).expect("a JSON event line");
        if matches!(e, Event::ApiChange { ref op, .. } if op == "modify_havip_attribute") {
            break;
        }
    }

    let mut latencies = Vec::new();
    for (who, ns, mac) in [("b", ns_b, t.b.0), ("a", ns_a, t.a.0), ("b", ns_b, t.b.0)] {
        let sent = Instant::now();
        lab::send_raw(ns, "eth0", vec![frames::garp(mac, t.vip).bytes()]).expect("garp");
        let change = loop {
            let (at, line) = rx
                .recv_timeout(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("no owner change for {who}'s claim: {e}"));
            if let Ok(Event::OwnerChanged(c)) = serde_json::from_str(&line) {
                break (at.duration_since(sent), c);
            }
        };
        println!(
            "claim by {who}: owner_changed event after {:?} ({:?})",
            change.0, change.1
        );
        assert_eq!(change.1.havip, id);
        assert_eq!(change.1.member, Some(format!("i-{who}")));
        assert_eq!(change.1.trigger, OwnerTrigger::Claim);
        latencies.push(change.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("claim -> event latencies: {latencies:?}");
    assert!(
        latencies.iter().all(|l| *l < Duration::from_millis(100)),
        "an owner change reached havipctl events later than 100 ms after its claim: {latencies:?}"
    );

    let out = havipctl()
        .arg("--socket")
        .arg(t.scratch.socket())
        .args(["--json", "havip", "history", id])
        .output()
        .expect("havipctl history");
    assert!(out.status.success(), "{out:?}");
    let history: Vec<havip::model::OwnerChange> =
        serde_json::from_slice(&out.stdout).expect("history JSON");
    println!("history: {history:#?}");
    let claims: Vec<_> = history
        .iter()
        .filter(|c| c.trigger == OwnerTrigger::Claim)
        .collect();
    assert_eq!(claims.len(), 3, "{history:#?}");
    let members: Vec<_> = claims.iter().map(|c| c.member.as_deref()).collect();
    assert_eq!(members, [Some("i-b"), Some("i-a"), Some("i-b")]);
    let previous: Vec<_> = claims
        .iter()
        .map(|c| c.previous_member.as_deref())
        .collect();
    assert_eq!(previous, [Some("i-a"), Some("i-b"), Some("i-a")]);
    assert!(
        claims.windows(2).all(|w| w[0].epoch < w[1].epoch),
        "{claims:#?}"
    );
    // Wall-clock RFC 3339 UTC times, in order.
    for c in &claims {
        assert_eq!(c.time.len(), "2026-01-01T00:00:00.000Z".len(), "{c:?}");
        assert!(
            c.time.ends_with('Z') && c.time.as_bytes()[10] == b'T',
            "{c:?}"
        );
        assert!(c.time[..4].parse::<u32>().is_ok_and(|y| y >= 2024), "{c:?}");
    }
    assert!(claims.windows(2).all(|w| w[0].time <= w[1].time));
}
