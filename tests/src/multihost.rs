//! Multi-host scenarios: a [`Fabric`] of 3 hosts, an etcd in the underlay,
//! one agent per host on the shared state. Guests: `a` on h1 and `b` on h2
//! (members of the HaVip, the HaVip address on their eth0 as a keepalived
//! master would have it), client `c` on h3.

use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    etcd::Etcd,
    fabric::{Fabric, VSwitchSpec},
    fixtures, lab,
    scenario::{agent_binary, owner_mac, AgentProcess},
};

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 100);
pub const VNI: u32 = 1001;
/// (host, guest, IP, MAC) of the guests.
pub const GUESTS: [(usize, &str, Ipv4Addr, [u8; 6]); 3] = [
    (
        1,
        "a",
        Ipv4Addr::new(10, 0, 1, 11),
        [0x02, 0, 0, 0, 0x0a, 1],
    ),
    (
        2,
        "b",
        Ipv4Addr::new(10, 0, 1, 12),
        [0x02, 0, 0, 0, 0x0b, 1],
    ),
    (
        3,
        "c",
        Ipv4Addr::new(10, 0, 1, 13),
        [0x02, 0, 0, 0, 0x0c, 1],
    ),
];

/// The fabric, its etcd and the agents (index = host - 1).
pub struct MultiHost {
    /// Dropped first (agents, then etcd, then namespaces).
    pub agents: Vec<Option<AgentProcess>>,
    pub etcd: Etcd,
    pub fabric: Fabric,
    pub prefix: String,
    /// 2 or 3; with 2 the client `c` is on h2.
    pub n_hosts: usize,
}

/// The host of guest `name` on a fabric of `n_hosts` hosts (`c` moves to
/// the last host when there are fewer than 3).
pub fn host_of(name: &str, n_hosts: usize) -> Option<usize> {
    GUESTS
        .iter()
        .find(|g| g.1 == name)
        .map(|g| g.0.min(n_hosts))
}

impl MultiHost {
    /// Builds the fabric, starts etcd and the three agents (`initial`:
    /// the guest whose instance is the HaVip's initial owner).
    ///
    /// # Errors
    /// Building the fabric, etcd or an agent failed.
    pub fn new(initial: &str) -> Result<Self> {
        Self::with_hosts(3, initial)
    }

