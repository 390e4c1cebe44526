//! The control plane's model: resources ([`resource`]), the whole state and
//! its records ([`state`]), one struct per operation ([`op`]), the
//! validation core ([`validate`], split by resource) and its error
//! ([`error`]). Everything here is pure: no I/O, no HTTP.
//!
//! Persistence is in [`crate::store`], the service object in
//! [`crate::control`], the HTTP API in [`crate::api`].

pub mod error;
pub mod net;
pub mod op;
pub mod resource;
pub mod state;
pub mod validate;

pub use error::{OpError, ResourceKind};
pub use net::{Ipv4Cidr, MacAddr, ParseError};
pub use op::*;
pub use resource::{
    BindingKind, Eip, Eni, HaVip, Instance, Meta, ObservedOwner, Quotas, RouteEntry, Uplink,
    VSwitch, Vpc,
};
pub use state::{
    Change, Mutation, OwnerChange, OwnerTrigger, Record, RecordKey, RecordKind, State,
    HISTORY_LIMIT,
};
pub use validate::{apply, apply_to, Applied};
