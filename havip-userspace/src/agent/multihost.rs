//! Agent start-up for one host of several: the control plane on etcd, this
//! host's identity (id, VTEP, underlay MAC) and the cluster tasks.

use std::{net::Ipv4Addr, sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use tracing::warn;

use crate::{
    cluster::{self, Cluster, LocalHost},
    config::{AgentConfig, Config, VtepConfig},
    control::ControlPlane,
    model::MacAddr,
    store::{EtcdHandle, EtcdStore},
};

/// How long the first load waits for etcd at start.
const START_WAIT: Duration = Duration::from_secs(30);

/// This host's id: `[agent] host_id`, else the hostname.
///
/// # Errors
/// No host id configured and no hostname.
pub fn host_id(agent: &AgentConfig) -> Result<String> {
    if let Some(h) = &agent.host_id {
        return Ok(h.clone());
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the hostname (set [agent] host_id)")?;
    let h = h.trim();
    if h.is_empty() {
        bail!("empty hostname: set [agent] host_id");
    }
    Ok(h.to_owned())
}

/// Opens the control plane on etcd (waiting up to [`START_WAIT`] for it to
/// answer), with `host` as the default host of new ENIs. ENIs of the seed
/// without a host get this one.
///
/// # Errors
/// Bad `[agent.etcd]`, or etcd not reachable within [`START_WAIT`].
pub fn open(cfg: &mut Config, host: &str) -> Result<(Arc<ControlPlane>, EtcdHandle)> {
    let Some(etcd) = cfg.agent.etcd.clone() else {
        bail!("no [agent.etcd]");
    };
    for eni in &mut cfg.enis {
        eni.host.get_or_insert_with(|| host.to_owned());
    }
    let deadline = std::time::Instant::now() + START_WAIT;
    loop {
        let store = EtcdStore::connect(&etcd).context("[agent.etcd]")?;
        let handle = store.handle();
        match ControlPlane::with_store(store) {
            Ok(cp) => {
                cp.set_local_host(host.to_owned());
                return Ok((Arc::new(cp), handle));
            }
            Err(e) if std::time::Instant::now() < deadline => {
                warn!(error = %e, endpoints = ?etcd.endpoints, "etcd not reachable yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e).context("loading the shared state from etcd"),
        }
    }
}

/// Runs the interface ioctl `request` (a `SIOCGIF*` read) on `ifname` in
/// the current network namespace and returns the filled `ifreq`.
fn ifreq_get(ifname: &str, request: libc::c_ulong, what: &str) -> Result<libc::ifreq> {
    if ifname.is_empty() || ifname.len() >= libc::IF_NAMESIZE {
        bail!("bad interface name {ifname:?}");
    }
    let mut name = [0 as libc::c_char; libc::IF_NAMESIZE];
    for (d, s) in name.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: plain syscalls on an fd we own and close; ifreq is zeroed and
    // its name NUL-terminated (IF_NAMESIZE bytes, name shorter); `request`
    // is a read that fills at most the ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        ifr.ifr_name = name;
        let r = libc::ioctl(fd, request as _, &mut ifr);
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            bail!("{what} of {ifname}: {e}");
        }
        Ok(ifr)
    }
}

/// The MAC of `ifname` in the current network namespace.
///
/// # Errors
/// No such interface.
pub fn interface_mac(ifname: &str) -> Result<MacAddr> {
    let ifr = ifreq_get(ifname, libc::SIOCGIFHWADDR, "MAC")?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    let sa = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    Ok(MacAddr(std::array::from_fn(|i| sa[i] as u8)))
}

/// The MTU of `ifname` in the current network namespace.
///
/// # Errors
/// No such interface.
pub fn interface_mtu(ifname: &str) -> Result<u32> {
    let ifr = ifreq_get(ifname, libc::SIOCGIFMTU, "MTU")?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok(u32::try_from(mtu).unwrap_or(0))
}

/// Refuses an underlay (`[agent.vtep]` interface) whose MTU is below
/// [`havip_common::MIN_UNDERLAY_MTU`]: the encap path skips the kernel's MTU
/// check up to that size. Called before anything is touched.
///
/// # Errors
/// No `[agent.vtep]`, no such interface, or its MTU is too small.
pub fn check_underlay(agent: &AgentConfig) -> Result<()> {
    let vtep = vtep_of(agent)?;
    let mtu = interface_mtu(&vtep.interface)?;
    if mtu < havip_common::MIN_UNDERLAY_MTU {
        bail!(
            "[agent.vtep] interface {} has MTU {mtu}; havip needs at least {} on the underlay \
             (1550 to carry 1500-byte guest frames)",
            vtep.interface,
            havip_common::MIN_UNDERLAY_MTU
        );
    }
    Ok(())
}

/// `[agent.vtep]`, which multi-host needs.
fn vtep_of(agent: &AgentConfig) -> Result<&VtepConfig> {
    agent
        .vtep
        .as_ref()
        .context("[agent.etcd] needs [agent.vtep] (the underlay interface and VTEP address)")
}

/// Builds the cluster view and spawns its tasks (sync, registration,
/// publisher, owner notices).
///
/// # Errors
/// No `[agent.vtep]`, or its interface has no MAC.
pub fn start(
    agent: &AgentConfig,
    host: String,
    etcd: EtcdHandle,
    cp: &Arc<ControlPlane>,
) -> Result<Arc<Cluster>> {
    let vtep = vtep_of(agent)?;
    let mac = interface_mac(&vtep.interface)?;
    let address: Ipv4Addr = vtep.address;
    let c = Cluster::new(
        etcd,
        LocalHost {
            id: host,
            interface: vtep.interface.clone(),
            vtep: address,
            mac,
        },
        cp.clone(),
    );
    cp.set_cluster(&c);
    if let Some(socket) = cluster::notice::bind(&c, vtep.notice_port) {
        // Sent from the VTEP address: receivers check the sender is the
        // VTEP of the host a notice names.
        match std::net::UdpSocket::bind((address, 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
        {
            Ok(sender) => c.enable_notices(sender, vtep.notice_port),
            Err(e) => warn!(error = %e, "owner notices not sent: no socket"),
        }
        tokio::spawn(cluster::notice::run(c.clone(), socket));
    }
    tokio::spawn(cluster::sync::run(c.clone()));
    tokio::spawn(cluster::registry::run(c.clone()));
    tokio::spawn(cluster::owners::run(c.clone()));
    Ok(c)
}
