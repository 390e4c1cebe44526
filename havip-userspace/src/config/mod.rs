//! The agent's TOML configuration, and seeding the store from it.
//!
//! # Schema
//! ```toml
//! [agent]                                # every key optional
//! pin_dir = "/sys/fs/bpf/havip"          # bpffs directory of pinned maps/links
//! api_socket = "/run/havip/api.sock"     # unix socket of the HTTP/JSON API
//! api_tcp = "127.0.0.1:7878"             # also serve on TCP (off by default)
//! api_token_file = "/etc/havip/api.tokens" # bearer tokens; required for a
//!                                        # non-loopback api_tcp; mode 0600
//!                                        # or stricter; lines "name token"
//! api_socket_group = "havip"             # group of the unix socket (0660)
//! api_max_connections = 256              # per listener; more are closed at once
//! api_header_timeout_ms = 10000          # a request's head must arrive within
//! api_idle_timeout_ms = 30000            # idle keep-alive connections close after
//! api_max_body_bytes = 65536             # larger bodies: 413
//! state_db = "/var/lib/havip/state.redb" # durable store (redb)
//! hold_time_ms = 0                       # min time between owner changes (0 = none)
//! security_events_per_sec = 64           # per CPU; 0 = default
//! xdp_mode = "native"                    # "native" | "generic" (slow; agent warns)
//! metrics_listen = "127.0.0.1:9464"      # Prometheus GET /metrics (off by default)
//! metrics_allow_remote = false           # allow a non-loopback metrics_listen
//! host_id = "hv-1"                       # multi-host: this host's id (default: hostname)
//! notify_command = "/etc/havip/notify.sh" # run on every owner change (absolute
//!                                        # path; see agent::notify for its
//!                                        # arguments and environment)
//! notify_timeout_ms = 10000              # the command is killed after this
//! notify_max_running = 4                 # runs at once; a change beyond is skipped
//!
//! [agent.etcd]                           # multi-host: shared state on etcd (else redb)
//! endpoints = ["http://10.99.0.1:2379"]
//! prefix = "/havip"
//! dial_timeout_ms = 2000
//! request_timeout_ms = 2000
//! max_txn_ops = 128                      # etcd's --max-txn-ops: larger commits refused
//! # user = "havip"                       # etcd auth, with the password in a file
//! # password_file = "/etc/havip/etcd.password"
//! # ca_file = "/etc/havip/etcd-ca.pem"   # TLS (endpoints then https://)
//! # cert_file = "/etc/havip/etcd-client.pem" # client certificate and key
//! # key_file = "/etc/havip/etcd-client.key"
//!
//! [agent.vtep]                           # multi-host: this host's VXLAN endpoint
//! interface = "eth0"
//! address = "10.99.0.11"
//! notice_port = 4790                     # direct owner notices (UDP); 0 = off
//!
//! [[vpc]]
//! id = "vpc-demo"
//! cidr = "10.0.0.0/16"
//!
//! [[vswitch]]
//! id = "vsw-demo"
//! vpc = "vpc-demo"
//! cidr = "10.0.1.0/24"
//! gateway_mac = "02:00:00:00:00:01"
//!
//! [[instance]]
//! id = "i-a"
//! vswitch = "vsw-demo"
//!
//! [[eni]]
//! id = "eni-a"
//! instance = "i-a"            # optional (detached ENI)
//! vswitch = "vsw-demo"
//! mac = "02:00:00:00:0a:01"
//! interface = "hv-a"          # host-side interface (tap/veth)
//! primary = true              # optional, default false
//!
//! [[uplink]]
//! interface = "hv-up"
//! vswitch = "vsw-demo"
//!
//! [[havip]]
//! id = "havip-demo"
//! vswitch = "vsw-demo"
//! address = "10.0.1.100"      # optional: allocated when absent
//! instances = ["i-a", "i-b"]  # or enis = ["eni-a", ...]; never both
//! initial_owner = "i-a"       # optional (alias: master): a bound member
//! name = "db"                # optional, as `description`
//!
//! [[eip]]
//! id = "eip-demo"
//! address = "203.0.113.10"
//! havip = "havip-demo"        # optional
//!
//! [[route]]
//! id = "rte-demo"
//! vpc = "vpc-demo"
//! destination = "192.168.0.0/24"
//! next_hop = "havip-demo"     # a HaVip of the VPC (alias: next_hop_havip)
//!
//! [quotas]                    # optional; each key optional
//! havips_per_account = 5
//! havips_per_vpc = 5
//! havip_routes_per_vpc = 5
//! ```
//! Each table deserialises into the operation that creates the resource
//! (`[[vpc]]` is a [`CreateVpc`], `[[eni]]` a [`CreateEni`], ...; `[[havip]]`
//! and `[[eip]]` wrap theirs with the bindings/association), so the config,
//! the API and `havipctl` share one shape and one set of field names (an
//! ENI's `interface`; `host_interface` is accepted too).
//! Unknown keys are errors. Parsing checks syntax and value formats (CIDR,
//! MAC, address); [`plan_seed`] checks everything else with the same
//! validation core as the API, so the config has exactly the API's limits.
//!
//! # How the config and API changes combine
//! The config is a seed, applied at every start as "ensure exists", in one
//! transaction (all or nothing):
//! - a resource whose id is not in the store is created, through the same
//!   operations as the API (a HaVip with its bindings and master, an EIP
//!   with its association);
//! - a resource whose id is already in the store is kept as stored: API
//!   changes made since (bindings, associations) survive restarts. A field
//!   an operation can change is changed through that operation when the
//!   config differs: an ENI's `interface` (ModifyEni), a HaVip's `name` and
//!   `description` (ModifyHaVipAttribute). Any other identity field (CIDR,
//!   vSwitch, MAC, address, ...) must agree with the config, otherwise
//!   seeding fails naming the field (delete the resource through the API
//!   to create it anew);
//! - resources absent from the config are kept, whether made through the
//!   API or removed from the file: the seed never deletes. Deletion is
//!   explicit, through the API or `havipctl ... delete`;
//! - keys present in `[quotas]` are set at every start (the config wins).

