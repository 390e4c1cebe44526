//! Readiness: `/readyz` and `havipctl status` say "not ready" while a
//! configured port's interface is absent, naming it, and "ready" once it
//! appears; `havipctl` exit codes for an unreachable agent and JSON errors.

use std::{
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use havip::agent::health::Readiness;
use havip_tests::scenario::{agent_binary, Trio};

const NET: u8 = 32;

fn havipctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(agent_binary().expect("bin").with_file_name("havipctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("HAVIP_URL")
        .output()
        .expect("havipctl")
}

fn readyz(socket: &Path) -> (u16, Readiness) {
    let out = Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(socket)
        .arg("http://agent/readyz")
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl output");
    let r = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (code.trim().parse().expect("status code"), r)
}

#[test]
fn not_ready_while_a_port_is_missing_ready_once_it_appears() {
    let t = Trio::new("hvty", NET, Some("a"), true).expect("topology");
    // One more ENI whose host interface does not exist yet (a VM not
    // started): named in the config, absent from the host.
    let tap = format!("hy{}", std::process::id() % 1_000_000);
    let mut config = std::fs::read_to_string(&t.config).expect("config");
    config.push_str(&format!(
        "[[instance]]\nid = \"i-late\"\nvswitch = \"vsw-lab\"\n\n\
         [[eni]]\nid = \"eni-late\"\ninstance = \"i-late\"\nvswitch = \"vsw-lab\"\n\
         mac = \"02:00:00:00:0d:{NET:02x}\"\ninterface = \"{tap}\"\nprimary = true\n"
    ));
    std::fs::write(&t.config, config).expect("config");
    let agent = t.start_agent().expect("agent up");
    let socket = t.scratch.socket();

    // Wait for the first pass to be published, then: not ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, r) = loop {
        let (code, r) = readyz(&socket);
        if r.passes > 0 || Instant::now() > deadline {
            break (code, r);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 503, "{r:?}");
    assert!(!r.ready && r.dataplane && r.store_error.is_none(), "{r:?}");
    assert!(
        r.reasons
            .iter()
            .any(|m| m.contains(&tap) && m.contains("missing")),
        "{r:?}"
    );
    assert!(
        r.ports
            .iter()
            .filter(|p| p.interface != tap)
            .all(|p| p.is_attached()),
        "{r:?}"
    );
    let out = havipctl(&socket, &["status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ready:      NO") && text.contains(&tap),
        "{text}"
    );

    // The interface appears (the VM starts): ready, without a restart.
    t.lab
        .host
        .exec(&[
            "ip",
            "link",
            "add",
            &tap,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{tap}p"),
        ])
        .expect("ip link add");
    t.lab
        .host
        .exec(&["ip", "link", "set", &tap, "up"])
        .expect("link up");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (code, r) = loop {
        let (code, r) = readyz(&socket);
        if r.ready || Instant::now() > deadline {
            break (code, r);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(code, 200, "{r:?}");
    assert!(r.ready && r.reasons.is_empty(), "{r:?}");
    let out = havipctl(&socket, &["--json", "status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Readiness = serde_json::from_slice(&out.stdout).expect("status --json");
    assert!(r.ready);
    agent.stop().expect("stop");

    // The agent is gone: unreachable is exit 3, with a JSON error under --json.
    let out = havipctl(&socket, &["--json", "havip", "list"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).expect("JSON error");
    assert_eq!(err["error"]["code"], "Unavailable", "{err}");
    assert_eq!(err["error"]["exit"], 3, "{err}");
    // A usage error is exit 2.
    let out = havipctl(&socket, &["havip", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