    /// As [`MultiHost::new`] on `n_hosts` hosts (2 or 3): `a` on h1, `b` on
    /// h2, `c` on h3 (on h2 with 2 hosts).
    ///
    /// # Errors
    /// `n_hosts` not 2 or 3, or building the fabric, etcd or an agent failed.
    pub fn with_hosts(n_hosts: usize, initial: &str) -> Result<Self> {
        if !(2..=3).contains(&n_hosts) {
            bail!("a multi-host lab has 2 or 3 hosts, not {n_hosts}");
        }
        let mut fabric = Fabric::new(
            n_hosts,
            VSwitchSpec {
                cidr: "10.0.1.0/24".into(),
                vni: VNI,
                gateway_mac: [0x02, 0, 0, 0, 0, 0x01],
            },
        )?;
        for (n, name, ip, mac) in GUESTS {
            fabric.add_guest(n.min(n_hosts), name, ip, mac)?;
        }
        for (n, name) in [(1, "a"), (2, "b")] {
            fabric.guest(n, name)?.ns.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{VIP}/32"),
                "dev",
                "eth0",
            ])?;
        }
        let etcd = fabric.start_etcd()?;
        let prefix = format!("/{}", lab::unique_name("hvmh"));
        let mut mh = Self {
            agents: Vec::new(),
            etcd,
            fabric,
            prefix,
            n_hosts,
        };
        for n in 1..=n_hosts {
            std::fs::write(mh.config_path(n)?, mh.config(n, initial)?)?;
        }
        for n in 1..=n_hosts {
            let a = mh.start_agent(n)?;
            mh.agents.push(Some(a));
        }
        Ok(mh)
    }

    fn config_path(&self, n: usize) -> Result<PathBuf> {
        Ok(self.fabric.host(n)?.scratch.dir.join("agent.toml"))
    }

    /// Host `n`'s config: the same seed everywhere (ENIs name their host).
    fn config(&self, n: usize, initial: &str) -> Result<String> {
        let h = self.fabric.host(n)?;
        let mut s = String::new();
        let _ = write!(
            s,
            "[agent]\npin_dir = \"{}\"\napi_socket = \"{}\"\nstate_db = \"{}\"\nhost_id = \"h{n}\"\n\n\
             [agent.etcd]\nendpoints = [\"{}\"]\nprefix = \"{}\"\ndial_timeout_ms = 500\nrequest_timeout_ms = 1000\n\n\
             [agent.vtep]\ninterface = \"eth0\"\naddress = \"{}\"\n\n\
             [[vpc]]\nid = \"vpc-mh\"\ncidr = \"10.0.0.0/16\"\n\n\
             [[vswitch]]\nid = \"vsw-mh\"\nvpc = \"vpc-mh\"\ncidr = \"10.0.1.0/24\"\ngateway_mac = \"02:00:00:00:00:01\"\nvni = {VNI}\n\n",
            h.scratch.pin_dir.display(),
            h.scratch.socket().display(),
            h.scratch.dir.join("state.redb").display(),
            self.etcd.endpoint(),
            self.prefix,
            h.vtep,
        );
        for (host, name, _, mac) in GUESTS {
            let _ = write!(
                s,
                "[[instance]]\nid = \"i-{name}\"\nvswitch = \"vsw-mh\"\n\n\
                 [[eni]]\nid = \"eni-{name}\"\ninstance = \"i-{name}\"\nvswitch = \"vsw-mh\"\nmac = \"{}\"\ninterface = \"hv-{name}\"\nprimary = true\nhost = \"h{}\"\n\n",
                lab::mac_string(mac),
                host.min(self.n_hosts)
            );
        }
        let _ = write!(
            s,
            "[[havip]]\nid = \"havip-mh\"\nvswitch = \"vsw-mh\"\naddress = \"{VIP}\"\ninstances = [\"i-a\", \"i-b\"]\ninitial_owner = \"i-{initial}\"\n"
        );
        Ok(s)
    }

    /// Starts host `n`'s agent and waits until it is ready.
    ///
    /// # Errors
    /// The agent exited or was not ready within 30 s.
    pub fn start_agent(&self, n: usize) -> Result<AgentProcess> {
        let h = self.fabric.host(n)?;
        let mut a = AgentProcess::start(
            h.ns().name(),
            &self.config_path(n)?,
            &h.scratch.dir.join("agent.log"),
            &[],
        )?;
        a.wait_ready(&h.scratch, 1, Duration::from_secs(30))?;
        Ok(a)
    }

    /// (owner MAC, epoch) of the HaVip in host `n`'s kernel.
    pub fn owner(&self, n: usize) -> Option<(String, u64)> {
        let pin = &self.fabric.host(n).ok()?.scratch.pin_dir;
        let st = havip::status::read(pin).ok()?;
        let h = st
            .havips
            .into_iter()
            .find(|h| h.address == VIP.to_string())?;
        Some((owner_mac(pin, VIP)?, h.epoch))
    }

    /// Waits until every host's kernel names the same owner MAC, which is
    /// `want` if given; returns it, its epoch and how long it took.
    ///
    /// # Errors
    /// No agreement within `timeout` (the owners seen are in the error).
    pub fn converged(
        &self,
        want: Option<[u8; 6]>,
        timeout: Duration,
    ) -> Result<(String, u64, Duration)> {
        let started = Instant::now();
        loop {
            let seen: Vec<Option<(String, u64)>> =
                (1..=self.n_hosts).map(|n| self.owner(n)).collect();
            if let Some(Some((mac, epoch))) = seen.first() {
                let same = seen
                    .iter()
                    .all(|o| o.as_ref().is_some_and(|(m, e)| m == mac && e == epoch));
                if same && want.is_none_or(|w| lab::mac_string(w) == *mac) {
                    return Ok((mac.clone(), *epoch, started.elapsed()));
                }
            }
            if started.elapsed() > timeout {
                bail!("owners did not converge in {timeout:?}: {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A gratuitous ARP for the HaVip from guest `name` (a claim).
    ///
    /// # Errors
    /// No such guest, or sending failed.
    pub fn claim(&self, name: &str) -> Result<()> {
        let (_, _, _, mac) = GUESTS
            .iter()
            .find(|g| g.1 == name)
            .copied()
            .context("unknown guest")?;
        let n = host_of(name, self.n_hosts).context("unknown guest")?;
        let g = self.fabric.guest(n, name)?;
        lab::send_raw(&g.ns, "eth0", vec![fixtures::garp(mac, VIP)])?;
        Ok(())
    }

    /// Runs `havipctl --socket <host n's API> ARGS`; returns the exit code
    /// and stdout (stderr is appended to the error when it cannot run).
    ///
    /// # Errors
    /// No such host, or `havipctl` could not be started.
    pub fn havipctl(&self, n: usize, args: &[&str]) -> Result<(i32, String)> {
        let socket = self.fabric.host(n)?.scratch.socket();
        let out = std::process::Command::new(agent_binary()?.with_file_name("havipctl"))
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .output()
            .context("running havipctl")?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    }

    /// `havipctl --json cluster` on host `n`, decoded.
    ///
    /// # Errors
    /// havipctl failed or printed something else than a cluster status.
    pub fn cluster(&self, n: usize) -> Result<havip::cluster::SyncStatus> {
        let (code, out) = self.havipctl(n, &["--json", "cluster"])?;
        if code != 0 {
            bail!("havipctl cluster on h{n} exited {code}: {out}");
        }
        serde_json::from_str::<Option<havip::cluster::SyncStatus>>(&out)
            .with_context(|| format!("not a cluster status: {out}"))?
            .with_context(|| format!("h{n} has no cluster (redb store?)"))
    }

    /// The log of host `n`'s agent (for failure messages).
    pub fn log(&self, n: usize) -> String {
        self.fabric
            .host(n)
            .map(|h| std::fs::read_to_string(h.scratch.dir.join("agent.log")).unwrap_or_default())
            .unwrap_or_default()
    }
}
