//! havip: the agent's library. The control plane (`model`, `validate`,
//! `store`, `api`, `config`) is pure where it can be; `dataplane` owns every
//! contact with the kernel. The binaries (`havip-agent`, `havipctl`) are thin.

pub mod agent;
pub mod api;
pub mod bench;
pub mod config;
pub mod control;
pub mod control_bench;
pub mod dataplane;
pub mod demo;
pub mod desired;
pub mod frames;
pub mod keepalived;
pub mod lab;
pub mod model;
pub mod paths;
pub mod scenario;
pub mod status;
pub mod store;
pub mod validate;
