//! The agent's TOML configuration, and seeding the store from it.
//!
//! # Schema
//! ```toml
//! [agent]                                # every key optional
//! pin_dir = "/sys/fs/bpf/havip"          # bpffs directory of pinned maps/links
//! api_socket = "/run/havip/api.sock"     # unix socket of the HTTP/JSON API
//! api_tcp = "127.0.0.1:7878"             # also serve on TCP (off by default)
//! state_db = "/var/lib/havip/state.redb" # durable store (redb)
//! hold_time_ms = 0                       # min time between owner changes (0 = none)
//! security_events_per_sec = 64           # per CPU; 0 = default
//! xdp_mode = "native"                    # "native" | "generic" (slow; agent warns)
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
//! master = "i-a"              # optional initial master (a bound member)
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
//! next_hop = "havip-demo"     # a HaVip of the VPC
//!
//! [quotas]                    # optional; each key optional
//! havips_per_account = 5
//! havips_per_vpc = 5
//! havip_routes_per_vpc = 5
//! ```
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
//!   changes made since (bindings, associations) survive restarts. Its
//!   identity fields (CIDR, vSwitch, MAC, interface, address, ...) must
//!   agree with the config, otherwise seeding fails naming the field;
//! - resources made through the API and absent from the config are kept
//!   (the config never deletes);
//! - keys present in `[quotas]` are set at every start (the config wins).

use std::{
    collections::HashSet,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use havip_common::{DataplaneConfig, DEFAULT_SECURITY_EVENTS_PER_SEC};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::{
    control::{ControlPlane, PlanError},
    dataplane::AttachMode,
    model::{Ipv4Cidr, MacAddr, State},
    paths,
    validate::{apply, ApiError, Applied, Member, Op},
};

/// `[agent]`: where the agent keeps things and how it runs the data plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub pin_dir: PathBuf,
    pub api_socket: PathBuf,
    pub api_tcp: Option<SocketAddr>,
    pub state_db: PathBuf,
    pub hold_time_ms: u64,
    pub security_events_per_sec: u32,
    pub xdp_mode: AttachMode,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            pin_dir: paths::PIN_DIR.into(),
            api_socket: paths::API_SOCKET.into(),
            api_tcp: None,
            state_db: paths::STATE_DB.into(),
            hold_time_ms: 0,
            security_events_per_sec: DEFAULT_SECURITY_EVENTS_PER_SEC,
            xdp_mode: AttachMode::Native,
        }
    }
}

/// `[[vpc]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcConfig {
    pub id: String,
    pub cidr: Ipv4Cidr,
}

/// `[[vswitch]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VSwitchConfig {
    pub id: String,
    pub vpc: String,
    pub cidr: Ipv4Cidr,
    pub gateway_mac: MacAddr,
}

/// `[[instance]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub id: String,
    pub vswitch: String,
}

/// `[[eni]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EniConfig {
    pub id: String,
    #[serde(default)]
    pub instance: Option<String>,
    pub vswitch: String,
    pub mac: MacAddr,
    /// Host-side interface.
    pub interface: String,
    #[serde(default)]
    pub primary: bool,
}

/// `[[uplink]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    pub interface: String,
    pub vswitch: String,
}

/// `[[havip]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HavipConfig {
    pub id: String,
    pub vswitch: String,
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
    #[serde(default)]
    pub instances: Vec<String>,
    #[serde(default)]
    pub enis: Vec<String>,
    #[serde(default)]
    pub master: Option<String>,
}

/// `[[eip]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EipConfig {
    pub id: String,
    pub address: Ipv4Addr,
    #[serde(default)]
    pub havip: Option<String>,
}

/// `[[route]]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub id: String,
    pub vpc: String,
    pub destination: Ipv4Cidr,
    pub next_hop: String,
}

/// `[quotas]`: keys present are set at every start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasConfig {
    pub havips_per_account: Option<usize>,
    pub havips_per_vpc: Option<usize>,
    pub havip_routes_per_vpc: Option<usize>,
}

