//! The control plane's resource model: VPCs, vSwitches, instances, ENIs,
//! uplinks, HaVips, EIPs, route entries, quotas and the kernel-reported owners.
//!
//! Everything here is plain data (serde). Validation lives in
//! [`crate::validate`], persistence in [`crate::store`].

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::Ipv4Addr,
    str::FromStr,
};

use havip_common::limits;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Why a MAC or CIDR string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    #[error("invalid MAC address {0:?}: expected six hex octets like 02:00:00:00:0a:01")]
    Mac(String),
    #[error("invalid IPv4 CIDR {0:?}: expected a.b.c.d/len with len 0..=32")]
    Cidr(String),
    #[error("invalid IPv4 CIDR {0:?}: host bits are set (network address is {1})")]
    CidrHostBits(String, Ipv4Cidr),
}

/// An Ethernet MAC address, written `02:00:00:00:0a:01` (also accepts `-`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The octets, as on the wire.
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// True for broadcast and multicast addresses (group bit set).
    pub const fn is_group(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// True for `00:00:00:00:00:00`.
    pub fn is_zero(self) -> bool {
        self.0 == [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Mac(s.to_owned());
        let sep = if s.contains('-') { '-' } else { ':' };
        let mut out = [0u8; 6];
        let mut parts = s.split(sep);
        for octet in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *octet = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An IPv4 prefix such as `10.0.1.0/24`. Host bits must be zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    len: u8,
}

impl Ipv4Cidr {
    /// A prefix from its network address and length.
    ///
    /// # Errors
    /// [`ParseError::Cidr`] if `len > 32`, [`ParseError::CidrHostBits`] if
    /// `addr` has bits set beyond the prefix.
    pub fn new(addr: Ipv4Addr, len: u8) -> Result<Self, ParseError> {
        if len > 32 {
            return Err(ParseError::Cidr(format!("{addr}/{len}")));
        }
        let cidr = Ipv4Cidr {
            addr: Ipv4Addr::from(u32::from(addr) & mask(len)),
            len,
        };
        if cidr.addr != addr {
            return Err(ParseError::CidrHostBits(format!("{addr}/{len}"), cidr));
        }
        Ok(cidr)
    }

    /// Network address.
    pub const fn network(self) -> Ipv4Addr {
        self.addr
    }

    /// Prefix length.
    pub const fn prefix_len(self) -> u8 {
        self.len
    }

    /// Last address of the prefix (the broadcast address for `len < 31`).
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.len))
    }

    /// Number of addresses in the prefix.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// Whether `ip` lies in the prefix.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.len) == u32::from(self.addr)
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains_cidr(self, other: Ipv4Cidr) -> bool {
        other.len >= self.len && self.contains(other.addr)
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(self, other: Ipv4Cidr) -> bool {
        self.contains_cidr(other) || other.contains_cidr(self)
    }
}

const fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len as u32)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError::Cidr(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err());
        }
        let len: u8 = len.parse().map_err(|_| err())?;
        if len > 32 {
            return Err(err());
        }
        Ipv4Cidr::new(addr, len).map_err(|e| match e {
            ParseError::CidrHostBits(_, net) => ParseError::CidrHostBits(s.to_owned(), net),
            other => other,
        })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl fmt::Debug for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Ipv4Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A VPC: the private network HaVips live in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vpc {
    pub id: String,
    pub cidr: Ipv4Cidr,
}

/// A vSwitch (subnet) of a VPC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VSwitch {
    pub id: String,
    pub vpc: String,
    pub cidr: Ipv4Cidr,
    /// Source MAC of frames the data plane forwards into this vSwitch.
    pub gateway_mac: MacAddr,
    /// Dense data-plane id (`PortInfo::vswitch_id`, `HavipKey::vswitch_id`),
    /// allocated by the control plane, never 0.
    pub dp_id: u32,
}

/// An instance (VM). Its primary vSwitch decides which HaVips it may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instance {
    pub id: String,
    pub vswitch: String,
}

/// An elastic network interface, attached to an instance or detached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eni {
    pub id: String,
    pub vswitch: String,
    pub mac: MacAddr,
    /// Host-side interface (tap/veth) the ENI's frames enter the host on.
    pub host_interface: String,
    #[serde(default)]
    pub instance: Option<String>,
    /// The instance's primary ENI.
    #[serde(default)]
    pub primary: bool,
}

/// The host's uplink towards the rest of a vSwitch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    pub interface: String,
    pub vswitch: String,
}

