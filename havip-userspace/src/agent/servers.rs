//! Task: the API servers (unix socket, and TCP if configured) with their
//! limits and security, the metrics listener (if configured), and the
//! descriptor limit they live within.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use super::{health, metrics};
use crate::{
    api::{self, ApiLimits, ApiListener, ApiSecurity, ListenerStats},
    config::AgentConfig,
    control::ControlPlane,
};

/// The API's routes (with the body limit), `/readyz` and the request counter.
fn app(cp: &Arc<ControlPlane>, limits: &ApiLimits) -> Router {
    api::router_with(cp.clone(), limits.max_body_bytes)
        .merge(health::router(cp.clone()))
        .layer(axum::middleware::from_fn(metrics::count_requests))
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (connections, map and
/// link descriptors) and logs the value. A failure is logged, not fatal.
pub fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only `lim`, a valid rlimit.
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if got != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot read RLIMIT_NOFILE");
        return;
    }
    let before = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        warn!(error = %std::io::Error::last_os_error(), soft = before, "cannot raise RLIMIT_NOFILE");
        return;
    }
    info!(
        from = before,
        to = lim.rlim_cur,
        "RLIMIT_NOFILE raised to the hard limit"
    );
}

/// Binds the unix socket, the TCP listener and the metrics listener (an
/// error here is fatal at start-up) and starts the servers; they stop when
/// `shutdown` is notified.
///
/// # Errors
/// A listener cannot be bound, the socket's group cannot be set, or the
/// metrics address is remote without `metrics_allow_remote`.
pub async fn spawn(
    agent: &AgentConfig,
    security: ApiSecurity,
    cp: &Arc<ControlPlane>,
    shutdown: &Arc<Notify>,
) -> Result<()> {
    let limits = ApiLimits::from_config(agent);
    let security = Arc::new(security);
    let unix = api::bind_unix_group(&agent.api_socket, security.socket_gid)
        .with_context(|| format!("binding API socket {}", agent.api_socket.display()))?;
    let mut listeners = vec![("unix", ApiListener::Unix(unix))];
    if let Some(addr) = agent.api_tcp {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding API TCP {addr}"))?;
        listeners.push(("tcp", ApiListener::Tcp(l)));
    }
    for (name, l) in listeners {
        let app = app(cp, &limits);
        let stop = shutdown.clone();
        let security = security.clone();
        tokio::spawn(async move {
            let stats = Arc::new(ListenerStats::default());
            let r = api::listen::serve(l, app, limits, security, stats, async move {
                stop.notified().await
            })
            .await;
            if let Err(e) = r {
                error!(error = %e, listener = name, "API server stopped");
            }
        });
    }
    info!(
        socket = %agent.api_socket.display(),
        tcp = ?agent.api_tcp,
        tokens = security.tokens.as_ref().map_or(0, Vec::len),
        max_connections = limits.max_connections,
        "API listening"
    );
    if let Some(addr) = agent.metrics_listen {
        metrics::check_listen(addr, agent.metrics_allow_remote)?;
        let stop = shutdown.clone();
        metrics::spawn(addr, &agent.pin_dir, cp.clone(), async move {
            stop.notified().await;
        })
        .await?;
    }
    Ok(())
}
