//! Task: the API servers (unix socket, and TCP if configured) and the
//! metrics listener (if configured).

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use tokio::sync::Notify;
use tracing::{error, info};

use super::{health, metrics};
use crate::{api, config::AgentConfig, control::ControlPlane};

/// The API's router with `/readyz` and the request counter.
fn app(cp: &Arc<ControlPlane>) -> Router {
    api::router(cp.clone())
        .merge(health::router(cp.clone()))
        .layer(axum::middleware::from_fn(metrics::count_requests))
}

/// Binds the unix socket and the metrics listener (an error here is fatal
/// at start-up) and starts the servers; they stop when `shutdown` is
/// notified.
///
/// # Errors
/// The unix socket or the metrics address cannot be bound, or the metrics
/// address is remote without `metrics_allow_remote`.
pub async fn spawn(
    agent: &AgentConfig,
    cp: &Arc<ControlPlane>,
    shutdown: &Arc<Notify>,
) -> Result<()> {
    let unix = api::bind_unix(&agent.api_socket)
        .with_context(|| format!("binding API socket {}", agent.api_socket.display()))?;
    {
        let app = app(cp);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = axum::serve(unix, app)
                .with_graceful_shutdown(async move { stop.notified().await })
                .await
            {
                error!(error = %e, "API server (unix) stopped");
            }
        });
    }
    if let Some(addr) = agent.api_tcp {
        let app = app(cp);
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let served = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    axum::serve(l, app)
                        .with_graceful_shutdown(async move { stop.notified().await })
                        .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = served {
                error!(error = %e, "API server (tcp) stopped");
            }
        });
    }
    info!(socket = %agent.api_socket.display(), tcp = ?agent.api_tcp, "API listening");
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
