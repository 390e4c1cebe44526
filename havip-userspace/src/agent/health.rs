//! Readiness (`GET /readyz` on the API): the agent is ready when the data
//! plane is loaded, a reconciler pass has run, every port the state names
//! is attached (ports that are missing, down or failed to attach make it
//! not ready and are listed by name), and the store answers a read.
//! `GET /healthz` (liveness) only says the API answers.
//!
//! One agent per process: the reconciler publishes its ports here after
//! each pass ([`publish_ports`]).

use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use axum::{extract::State as AxState, http::StatusCode, routing::get, Json, Router};
use serde::{Deserialize, Serialize};

use super::ports::{PortState, Ports};
use crate::control::ControlPlane;

/// What the reconciler last saw.
#[derive(Debug, Default)]
struct Seen {
    dataplane: bool,
    passes: u64,
    ports: Vec<PortReport>,
}

static SEEN: LazyLock<Mutex<Seen>> = LazyLock::new(Mutex::default);

fn seen() -> std::sync::MutexGuard<'static, Seen> {
    SEEN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The data plane is loaded (maps and program).
pub fn dataplane_loaded() {
    seen().dataplane = true;
}

/// Publishes the reconciler's view of its ports after a pass.
pub fn publish_ports(ports: &Ports) {
    let reports = ports
        .by_name
        .iter()
        .map(|(name, p)| PortReport {
            interface: name.clone(),
            state: match p.state {
                PortState::Attached { .. } => "attached",
                PortState::NoRedirect { .. } => "no-redirect",
                PortState::Down { .. } => "down",
                PortState::Missing => "missing",
                PortState::Detached { .. } => "detached",
            }
            .to_owned(),
        })
        .collect();
    let mut s = seen();
    s.passes += 1;
    s.ports = reports;
}

/// One port in the readiness report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortReport {
    /// Interface name, as the state's ports name it.
    pub interface: String,
    /// `attached`, `no-redirect` (attached; frames to it are counted
    /// drops), `down`, `missing`, `detached` (attach failed).
    pub state: String,
}

impl PortReport {
    /// Attached (with or without redirects into it).
    pub fn is_attached(&self) -> bool {
        matches!(self.state.as_str(), "attached" | "no-redirect")
    }
}

/// `GET /readyz`'s body (200 when `ready`, 503 otherwise).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// True when `reasons` is empty (the status is then 200, else 503).
    pub ready: bool,
    /// Maps loaded and the program in place.
    pub dataplane: bool,
    /// Reconciler passes since the agent started.
    pub passes: u64,
    /// `None` when the store answered; else why not.
    pub store_error: Option<String>,
    /// Every port of the state, as the last reconciler pass left it.
    pub ports: Vec<PortReport>,
    /// Why not ready, one line each (empty when ready).
    pub reasons: Vec<String>,
}

/// The readiness report now.
pub fn readiness(cp: &ControlPlane) -> Readiness {
    let (dataplane, passes, ports) = {
        let s = seen();
        (s.dataplane, s.passes, s.ports.clone())
    };
    let store_error = cp.ping_store().err().map(|e| e.to_string());
    let mut reasons = Vec::new();
    if !dataplane {
        reasons.push("data plane not loaded".to_owned());
    }
    if passes == 0 {
        reasons.push("no reconciler pass yet".to_owned());
    }
    if let Some(e) = &store_error {
        reasons.push(format!("store unreachable: {e}"));
    }
    reasons.extend(
        ports
            .iter()
            .filter(|p| !p.is_attached())
            .map(|p| format!("port {} is {}", p.interface, p.state)),
    );
    Readiness {
        ready: reasons.is_empty(),
        dataplane,
        passes,
        store_error,
        ports,
        reasons,
    }
}

async fn readyz(AxState(cp): AxState<Arc<ControlPlane>>) -> (StatusCode, Json<Readiness>) {
    let r = tokio::task::spawn_blocking(move || readiness(&cp)).await;
    match r {
        Ok(r) if r.ready => (StatusCode::OK, Json(r)),
        Ok(r) => (StatusCode::SERVICE_UNAVAILABLE, Json(r)),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                ready: false,
                dataplane: false,
                passes: 0,
                store_error: None,
                ports: Vec::new(),
                reasons: vec![format!("readiness check failed: {e}")],
            }),
        ),
    }
}

/// `GET /readyz`, to merge into the API's router.
pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new().route("/readyz", get(readyz)).with_state(cp)
}
