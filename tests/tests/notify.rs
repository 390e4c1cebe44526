//! The notify command through a real agent: after a GARP claim the
//! configured script is called with the change (HaVip, address, new and
//! previous member, epoch, trigger) as arguments and environment, and the
//! values match the owner history.

use std::{
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

use havip::{api::Client, model::OwnerTrigger};
use havip_tests::{frames, lab, scenario::Trio};

const NET: u8 = 43;

/// Waits up to `wait` for a line of `path` containing `needle`.
fn find_line(path: &std::path::Path, needle: &str, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(needle)) {
            return Some(l.to_owned());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn notify_command_runs_with_the_owner_change() {
    let t = Trio::new("hvtn", NET, Some("a"), true).expect("topology");
    let out = t.scratch.dir.join("notify.out");
    let script = t.scratch.dir.join("notify.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             echo \"args=$* env=$HAVIP_EVENT,$HAVIP_ID,$HAVIP_ADDRESS,$HAVIP_MEMBER,$HAVIP_PREVIOUS_MEMBER,$HAVIP_EPOCH,$HAVIP_TRIGGER\" >> {}\n",
            out.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = std::fs::read_to_string(&t.config).expect("config");
    let config = config.replacen(
        "[agent]\n",
        &format!(
            "[agent]\nnotify_command = \"{}\"\nnotify_timeout_ms = 5000\n",
            script.display()
        ),
        1,
    );
    std::fs::write(&t.config, config).expect("config");
    let agent = t.start_agent().expect("agent");
    let id = "havip-hvtn";
    let client = Client::unix(t.scratch.socket());
    let (ns_a, ns_b) = (&t.lab.guests[1].ns, &t.lab.guests[2].ns);

    for (who, previous, ns, mac) in [("b", "a", ns_b, t.b.0), ("a", "b", ns_a, t.a.0)] {
        // (An earlier line may be the initial owner's adoption: previous `-`.)
        let needle = format!("args=owner_changed {id} {} i-{who} i-{previous} ", t.vip);
        // The GARP again each second, in case one is lost on a loaded host
        // (a repeated claim by the owner changes nothing).
        let line = (0..10)
            .find_map(|_| {
                lab::send_raw(ns, "eth0", vec![frames::garp(mac, t.vip).bytes()]).expect("garp");
                find_line(&out, &needle, Duration::from_secs(1))
            })
            .unwrap_or_else(|| {
                panic!(
                    "no notify run with {needle:?}; the script wrote: {:?}; agent log:\n{}",
                    std::fs::read_to_string(&out).unwrap_or_default(),
                    agent.log_text()
                )
            });
        println!("claim by {who}: {line}");
        let history = client.history(id).expect("history");
        let last = history.last().expect("a history entry");
        assert_eq!(last.member.as_deref(), Some(format!("i-{who}").as_str()));
        assert_eq!(last.trigger, OwnerTrigger::Claim);
        let epoch = last.epoch;
        let host = last.host.as_deref().unwrap_or("-");
        assert_eq!(
            line,
            format!(
                "args=owner_changed {id} {vip} i-{who} i-{previous} {epoch} claim {host} \
                 env=owner_changed,{id},{vip},i-{who},i-{previous},{epoch},claim",
                vip = t.vip
            )
        );
    }
}
