//! The agent: seed the store from the config, load or adopt the pinned data
//! plane, then run a few named tasks until SIGINT/SIGTERM:
//!
//! - [`reconciler`]: owns the data plane; on every control-plane change,
//!   link notification and resync tick it looks the ports up ([`ports`]),
//!   attaches where needed and reconciles the maps;
//! - the link watcher (`dataplane::links`): netlink link notifications;
//! - [`owners`]: the event consumer and the owner recorder;
//! - [`servers`]: the API servers;
//! - [`logs`]: the XDP program's log records;
//! - [`notify`]: the notify command on owner changes (if configured).

pub mod counters;
pub mod health;
pub mod logs;
pub mod metrics;
pub mod multihost;
pub mod notify;
pub mod overrides;
pub mod owners;
pub mod ports;
pub mod reconciler;
pub mod servers;

use std::{path::PathBuf, sync::Arc};

use anyhow::{Context, Result};
use tokio::sync::{mpsc, Notify};
use tracing::{info, warn};

pub use self::overrides::Overrides;
use self::reconciler::{Recheck, Reconciler, RESYNC};
use crate::{
    config::Config,
    control::ControlPlane,
    dataplane::{links, Dataplane},
};

/// Runs the agent until SIGINT/SIGTERM.
///
/// # Errors
/// Bad config, store or data-plane errors at start-up. Errors after start-up
/// are logged and retried, never fatal.
pub async fn run(config_path: PathBuf, overrides: Overrides) -> Result<()> {
    let mut cfg =
        Config::load(&config_path).with_context(|| format!("config {}", config_path.display()))?;
    overrides.apply(&mut cfg);
    let agent = cfg.agent.clone();
    // Refused before anything is touched (store, data plane).
    let security = crate::api::ApiSecurity::from_config(&agent).context("API settings")?;
    servers::raise_nofile_limit();
    // Multi-host: the shared state on etcd instead of redb.
    let (cp, etcd) = if agent.etcd.is_some() {
        let host = multihost::host_id(&agent)?;
        multihost::check_underlay(&agent)?;
        let (cp, handle) = tokio::task::block_in_place(|| multihost::open(&mut cfg, &host))?;
        (cp, Some((host, handle)))
    } else {
        if let Some(dir) = agent.state_db.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let db = agent.state_db.clone();
        let cp = Arc::new(
            tokio::task::spawn_blocking(move || ControlPlane::open(&db))
                .await
                .context("opening the store")?
                .with_context(|| format!("opening store {}", agent.state_db.display()))?,
        );
        (cp, None)
    };
    let seeded = {
        let (cp, cfg) = (cp.clone(), cfg.clone());
        tokio::task::spawn_blocking(move || crate::config::seed(&cp, &cfg))
            .await
            .context("seeding the store")?
            .context("seeding the store from the config")?
    };
    info!(?seeded, "store seeded from config");

    let started = std::time::Instant::now();
    let dp = Dataplane::load(&agent.pin_dir).context("loading the XDP data plane")?;
    let mut rec = Reconciler::new(dp, cp.clone(), agent.xdp_mode, cfg.dataplane_config());
    if let Some((host, handle)) = etcd {
        rec = rec.with_cluster(multihost::start(&agent, host, handle, &cp)?);
    }
    // Kernel truth first: owners switched while no agent ran are recorded,
    // never overwritten.
    rec.adopt_owners().await;
    // Subscribed before the first pass, so no link change falls between.
    let mut link_events = match links::watch() {
        Ok(rx) => Some(rx),
        Err(e) => {
            warn!(error = %e, "no link notifications; links are found by the {RESYNC:?} resync only");
            None
        }
    };
    rec.pass(Recheck::All).await;
    info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        pin_dir = %agent.pin_dir.display(),
        "data plane ready"
    );

    health::dataplane_loaded();
    cp.set_counters(Arc::new(counters::PinnedCounters::open(&agent.pin_dir)?));
    logs::spawn(&mut rec.dp);
    rec.recorder = Some(owners::spawn(&mut rec.dp, &cp, rec.cluster.clone()));
    notify::spawn(&agent, &cp);
    let shutdown = Arc::new(Notify::new());
    servers::spawn(&agent, security, &cp, &shutdown).await?;
    // systemd (Type=notify): the data plane is ready and the API listens.
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        warn!(error = %e, "sd_notify READY failed");
    }

    reconcile_loop(&mut rec, &cp, link_events.as_mut()).await?;

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    shutdown.notify_waiters();
    let _ = std::fs::remove_file(&agent.api_socket);
    if overrides.teardown_on_exit {
        drop(rec);
        crate::dataplane::loader::teardown(&agent.pin_dir)
            .with_context(|| format!("tearing down {}", agent.pin_dir.display()))?;
        info!("data plane detached and unpinned");
    } else {
        info!(pin_dir = %agent.pin_dir.display(), "exiting; XDP stays attached and forwarding (pinned)");
    }
    Ok(())
}

/// Task: the reconciler loop, until a signal.
async fn reconcile_loop(
    rec: &mut Reconciler,
    cp: &ControlPlane,
    mut link_events: Option<&mut mpsc::UnboundedReceiver<links::LinkEvent>>,
) -> Result<()> {
    let mut changes = cp.subscribe();
    let mut fast_rx = rec.cluster.as_ref().and_then(|c| c.take_fast());
    let mut fast = fast_rx.as_mut();
    let mut tick = tokio::time::interval(RESYNC);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            // Remote owners first: one is a failover in progress, and a full
            // pass (lookups, netlink) can take milliseconds.
            biased;
            f = next(&mut fast) => rec.install_fast(f),
            r = changes.changed() => {
                if r.is_err() { break; }
                rec.pass(Recheck::Doubtful).await;
            }
            event = next(&mut link_events) => {
                tracing::debug!(?event, "link notification");
                if let Some(rx) = link_events.as_deref_mut() {
                    reconciler::settle(rx).await;
                }
                rec.pass(Recheck::All).await;
            }
            _ = tick.tick() => {
                rec.pass(Recheck::Doubtful).await;
                rec.adopt_owners().await;
            }
            _ = tokio::signal::ctrl_c() => { info!("SIGINT"); break; }
            _ = sigterm.recv() => { info!("SIGTERM"); break; }
        }
    }
    Ok(())
}

/// The next message of `rx` (link notifications, remote owners); pending
/// forever without a receiver (or once it ended, so a dead sender does not
/// spin the loop).
async fn next<T>(rx: &mut Option<&mut mpsc::UnboundedReceiver<T>>) -> T {
    match rx {
        Some(rx) => match rx.recv().await {
            Some(e) => e,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
