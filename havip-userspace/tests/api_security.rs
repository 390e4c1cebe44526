//! The API's limits and security, served in-process: many idle and slow
//! connections, the body limit, bearer tokens, the Host check, and the
//! start-up refusal of non-loopback TCP without tokens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use havip::{
    api::{self, ApiLimits, ApiListener, ApiSecurity, ListenerStats, SecurityError},
    config::AgentConfig,
    control::ControlPlane,
};

struct Srv {
    addr: SocketAddr,
    cp: Arc<ControlPlane>,
    stats: Arc<ListenerStats>,
    stop: Arc<tokio::sync::Notify>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Srv {
    fn start(limits: ApiLimits, security: ApiSecurity) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cp = Arc::new(ControlPlane::open(dir.path().join("s.redb")).unwrap());
        let stats = Arc::new(ListenerStats::default());
        let stop = Arc::new(tokio::sync::Notify::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = {
            let (cp, stats, stop) = (cp.clone(), stats.clone(), stop.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    tx.send(l.local_addr().unwrap()).unwrap();
                    api::serve(
                        ApiListener::Tcp(l),
                        cp,
                        limits,
                        Arc::new(security),
                        stats,
                        async move { stop.notified().await },
                    )
                    .await
                    .unwrap();
                });
            })
        };
        let addr = rx.recv().unwrap();
        Srv {
            addr,
            cp,
            stats,
            stop,
            thread: Some(thread),
            _dir: dir,
        }
    }

    /// One request on a new connection; returns (status, body).
    fn request(&self, head: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let req = format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }
}