use std::{
    collections::HashSet,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use havip_common::{DataplaneConfig, DEFAULT_SECURITY_EVENTS_PER_SEC};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize};
use thiserror::Error;

mod seed;

pub use seed::{plan_seed, seed, SeedReport};

use crate::{
    dataplane::AttachMode,
    model::{
        CreateEip, CreateEni, CreateHaVip, CreateInstance, CreateRoute, CreateUplink,
        CreateVSwitch, CreateVpc, OpError, SetQuota,
    },
    paths,
};

/// `[agent]`: where the agent keeps things and how it runs the data plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// bpffs directory where the agent pins its maps and XDP links, so the
    /// data plane outlives an agent restart (default `/sys/fs/bpf/havip`).
    pub pin_dir: PathBuf,
    /// Unix socket of the HTTP/JSON API (default `/run/havip/api.sock`).
    pub api_socket: PathBuf,
    /// Also serve the API on this TCP address (default: off). A
    /// non-loopback address requires `api_token_file`.
    pub api_tcp: Option<SocketAddr>,
    /// Bearer tokens of the API (see [`crate::api::ApiSecurity`]).
    pub api_token_file: Option<PathBuf>,
    /// Group (name or number) owning the unix socket.
    pub api_socket_group: Option<String>,
    /// Open connections per listener (default 256; 0 counts as 1): a new
    /// one beyond it is closed at once and counted.
    pub api_max_connections: usize,
    /// A request's head must arrive within this many ms of its first byte
    /// (default 10,000).
    pub api_header_timeout_ms: u64,
    /// A connection with no request in progress is closed after this many
    /// ms; it also bounds one request's body and handling (408). Default
    /// 30,000.
    pub api_idle_timeout_ms: u64,
    /// Largest request body in bytes (default 65,536; beyond: 413).
    pub api_max_body_bytes: usize,
    /// The redb store of the control-plane state, single host (default
    /// `/var/lib/havip/state.redb`; unused with `etcd`).
    pub state_db: PathBuf,
    /// Flap damping, in ms: within this time after a claim, a claim by
    /// another member is refused (`claim_held_down`). Default 0: the last
    /// announcement wins, as keepalived expects.
    pub hold_time_ms: u64,
    /// Cap on security events per CPU per second (default 64; 0 means the
    /// default); those beyond are counted as suppressed.
    pub security_events_per_sec: u32,
    /// `native` (driver XDP, the default) or `generic` (skb XDP: works on
    /// any driver, several times slower).
    pub xdp_mode: AttachMode,
    /// Serve Prometheus metrics (`GET /metrics`) here; off when absent.
    pub metrics_listen: Option<SocketAddr>,
    /// Allow a non-loopback `metrics_listen` (metrics have no authentication).
    pub metrics_allow_remote: bool,
    /// This host's id in a multi-host deployment (default: the hostname).
    pub host_id: Option<String>,
    /// Shared store on etcd instead of `state_db` (multi-host).
    pub etcd: Option<crate::store::EtcdConfig>,
    /// This host's VXLAN tunnel endpoint (multi-host).
    pub vtep: Option<VtepConfig>,
    /// Command run on every owner change (see [`crate::agent::notify`]).
    pub notify_command: Option<PathBuf>,
    /// A notify run is killed after this many ms (default 10,000).
    pub notify_timeout_ms: u64,
    /// Notify runs at once (default 4); an owner change beyond this is
    /// skipped.
    pub notify_max_running: usize,
}

