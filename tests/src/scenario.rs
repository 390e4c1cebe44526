//! Whole-system scenarios on a [`Lab`]: the agent as a real process in the
//! host namespace, keepalived in the instances, numbered UDP streams. Shared
//! by the demo, the end-to-end tests and the benchmarks.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use havip::status;

use crate::lab::{self, enter, Lab};

/// Path of the `havip-agent` binary: `$HAVIP_AGENT_BIN`, else next to the
/// running executable (or one level up, from `target/*/deps`).
pub fn agent_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("HAVIP_AGENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    for _ in 0..2 {
        if let Some(d) = dir {
            let candidate = d.join("havip-agent");
            if candidate.is_file() {
                return Ok(candidate);
            }
            dir = d.parent().map(Path::to_path_buf);
        }
    }
    bail!(
        "havip-agent binary not found next to {}; set HAVIP_AGENT_BIN",
        exe.display()
    )
}

/// Scratch directory (config, store, socket, logs) and pin dir of one
/// scenario; both removed on drop.
#[derive(Debug)]
pub struct Scratch {
    pub dir: PathBuf,
    pub pin_dir: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Result<Self> {
        let name = lab::unique_name(tag);
        let s = Self {
            dir: std::env::temp_dir().join(format!("havip-{name}")),
            pin_dir: PathBuf::from(format!("/sys/fs/bpf/havip-test-{name}")),
        };
        std::fs::create_dir_all(&s.dir)?;
        Ok(s)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("api.sock")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = havip::dataplane::loader::teardown(&self.pin_dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A HaVip of a lab config.
#[derive(Clone, Debug)]
pub struct LabHavip {
    /// The HaVip's id in the config.
    pub id: String,
    /// Its address (in the lab's vSwitch `cidr`).
    pub address: Ipv4Addr,
    /// Guest names whose instances are bound.
    pub members: Vec<String>,
    /// Guest whose instance is the initial owner (`initial_owner =
    /// "i-<guest>"`; keepalived's first master).
    pub master: Option<String>,
}

/// Agent config for `lab`: one VPC and vSwitch (`cidr`), one instance and
/// primary ENI per guest, and `havips`.
pub fn lab_config(scratch: &Scratch, lab: &Lab, cidr: &str, havips: &[LabHavip]) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "[agent]\npin_dir = \"{}\"\napi_socket = \"{}\"\nstate_db = \"{}\"\n\n\
         [[vpc]]\nid = \"vpc-lab\"\ncidr = \"{cidr}\"\n\n\
         [[vswitch]]\nid = \"vsw-lab\"\nvpc = \"vpc-lab\"\ncidr = \"{cidr}\"\ngateway_mac = \"02:00:00:00:00:01\"\n\n",
        scratch.pin_dir.display(),
        scratch.socket().display(),
        scratch.dir.join("state.redb").display(),
    );
    for g in &lab.guests {
        let name = guest_name(lab, g);
        let _ = write!(
            s,
            "[[instance]]\nid = \"i-{name}\"\nvswitch = \"vsw-lab\"\n\n\
             [[eni]]\nid = \"eni-{name}\"\ninstance = \"i-{name}\"\nvswitch = \"vsw-lab\"\nmac = \"{}\"\ninterface = \"{}\"\nprimary = true\n\n",
            lab::mac_string(g.mac),
            g.host_if
        );
    }
    for h in havips {
        let members: Vec<String> = h.members.iter().map(|m| format!("\"i-{m}\"")).collect();
        let _ = write!(
            s,
            "[[havip]]\nid = \"{}\"\nvswitch = \"vsw-lab\"\naddress = \"{}\"\ninstances = [{}]\n",
            h.id,
            h.address,
            members.join(", ")
        );
        if let Some(m) = &h.master {
            let _ = writeln!(s, "initial_owner = \"i-{m}\"");
        }
        s.push('\n');
    }
    s
}

/// The short name a guest was added with.
pub fn guest_name<'a>(lab: &Lab, g: &'a lab::Guest) -> &'a str {
    g.ns.name().strip_prefix(&lab.prefix).unwrap_or(g.ns.name())
}

/// A running `havip-agent`; SIGTERM then SIGKILL on drop.
#[derive(Debug)]
pub struct AgentProcess {
    pub child: Child,
    pub log: PathBuf,
}

