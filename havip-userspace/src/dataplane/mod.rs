//! Everything that touches the kernel: loading and pinning the XDP program
//! and its maps (`loader`), typed map access (`maps`), the state → maps
//! reconciler (`reconcile`), owner/security events (`events`) and counters
//! (`stats`).

pub mod desired;
pub mod events;
pub mod links;
pub mod loader;
pub mod maps;
pub mod migrate;
pub mod reconcile;
pub mod stats;
pub mod table;

pub use desired::{
    Desired, DesiredBinding, DesiredEip, DesiredHavip, DesiredPort, DesiredRoute, DesiredVxlan,
    LocalVtep, RemoteOwner, RemoteVtep,
};
pub use loader::{AttachMode, Dataplane, DataplaneError};
pub use maps::Maps;
pub use reconcile::{reconcile, reconcile_with, ReconcileError, ReconcileReport};
