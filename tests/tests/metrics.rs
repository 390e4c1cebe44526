//! Prometheus metrics: scraped from a real agent during traffic and claims,
//! the values equal the pinned counters (`havip-agent status`), owner and
//! refused-claim events are counted, and `promtool check metrics` is clean.

use std::{
    collections::BTreeMap,
    net::SocketAddrV4,
    process::{Command, Stdio},
    time::Duration,
};

use havip::status::{self, Status};
use havip_tests::{
    frames, lab,
    scenario::{agent_binary, Stream, Trio},
};

const NET: u8 = 31;
const METRICS: &str = "127.0.0.1:9464";

/// `name{labels} value` lines of a scrape, keyed by `name{labels}`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn scrape(t: &Trio) -> String {
    let out = t
        .lab
        .host
        .exec(&["curl", "-sf", &format!("http://{METRICS}/metrics")])
        .expect("curl /metrics");
    String::from_utf8(out.stdout).expect("utf-8 scrape")
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> u64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} missing from the scrape: {m:#?}")) as u64
}

/// A scrape taken between two equal `status` reads, so every kernel
/// counter in it must equal the maps' (frames the namespaces send on their
/// own, IPv6 ND and the like, would otherwise move counters in between).
fn stable_scrape(t: &Trio) -> (BTreeMap<String, f64>, String, Status) {
    for _ in 0..20 {
        let before = status::read(&t.scratch.pin_dir).expect("status");
        let text = scrape(t);
        let after = status::read(&t.scratch.pin_dir).expect("status");
        let same = serde_json::to_string(&before.handled).ok()
            == serde_json::to_string(&after.handled).ok()
            && serde_json::to_string(&before.drops).ok()
                == serde_json::to_string(&after.drops).ok();
        if same {
            return (parse(&text), text, after);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("counters never held still for a scrape");
}

#[test]
fn scrape_matches_the_pinned_counters_and_promtool_accepts_it() {
    let t = Trio::new("hvtm", NET, Some("a"), true).expect("topology");
    let config = std::fs::read_to_string(&t.config).expect("config");
    std::fs::write(
        &t.config,
        config.replacen(
            "[agent]\n",
            &format!("[agent]\nmetrics_listen = \"{METRICS}\"\n"),
            1,
        ),
    )
    .expect("config");
    let agent = t.start_agent().expect("agent ready");
    let (ns_c, ns_a, ns_b) = (
        &t.lab.guests[0].ns,
        &t.lab.guests[1].ns,
        &t.lab.guests[2].ns,
    );

    // Traffic to the HaVip, then b claims it (accepted: bound), then c
    // claims it (refused: not bound), then more traffic (to b).
    let stream = Stream::start(
        ns_c,
        SocketAddrV4::new(t.vip, 9000),
        Duration::from_millis(1),
        &[("a", ns_a), ("b", ns_b)],
    )
    .expect("stream");
    std::thread::sleep(Duration::from_millis(300));
    lab::send_raw(ns_b, "eth0", vec![frames::garp(t.b.0, t.vip).bytes()]).expect("garp b");
    lab::send_raw(ns_c, "eth0", vec![frames::garp(t.client.0, t.vip).bytes()]).expect("garp c");
    std::thread::sleep(Duration::from_millis(300));
    let report = stream.finish().expect("stream report");
    assert!(report.count("a") > 0 && report.count("b") > 0, "{report:?}");
    // An API request, so the API counter has a 200.
    let ctl = Command::new(agent_binary().expect("bin").with_file_name("havipctl"))
        .arg("--socket")
        .arg(t.scratch.socket())
        .args(["havip", "list"])
        .stdout(Stdio::null())
        .status()
        .expect("havipctl");
    assert!(ctl.success());
    // Let the event consumer and the owner recorder catch up.
    std::thread::sleep(Duration::from_millis(500));

    let (m, text, st) = stable_scrape(&t);
    println!("{text}");

    // Kernel counters: equal to the pinned maps.
    for c in &st.handled {
        let k = format!("havip_handled_frames_total{{outcome=\"{}\"}}", c.name);
        assert_eq!(get(&m, &k), c.packets, "{k}");
        let k = format!("havip_handled_bytes_total{{outcome=\"{}\"}}", c.name);
        assert_eq!(get(&m, &k), c.bytes, "{k}");
    }
    for c in &st.drops {
        let k = format!("havip_dropped_frames_total{{reason=\"{}\"}}", c.name);
        assert_eq!(get(&m, &k), c.packets, "{k}");
    }
    let h = st
        .havips
        .iter()
        .find(|h| h.address == t.vip.to_string())
        .expect("havip in the maps");
    assert!(h.counters.packets > 0, "no forwarded packets counted");
    assert_eq!(
        get(&m, "havip_forwarded_packets_total{havip=\"havip-hvtm\"}"),
        h.counters.packets
    );
    assert_eq!(
        get(&m, "havip_forwarded_bytes_total{havip=\"havip-hvtm\"}"),
        h.counters.bytes
    );
    assert_eq!(get(&m, "havip_events_lost_total"), st.events_lost);
    assert!(
        get(&m, "havip_dropped_frames_total{reason=\"claim_unbound\"}") >= 1,
        "c's claim was not refused as unbound"
    );

    // The owner: b, at the kernel's epoch, on this host.
    let host = havip::agent::metrics::hostname();
    let owner = format!(
        "havip_owner_info{{havip=\"havip-hvtm\",member=\"i-b\",host=\"{host}\",epoch=\"{}\"}}",
        h.epoch
    );
    assert_eq!(get(&m, &owner), 1, "{owner}");
    assert_eq!(
        m.keys()
            .filter(|k| k.starts_with("havip_owner_info"))
            .count(),
        1
    );

    // Agent-side counters.
    assert!(get(&m, "havip_owner_changes_total") >= 1);
    assert!(get(&m, "havip_claims_refused_total{reason=\"claim_unbound\"}") >= 1);
    assert!(get(&m, "havip_api_requests_total{code=\"200\"}") >= 1);
    assert!(get(&m, "havip_reconcile_duration_seconds_count") >= 1);
    assert!(m.keys().any(|k| k.starts_with("havip_build_info{version=")));

    // promtool's own parser and linter.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; cargo xtask setup installs it)");
    {
        use std::io::Write;
        promtool
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("promtool stdin");
    }
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    agent.stop().expect("stop");
}
