//! The agent's HTTP/JSON API: the server ([`router`], [`serve_unix`],
//! [`serve_tcp`]), the client on hyper ([`Client`]), the wire types and the
//! mapping of error codes to HTTP statuses ([`error`]).
//!
//! Served on a unix socket (default [`crate::paths::API_SOCKET`]) and
//! optionally on TCP; who may call it is decided in [`security`] (socket
//! mode and group; bearer tokens and the Host check on TCP), connection
//! and request limits in [`listen`].
//!
//! # Operations
//! `POST /v1/ops` takes any operation of [`crate::model::Op`] as
//! `{"op": "<name>", ...fields}` (the fields of the operation's struct, the
//! same as in the TOML config and on the `havipctl` command line) and
//! replies with the resource it created (201) or changed (200), as the read
//! endpoints show it, or `{"deleted": id}`. The REST paths below decode into
//! the same structs (the path's id fills the id field).
//!
//! | method | path | operation (body) |
//! | --- | --- | --- |
//! | POST | `/v1/ops` | any (`{"op": ...}`) |
//! | POST | `/v1/havips` | `create_havip` (`{"id"?, "vswitch", "address"?, "name"?, "description"?}`) |
//! | PATCH | `/v1/havips/{id}` | `modify_havip_attribute` (`{"name"?, "description"?}`) |
//! | DELETE | `/v1/havips/{id}` | `delete_havip` |
//! | POST | `/v1/havips/{id}/associate` | `associate_havip` (`{"instance": id}` or `{"eni": id}`) |
//! | POST | `/v1/havips/{id}/unassociate` | `unassociate_havip` (as associate, plus `"force"?`) |
//! | PUT | `/v1/havips/{id}/initial-owner`, `/v1/havips/{id}/master` | `set_initial_owner` (`{"member": id or null}`) |
//! | POST | `/v1/eips` | `create_eip` (`{"id"?, "address"}`) |
//! | DELETE | `/v1/eips/{id}` | `delete_eip` |
//! | POST | `/v1/eips/{id}/associate` | `associate_eip` (`{"havip"}`) |
//! | POST | `/v1/eips/{id}/unassociate` | `unassociate_eip` |
//! | POST | `/v1/routes` | `create_route` (`{"id"?, "vpc", "destination", "next_hop_havip"}`; `next_hop` accepted) |
//! | DELETE | `/v1/routes/{id}` | `delete_route` |
//! | PUT | `/v1/quotas` | `set_quota` (any of `havips_per_account`, `havips_per_vpc`, `havip_routes_per_vpc`) |
//! | POST, DELETE | `/v1/vpcs`, `/v1/vpcs/{id}` | `create_vpc` (`{"id", "cidr"}`), `delete_vpc` |
//! | POST, DELETE | `/v1/vswitches`, `/v1/vswitches/{id}` | `create_vswitch` (`{"id", "vpc", "cidr", "gateway_mac"}`), `delete_vswitch` |
//! | POST, DELETE | `/v1/instances`, `/v1/instances/{id}` | `create_instance` (`{"id", "vswitch"}`), `delete_instance` |
//! | POST, PATCH, DELETE | `/v1/enis`, `/v1/enis/{id}` | `create_eni` (`{"id", "vswitch", "mac", "interface", "instance"?, "primary"?}`), `modify_eni` (`{"interface"}`), `delete_eni` |
//! | POST, DELETE | `/v1/uplinks`, `/v1/uplinks/{interface}` | `create_uplink` (`{"interface", "vswitch"}`), `delete_uplink` |
//!
//! # Reads
//! `GET /v1/havips` (DescribeHaVips, `[HaVipView]`), `/v1/havips/{id}`,
//! `/v1/eips`, `/v1/routes`, `/v1/quotas`, `/v1/vpcs`, `/v1/vswitches`,
//! `/v1/instances`, `/v1/enis`, `/v1/uplinks`, `/v1/state` (the whole
//! state), `/healthz` (`{"ok": true, "generation": n}`).
//!
//! # Errors
//! `{"code": "...", "message": "..."}`; the status follows the code's
//! category: 400 `InvalidParameter.*` (a malformed body is
//! `InvalidParameter.Body`), 403 `LimitExceeded.*` / `QuotaExceeded.*`, 404
//! `NotFound.*`, 409 `Conflict.*` / `InsufficientCapacity.*` /
//! `DependencyViolation.*`, 500 `Internal` / `Internal.CommitFailed`; 401
//! `AuthFailure.*` (TCP with tokens), 421/400 `InvalidParameter.Host`, 413
//! `InvalidParameter.BodyTooLarge`, 408 `RequestTimeout`.

mod client;
pub mod error;
pub mod listen;
pub mod security;
mod server;
mod strict;
mod wire;

pub use client::{Client, ClientError, Endpoint};
pub use error::{ApiError, ErrorBody};
pub use listen::{ApiLimits, ApiListener, ListenerStats, StreamKeepAlive};
pub use security::{ApiSecurity, Caller, SecurityError};
pub use server::{
    bind_unix, bind_unix_group, router, router_with, serve, serve_tcp, serve_unix,
    serve_unix_listener,
};
pub use wire::Deleted;
