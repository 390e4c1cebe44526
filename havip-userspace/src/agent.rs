//! The agent's main loop: seed the store from the config, load or adopt the
//! pinned data plane, reconcile maps whenever the control plane changes,
//! record owner changes reported by the kernel, serve the API.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use anyhow::{Context, Result};
use aya::maps::{MapData, PerCpuArray};
use havip_common::{names, DropReason, HavipKey, OwnerEntry, TrafficCounter};
use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use crate::{
    api,
    config::Config,
    control::{desired, ControlPlane, CountersSource, HavipCounters},
    dataplane::{
        events::{self, DataplaneEvent},
        loader::ifindex_of,
        reconcile, Dataplane,
    },
    lab::mac_string,
    model::{MacAddr, ObservedOwner},
};

/// Command-line overrides of the config's `[agent]` table.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub pin_dir: Option<PathBuf>,
    pub api_socket: Option<PathBuf>,
    pub state_db: Option<PathBuf>,
    /// Detach and unpin everything on exit (the demo); default is to leave
    /// the data plane forwarding for the next agent.
    pub teardown_on_exit: bool,
}

/// How often the reconciler runs even without a change (self-healing:
/// interfaces that appear late, maps edited by hand).
const RESYNC: Duration = Duration::from_secs(2);

/// Runs the agent until SIGINT/SIGTERM.
///
/// # Errors
/// Bad config, store or data-plane errors at start-up. Errors after start-up
/// are logged and retried, never fatal.
pub async fn run(config_path: PathBuf, overrides: Overrides) -> Result<()> {
    let mut cfg =
        Config::load(&config_path).with_context(|| format!("config {}", config_path.display()))?;
    if let Some(p) = overrides.pin_dir {
        cfg.agent.pin_dir = p;
    }
    if let Some(p) = overrides.api_socket {
        cfg.agent.api_socket = p;
    }
    if let Some(p) = overrides.state_db {
        cfg.agent.state_db = p;
    }
    let agent = cfg.agent.clone();
    if let Some(dir) = agent.state_db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let cp = Arc::new(
        ControlPlane::open(&agent.state_db)
            .with_context(|| format!("opening store {}", agent.state_db.display()))?,
    );
    let seeded = crate::config::seed(&cp, &cfg).context("seeding the store from the config")?;
    info!(?seeded, "store seeded from config");

    let started = std::time::Instant::now();
    let mut dp = Dataplane::load(&agent.pin_dir).context("loading the XDP data plane")?;
    let dp_config = cfg.dataplane_config();

    // Kernel truth first: owners switched while no agent ran are recorded,
    // never overwritten.
    adopt_owners(&dp, &cp);

    attach_all(&mut dp, &cp, agent.xdp_mode);
    reconcile_now(&mut dp, &cp, dp_config);
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        pin_dir = %agent.pin_dir.display(),
        "data plane ready"
    );

    cp.set_counters(Arc::new(PinnedCounters::open(&agent.pin_dir)?));

    // aya-log records (ring full, refused owner update) into tracing.
    if let Some(logs) = dp.logs.take() {
        // SAFETY: the logger owns its ring buffer fd for the AsyncFd's life.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logs, tokio::io::Interest::READABLE)
        };
        match registered {
            Ok(mut fd) => {
                tokio::spawn(async move {
                    while let Ok(mut guard) = fd.readable_mut().await {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => warn!(error = %e.to_string(), "aya-log reader not started"),
        }
    }

    // Owner changes from the kernel, recorded in batches: a flapping pair
    // cannot turn into one durable write per claim.
    let pending: Arc<Mutex<HashMap<HavipKey, ObservedOwner>>> = Arc::default();
    let flush = Arc::new(Notify::new());
    if let Some(ring) = dp.maps.events.take() {
        let pending = pending.clone();
        let flush = flush.clone();
        tokio::spawn(async move {
            let result = events::consume(ring, |event| {
                on_event(event, &pending);
                flush.notify_one();
            })
            .await;
            if let Err(e) = result {
                error!(error = %e, "event consumer stopped");
            }
        });
    }
    {
        let cp = cp.clone();
        let pending = pending.clone();
        let flush = flush.clone();
        tokio::spawn(async move {
            loop {
                flush.notified().await;
                // Coalesce a burst of claims into one durable write.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let batch: Vec<_> = pending
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .drain()
                    .collect();
                let cp = cp.clone();
                let written = tokio::task::spawn_blocking(move || cp.record_owners(&batch)).await;
                match written {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => warn!(error = %e, "recording owners failed; the resync retries"),
                    Err(e) => error!(error = %e, "owner recorder panicked"),
                }
            }
        });
    }

    let shutdown = Arc::new(Notify::new());
    let unix = api::bind_unix(&agent.api_socket)
        .with_context(|| format!("binding API socket {}", agent.api_socket.display()))?;
    {
        let cp = cp.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) =
                api::serve_unix_listener(unix, cp, async move { stop.notified().await }).await
            {
                error!(error = %e, "API server (unix) stopped");
            }
        });
    }
    if let Some(addr) = agent.api_tcp {
        let cp = cp.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = api::serve_tcp(addr, cp, async move { stop.notified().await }).await {
                error!(error = %e, "API server (tcp) stopped");
            }
        });
    }
    info!(socket = %agent.api_socket.display(), tcp = ?agent.api_tcp, "API listening");

    let mut changes = cp.subscribe();
    let mut tick = tokio::time::interval(RESYNC);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() { break; }
                attach_all(&mut dp, &cp, agent.xdp_mode);
                reconcile_now(&mut dp, &cp, dp_config);
            }
            _ = tick.tick() => {
                attach_all(&mut dp, &cp, agent.xdp_mode);
                reconcile_now(&mut dp, &cp, dp_config);
                adopt_owners(&dp, &cp);
            }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT"); break; }
            _ = sigterm.recv() => { info!("SIGTERM"); break; }
        }
    }
    shutdown.notify_waiters();
    let _ = std::fs::remove_file(&agent.api_socket);
    if overrides.teardown_on_exit {
        drop(dp);
        crate::dataplane::loader::teardown(&agent.pin_dir)
            .with_context(|| format!("tearing down {}", agent.pin_dir.display()))?;
        info!("data plane detached and unpinned");
    } else {
        info!(pin_dir = %agent.pin_dir.display(), "exiting; XDP stays attached and forwarding (pinned)");
    }
    Ok(())
}

