//! Task: the reconciler loop. Owns the loaded data plane; on every control
//! plane change, link notification and resync tick it looks the ports up,
//! attaches where needed and brings the maps to the desired state.

use std::{sync::Arc, time::Duration};

use havip_common::DataplaneConfig;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use super::{
    owners,
    ports::{Port, PortState, Ports},
};
use havip_common::port_flags;

use crate::{
    cluster::{
        notice::{self, FastOwner},
        owners as cluster_owners, Cluster,
    },
    control::{desired, ControlPlane},
    dataplane::desired::DesiredPort,
    dataplane::{
        links::{self, LinkEvent, Redirect},
        loader::lookup_ifindex,
        reconcile::{install_remote_owner, reconcile_with, Installed},
        AttachMode, Dataplane,
    },
};

/// How often the reconciler runs even without a change (safety net for
/// lost link notifications, maps edited by hand, peers whose GRO changed:
/// a veth peer's feature change is notified in the peer's namespace only).
pub const RESYNC: Duration = Duration::from_secs(2);

/// What a pass re-checks for redirectability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recheck {
    /// Every port (a link changed).
    All,
    /// Only ports not known to be redirectable (periodic).
    Doubtful,
}

/// The reconciler's state.
pub struct Reconciler {
    pub dp: Dataplane,
    cp: Arc<ControlPlane>,
    mode: AttachMode,
    config: DataplaneConfig,
    pub ports: Ports,
    /// Multi-host: the cluster view (VTEPs, shared owners).
    pub cluster: Option<Arc<Cluster>>,
    /// The owner recorder, once started (adoptions are queued to it).
    pub recorder: Option<owners::Recorder>,
}

impl Reconciler {
    pub fn new(
        dp: Dataplane,
        cp: Arc<ControlPlane>,
        mode: AttachMode,
        config: DataplaneConfig,
    ) -> Self {
        Self {
            dp,
            cp,
            mode,
            config,
            ports: Ports::default(),
            cluster: None,
            recorder: None,
        }
    }

