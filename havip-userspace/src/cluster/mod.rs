//! Several hosts on one shared state (etcd): the host registry, the shared
//! owners and this host's view of both.
//!
//! - [`sync`]: keeps the control plane's state, the host registry and the
//!   shared owners equal to etcd (a snapshot, then a watch of the prefix;
//!   again after any error);
//! - [`registry`]: registers this host (id, VTEP address, underlay MAC)
//!   under a lease kept alive, so a dead host's record expires;
//! - [`owners`]: publishes local claims with the epoch fence and decides
//!   which shared owner the kernel should hold;
//! - [`notice`]: direct owner notices between agents (UDP over the
//!   underlay), so the other hosts switch before etcd's watch reaches them.
//!
//! # The fencing rule
//! `<prefix>/owners/<havip>` = {host, eni, mac, epoch}. A host publishes a
//! local claim of epoch `e` only over a stored epoch `< e` (a txn comparing
//! the key's mod revision with the one known from the watch; on a mismatch
//! it reads the key and it is decided again). Direct notices ([`notice`])
//! only install an owner earlier; at an equal epoch the stored one wins. Every agent installs
//! the stored owner unless its kernel holds a higher epoch; at an equal
//! epoch the stored owner wins over a local claim (two hosts claimed at
//! once from the same base: the first publish won). So all hosts end on
//! the owner with the highest epoch that reached etcd.

pub mod notice;
pub mod owners;
pub mod registry;
pub mod sync;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    sync::{atomic::Ordering, Arc, Mutex, PoisonError, RwLock},
};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, Notify};

use self::notice::FastOwner;

use crate::{control::ControlPlane, model::MacAddr, store::EtcdHandle};

/// A host's registration (`<prefix>/hosts/<host>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    /// The host's id (its `host_id`).
    pub host: String,
    /// Its VTEP address: where VXLAN frames for owners on it are sent.
    pub vtep: Ipv4Addr,
    /// MAC of its VTEP interface.
    pub mac: MacAddr,
}

/// The shared owner of a HaVip (`<prefix>/owners/<havip>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedOwner {
    /// Host the owner sits on (the host whose kernel took the claim).
    pub host: String,
    /// The owner ENI's id.
    pub eni: String,
    /// Its MAC: the destination of frames forwarded to it.
    pub mac: MacAddr,
    /// The claiming host's owner epoch: of two claims, the one with the
    /// higher epoch is kept.
    pub epoch: u64,
}

/// This host's identity in the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalHost {
    pub id: String,
    /// Underlay interface (the VTEP port), e.g. `eth0`.
    pub interface: String,
    pub vtep: Ipv4Addr,
    pub mac: MacAddr,
}

/// What this host knows of the cluster. Shared by the sync task, the
/// publisher, the reconciler and Describe.
pub struct Cluster {
    pub etcd: EtcdHandle,
    pub local: LocalHost,
    pub cp: Arc<ControlPlane>,
    /// VTEP records (`vteps/`), kept while a host is down.
    hosts: RwLock<BTreeMap<String, HostRecord>>,
    /// Hosts with a live registration (`hosts/`).
    alive: RwLock<BTreeSet<String>>,
    /// Shared owner per HaVip id, with the key's mod revision.
    owners: RwLock<BTreeMap<String, (SharedOwner, i64)>>,
    /// Local claims not yet published: HaVip id -> latest claim.
    pending: Mutex<BTreeMap<String, SharedOwner>>,
    /// Wakes the publisher.
    pub publish: Notify,
    /// Remote owners for the reconciler to write at once (notices, watch).
    fast_tx: mpsc::UnboundedSender<FastOwner>,
    fast_rx: Mutex<Option<mpsc::UnboundedReceiver<FastOwner>>>,
    /// The socket and port owner notices are sent with (none: off).
    notices: std::sync::OnceLock<(std::net::UdpSocket, u16)>,
}

/// `CLOCK_MONOTONIC` now, in ns (the clock of `bpf_ktime_get_ns`, so the
/// kernel's claim times and the agent's compare).
pub fn monotonic_ns() -> u64 {
    // SAFETY: plain syscall writing into a local.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts
    };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// Describe's view of the cluster: connection and revisions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// This host's id (`host_id` of `[agent]`, default the hostname).
    pub host: String,
    /// etcd answered since the sync loop last failed (false until the
    /// first answer, and again after each failure until the next one).
    pub connected: bool,
    /// Highest etcd revision seen.
    pub last_revision: i64,
    /// Revision the local copy of the records is at.
    pub state_revision: i64,
    /// Hosts with a live registration.
    pub hosts_alive: Vec<String>,
    /// Every host with a known VTEP.
    pub hosts: Vec<String>,
    /// Local claims waiting to be published.
    pub pending_publishes: usize,
}