fn observed(owner: &OwnerEntry) -> ObservedOwner {
    ObservedOwner {
        ifindex: owner.ifindex,
        mac: MacAddr(owner.mac),
        epoch: owner.epoch,
        changed_ns: owner.changed_ns,
    }
}

fn on_event(event: DataplaneEvent, pending: &Mutex<HashMap<HavipKey, ObservedOwner>>) {
    match event {
        DataplaneEvent::OwnerChanged(e) => {
            info!(
                havip = %std::net::Ipv4Addr::from(e.key.addr),
                vswitch = e.key.vswitch_id,
                epoch = e.epoch,
                owner_ifindex = e.ifindex,
                owner_mac = %mac_string(e.mac),
                previous_ifindex = e.prev_ifindex,
                previous_mac = %mac_string(e.prev_mac),
                "owner changed by ARP claim"
            );
            let owner = ObservedOwner {
                ifindex: e.ifindex,
                mac: MacAddr(e.mac),
                epoch: e.epoch,
                changed_ns: e.ts_ns,
            };
            let mut p = pending.lock().unwrap_or_else(PoisonError::into_inner);
            let newer = p.get(&e.key).is_none_or(|o| o.epoch <= owner.epoch);
            if newer {
                p.insert(e.key, owner);
            }
        }
        DataplaneEvent::ClaimRefused { event: e, reason } => {
            let reason = reason.map_or("unknown", DropReason::name);
            warn!(
                security = true,
                havip = %std::net::Ipv4Addr::from(e.key.addr),
                vswitch = e.key.vswitch_id,
                ifindex = e.ifindex,
                mac = %mac_string(e.mac),
                reason,
                suppressed_before = e.suppressed,
                "refused ARP claim"
            );
        }
        DataplaneEvent::Unknown(e) => debug!(kind = e.kind, "unknown event"),
    }
}

