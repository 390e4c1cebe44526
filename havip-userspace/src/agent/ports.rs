//! The agent's view of its ports: for each interface the state names (ENI
//! host interfaces and uplinks), where it is and whether frames can be
//! redirected into it. Drives what the reconciler writes to `PORTS`,
//! `TX_PORTS` and `BINDINGS`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::dataplane::{links::Redirect, AttachMode};

/// State of one port, as `status` and the logs show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PortState {
    /// The program runs on it and frames can be redirected into it.
    Attached { ifindex: u32, mode: AttachMode },
    /// Attached, but a veth whose peer has neither GRO nor XDP: kept out of
    /// `TX_PORTS`, so frames for it count as `port_not_redirectable`.
    NoRedirect {
        ifindex: u32,
        mode: AttachMode,
        peer: String,
    },
    /// Was there and is gone (VM stopped, tap deleted): its last ifindex
    /// stays in `PORTS`/`BINDINGS` so owners behind it are kept; out of
    /// `TX_PORTS`.
    Down { last_ifindex: u32 },
    /// Never seen since the agent started.
    Missing,
    /// Present but the attach failed (logged; retried).
    Detached { ifindex: u32 },
}

/// One port's entry.
#[derive(Clone, Debug)]
pub struct Port {
    pub state: PortState,
    /// Redirect check result for the current ifindex (`None`: not checked).
    pub redirect: Option<Redirect>,
    /// Whether the "cannot receive redirected frames" warning was logged
    /// for the current ifindex (once per port and ifindex).
    pub warned: bool,
}

/// Every port the state names, by interface name.
#[derive(Clone, Debug, Default)]
pub struct Ports {
    pub by_name: BTreeMap<String, Port>,
}

impl Ports {
    /// The ifindex to program for `name`: the current one, or the last one
    /// of a port that went down (so its bindings and owners stay).
    pub fn ifindex(&self, name: &str) -> Option<u32> {
        match self.by_name.get(name)?.state {
            PortState::Attached { ifindex, .. }
            | PortState::NoRedirect { ifindex, .. }
            | PortState::Detached { ifindex } => Some(ifindex),
            PortState::Down { last_ifindex } => Some(last_ifindex),
            PortState::Missing => None,
        }
    }

    /// Ports in `PORTS` that must stay out of `TX_PORTS`.
    pub fn no_redirect(&self) -> BTreeSet<u32> {
        self.by_name
            .values()
            .filter_map(|p| match p.state {
                PortState::NoRedirect { ifindex, .. } => Some(ifindex),
                PortState::Down { last_ifindex } => Some(last_ifindex),
                _ => None,
            })
            .collect()
    }
}
