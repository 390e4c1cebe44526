//! Actions: carry out a decision (rewrite the frame, redirect, update
//! `OWNERS`, emit events, push or strip VXLAN).

pub mod claim;
pub mod decap;
pub mod encap;
pub mod forward;
pub mod nat;
pub mod proxy_arp;
pub mod route;
