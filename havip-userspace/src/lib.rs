//! havip: the agent's library. The control plane is `model` (resources,
//! operations, the pure validation core), `store` (durable state behind a
//! trait), `control` (the service object, Describe views, state -> data
//! plane `Desired`), `api` (HTTP server and client) and `config` (the TOML
//! seed); `dataplane` owns every contact with the kernel. The binaries
//! (`havip-agent`, `havipctl`) are thin.

pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod mac;
pub mod model;
pub mod netns;
pub mod paths;
pub mod status;
pub mod store;