/// What a HaVip is bound to. One kind per HaVip, never both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindingKind {
    Instance,
    Eni,
}

impl fmt::Display for BindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BindingKind::Instance => "instance",
            BindingKind::Eni => "eni",
        })
    }
}

/// A High-Availability Virtual IP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaVip {
    pub id: String,
    pub vswitch: String,
    pub address: Ipv4Addr,
    /// Kind of the bound members; `None` while nothing is bound.
    #[serde(default)]
    pub binding_kind: Option<BindingKind>,
    /// Bound instance or ENI ids, in association order.
    #[serde(default)]
    pub bindings: Vec<String>,
    /// Dense data-plane id (< `havip_common::MAX_HAVIPS`): stable for the
    /// life of the HaVip, reused after it is deleted.
    pub slot: u32,
    /// Binding installed as owner while the kernel reports none.
    #[serde(default)]
    pub initial_master: Option<String>,
}

/// An elastic (public) IP that can front a HaVip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Eip {
    pub id: String,
    pub address: Ipv4Addr,
    #[serde(default)]
    pub havip: Option<String>,
}

/// A VPC route entry whose next hop is a HaVip.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    pub id: String,
    pub vpc: String,
    pub destination: Ipv4Cidr,
    pub next_hop_havip: String,
}

/// Adjustable quotas (the fixed limits are in `havip_common::limits`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quotas {
    pub havips_per_account: usize,
    pub havips_per_vpc: usize,
    pub havip_routes_per_vpc: usize,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            havips_per_account: limits::DEFAULT_HAVIPS_PER_ACCOUNT,
            havips_per_vpc: limits::DEFAULT_HAVIPS_PER_VPC,
            havip_routes_per_vpc: limits::DEFAULT_HAVIP_ROUTES_PER_VPC,
        }
    }
}

/// The current master of a HaVip as reported by the kernel (`OWNERS`).
/// Kernel-owned truth: the control plane records it, never acts on bindings
/// because of it. `ifindex == 0` means no master.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedOwner {
    pub ifindex: u32,
    pub mac: MacAddr,
    pub epoch: u64,
    /// `CLOCK_MONOTONIC` ns of the last change, as the kernel wrote it.
    pub changed_ns: u64,
}

impl ObservedOwner {
    /// Whether a master is set.
    pub const fn has_owner(&self) -> bool {
        self.ifindex != 0
    }
}

/// Bookkeeping that is not a resource.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Counter used to name resources created without an explicit id.
    pub next_id: u64,
}

/// The whole control-plane state. Keyed by id everywhere.
///
/// The maps are public for reading. Change a `State` only through
/// [`State::put`] / [`State::remove`] (or [`State::from_records`]): they keep
/// the private lookup indexes that make validation O(log n). After editing
/// the maps by hand, call [`State::reindex`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateRepr")]
pub struct State {
    pub vpcs: BTreeMap<String, Vpc>,
    pub vswitches: BTreeMap<String, VSwitch>,
    pub instances: BTreeMap<String, Instance>,
    pub enis: BTreeMap<String, Eni>,
    /// Keyed by interface name.
    pub uplinks: BTreeMap<String, Uplink>,
    pub havips: BTreeMap<String, HaVip>,
    pub eips: BTreeMap<String, Eip>,
    pub routes: BTreeMap<String, RouteEntry>,
    pub quotas: Quotas,
    /// Kernel-reported owner per HaVip id.
    pub owners: BTreeMap<String, ObservedOwner>,
    pub meta: Meta,
    #[serde(skip)]
    idx: Index,
}

/// Wire form of [`State`]: deserializing rebuilds the indexes.
#[derive(Deserialize)]
struct StateRepr {
    #[serde(default)]
    vpcs: BTreeMap<String, Vpc>,
    #[serde(default)]
    vswitches: BTreeMap<String, VSwitch>,
    #[serde(default)]
    instances: BTreeMap<String, Instance>,
    #[serde(default)]
    enis: BTreeMap<String, Eni>,
    #[serde(default)]
    uplinks: BTreeMap<String, Uplink>,
    #[serde(default)]
    havips: BTreeMap<String, HaVip>,
    #[serde(default)]
    eips: BTreeMap<String, Eip>,
    #[serde(default)]
    routes: BTreeMap<String, RouteEntry>,
    #[serde(default)]
    quotas: Quotas,
    #[serde(default)]
    owners: BTreeMap<String, ObservedOwner>,
    #[serde(default)]
    meta: Meta,
}

