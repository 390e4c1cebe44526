//! Parsers: bounds-checked reads of the headers, no map lookups, no policy.
//! Shared with the bench-only programs (`src/bench/main.rs`).

pub mod arp;
pub mod eth;
pub mod ipv4;
pub mod vxlan;