/// `[agent.vtep]`: the underlay port and its address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VtepConfig {
    /// Underlay interface, e.g. `eth0`.
    pub interface: String,
    /// VTEP IPv4 address (an address of that interface).
    pub address: std::net::Ipv4Addr,
    /// UDP port of the direct owner notices between agents, the same on
    /// every host (see `crate::cluster::notice`); 0 turns them off (owners
    /// then follow etcd's watch only).
    #[serde(default = "default_notice_port")]
    pub notice_port: u16,
}

fn default_notice_port() -> u16 {
    crate::cluster::notice::DEFAULT_PORT
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            pin_dir: paths::PIN_DIR.into(),
            api_socket: paths::API_SOCKET.into(),
            api_tcp: None,
            api_token_file: None,
            api_socket_group: None,
            api_max_connections: 256,
            api_header_timeout_ms: 10_000,
            api_idle_timeout_ms: 30_000,
            api_max_body_bytes: 64 * 1024,
            state_db: paths::STATE_DB.into(),
            hold_time_ms: 0,
            security_events_per_sec: DEFAULT_SECURITY_EVENTS_PER_SEC,
            xdp_mode: AttachMode::Native,
            metrics_listen: None,
            metrics_allow_remote: false,
            host_id: None,
            etcd: None,
            vtep: None,
            notify_command: None,
            notify_timeout_ms: 10_000,
            notify_max_running: 4,
        }
    }
}

/// `[[havip]]`: a CreateHaVip (the id is required here) and its bindings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HavipEntry {
    /// The HaVip's own keys (`id`, `vswitch`, `address`, ...).
    #[serde(flatten)]
    pub create: CreateHaVip,
    /// Instances to bind (ids); not together with `enis`.
    pub instances: Vec<String>,
    /// ENIs to bind (ids); not together with `instances`.
    pub enis: Vec<String>,
    /// Initial owner (a bound member); the key `master` is accepted too.
    pub initial_owner: Option<String>,
}

/// `[[eip]]`: a CreateEip (the id is required here) and the HaVip it fronts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EipEntry {
    /// The EIP's own keys (`id`, `address`).
    #[serde(flatten)]
    pub create: CreateEip,
    /// HaVip to associate the EIP with (none: left unassociated).
    pub havip: Option<String>,
}

