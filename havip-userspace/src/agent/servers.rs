//! Task: the API servers (unix socket, and TCP if configured).

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::Notify;
use tracing::{error, info};

use crate::{api, config::AgentConfig, control::ControlPlane};

/// Binds the unix socket (an error here is fatal at start-up) and starts
/// the servers; they stop when `shutdown` is notified.
///
/// # Errors
/// The unix socket cannot be bound.
pub fn spawn(agent: &AgentConfig, cp: &Arc<ControlPlane>, shutdown: &Arc<Notify>) -> Result<()> {
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
    Ok(())
}
