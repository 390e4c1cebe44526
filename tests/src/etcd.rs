//! An etcd (Debian's etcd-server 3.4) process for one test: its own data
//! dir, its own ports, in a given network namespace (the fabric's underlay)
//! or on 127.0.0.1; stop and start again on the same data dir; killed and
//! its data removed on drop.
//!
//! A pid file under `/run/havip/etcd/` names every running etcd of ours, so
//! `cargo xtask clean-host` can stop one a killed test left behind.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::lab::{self, Netns};

/// Where the pid files of running test etcds live (`<name>.pid`).
pub const ETCD_PID_DIR: &str = "/run/havip/etcd";
/// Prefix of each etcd's scratch dir under the temp dir (data, log).
pub const ETCD_DIR_PREFIX: &str = "havip-etcd-";
/// How long [`Etcd::start`] waits for `/health` to say true.
pub const ETCD_START_TIMEOUT: Duration = Duration::from_secs(30);

/// One single-member etcd cluster.
#[derive(Debug)]
pub struct Etcd {
    name: String,
    /// `/run/netns/<ns>` handle name, or `None` for the caller's namespace.
    netns: Option<String>,
    ip: Ipv4Addr,
    client_port: u16,
    peer_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// How long the last start took until healthy.
    pub last_start: Duration,
}

impl Etcd {
    /// Starts etcd inside `ns`, listening on `ip` (an address of that
    /// namespace, e.g. the underlay bridge's 10.99.0.1), and waits until it
    /// is healthy.
    ///
    /// # Errors
    /// No `etcd` binary (`cargo xtask setup` installs etcd-server), no free
    /// port, or etcd not healthy within [`ETCD_START_TIMEOUT`] (the error
    /// carries its log).
    pub fn start_in(ns: &Netns, ip: Ipv4Addr) -> Result<Self> {
        let ports = ns.run(move || free_ports(ip))??;
        Self::launch(Some(ns.name().to_owned()), ip, ports)
    }

    /// Starts etcd in the caller's namespace on 127.0.0.1.
    ///
    /// # Errors
    /// As [`Etcd::start_in`].
    pub fn start_local() -> Result<Self> {
        let ip = Ipv4Addr::LOCALHOST;
        let ports = free_ports(ip)?;
        Self::launch(None, ip, ports)
    }

    fn launch(
        netns: Option<String>,
        ip: Ipv4Addr,
        (client_port, peer_port): (u16, u16),
    ) -> Result<Self> {
        let name = lab::unique_name("etcd");
        let dir = std::env::temp_dir().join(format!("{ETCD_DIR_PREFIX}{name}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut etcd = Self {
            name,
            netns,
            ip,
            client_port,
            peer_port,
            dir,
            child: None,
            last_start: Duration::ZERO,
        };
        etcd.start()?;
        Ok(etcd)
    }

    /// Client URL, `http://<ip>:<port>`, for etcdctl and the agents.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.ip, self.client_port)
    }

    /// Client address.
    pub fn client_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, self.client_port)
    }

    /// Member name (also the pid file's name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The data directory (kept across [`Etcd::stop`] / [`Etcd::start`]).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// etcd's own log (both runs appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The pid while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn pid_file(&self) -> PathBuf {
        Path::new(ETCD_PID_DIR).join(format!("{}.pid", self.name))
    }

    /// Starts (again, on the same data dir) and waits until healthy; sets
    /// [`Etcd::last_start`]. A no-op when already running.
    ///
    /// # Errors
    /// As [`Etcd::start_in`].
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let began = Instant::now();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let peer = format!("http://{}:{}", self.ip, self.peer_port);
        let client = self.endpoint();
        let mut cmd = match &self.netns {
            Some(ns) => {
                // `ip netns exec` execs etcd: the child's pid is etcd's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcd"]);
                c
            }
            None => Command::new("etcd"),
        };
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("{}={peer}", self.name)])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.name])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            // Metrics and pprof stay off; only the client and peer ports open.
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .context("starting etcd (cargo xtask setup installs etcd-server)")?;
        let pid = child.id();
        self.child = Some(child);
        std::fs::create_dir_all(ETCD_PID_DIR)?;
        std::fs::write(self.pid_file(), format!("{pid}\n"))?;
        let deadline = began + ETCD_START_TIMEOUT;
        loop {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let _ = std::fs::remove_file(self.pid_file());
                bail!("etcd exited ({st}) while starting:\n{}", self.log_text());
            }
            if self.healthy() {
                break;
            }
            if Instant::now() >= deadline {
                let log = self.log_text();
                self.kill();
                bail!("etcd not healthy after {ETCD_START_TIMEOUT:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.last_start = began.elapsed();
        Ok(())
    }

    /// `GET /health` on the client URL says `"health":"true"` (etcd answers
    /// that once the member has a leader and can serve a linearizable read).
    pub fn healthy(&self) -> bool {
        let addr = self.client_addr();
        let probe = move || http_get(addr, "/health").is_ok_and(|b| b.contains("\"true\""));
        match &self.netns {
            Some(ns) => in_named_ns(ns, probe).unwrap_or(false),
            None => probe(),
        }
    }

    /// SIGTERM and wait (up to 10 s, then SIGKILL); the data dir stays.
    ///
    /// # Errors
    /// Waiting for the process failed.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SAFETY: signal to our own, not yet reaped child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                child.wait()?;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(self.pid_file());
        Ok(())
    }

    /// SIGKILL (a crash), data dir kept.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.pid_file());
    }

    /// Runs `etcdctl` (API v3) against this etcd, from its namespace (or
    /// from `from`, to show another namespace reaches it), returning stdout.
    ///
    /// # Errors
    /// etcdctl missing (`cargo xtask setup` installs etcd-client) or failing.
    pub fn ctl(&self, from: Option<&Netns>, args: &[&str]) -> Result<String> {
        let endpoint = self.endpoint();
        let mut cmd = match from.map(Netns::name).or(self.netns.as_deref()) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "etcdctl"]);
                c
            }
            None => Command::new("etcdctl"),
        };
        let out = cmd
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &endpoint, "--dial-timeout", "3s"])
            .args(args)
            .output()
            .context("running etcdctl (cargo xtask setup installs etcd-client)")?;
        if !out.status.success() {
            bail!(
                "etcdctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `etcdctl put key value`.
    ///
    /// # Errors
    /// As [`Etcd::ctl`].
    pub fn put(&self, key: &str, value: &str) -> Result<()> {
        self.ctl(None, &["put", key, value]).map(drop)
    }

    /// `etcdctl get --print-value-only key`: `None` when absent.
    ///
    /// # Errors
    /// As [`Etcd::ctl`].
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let out = self.ctl(None, &["get", "--print-value-only", key])?;
        Ok(out.lines().next().map(str::to_owned))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `f` on a scoped thread inside namespace `name`.
fn in_named_ns<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = format!("/run/netns/{name}");
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            lab::enter(&path)?;
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread in netns {name} panicked"))?
    })
}

/// Two ports free on `ip` in the calling thread's namespace (bound to port
/// 0 and released: the kernel does not hand them out again at once).
fn free_ports(ip: Ipv4Addr) -> Result<(u16, u16)> {
    let a = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    let b = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// A minimal HTTP/1.0 GET: the body (empty on a non-200 answer is an error).
fn http_get(addr: SocketAddrV4, path: &str) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let Some((head, body)) = resp.split_once("\r\n\r\n") else {
        bail!("no HTTP header end in {resp:?}");
    };
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or(head));
    }
    Ok(body.to_owned())
}
