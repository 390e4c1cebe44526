//! Decisions: each module looks at parsed headers and the maps and returns
//! a typed decision; the entry point (`main.rs`) and `act` carry it out.
//! Nothing here writes the frame.

pub mod claim;
pub mod eip;
pub mod proxy_arp;
pub mod route;
pub mod source;
pub mod vlan;