impl From<StateRepr> for State {
    fn from(r: StateRepr) -> Self {
        let mut s = State {
            vpcs: r.vpcs,
            vswitches: r.vswitches,
            instances: r.instances,
            enis: r.enis,
            uplinks: r.uplinks,
            havips: r.havips,
            eips: r.eips,
            routes: r.routes,
            quotas: r.quotas,
            owners: r.owners,
            meta: r.meta,
            idx: Index::default(),
        };
        s.reindex();
        s
    }
}

/// Derived lookups, rebuilt from the maps on load and kept in step by
/// [`State::put`] / [`State::remove`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Index {
    /// vSwitch id → address → HaVip id.
    havip_by_addr: HashMap<String, BTreeMap<Ipv4Addr, String>>,
    /// Data-plane slot → HaVip id.
    havip_by_slot: BTreeMap<u32, String>,
    /// VPC id → number of HaVips in it.
    havips_per_vpc: HashMap<String, usize>,
    /// Instance id → HaVips bound to it or to one of its ENIs.
    instance_havips: HashMap<String, BTreeSet<String>>,
    /// ENI MAC → ENI id.
    eni_by_mac: HashMap<MacAddr, String>,
    /// Data-plane id → vSwitch id.
    vswitch_by_dp_id: BTreeMap<u32, String>,
}

/// Kind of a stored record; the first part of its store key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Vpc,
    VSwitch,
    Instance,
    Eni,
    Uplink,
    HaVip,
    Eip,
    Route,
    Quotas,
    Owner,
    Meta,
}

impl RecordKind {
    /// Every kind, in load order.
    pub const ALL: [RecordKind; 11] = [
        RecordKind::Vpc,
        RecordKind::VSwitch,
        RecordKind::Instance,
        RecordKind::Eni,
        RecordKind::Uplink,
        RecordKind::HaVip,
        RecordKind::Eip,
        RecordKind::Route,
        RecordKind::Quotas,
        RecordKind::Owner,
        RecordKind::Meta,
    ];

    /// Stable name used in store keys.
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::Vpc => "vpc",
            RecordKind::VSwitch => "vswitch",
            RecordKind::Instance => "instance",
            RecordKind::Eni => "eni",
            RecordKind::Uplink => "uplink",
            RecordKind::HaVip => "havip",
            RecordKind::Eip => "eip",
            RecordKind::Route => "route",
            RecordKind::Quotas => "quotas",
            RecordKind::Owner => "owner",
            RecordKind::Meta => "meta",
        }
    }

    /// Inverse of [`RecordKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One stored record: a resource, the quotas, an observed owner or meta.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Record {
    Vpc(Vpc),
    VSwitch(VSwitch),
    Instance(Instance),
    Eni(Eni),
    Uplink(Uplink),
    HaVip(HaVip),
    Eip(Eip),
    Route(RouteEntry),
    Quotas(Quotas),
    /// Observed owner of the HaVip with this id.
    Owner {
        havip: String,
        owner: ObservedOwner,
    },
    Meta(Meta),
}

/// Identity of a record: kind + id (`""` for the singletons).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordKey {
    pub kind: RecordKind,
    pub id: String,
}

impl RecordKey {
    /// Key of a resource of `kind` named `id`.
    pub fn new(kind: RecordKind, id: impl Into<String>) -> Self {
        RecordKey {
            kind,
            id: id.into(),
        }
    }

    /// The store's string form: `kind/id`.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.kind.name(), self.id)
    }

    /// Parses [`RecordKey::encode`]'s output.
    pub fn decode(s: &str) -> Option<Self> {
        let (kind, id) = s.split_once('/')?;
        Some(RecordKey::new(RecordKind::from_name(kind)?, id))
    }
}

impl Record {
    /// This record's key.
    pub fn key(&self) -> RecordKey {
        match self {
            Record::Vpc(v) => RecordKey::new(RecordKind::Vpc, &v.id),
            Record::VSwitch(v) => RecordKey::new(RecordKind::VSwitch, &v.id),
            Record::Instance(v) => RecordKey::new(RecordKind::Instance, &v.id),
            Record::Eni(v) => RecordKey::new(RecordKind::Eni, &v.id),
            Record::Uplink(v) => RecordKey::new(RecordKind::Uplink, &v.interface),
            Record::HaVip(v) => RecordKey::new(RecordKind::HaVip, &v.id),
            Record::Eip(v) => RecordKey::new(RecordKind::Eip, &v.id),
            Record::Route(v) => RecordKey::new(RecordKind::Route, &v.id),
            Record::Quotas(_) => RecordKey::new(RecordKind::Quotas, ""),
            Record::Owner { havip, .. } => RecordKey::new(RecordKind::Owner, havip),
            Record::Meta(_) => RecordKey::new(RecordKind::Meta, ""),
        }
    }
}