/// The whole config file (see the module docs for the schema).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub agent: AgentConfig,
    #[serde(default, rename = "vpc")]
    pub vpcs: Vec<VpcConfig>,
    #[serde(default, rename = "vswitch")]
    pub vswitches: Vec<VSwitchConfig>,
    #[serde(default, rename = "instance")]
    pub instances: Vec<InstanceConfig>,
    #[serde(default, rename = "eni")]
    pub enis: Vec<EniConfig>,
    #[serde(default, rename = "uplink")]
    pub uplinks: Vec<UplinkConfig>,
    #[serde(default, rename = "havip")]
    pub havips: Vec<HavipConfig>,
    #[serde(default, rename = "eip")]
    pub eips: Vec<EipConfig>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub quotas: QuotasConfig,
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
    /// Refused by the validation core; `item` names the config entry.
    #[error("{item}: {}: {error}", error.code())]
    Invalid { item: String, error: Box<ApiError> },
    /// The store holds the same id with a different definition.
    #[error("{item}: {field} is {config} in the config but {stored} in the store (change it through the API, or remove the state database)")]
    Mismatch {
        item: String,
        field: &'static str,
        config: String,
        stored: String,
    },
    #[error("store: {0}")]
    Store(Box<ApiError>),
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
        dups("havip", self.havips.iter().map(|v| &v.id))?;
        dups("eip", self.eips.iter().map(|v| &v.id))?;
        dups("route", self.routes.iter().map(|v| &v.id))?;
        if let Some(addr) = self.agent.api_tcp {
            if !addr.ip().is_loopback() {
                // Allowed, but the API has no authentication: say so loudly.
                tracing::warn!(%addr, "api_tcp is not a loopback address: the API has no authentication");
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

/// What seeding did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// `kind id` of resources created from the config.
    pub created: Vec<String>,
    /// `kind id` of config resources already in the store (kept as stored).
    pub kept: Vec<String>,
}

struct Planner {
    state: State,
    applied: Vec<Applied>,
    report: SeedReport,
}

impl Planner {
    fn run(&mut self, item: &str, op: Op) -> Result<(), ConfigError> {
        let a = apply(&self.state, &op).map_err(|error| ConfigError::Invalid {
            item: item.to_owned(),
            error: Box::new(error),
        })?;
        self.state.apply_change(&a.change);
        self.applied.push(a);
        Ok(())
    }

    fn kept(&mut self, what: String) {
        self.report.kept.push(what);
    }

    fn created(&mut self, what: String) {
        self.report.created.push(what);
    }
}

fn same<T: PartialEq + ToString>(
    item: &str,
    field: &'static str,
    config: &T,
    stored: &T,
) -> Result<(), ConfigError> {
    if config == stored {
        Ok(())
    } else {
        Err(ConfigError::Mismatch {
            item: item.to_owned(),
            field,
            config: config.to_string(),
            stored: stored.to_string(),
        })
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "(none)".into())
}

/// Plans the seed of `cfg` over `state` (pure): the changes to commit, in
/// order, and what is created/kept. See the module docs for the rules.
///
/// # Errors
/// The first config entry the validation core refuses, or that disagrees
/// with the stored resource of the same id.
pub fn plan_seed(cfg: &Config, state: &State) -> Result<(Vec<Applied>, SeedReport), ConfigError> {
    let mut p = Planner {
        state: state.clone(),
        applied: Vec::new(),
        report: SeedReport::default(),
    };
    let q = cfg.quotas;
    if q != QuotasConfig::default() {
        p.run(
            "[quotas]",
            Op::SetQuota {
                havips_per_account: q.havips_per_account,
                havips_per_vpc: q.havips_per_vpc,
                havip_routes_per_vpc: q.havip_routes_per_vpc,
            },
        )?;
    }
    for v in &cfg.vpcs {
        let item = format!("[[vpc]] {:?}", v.id);
        if let Some(s) = p.state.vpcs.get(&v.id) {
            same(&item, "cidr", &v.cidr, &s.cidr)?;
            p.kept(format!("vpc {}", v.id));
            continue;
        }
        p.run(
            &item,
            Op::CreateVpc {
                id: v.id.clone(),
                cidr: v.cidr,
            },
        )?;
        p.created(format!("vpc {}", v.id));
    }
    for v in &cfg.vswitches {
        let item = format!("[[vswitch]] {:?}", v.id);
        if let Some(s) = p.state.vswitches.get(&v.id) {
            same(&item, "vpc", &v.vpc, &s.vpc)?;
            same(&item, "cidr", &v.cidr, &s.cidr)?;
            same(&item, "gateway_mac", &v.gateway_mac, &s.gateway_mac)?;
            p.kept(format!("vswitch {}", v.id));
            continue;
        }
        p.run(
            &item,
            Op::CreateVSwitch {
                id: v.id.clone(),
                vpc: v.vpc.clone(),
                cidr: v.cidr,
                gateway_mac: v.gateway_mac,
            },
        )?;
        p.created(format!("vswitch {}", v.id));
    }
    for v in &cfg.instances {
        let item = format!("[[instance]] {:?}", v.id);
        if let Some(s) = p.state.instances.get(&v.id) {
            same(&item, "vswitch", &v.vswitch, &s.vswitch)?;
            p.kept(format!("instance {}", v.id));
            continue;
        }
        p.run(
            &item,
            Op::CreateInstance {
                id: v.id.clone(),
                vswitch: v.vswitch.clone(),
            },
        )?;
        p.created(format!("instance {}", v.id));
    }
    for v in &cfg.enis {
        let item = format!("[[eni]] {:?}", v.id);
        if let Some(s) = p.state.enis.get(&v.id) {
            same(&item, "vswitch", &v.vswitch, &s.vswitch)?;
            same(&item, "mac", &v.mac, &s.mac)?;
            same(&item, "interface", &v.interface, &s.host_interface)?;
            same(&item, "instance", &opt(&v.instance), &opt(&s.instance))?;
            same(&item, "primary", &v.primary, &s.primary)?;
            p.kept(format!("eni {}", v.id));
            continue;
        }
        p.run(
            &item,
            Op::CreateEni {
                id: v.id.clone(),
                vswitch: v.vswitch.clone(),
                mac: v.mac,
                host_interface: v.interface.clone(),
                instance: v.instance.clone(),
                primary: v.primary,
            },
        )?;
        p.created(format!("eni {}", v.id));
    }
    for v in &cfg.uplinks {
        let item = format!("[[uplink]] {:?}", v.interface);
        if let Some(s) = p.state.uplinks.get(&v.interface) {
            same(&item, "vswitch", &v.vswitch, &s.vswitch)?;
            p.kept(format!("uplink {}", v.interface));
            continue;
        }
        p.run(
            &item,
            Op::CreateUplink {
                interface: v.interface.clone(),
                vswitch: v.vswitch.clone(),
            },
        )?;
        p.created(format!("uplink {}", v.interface));
    }
    for v in &cfg.havips {
        let item = format!("[[havip]] {:?}", v.id);
        if let Some(s) = p.state.havips.get(&v.id) {
            same(&item, "vswitch", &v.vswitch, &s.vswitch)?;
            if let Some(a) = v.address {
                same(&item, "address", &a, &s.address)?;
            }
            p.kept(format!("havip {}", v.id));
            continue;
        }
        p.run(
            &item,
            Op::CreateHaVip {
                id: Some(v.id.clone()),
                vswitch: v.vswitch.clone(),
                address: v.address,
            },
        )?;
        let members = v
            .instances
            .iter()
            .map(Member::instance)
            .chain(v.enis.iter().map(Member::eni));
        for m in members {
            p.run(
                &format!("{item} {} {:?}", m.kind, m.id),
                Op::AssociateHaVip {
                    havip: v.id.clone(),
                    member: m,
                },
            )?;
        }
        if let Some(master) = &v.master {
            p.run(
                &format!("{item} master"),
                Op::SetInitialMaster {
                    havip: v.id.clone(),
                    member: Some(master.clone()),
                },
            )?;
        }
        p.created(format!("havip {}", v.id));
    }
    for v in &cfg.eips {
        let item = format!("[[eip]] {:?}", v.id);
        if let Some(s) = p.state.eips.get(&v.id) {
            same(&item, "address", &v.address, &s.address)?;
            p.kept(format!("eip {}", v.id));
            continue;
        }
        p.run(
            &item,
            Op::CreateEip {
                id: Some(v.id.clone()),
                address: v.address,
            },
        )?;
        if let Some(h) = &v.havip {
            p.run(
                &format!("{item} havip"),
                Op::AssociateEip {
                    eip: v.id.clone(),
                    havip: h.clone(),
                },
            )?;
        }
        p.created(format!("eip {}", v.id));
    }
    for v in &cfg.routes {
        let item = format!("[[route]] {:?}", v.id);
        if let Some(s) = p.state.routes.get(&v.id) {
            same(&item, "vpc", &v.vpc, &s.vpc)?;
            same(&item, "destination", &v.destination, &s.destination)?;
            same(&item, "next_hop", &v.next_hop, &s.next_hop_havip)?;
            p.kept(format!("route {}", v.id));
            continue;
        }
        p.run(
            &item,
            Op::CreateRoute {
                id: Some(v.id.clone()),
                vpc: v.vpc.clone(),
                destination: v.destination,
                next_hop_havip: v.next_hop.clone(),
            },
        )?;
        p.created(format!("route {}", v.id));
    }
    Ok((p.applied, p.report))
}

/// Seeds the control plane from `cfg`, in one transaction (all or nothing).
///
/// # Errors
/// As [`plan_seed`]; [`ConfigError::Store`] if the commit failed.
pub fn seed(cp: &ControlPlane, cfg: &Config) -> Result<SeedReport, ConfigError> {
    let mut report = None;
    cp.apply_planned(|state| {
        let (applied, r) = plan_seed(cfg, state)?;
        report = Some(r);
        Ok(applied)
    })
    .map_err(|e| match e {
        PlanError::Plan(e) => e,
        PlanError::Store(e) => ConfigError::Store(Box::new(e)),
    })?;
    Ok(report.unwrap_or_default())
}