impl Drop for Srv {
    fn drop(&mut self) {
        self.stop.notify_waiters();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to a local rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

const VPC: &str = r#"{"op":"create_vpc","id":"vpc-1","cidr":"10.0.0.0/16"}"#;

#[test]
fn idle_and_slow_connections_do_not_starve_new_requests() {
    raise_nofile();
    let limits = ApiLimits {
        max_connections: 256,
        // Long enough that, even on a loaded machine, the accept loop meets
        // connection 257 while the first 256 are still held (so the cap is
        // what closes it, not a timeout).
        header_timeout: Duration::from_millis(4000),
        idle_timeout: Duration::from_millis(5000),
        max_body_bytes: 64 * 1024,
    };
    let srv = Srv::start(limits, ApiSecurity::default());
    // 2,000 connections: half idle, half sending a partial head.
    let mut conns = Vec::new();
    for n in 0..2000 {
        let Ok(mut s) = TcpStream::connect(srv.addr) else {
            continue;
        };
        if n % 2 == 1 {
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        }
        conns.push(s);
    }
    assert!(conns.len() >= 1900, "only {} connections", conns.len());
    let started = Instant::now();
    // By then every held connection has been closed by a timeout or the cap.
    let all_closed_by =
        started + limits.idle_timeout + limits.header_timeout + Duration::from_secs(2);
    // A new request is served within the timeouts (the idle and slow ones
    // are closed by then, freeing the slots).
    let mut served = None;
    while started.elapsed() < limits.idle_timeout * 3 {
        let head = format!("GET /healthz HTTP/1.1\r\nHost: {}", srv.addr);
        if let Ok(mut s) = TcpStream::connect(srv.addr) {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let req = format!("{head}\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_to_string(&mut out).is_ok()
                && out.starts_with("HTTP/1.1 200")
            {
                served = Some(started.elapsed());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let served = served.expect("a new request was never served");
    assert!(
        served <= limits.idle_timeout + limits.header_timeout + Duration::from_secs(1),
        "served after {served:?}"
    );
    // Every held connection was closed by the server (EOF or reset).
    for s in &mut conns {
        let left = all_closed_by.saturating_duration_since(Instant::now());
        s.set_read_timeout(Some(left.max(Duration::from_millis(200))))
            .unwrap();
        let mut buf = [0u8; 512];
        let r = s.read(&mut buf);
        assert!(
            matches!(r, Ok(0))
                || r.as_ref()
                    .is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut),
            "a held connection is still open: {r:?}"
        );
    }
    let refused = srv.stats.refused.load(Ordering::Relaxed);
    let timed_out = srv.stats.timed_out.load(Ordering::Relaxed);
    eprintln!("served after {served:?}; refused {refused}, timed out {timed_out}");
    assert!(
        refused + timed_out >= conns.len() as u64,
        "held connections closed: {refused} + {timed_out}"
    );
    assert!(refused >= 1, "over the cap: closed at once");
    assert!(timed_out >= 200, "idle/slow: closed");
}

#[test]
fn body_over_the_limit_is_413() {
    let srv = Srv::start(ApiLimits::default(), ApiSecurity::default());
    let big = format!(
        r#"{{"op":"create_vpc","id":"vpc-1","cidr":"10.0.0.0/16","x":"{}"}}"#,
        "a".repeat(70 * 1024)
    );
    let head = format!(
        "POST /v1/ops HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json",
        srv.addr
    );
    let (status, body) = srv.request(&head, &big);
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("InvalidParameter.BodyTooLarge"), "{body}");
    assert!(srv.cp.snapshot().vpcs.is_empty());
}

#[test]
fn tokens_and_host_are_checked_on_tcp() {
    let token = "s3cret-token-0123456789";
    let security = ApiSecurity {
        tokens: Some(vec![("ops".into(), token.into())]),
        socket_gid: None,
    };
    let srv = Srv::start(ApiLimits::default(), security);
    let post = |extra: &str, host: &str| {
        srv.request(
            &format!(
                "POST /v1/ops HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json{extra}"
            ),
            VPC,
        )
    };
    let host = srv.addr.to_string();
    let (s, b) = post("", &host);
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("AuthFailure.MissingToken"), "{b}");
    let (s, b) = post("\r\nAuthorization: Bearer wrong-token-0123456789", &host);
    assert_eq!(s, 401, "{b}");
    assert!(b.contains("AuthFailure.InvalidToken"), "{b}");
    assert!(srv.cp.snapshot().vpcs.is_empty(), "state unchanged");
    // DNS rebinding: a foreign Host is refused even with the token.
    let auth = format!("\r\nAuthorization: Bearer {token}");
    let (s, b) = post(&auth, "rebind.example:80");
    assert_eq!(s, 421, "{b}");
    assert!(srv.cp.snapshot().vpcs.is_empty(), "state unchanged");
    let (s, b) = post(&auth, &format!("localhost:{}", srv.addr.port()));
    assert_eq!(s, 201, "{b}");
    assert!(srv.cp.snapshot().vpcs.contains_key("vpc-1"));
}

#[test]
fn non_loopback_tcp_needs_a_token_file() {
    let mut agent = AgentConfig {
        api_tcp: Some("192.0.2.1:7878".parse().unwrap()),
        ..AgentConfig::default()
    };
    assert!(matches!(
        ApiSecurity::from_config(&agent),
        Err(SecurityError::TcpNeedsToken { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    std::fs::write(&file, "ops s3cret-token-0123456789\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    agent.api_token_file = Some(file.clone());
    let e = ApiSecurity::from_config(&agent).unwrap_err();
    assert!(
        matches!(e, SecurityError::TokenFileMode { mode: 0o644, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("0600"), "{e}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = ApiSecurity::from_config(&agent).unwrap();
    assert_eq!(s.tokens.unwrap()[0].0, "ops");
    // Loopback without tokens is fine.
    let lo = AgentConfig {
        api_tcp: Some("127.0.0.1:7878".parse().unwrap()),
        ..AgentConfig::default()
    };
    assert!(ApiSecurity::from_config(&lo).unwrap().tokens.is_none());
}

#[test]
fn agent_refuses_to_start_with_open_tcp_and_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("havip.toml");
    std::fs::write(
        &cfg,
        format!(
            "[agent]\napi_tcp = \"0.0.0.0:7979\"\nstate_db = \"{}\"\n",
            dir.path().join("s.redb").display()
        ),
    )
    .unwrap();
    let out = agent_with_config("run", &cfg);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("api_token_file"), "{err}");
    assert!(!dir.path().join("s.redb").exists(), "nothing touched");
    // `check` says the same without running anything.
    let out = agent_with_config("check", &cfg);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("api_token_file"));
}

/// `GET /v1/events` outlives the idle timeout while the client reads: its
/// keep-alive lines count as activity (period derived from the timeout),
/// and an event committed after several timeouts still arrives. An idle
/// connection opened at the same time is closed as before.
#[test]
fn event_stream_is_not_cut_by_the_idle_timeout() {
    let limits = ApiLimits {
        idle_timeout: Duration::from_millis(600),
        ..ApiLimits::default()
    };
    let srv = Srv::start(limits, ApiSecurity::default());
    let mut idle = TcpStream::connect(srv.addr).unwrap();
    let mut s = TcpStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let req = format!("GET /v1/events HTTP/1.1\r\nHost: {}\r\n\r\n", srv.addr);
    s.write_all(req.as_bytes()).unwrap();
    let started = Instant::now();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    let mut applied = false;
    // Read for 5 idle timeouts; commit an operation after 4.
    while started.elapsed() < limits.idle_timeout * 5 || !got.contains("api_change") {
        assert!(
            started.elapsed() < limits.idle_timeout * 10,
            "no api_change event on the stream: {got:?}"
        );
        if !applied && started.elapsed() > limits.idle_timeout * 4 {
            let op: havip::model::Op = serde_json::from_str(VPC).unwrap();
            srv.cp.apply(op).unwrap();
            applied = true;
        }
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "the stream was closed after {:?}: {got:?}",
                started.elapsed()
            ),
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "stream read failed: {e}"
            ),
        }
    }
    let keepalives = got.matches(r#"{"type":"keep_alive"}"#).count();
    eprintln!(
        "stream open {:?}, {keepalives} keep-alive lines",
        started.elapsed()
    );
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    // At least one keep-alive per 1/3 timeout, minus slack for a loaded host.
    assert!(keepalives >= 6, "{keepalives} keep-alive lines: {got:?}");
    assert!(got.contains(r#""op":"create_vpc""#), "{got:?}");
    // The idle connection beside it was closed by the timeout.
    idle.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let r = idle.read(&mut buf);
    assert!(
        matches!(r, Ok(0))
            || r.as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle connection is still open: {r:?}"
    );
    assert!(srv.stats.timed_out.load(Ordering::Relaxed) >= 1);
}

/// `havip-agent <command> --config <cfg>`, run to its end.
fn agent_with_config(command: &str, cfg: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_havip-agent"))
        .args([command, "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}