/// One step of a [`Change`]: write a record or delete one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    Put(Record),
    Delete(RecordKey),
}

/// What a validated operation changes: applied to the store in one write
/// transaction and then to the in-memory [`State`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub mutations: Vec<Mutation>,
}

impl Change {
    /// Appends a write.
    pub fn put(&mut self, r: Record) {
        self.mutations.push(Mutation::Put(r));
    }

    /// Appends a delete.
    pub fn delete(&mut self, kind: RecordKind, id: impl Into<String>) {
        self.mutations
            .push(Mutation::Delete(RecordKey::new(kind, id)));
    }

    /// True when nothing changes (e.g. an idempotent re-create).
    pub fn is_empty(&self) -> bool {
        self.mutations.is_empty()
    }
}

impl State {
    /// A state holding `records` (any order), indexes built.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Self {
        let mut s = State::default();
        for r in records {
            s.insert_raw(r);
        }
        s.reindex();
        s
    }

    /// Every record of this state (what the store holds for it).
    pub fn records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        out.extend(self.vpcs.values().cloned().map(Record::Vpc));
        out.extend(self.vswitches.values().cloned().map(Record::VSwitch));
        out.extend(self.instances.values().cloned().map(Record::Instance));
        out.extend(self.enis.values().cloned().map(Record::Eni));
        out.extend(self.uplinks.values().cloned().map(Record::Uplink));
        out.extend(self.havips.values().cloned().map(Record::HaVip));
        out.extend(self.eips.values().cloned().map(Record::Eip));
        out.extend(self.routes.values().cloned().map(Record::Route));
        out.push(Record::Quotas(self.quotas));
        out.extend(self.owners.iter().map(|(h, o)| Record::Owner {
            havip: h.clone(),
            owner: *o,
        }));
        out.push(Record::Meta(self.meta));
        out
    }

    /// Applies every mutation of `change`, keeping the indexes.
    pub fn apply_change(&mut self, change: &Change) {
        for m in &change.mutations {
            match m {
                Mutation::Put(r) => self.put(r.clone()),
                Mutation::Delete(k) => self.remove(k),
            }
        }
    }

    /// Writes one record, keeping the indexes.
    pub fn put(&mut self, r: Record) {
        match &r {
            Record::HaVip(h) => {
                if let Some(old) = self.havips.get(&h.id).cloned() {
                    self.unindex_havip(&old);
                }
                self.index_havip(h);
            }
            Record::Eni(e) => {
                if let Some(old) = self.enis.get(&e.id) {
                    let old_mac = old.mac;
                    self.idx.eni_by_mac.remove(&old_mac);
                }
                self.idx.eni_by_mac.insert(e.mac, e.id.clone());
            }
            Record::VSwitch(v) => {
                if let Some(old) = self.vswitches.get(&v.id) {
                    let old_dp = old.dp_id;
                    self.idx.vswitch_by_dp_id.remove(&old_dp);
                }
                self.idx.vswitch_by_dp_id.insert(v.dp_id, v.id.clone());
            }
            _ => {}
        }
        self.insert_raw(r);
    }

    /// Deletes one record (no-op when absent), keeping the indexes.
    pub fn remove(&mut self, k: &RecordKey) {
        let id = k.id.as_str();
        match k.kind {
            RecordKind::Vpc => drop(self.vpcs.remove(id)),
            RecordKind::VSwitch => {
                if let Some(v) = self.vswitches.remove(id) {
                    self.idx.vswitch_by_dp_id.remove(&v.dp_id);
                }
            }
            RecordKind::Instance => drop(self.instances.remove(id)),
            RecordKind::Eni => {
                if let Some(e) = self.enis.remove(id) {
                    self.idx.eni_by_mac.remove(&e.mac);
                }
            }
            RecordKind::Uplink => drop(self.uplinks.remove(id)),
            RecordKind::HaVip => {
                if let Some(h) = self.havips.get(id).cloned() {
                    self.unindex_havip(&h);
                    self.havips.remove(id);
                }
            }
            RecordKind::Eip => drop(self.eips.remove(id)),
            RecordKind::Route => drop(self.routes.remove(id)),
            RecordKind::Quotas => self.quotas = Quotas::default(),
            RecordKind::Owner => drop(self.owners.remove(id)),
            RecordKind::Meta => self.meta = Meta::default(),
        }
    }

    /// Rebuilds the lookup indexes from the maps.
    pub fn reindex(&mut self) {
        self.idx = Index::default();
        for v in self.vswitches.values() {
            self.idx.vswitch_by_dp_id.insert(v.dp_id, v.id.clone());
        }
        for e in self.enis.values() {
            self.idx.eni_by_mac.insert(e.mac, e.id.clone());
        }
        let havips: Vec<HaVip> = self.havips.values().cloned().collect();
        for h in &havips {
            self.index_havip(h);
        }
    }

    fn insert_raw(&mut self, r: Record) {
        match r {
            Record::Vpc(v) => drop(self.vpcs.insert(v.id.clone(), v)),
            Record::VSwitch(v) => drop(self.vswitches.insert(v.id.clone(), v)),
            Record::Instance(v) => drop(self.instances.insert(v.id.clone(), v)),
            Record::Eni(v) => drop(self.enis.insert(v.id.clone(), v)),
            Record::Uplink(v) => drop(self.uplinks.insert(v.interface.clone(), v)),
            Record::HaVip(v) => drop(self.havips.insert(v.id.clone(), v)),
            Record::Eip(v) => drop(self.eips.insert(v.id.clone(), v)),
            Record::Route(v) => drop(self.routes.insert(v.id.clone(), v)),
            Record::Quotas(q) => self.quotas = q,
            Record::Owner { havip, owner } => drop(self.owners.insert(havip, owner)),
            Record::Meta(m) => self.meta = m,
        }
    }

    /// Instances a HaVip's bindings count against (instance bindings, or the
    /// instances the bound ENIs are attached to).
    fn member_instances(&self, h: &HaVip) -> BTreeSet<String> {
        match h.binding_kind {
            Some(BindingKind::Instance) => h.bindings.iter().cloned().collect(),
            Some(BindingKind::Eni) => h
                .bindings
                .iter()
                .filter_map(|b| self.enis.get(b).and_then(|e| e.instance.clone()))
                .collect(),
            None => BTreeSet::new(),
        }
    }

    fn index_havip(&mut self, h: &HaVip) {
        self.idx
            .havip_by_addr
            .entry(h.vswitch.clone())
            .or_default()
            .insert(h.address, h.id.clone());
        self.idx.havip_by_slot.insert(h.slot, h.id.clone());
        if let Some(vpc) = self.havip_vpc(h).map(str::to_owned) {
            *self.idx.havips_per_vpc.entry(vpc).or_default() += 1;
        }
        for i in self.member_instances(h) {
            self.idx
                .instance_havips
                .entry(i)
                .or_default()
                .insert(h.id.clone());
        }
    }

    fn unindex_havip(&mut self, h: &HaVip) {
        if let Some(m) = self.idx.havip_by_addr.get_mut(&h.vswitch) {
            m.remove(&h.address);
            if m.is_empty() {
                self.idx.havip_by_addr.remove(&h.vswitch);
            }
        }
        self.idx.havip_by_slot.remove(&h.slot);
        if let Some(vpc) = self.havip_vpc(h).map(str::to_owned) {
            if let Some(n) = self.idx.havips_per_vpc.get_mut(&vpc) {
                *n = n.saturating_sub(1);
            }
        }
        for i in self.member_instances(h) {
            if let Some(set) = self.idx.instance_havips.get_mut(&i) {
                set.remove(&h.id);
                if set.is_empty() {
                    self.idx.instance_havips.remove(&i);
                }
            }
        }
    }

    /// VPC of a HaVip (through its vSwitch).
    pub fn havip_vpc(&self, havip: &HaVip) -> Option<&str> {
        self.vswitches
            .get(&havip.vswitch)
            .map(|vsw| vsw.vpc.as_str())
    }

    /// Number of HaVips in a VPC.
    pub fn havip_count_in_vpc(&self, vpc: &str) -> usize {
        self.idx.havips_per_vpc.get(vpc).copied().unwrap_or(0)
    }

    /// The HaVip holding a data-plane slot.
    pub fn havip_by_slot(&self, slot: u32) -> Option<&HaVip> {
        self.havips.get(self.idx.havip_by_slot.get(&slot)?)
    }

    /// Data-plane slots in use, ascending.
    pub fn used_slots(&self) -> impl DoubleEndedIterator<Item = u32> + ExactSizeIterator + '_ {
        self.idx.havip_by_slot.keys().copied()
    }

    /// The HaVip with `addr` in vSwitch `vswitch`.
    pub fn havip_by_address(&self, vswitch: &str, addr: Ipv4Addr) -> Option<&HaVip> {
        self.havips
            .get(self.idx.havip_by_addr.get(vswitch)?.get(&addr)?)
    }

    /// Number of HaVips in a vSwitch and their highest address.
    pub fn havip_address_span(&self, vswitch: &str) -> (usize, Option<Ipv4Addr>) {
        self.idx.havip_by_addr.get(vswitch).map_or((0, None), |m| {
            (m.len(), m.last_key_value().map(|(a, _)| *a))
        })
    }

    /// Addresses of the HaVips of a vSwitch, ascending.
    pub fn havip_addresses(&self, vswitch: &str) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.idx
            .havip_by_addr
            .get(vswitch)
            .into_iter()
            .flat_map(|m| m.keys().copied())
    }

    /// The HaVip with this address in the vSwitch with this data-plane id.
    pub fn havip_by_key(&self, vswitch_dp_id: u32, addr: Ipv4Addr) -> Option<&HaVip> {
        let vsw = self.idx.vswitch_by_dp_id.get(&vswitch_dp_id)?;
        self.havip_by_address(vsw, addr)
    }

    /// The vSwitch with this data-plane id.
    pub fn vswitch_by_dp_id(&self, dp_id: u32) -> Option<&VSwitch> {
        self.vswitches.get(self.idx.vswitch_by_dp_id.get(&dp_id)?)
    }

    /// The ENI with this MAC.
    pub fn eni_by_mac(&self, mac: MacAddr) -> Option<&Eni> {
        self.enis.get(self.idx.eni_by_mac.get(&mac)?)
    }

    /// The bound member (instance or ENI id) of `havip` that owns ENI MAC `mac`.
    pub fn member_with_mac<'h>(&self, havip: &'h HaVip, mac: MacAddr) -> Option<&'h str> {
        let eni = self.eni_by_mac(mac)?;
        havip
            .bindings
            .iter()
            .find(|b| match havip.binding_kind {
                Some(BindingKind::Eni) => **b == eni.id,
                Some(BindingKind::Instance) => eni.instance.as_deref() == Some(b.as_str()),
                None => false,
            })
            .map(String::as_str)
    }

    /// HaVips (ids) an instance holds, directly or through one of its ENIs.
    pub fn havips_of_instance(&self, instance: &str) -> Vec<&str> {
        self.idx
            .instance_havips
            .get(instance)
            .map(|s| s.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn mac_round_trip() {
        let m: MacAddr = "02:00:00:00:0A:01".parse().unwrap();
        assert_eq!(m.0, [2, 0, 0, 0, 10, 1]);
        assert_eq!(m.to_string(), "02:00:00:00:0a:01");
        assert_eq!("02-00-00-00-0a-01".parse::<MacAddr>().unwrap(), m);
        for bad in [
            "",
            "02:00:00:00:0a",
            "02:00:00:00:0a:01:02",
            "2:0:0:0:a:1",
            "zz:00:00:00:00:00",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"02:00:00:00:0a:01\"");
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), m);
    }

    #[test]
    fn cidr_basics() {
        let c: Ipv4Cidr = "10.0.1.0/24".parse().unwrap();
        assert_eq!(c.broadcast(), Ipv4Addr::new(10, 0, 1, 255));
        assert_eq!(c.size(), 256);
        assert!(c.contains(Ipv4Addr::new(10, 0, 1, 7)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 2, 7)));
        let vpc: Ipv4Cidr = "10.0.0.0/16".parse().unwrap();
        assert!(vpc.contains_cidr(c));
        assert!(!c.contains_cidr(vpc));
        assert!(c.overlaps(vpc));
        assert!(!c.overlaps("10.0.2.0/24".parse().unwrap()));
        assert!(matches!(
            "10.0.1.1/24".parse::<Ipv4Cidr>(),
            Err(ParseError::CidrHostBits(..))
        ));
        for bad in [
            "10.0.1.0",
            "10.0.1.0/33",
            "10.0.1/24",
            "10.0.1.0/",
            "10.0.1.0/+4",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
        let all: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(all.size(), 1 << 32);
    }
}
