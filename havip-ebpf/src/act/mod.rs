//! Actions: carry out a decision (rewrite the frame, redirect, update
//! `OWNERS`, emit events).

pub mod claim;
pub mod forward;
pub mod proxy_arp;