impl Cluster {
    pub fn new(etcd: EtcdHandle, local: LocalHost, cp: Arc<ControlPlane>) -> Arc<Self> {
        let (fast_tx, fast_rx) = mpsc::unbounded_channel();
        Arc::new(Self {
            etcd,
            local,
            cp,
            hosts: RwLock::default(),
            alive: RwLock::default(),
            owners: RwLock::default(),
            pending: Mutex::default(),
            publish: Notify::new(),
            fast_tx,
            fast_rx: Mutex::new(Some(fast_rx)),
            notices: std::sync::OnceLock::new(),
        })
    }

    /// Hands a remote owner to the reconciler (written without a full pass).
    pub fn install_fast(&self, f: FastOwner) {
        let _ = self.fast_tx.send(f);
    }

    /// The reconciler's end of [`Cluster::install_fast`] (once).
    pub fn take_fast(&self) -> Option<mpsc::UnboundedReceiver<FastOwner>> {
        self.fast_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Sends owner notices with `socket` to `port` of every other host.
    pub fn enable_notices(&self, socket: std::net::UdpSocket, port: u16) {
        let _ = self.notices.set((socket, port));
    }

    /// Tells the other hosts at once of a local claim (if notices are on).
    pub fn notify_peers(&self, havip: &str, owner: &SharedOwner) {
        if let Some((socket, port)) = self.notices.get() {
            notice::send(self, socket, *port, havip, owner);
        }
    }

    /// Registered hosts (this one included once registered).
    pub fn hosts(&self) -> BTreeMap<String, HostRecord> {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Shared owners by HaVip id.
    pub fn owners(&self) -> BTreeMap<String, SharedOwner> {
        self.owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, (o, _))| (k.clone(), o.clone()))
            .collect()
    }

    /// The shared owner of `havip` and its key's mod revision.
    pub fn owner(&self, havip: &str) -> Option<(SharedOwner, i64)> {
        self.owners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(havip)
            .cloned()
    }

    pub(crate) fn set_hosts(&self, hosts: BTreeMap<String, HostRecord>) {
        *self.hosts.write().unwrap_or_else(PoisonError::into_inner) = hosts;
    }

    pub(crate) fn update_host(&self, id: &str, rec: Option<HostRecord>) {
        let mut h = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        match rec {
            Some(r) => h.insert(id.to_owned(), r),
            None => h.remove(id),
        };
    }

    pub(crate) fn set_alive(&self, alive: BTreeSet<String>) {
        *self.alive.write().unwrap_or_else(PoisonError::into_inner) = alive;
    }

    pub(crate) fn update_alive(&self, id: &str, alive: bool) {
        let mut a = self.alive.write().unwrap_or_else(PoisonError::into_inner);
        if alive {
            a.insert(id.to_owned());
        } else {
            a.remove(id);
        }
    }

    /// Hosts with a live registration.
    pub fn alive(&self) -> BTreeSet<String> {
        self.alive
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_owners(&self, owners: BTreeMap<String, (SharedOwner, i64)>) {
        *self.owners.write().unwrap_or_else(PoisonError::into_inner) = owners;
    }

    /// Records a shared owner seen in etcd (ignores one older than what is
    /// known: a watch event can trail a publish's own read).
    pub(crate) fn update_owner(&self, havip: &str, rec: Option<(SharedOwner, i64)>) {
        let mut o = self.owners.write().unwrap_or_else(PoisonError::into_inner);
        match rec {
            Some(r) => {
                if o.get(havip).is_none_or(|(_, rev)| *rev <= r.1) {
                    o.insert(havip.to_owned(), r);
                }
            }
            None => {
                o.remove(havip);
            }
        }
    }

    /// Queues a local claim for publishing (the latest per HaVip wins).
    pub fn queue_publish(&self, havip: String, owner: SharedOwner) {
        {
            let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if p.get(&havip).is_none_or(|o| o.epoch < owner.epoch) {
                p.insert(havip, owner);
            }
        }
        self.publish.notify_one();
    }

    pub(crate) fn take_pending(&self) -> BTreeMap<String, SharedOwner> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn requeue(&self, havip: String, owner: SharedOwner) {
        let mut p = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if p.get(&havip).is_none_or(|o| o.epoch < owner.epoch) {
            p.insert(havip, owner);
        }
    }

    /// Connection and revisions, for Describe.
    pub fn status(&self) -> SyncStatus {
        let sh = &self.etcd.shared;
        SyncStatus {
            host: self.local.id.clone(),
            connected: sh.connected.load(Ordering::Relaxed),
            last_revision: sh.last_rev.load(Ordering::Relaxed),
            state_revision: sh.state_rev.load(Ordering::Relaxed),
            hosts_alive: self.alive().into_iter().collect(),
            hosts: self.hosts().into_keys().collect(),
            pending_publishes: self
                .pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
        }
    }
}