/// Records every owner the kernel holds whose epoch the store does not have
/// (at start and on each resync, which also covers events lost to a full
/// ring buffer).
fn adopt_owners(dp: &Dataplane, cp: &ControlPlane) {
    let owners: Vec<(HavipKey, OwnerEntry)> =
        dp.maps.owners.iter().filter_map(Result::ok).collect();
    let stale: Vec<(HavipKey, ObservedOwner)> = cp.with_state(|s| {
        owners
            .iter()
            .filter(|(key, owner)| {
                s.havip_by_key(key.vswitch_id, std::net::Ipv4Addr::from(key.addr))
                    .is_some_and(|h| s.owners.get(&h.id).map(|o| o.epoch) != Some(owner.epoch))
            })
            .map(|(key, owner)| (*key, observed(owner)))
            .collect()
    });
    if stale.is_empty() {
        return;
    }
    match cp.record_owners(&stale) {
        Ok(n) => info!(recorded = n, "owners adopted from the kernel"),
        Err(e) => warn!(error = %e, "recording kernel owners failed; will retry"),
    }
}

fn attach_all(dp: &mut Dataplane, cp: &ControlPlane, mode: crate::dataplane::AttachMode) {
    let wanted: Vec<String> = cp.with_state(|s| {
        s.enis
            .values()
            .map(|e| e.interface.clone())
            .chain(s.uplinks.keys().cloned())
            .collect()
    });
    for ifname in wanted {
        // An earlier agent's link gets this agent's program swapped in
        // (atomically) on the first pass; later passes only fill gaps.
        if dp.runs_on(&ifname) {
            continue;
        }
        if ifindex_of(&ifname).is_none() {
            warn!(ifname, "interface not present yet; will retry");
            continue;
        }
        if let Err(e) = dp.attach(&ifname, mode) {
            error!(ifname, error = %e, "attach failed; will retry");
        }
    }
}

fn reconcile_now(dp: &mut Dataplane, cp: &ControlPlane, config: havip_common::DataplaneConfig) {
    let built = cp.with_state(|s| desired::desired_lenient(s, &ifindex_of, config));
    let (want, missing) = match built {
        Ok(x) => x,
        Err(e) => {
            error!(error = %e, "cannot derive the data-plane state");
            return;
        }
    };
    for m in &missing {
        warn!("{m}");
    }
    match reconcile(&mut dp.maps, &want) {
        Ok(report) if report.changed() => info!(?report, "maps reconciled"),
        Ok(_) => {}
        Err(e) => error!(error = %e, "reconcile failed; will retry"),
    }
}

/// Live HaVip counters for Describe, from the pinned `HAVIP_STATS`.
struct PinnedCounters {
    stats: PerCpuArray<MapData, TrafficCounter>,
}

impl PinnedCounters {
    fn open(pin_dir: &std::path::Path) -> Result<Self> {
        let data = MapData::from_pin(pin_dir.join(names::HAVIP_STATS))
            .context("opening pinned HAVIP_STATS")?;
        let stats = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
            .context("typing HAVIP_STATS")?;
        Ok(Self { stats })
    }
}

impl CountersSource for PinnedCounters {
    fn havip_counters(&self, slot: u32) -> Option<HavipCounters> {
        let values = self.stats.get(&slot, 0).ok()?;
        let (packets, bytes) = values
            .iter()
            .fold((0, 0), |(p, b), v| (p + v.packets, b + v.bytes));
        Some(HavipCounters { packets, bytes })
    }
}