    /// Runs as one host of several (see `crate::cluster`).
    pub fn with_cluster(mut self, cluster: Arc<Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// One pass: look up every port, attach, reconcile.
    pub async fn pass(&mut self, recheck: Recheck) {
        let started = std::time::Instant::now();
        // Owners the pass installed or cleared itself (an initial owner, an
        // unbound owner) raise no event: an adoption tells the store.
        if self.pass_inner(recheck).await {
            self.adopt_owners().await;
        }
        super::metrics::reconciled(started);
        super::health::publish_ports(&self.ports);
    }

    /// True when the reconcile moved owners itself.
    async fn pass_inner(&mut self, recheck: Recheck) -> bool {
        let host = self.cluster.as_ref().map(|c| c.local.id.clone());
        let vtep_if = self.cluster.as_ref().map(|c| c.local.interface.clone());
        let wanted: Vec<String> = self.cp.with_state(|s| {
            s.enis
                .values()
                .filter(|e| desired::eni_is_local(e, host.as_deref()))
                .map(|e| e.interface.clone())
                .chain(s.uplinks.keys().cloned())
                .chain(vtep_if)
                .collect()
        });
        // All lookups first: one that fails for any reason but "no such
        // device" (EMFILE, ENOBUFS, ...) says nothing about the interface,
        // so this pass changes nothing at all.
        let mut found = Vec::with_capacity(wanted.len());
        for name in wanted {
            match lookup_ifindex(&name) {
                Ok(i) => found.push((name, i)),
                Err(e) => {
                    warn!(ifname = name, error = %e, "interface lookup failed; maps left as they are this pass");
                    return false;
                }
            }
        }
        // An interface that is no longer any ENI's or uplink's (DeleteEni,
        // DeleteInstance, ModifyEni to a new name, DeleteUplink) loses its
        // pinned link: the program stops running there.
        for name in self.dp.attached_interfaces() {
            if !found.iter().any(|(f, _)| *f == name) {
                match self.dp.detach(&name) {
                    Ok(()) => info!(ifname = name, "no longer a port; XDP detached"),
                    Err(e) => {
                        warn!(ifname = name, error = %e, "detaching a former port failed; will retry");
                    }
                }
            }
        }
        self.ports
            .by_name
            .retain(|n, _| found.iter().any(|(f, _)| f == n));
        for (name, ifindex) in found {
            match ifindex {
                Some(ifindex) => self.port_present(&name, ifindex, recheck).await,
                None => self.port_absent(&name),
            }
        }
        self.reconcile()
    }

    async fn port_present(&mut self, name: &str, ifindex: u32, recheck: Recheck) {
        let prev = self.ports.by_name.get(name).cloned();
        let same_ifindex = prev.as_ref().is_some_and(|p| {
            self.ports.ifindex(name) == Some(ifindex) && !matches!(p.state, PortState::Down { .. })
        });
        if let Some(Port {
            state: PortState::Down { last_ifindex },
            ..
        }) = &prev
        {
            info!(ifname = name, ifindex, last_ifindex, "interface is back");
        }
        let attached = if self.dp.runs_on(name, ifindex) {
            true
        } else {
            // An earlier agent's link gets this agent's program swapped in
            // (atomically); a link left by an earlier interface of this name
            // is replaced.
            match self.dp.attach(name, self.mode) {
                Ok(()) => true,
                Err(e) => {
                    error!(ifname = name, error = %e, "attach failed; will retry");
                    false
                }
            }
        };
        let check = !same_ifindex
            || recheck == Recheck::All
            || !matches!(
                prev.as_ref().and_then(|p| p.redirect.as_ref()),
                Some(Redirect::Yes)
            );
        let (redirect, mut warned) = match (&prev, same_ifindex && !check) {
            (Some(p), true) => (p.redirect.clone(), p.warned),
            _ => (
                Some(links::redirectable(ifindex).await),
                same_ifindex && prev.as_ref().is_some_and(|p| p.warned),
            ),
        };
        let state = match (&redirect, attached) {
            (_, false) => PortState::Detached { ifindex },
            (Some(Redirect::No { peer }), true) => {
                if !warned {
                    warn!(
                        ifname = name,
                        ifindex,
                        peer,
                        "port cannot receive redirected frames: its veth peer has neither GRO nor \
                         an XDP program (turn GRO on in the peer: ethtool -K <peer> gro on); kept out \
                         of TX_PORTS, frames for it count as port_not_redirectable"
                    );
                    warned = true;
                }
                PortState::NoRedirect {
                    ifindex,
                    mode: self.mode,
                    peer: peer.clone(),
                }
            }
            (r, true) => {
                if let Some(Redirect::Unknown { reason }) = r {
                    if !warned {
                        warn!(
                            ifname = name,
                            ifindex,
                            reason,
                            "redirect check not possible; port assumed redirectable"
                        );
                        warned = true;
                    }
                } else if matches!(
                    prev.as_ref().map(|p| &p.state),
                    Some(PortState::NoRedirect { .. })
                ) {
                    info!(
                        ifname = name,
                        ifindex, "port can receive redirected frames again"
                    );
                    warned = false;
                }
                PortState::Attached {
                    ifindex,
                    mode: self.mode,
                }
            }
        };
        self.ports.by_name.insert(
            name.to_owned(),
            Port {
                state,
                redirect,
                warned,
            },
        );
    }

    fn port_absent(&mut self, name: &str) {
        let prev = self.ports.by_name.get(name).map(|p| p.state.clone());
        let state = match prev {
            Some(PortState::Down { last_ifindex }) => PortState::Down { last_ifindex },
            Some(
                PortState::Attached { ifindex, .. }
                | PortState::NoRedirect { ifindex, .. }
                | PortState::Detached { ifindex },
            ) => {
                warn!(
                    ifname = name,
                    last_ifindex = ifindex,
                    "interface disappeared; port down (owners behind it kept)"
                );
                self.dp.forget(name);
                PortState::Down {
                    last_ifindex: ifindex,
                }
            }
            Some(PortState::Missing) => PortState::Missing,
            None => {
                warn!(
                    ifname = name,
                    "interface not present yet; will attach when it appears"
                );
                PortState::Missing
            }
        };
        self.ports.by_name.insert(
            name.to_owned(),
            Port {
                state,
                redirect: None,
                warned: false,
            },
        );
    }

    /// Writes the maps; true when that installed or cleared owners.
    fn reconcile(&mut self) -> bool {
        let ports = &self.ports;
        let resolve = |name: &str| ports.ifindex(name);
        let cluster = self.cluster.clone();
        let built = self.cp.with_state(|s| match &cluster {
            Some(c) => desired::desired_for_host(s, &resolve, self.config, &c.local.id).map(
                |(mut d, m)| {
                    let vtep = resolve(&c.local.interface);
                    if let Some(ifindex) = vtep {
                        d.ports.push(DesiredPort {
                            ifindex,
                            vswitch_id: 0,
                            vpc_id: 0,
                            flags: port_flags::VTEP,
                            gateway_mac: [0; 6],
                        });
                        d.ports.sort_by_key(|p| p.ifindex);
                    }
                    d.vxlan = cluster_owners::desired_vxlan(c, s, vtep);
                    (d, m)
                },
            ),
            None => desired::desired_lenient(s, &resolve, self.config),
        });
        let (want, missing) = match built {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "cannot derive the data-plane state");
                return false;
            }
        };
        // Missing interfaces were logged by the port table (once).
        drop(missing);
        let owners_moved = match reconcile_with(&mut self.dp.maps, &want, &self.ports.no_redirect())
        {
            Ok(report) => {
                if report.changed() {
                    info!(?report, "maps reconciled");
                }
                // The ports present are attached (this program swapped in
                // on their links): a migration from the previous layout
                // can drop the old maps.
                self.dp.finish_migration();
                report.owners_created + report.owners_cleared > 0
            }
            Err(e) => {
                error!(error = %e, "reconcile failed; will retry");
                false
            }
        };
        if let Some(c) = &cluster {
            let maps = &mut self.dp.maps;
            self.cp
                .with_state(|s| cluster_owners::settle_kernel(c, maps, s, &want.vxlan));
        }
        owners_moved
    }

    /// Writes a remote owner at once (a notice or a watch event), over a
    /// lower kernel epoch only; ties are left to the next pass.
    pub fn install_fast(&mut self, f: FastOwner) {
        match install_remote_owner(&mut self.dp.maps, f.key, f.owner) {
            Ok(Installed::Installed) => {
                notice::log_installed(std::net::Ipv4Addr::from(f.key.addr), &f);
            }
            Ok(Installed::Stale { kernel_epoch }) => {
                tracing::debug!(
                    epoch = f.owner.epoch,
                    kernel_epoch,
                    via = f.source.name(),
                    "remote owner not newer than the kernel's"
                );
            }
            Err(e) => warn!(error = %e, "installing a remote owner failed; the next pass retries"),
        }
    }

    /// Adopts kernel owners the store does not have.
    pub async fn adopt_owners(&self) {
        owners::adopt(&self.dp, &self.cp, self.recorder.as_ref()).await;
    }
}

/// Waits briefly for a burst of link notifications to end (creating a veth
/// and bringing it up into a bridge is several), then drains the queue.
pub async fn settle(rx: &mut mpsc::UnboundedReceiver<LinkEvent>) {
    tokio::time::sleep(Duration::from_millis(10)).await;
    while rx.try_recv().is_ok() {}
}