/// Takes the entry's own keys out of `table`, then decodes the rest as the
/// operation (whose `deny_unknown_fields` still names a stray key: serde's
/// `flatten` would accept it silently).
fn split_entry<'de, D: Deserializer<'de>, T: DeserializeOwned, E: DeserializeOwned>(
    d: D,
    own: &[(&str, &str)],
) -> Result<(T, E), D::Error> {
    use serde::de::Error;
    let mut table = serde_json::Map::deserialize(d)?;
    let mut mine = serde_json::Map::new();
    for (key, field) in own {
        if let Some(v) = table.remove(*key) {
            if mine.insert((*field).to_owned(), v).is_some() {
                return Err(D::Error::custom(format!("duplicate field `{field}`")));
            }
        }
    }
    let op = serde_json::from_value(serde_json::Value::Object(table)).map_err(D::Error::custom)?;
    let rest = serde_json::from_value(serde_json::Value::Object(mine)).map_err(D::Error::custom)?;
    Ok((op, rest))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HavipOwn {
    #[serde(default)]
    instances: Vec<String>,
    #[serde(default)]
    enis: Vec<String>,
    #[serde(default)]
    initial_owner: Option<String>,
}

impl<'de> Deserialize<'de> for HavipEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let own = [
            ("instances", "instances"),
            ("enis", "enis"),
            ("initial_owner", "initial_owner"),
            ("master", "initial_owner"),
        ];
        let (create, o): (CreateHaVip, HavipOwn) = split_entry(d, &own)?;
        Ok(HavipEntry {
            create,
            instances: o.instances,
            enis: o.enis,
            initial_owner: o.initial_owner,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EipOwn {
    #[serde(default)]
    havip: Option<String>,
}

impl<'de> Deserialize<'de> for EipEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (create, o): (CreateEip, EipOwn) = split_entry(d, &[("havip", "havip")])?;
        Ok(EipEntry {
            create,
            havip: o.havip,
        })
    }
}

/// The whole config file (see the module docs for the schema); a missing
/// section is empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[agent]`.
    pub agent: AgentConfig,
    /// `[[vpc]]` tables. Like every resource table below: created at start
    /// when their id is not in the store, kept as stored when it is.
    #[serde(rename = "vpc")]
    pub vpcs: Vec<CreateVpc>,
    /// `[[vswitch]]` tables.
    #[serde(rename = "vswitch")]
    pub vswitches: Vec<CreateVSwitch>,
    /// `[[instance]]` tables.
    #[serde(rename = "instance")]
    pub instances: Vec<CreateInstance>,
    /// `[[eni]]` tables.
    #[serde(rename = "eni")]
    pub enis: Vec<CreateEni>,
    /// `[[uplink]]` tables: the host's uplink port of a vSwitch.
    #[serde(rename = "uplink")]
    pub uplinks: Vec<CreateUplink>,
    /// `[[havip]]` tables, with their bindings.
    #[serde(rename = "havip")]
    pub havips: Vec<HavipEntry>,
    /// `[[eip]]` tables, with the HaVip each fronts.
    #[serde(rename = "eip")]
    pub eips: Vec<EipEntry>,
    /// `[[route]]` tables: route entries with a HaVip next hop.
    #[serde(rename = "route")]
    pub routes: Vec<CreateRoute>,
    /// `[quotas]`: keys present are set at every start.
    pub quotas: SetQuota,
}

