//! havip: the agent's library. The control plane (`model`, `validate`,
//! `store`, `api`, `config`) is pure where it can be; `dataplane` owns every
//! contact with the kernel. The binaries (`havip-agent`, `havipctl`) are thin.
//! Test labs, scenarios, the demo and the benchmark live in the `havip-tests`
//! crate (`tests/`), not here.

pub mod agent;
pub mod api;
pub mod config;
pub mod control;
pub mod dataplane;
pub mod desired;
pub mod mac;
pub mod model;
pub mod netns;
pub mod paths;
pub mod status;
pub mod store;
pub mod validate;