impl AgentProcess {
    /// Starts the agent in `netns` with `config`, logging to `log`.
    pub fn start(netns: &str, config: &Path, log: &Path, extra: &[&str]) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let child = Command::new(agent_binary()?)
            .args(["--netns", netns, "run", "--config"])
            .arg(config)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawning havip-agent")?;
        Ok(Self {
            child,
            log: log.to_owned(),
        })
    }

    /// Waits until the API socket answers and the pinned maps hold `havips`
    /// HaVips; fails early with the log if the agent exits.
    pub fn wait_ready(
        &mut self,
        scratch: &Scratch,
        havips: usize,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait()? {
                bail!("agent exited ({st}):\n{}", self.log_text());
            }
            let maps_ready = status::read(&scratch.pin_dir).is_ok_and(|s| s.havips.len() >= havips);
            if maps_ready && std::os::unix::net::UnixStream::connect(scratch.socket()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("agent not ready after {timeout:?}:\n{}", self.log_text())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait.
    pub fn stop(mut self) -> Result<()> {
        // SAFETY: signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("agent did not stop on SIGTERM")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SAFETY: signal to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(200));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Owner MAC of `address` in the pinned maps, if any.
pub fn owner_mac(pin_dir: &Path, address: Ipv4Addr) -> Option<String> {
    status::read(pin_dir)
        .ok()?
        .havips
        .into_iter()
        .find(|h| h.address == address.to_string())?
        .owner_mac
}

/// A numbered UDP stream from one namespace to `dst` at a fixed rate, and
/// receivers in several namespaces that record (seq, arrival) per receiver.
pub struct Stream {
    stop: Arc<AtomicBool>,
    sender: Option<std::thread::JoinHandle<Result<u64>>>,
    receivers: Vec<(String, Receiver)>,
    pub started: Instant,
}

/// A receiver thread: sequence numbers with their arrival times.
type Receiver = std::thread::JoinHandle<Result<Vec<(u64, Instant)>>>;

/// What a stream delivered.
#[derive(Debug, Default)]
pub struct StreamReport {
    pub sent: u64,
    /// Receiver name → sequence numbers received (with arrival time).
    pub received: BTreeMap<String, Vec<(u64, Instant)>>,
}

impl StreamReport {
    pub fn count(&self, who: &str) -> usize {
        self.received.get(who).map_or(0, Vec::len)
    }

    /// Longest run of consecutive sequence numbers received by nobody,
    /// times the send interval: the loss window.
    pub fn loss_window(&self, interval: Duration) -> Duration {
        let mut got = vec![false; self.sent as usize];
        for v in self.received.values() {
            for (seq, _) in v {
                if let Some(slot) = got.get_mut(*seq as usize) {
                    *slot = true;
                }
            }
        }
        // Only gaps between the first and last received datagram count.
        let first = got.iter().position(|g| *g).unwrap_or(0);
        let last = got.iter().rposition(|g| *g).unwrap_or(0);
        let mut longest = 0u32;
        let mut run = 0u32;
        for g in &got[first..=last.max(first)] {
            if *g {
                run = 0;
            } else {
                run += 1;
                longest = longest.max(run);
            }
        }
        interval * longest
    }

    /// Arrivals at `who` of datagrams sent after `seq`.
    pub fn count_after(&self, who: &str, seq: u64) -> usize {
        self.received
            .get(who)
            .map_or(0, |v| v.iter().filter(|(s, _)| *s > seq).count())
    }
}

impl Stream {
    /// Starts receivers on `port` in each `(name, netns)` and a sender in
    /// `from` sending one datagram every `interval` to `dst`.
    pub fn start(
        from: &lab::Netns,
        dst: SocketAddrV4,
        interval: Duration,
        receivers: &[(&str, &lab::Netns)],
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut rx = Vec::new();
        for (name, ns) in receivers {
            let path = format!("/run/netns/{}", ns.name());
            let stop = stop.clone();
            let port = dst.port();
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let h = std::thread::spawn(move || -> Result<Vec<(u64, Instant)>> {
                enter(&path)?;
                let sock = UdpSocket::bind(("0.0.0.0", port))?;
                sock.set_read_timeout(Some(Duration::from_millis(20)))?;
                let _ = ready_tx.send(());
                let mut got = Vec::new();
                let mut buf = [0u8; 256];
                let mut quiet_since: Option<Instant> = None;
                loop {
                    match sock.recv(&mut buf) {
                        Ok(n) if n >= 8 => {
                            let mut seq = [0u8; 8];
                            seq.copy_from_slice(&buf[..8]);
                            got.push((u64::from_be_bytes(seq), Instant::now()));
                            quiet_since = None;
                        }
                        _ => {
                            if stop.load(Ordering::SeqCst) {
                                let q = *quiet_since.get_or_insert_with(Instant::now);
                                if q.elapsed() > Duration::from_millis(200) {
                                    break;
                                }
                            }
                        }
                    }
                }
                Ok(got)
            });
            let _ = ready_rx.recv_timeout(Duration::from_secs(5));
            rx.push((name.to_string(), h));
        }
        let path = format!("/run/netns/{}", from.name());
        let stop_tx = stop.clone();
        let sender = std::thread::spawn(move || -> Result<u64> {
            enter(&path)?;
            let sock = UdpSocket::bind("0.0.0.0:0")?;
            let start = Instant::now();
            let mut seq = 0u64;
            let mut payload = [0u8; 64];
            while !stop_tx.load(Ordering::SeqCst) {
                let due = start + interval * (seq as u32);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                payload[..8].copy_from_slice(&seq.to_be_bytes());
                let _ = sock.send_to(&payload, dst);
                seq += 1;
            }
            Ok(seq)
        });
        Ok(Self {
            stop,
            sender: Some(sender),
            receivers: rx,
            started: Instant::now(),
        })
    }

    /// Sequence number being sent about now (from elapsed time).
    pub fn approx_seq(&self, interval: Duration) -> u64 {
        (self.started.elapsed().as_nanos() / interval.as_nanos().max(1)) as u64
    }

    /// Stops the sender, then collects what each receiver got.
    pub fn finish(mut self) -> Result<StreamReport> {
        self.stop.store(true, Ordering::SeqCst);
        let sent = match self.sender.take() {
            Some(h) => h.join().map_err(|_| anyhow::anyhow!("sender panicked"))??,
            None => 0,
        };
        let mut report = StreamReport {
            sent,
            ..Default::default()
        };
        for (name, h) in std::mem::take(&mut self.receivers) {
            let got = h
                .join()
                .map_err(|_| anyhow::anyhow!("receiver {name} panicked"))??;
            report.received.insert(name, got);
        }
        Ok(report)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The usual end-to-end topology: client `c` and instances `a`, `b` in
/// `10.0.<net>.0/24` (.10, .11, .12; MACs `02:00:00:00:0{c,a,b}:<net>`), a
/// HaVip `.100` bound to a and b, and the agent's config written.
#[derive(Debug)]
pub struct Trio {
    pub lab: Lab,
    pub scratch: Scratch,
    pub config: PathBuf,
    pub vip: Ipv4Addr,
    /// (MAC, IP) of c, a and b.
    pub client: ([u8; 6], Ipv4Addr),
    pub a: ([u8; 6], Ipv4Addr),
    pub b: ([u8; 6], Ipv4Addr),
}

impl Trio {
    /// `tag` prefixes the namespaces (keep it under `hvt` so `cargo xtask
    /// clean-host` knows them); `vip_on_members` adds the HaVip to a's and b's
    /// eth0 (as a keepalived master would), so only forwarding decides.
    pub fn new(tag: &str, net: u8, master: Option<&str>, vip_on_members: bool) -> Result<Self> {
        let host = |last: u8| Ipv4Addr::new(10, 0, net, last);
        let mac = |kind: u8| [0x02, 0, 0, 0, kind, net];
        let (client, a, b) = (
            (mac(0x0c), host(10)),
            (mac(0x0a), host(11)),
            (mac(0x0b), host(12)),
        );
        let vip = host(100);
        let scratch = Scratch::new(tag)?;
        let mut lab = Lab::new(&format!("{}-", lab::unique_name(tag)))?;
        lab.add_guest("c", client.0, client.1)?;
        lab.add_guest("a", a.0, a.1)?;
        lab.add_guest("b", b.0, b.1)?;
        if vip_on_members {
            for g in &lab.guests[1..] {
                g.ns.exec(&["ip", "addr", "add", &format!("{vip}/32"), "dev", "eth0"])?;
            }
        }
        let config = scratch.dir.join("agent.toml");
        let havip = LabHavip {
            id: format!("havip-{tag}"),
            address: vip,
            members: vec!["a".into(), "b".into()],
            master: master.map(str::to_owned),
        };
        std::fs::write(
            &config,
            lab_config(&scratch, &lab, &format!("10.0.{net}.0/24"), &[havip]),
        )?;
        Ok(Self {
            lab,
            scratch,
            config,
            vip,
            client,
            a,
            b,
        })
    }

    /// `havip-agent status` read inside the lab's host namespace (ports are
    /// looked up there).
    ///
    /// # Panics
    /// When the namespace thread or the status read fails (tests only).
    pub fn host_status(&self) -> status::Status {
        let pin_dir = self.scratch.pin_dir.clone();
        self.lab
            .host
            .run(move || status::read(&pin_dir))
            .expect("netns thread")
            .expect("status")
    }

    /// Starts the agent in the host namespace and waits until it is ready.
    pub fn start_agent(&self) -> Result<AgentProcess> {
        let mut agent = AgentProcess::start(
            self.lab.host.name(),
            &self.config,
            &self.scratch.dir.join("agent.log"),
            &[],
        )?;
        agent.wait_ready(&self.scratch, 1, Duration::from_secs(30))?;
        Ok(agent)
    }
}
