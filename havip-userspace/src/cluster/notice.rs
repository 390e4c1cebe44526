//! Direct owner notices between agents over the underlay (UDP).
//!
//! The agent whose kernel accepted a claim tells every other registered
//! host at once, in one datagram each to `<vtep>:<notice_port>`, "HaVip X:
//! owner on host B, member M, epoch E", next to (not instead of) the
//! publish to etcd. A receiver checks the notice against what it knows
//! (sender address = the named host's VTEP, the member a bound ENI of that
//! host) and hands it to the reconciler, which installs it only over a
//! strictly lower kernel epoch ([`crate::dataplane::reconcile::install_remote_owner`]).
//! etcd stays the authority: at an equal epoch the stored owner replaces
//! whatever the kernel holds (`super::owners::settle_kernel`), so a notice
//! that lost the race in etcd is undone when the winner's watch event
//! arrives, and a late notice (an epoch already reached) changes nothing.
//! See docs/design.md, "Direct owner notices".

use std::{
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket},
    sync::Arc,
};

use havip_common::HavipKey;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::{monotonic_ns, Cluster, SharedOwner};
use crate::{dataplane::desired::RemoteOwner, model::State};

/// Default UDP port of the notices (`[agent.vtep] notice_port`; 0 = off).
pub const DEFAULT_PORT: u16 = 4790;
/// Largest notice accepted (a notice is ~150 bytes).
const MAX_NOTICE: usize = 1024;

/// One notice: the claim as it will be published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub havip: String,
    pub owner: SharedOwner,
}

/// Where a remote owner handed to the reconciler comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A direct notice from the claiming host.
    Notice,
    /// The etcd watch (the stored owner).
    Etcd,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Notice => "notice",
            Source::Etcd => "etcd",
        }
    }
}

/// A remote owner for the reconciler to write at once (no full pass).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastOwner {
    pub key: HavipKey,
    pub owner: RemoteOwner,
    pub source: Source,
    /// `CLOCK_MONOTONIC` ns when the notice or watch event arrived.
    pub seen_ns: u64,
}

/// Why a notice was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    FromSelf,
    UnknownHost,
    WrongSender,
    UnknownHavip,
    NotAMember,
    /// etcd already holds this epoch or a newer one.
    Stale,
}

/// Sends `havip`'s new owner (a local claim) to every other known host.
/// Best effort: a lost datagram only means the host learns it from etcd.
pub fn send(c: &Cluster, socket: &UdpSocket, port: u16, havip: &str, owner: &SharedOwner) {
    let notice = Notice {
        havip: havip.to_owned(),
        owner: owner.clone(),
    };
    let Ok(bytes) = serde_json::to_vec(&notice) else {
        return;
    };
    for h in c.hosts().values().filter(|h| h.host != c.local.id) {
        if let Err(e) = socket.send_to(&bytes, SocketAddrV4::new(h.vtep, port)) {
            debug!(host = h.host, error = %e, "owner notice not sent");
        }
    }
}

/// Decodes and checks one datagram from `from`; the remote owner to install.
///
/// # Errors
/// The reason it is not used.
pub fn accept(
    c: &Cluster,
    state: &State,
    from: Ipv4Addr,
    bytes: &[u8],
) -> Result<FastOwner, Refused> {
    let n: Notice = serde_json::from_slice(bytes).map_err(|_| Refused::Malformed)?;
    if n.owner.host == c.local.id {
        return Err(Refused::FromSelf);
    }
    let hosts = c.hosts();
    let host = hosts.get(&n.owner.host).ok_or(Refused::UnknownHost)?;
    if host.vtep != from {
        return Err(Refused::WrongSender);
    }
    let h = state.havips.get(&n.havip).ok_or(Refused::UnknownHavip)?;
    let eni = state.enis.get(&n.owner.eni).ok_or(Refused::NotAMember)?;
    let bound = h.bindings.contains(&eni.id)
        || eni
            .instance
            .as_ref()
            .is_some_and(|i| h.bindings.contains(i));
    if !bound || eni.mac != n.owner.mac || eni.host.as_deref() != Some(n.owner.host.as_str()) {
        return Err(Refused::NotAMember);
    }
    if c.owner(&n.havip)
        .is_some_and(|(s, _)| s.epoch >= n.owner.epoch)
    {
        return Err(Refused::Stale);
    }
    let (key, owner) = super::owners::remote_owner_of(state, &hosts, &n.havip, &n.owner)
        .ok_or(Refused::UnknownHavip)?;
    Ok(FastOwner {
        key,
        owner,
        source: Source::Notice,
        seen_ns: monotonic_ns(),
    })
}

/// Binds the notice socket on this host's VTEP address (`port` 0: none).
pub fn bind(c: &Cluster, port: u16) -> Option<tokio::net::UdpSocket> {
    if port == 0 {
        return None;
    }
    let addr = SocketAddr::from(SocketAddrV4::new(c.local.vtep, port));
    let socket = UdpSocket::bind(addr)
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .and_then(tokio::net::UdpSocket::from_std);
    match socket {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(%addr, error = %e, "owner notices off: cannot bind; owners follow etcd only");
            None
        }
    }
}

/// Task: receives notices and hands the good ones to the reconciler.
pub async fn run(c: Arc<Cluster>, socket: tokio::net::UdpSocket) {
    let mut buf = vec![0u8; MAX_NOTICE];
    loop {
        let (len, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "owner notice receive failed");
                continue;
            }
        };
        let SocketAddr::V4(from) = from else { continue };
        let Some(bytes) = buf.get(..len) else {
            continue;
        };
        match c.cp.with_state(|s| accept(&c, s, *from.ip(), bytes)) {
            Ok(f) => c.install_fast(f),
            Err(reason) => debug!(from = %from, ?reason, "owner notice not used"),
        }
    }
}

/// Logs a remote owner written by the fast path (the failover bench reads
/// these fields).
pub fn log_installed(havip: Ipv4Addr, f: &FastOwner) {
    info!(
        havip = %havip,
        epoch = f.owner.epoch,
        via = %f.source.name(),
        seen_ns = f.seen_ns,
        installed_ns = monotonic_ns(),
        "remote owner installed"
    );
}