/// A bad config file.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Syntax, unknown key, or a value of the wrong format (the message
    /// names the key, the line and the value).
    #[error("invalid config{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Parse {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("duplicate {table} id {id:?} in the config")]
    Duplicate { table: &'static str, id: String },
    #[error("[agent] {key} = {value}: {reason}")]
    Agent {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("[[{table}]] entry without an id: the config names every resource")]
    MissingId { table: &'static str },
    /// Refused by the validation core; `item` names the config entry.
    #[error("{item}: {}: {error}", error.code())]
    Invalid { item: String, error: Box<OpError> },
    /// The store holds the same id with a different definition of a field
    /// no operation changes.
    #[error("{item}: {field} is {config} in the config but {stored} in the store; no operation changes it: delete the resource through the API (havipctl) and restart to create it anew")]
    Mismatch {
        item: String,
        field: &'static str,
        config: String,
        stored: String,
    },
    #[error("store: {0}")]
    Store(Box<OpError>),
}

impl Config {
    /// Parses a config from TOML text and checks the `[agent]` values.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] naming the offending key and value,
    /// [`ConfigError::Duplicate`], [`ConfigError::Agent`].
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: None,
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`ConfigError::Read`], and as [`Config::from_toml_str`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: Some(path.to_path_buf()),
                message,
            },
            other => other,
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        fn dups<'a>(
            table: &'static str,
            ids: impl Iterator<Item = &'a String>,
        ) -> Result<(), ConfigError> {
            let mut seen = HashSet::new();
            for id in ids {
                if !seen.insert(id) {
                    return Err(ConfigError::Duplicate {
                        table,
                        id: id.clone(),
                    });
                }
            }
            Ok(())
        }
        dups("vpc", self.vpcs.iter().map(|v| &v.id))?;
        dups("vswitch", self.vswitches.iter().map(|v| &v.id))?;
        dups("instance", self.instances.iter().map(|v| &v.id))?;
        dups("eni", self.enis.iter().map(|v| &v.id))?;
        dups("uplink", self.uplinks.iter().map(|v| &v.interface))?;
        let id_of = |table, id: &Option<String>| id.clone().ok_or(ConfigError::MissingId { table });
        let havips: Vec<String> = self
            .havips
            .iter()
            .map(|v| id_of("havip", &v.create.id))
            .collect::<Result<_, _>>()?;
        let eips: Vec<String> = self
            .eips
            .iter()
            .map(|v| id_of("eip", &v.create.id))
            .collect::<Result<_, _>>()?;
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|v| id_of("route", &v.id))
            .collect::<Result<_, _>>()?;
        dups("havip", havips.iter())?;
        dups("eip", eips.iter())?;
        dups("route", routes.iter())?;
        if let Some(addr) = self.agent.api_tcp {
            if !addr.ip().is_loopback() {
                // Allowed, but the API has no authentication: say so loudly.
                tracing::warn!(%addr, "api_tcp is not a loopback address: the API has no authentication");
            }
        }
        if let Some(addr) = self.agent.metrics_listen {
            crate::agent::metrics::check_listen(addr, self.agent.metrics_allow_remote).map_err(
                |e| ConfigError::Agent {
                    key: "metrics_listen",
                    value: addr.to_string(),
                    reason: e.to_string(),
                },
            )?;
        }
        if let Some(cmd) = &self.agent.notify_command {
            if !cmd.is_absolute() {
                return Err(ConfigError::Agent {
                    key: "notify_command",
                    value: cmd.display().to_string(),
                    reason: "not an absolute path".into(),
                });
            }
        }
        if self.agent.hold_time_ms > u64::MAX / 1_000_000 {
            return Err(ConfigError::Agent {
                key: "hold_time_ms",
                value: self.agent.hold_time_ms.to_string(),
                reason: "too large".into(),
            });
        }
        Ok(())
    }

    /// The run-time data-plane settings (`CONFIG[0]`).
    pub fn dataplane_config(&self) -> DataplaneConfig {
        DataplaneConfig {
            hold_ns: self.agent.hold_time_ms.saturating_mul(1_000_000),
            security_events_per_sec: self.agent.security_events_per_sec,
            flags: 0,
        }
    }

    /// Host interfaces the program must be attached to: every ENI's and
    /// every uplink's, in config order.
    pub fn interfaces(&self) -> Vec<String> {
        self.enis
            .iter()
            .map(|e| e.interface.clone())
            .chain(self.uplinks.iter().map(|u| u.interface.clone()))
            .collect()
    }
}
