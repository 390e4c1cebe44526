//! Default locations of everything the agent keeps on the host.

/// bpffs directory holding the pinned maps, and `links/` for XDP links.
pub const PIN_DIR: &str = "/sys/fs/bpf/havip";
/// Unix socket of the agent's HTTP/JSON API.
pub const API_SOCKET: &str = "/run/havip/api.sock";
/// Durable store (redb).
pub const STATE_DB: &str = "/var/lib/havip/state.redb";
/// Subdirectory of the pin dir with one pinned XDP link per interface.
pub const LINKS_SUBDIR: &str = "links";
