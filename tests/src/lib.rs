//! Test harness for havip: namespace and pin-dir guards, a Katran-style
//! `BPF_PROG_TEST_RUN` fixture bed (`TestBed`, `Case`), a veth/bridge lab with
//! the XDP program attached (`HaLab`) and traffic helpers (UDP counters, TCP
//! echo, ping); plus the harness the binaries and end-to-end tests use (labs,
//! scenarios, the demo and the benchmark).
//!
//! The fixture helpers panic with a message on failure: tests keep their
//! stack traces and never return `Result`. Namespaces are named `hvt*` and
//! pin dirs `/sys/fs/bpf/havip-test-*`: guards remove them, and `cargo xtask
//! clean-host` removes what a killed run left behind.
//!
//! Modules (their public items are re-exported here): `guards` (netns and
//! pin-dir guards, CPU pin, XDP verdicts), `packets` (frame builders),
//! `counters` (`HANDLED`/`DROPS` snapshots), `testbed` (fixture bed:
//! `Port`, `bed` addresses, `Case`, `TestBed`), `halab` (veth lab with the
//! program attached), `traffic` (UDP/TCP/ping helpers). `fixtures` holds the
//! fixture files' shared helpers and is not re-exported.

mod counters;
pub mod fixtures;
mod guards;
mod halab;
mod packets;
mod testbed;
mod traffic;

pub use counters::*;
pub use guards::*;
pub use halab::*;
pub use packets::*;
pub use testbed::*;
pub use traffic::*;

// Harness that returns `Result`: labs, scenarios, the demo and the benchmark
// (used by the binaries in src/bin and by the end-to-end tests).
pub mod bench;
pub mod campaign;
pub mod control_bench;
pub mod demo;
pub mod eiplab;
pub mod etcd;
pub mod fabric;
pub mod frames;
pub mod keepalived;
pub mod lab;
pub mod multihost;
pub mod scenario;
