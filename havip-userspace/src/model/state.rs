//! The whole state ([`State`]) with its lookup indexes, and the records and
//! changes the store persists.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::Ipv4Addr,
};

use serde::{Deserialize, Serialize};

use super::{net::MacAddr, resource::*};

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
    /// Owner changes per HaVip id, oldest first, at most
    /// [`HISTORY_LIMIT`] each.
    pub history: BTreeMap<String, Vec<OwnerChange>>,
    pub meta: Meta,
    #[serde(skip)]
    idx: Index,
}

/// Wire form of [`State`]: deserializing rebuilds the indexes. A missing
/// field is empty (default).
#[derive(Default, Deserialize)]
#[serde(default)]
struct StateRepr {
    vpcs: BTreeMap<String, Vpc>,
    vswitches: BTreeMap<String, VSwitch>,
    instances: BTreeMap<String, Instance>,
    enis: BTreeMap<String, Eni>,
    uplinks: BTreeMap<String, Uplink>,
    havips: BTreeMap<String, HaVip>,
    eips: BTreeMap<String, Eip>,
    routes: BTreeMap<String, RouteEntry>,
    quotas: Quotas,
    owners: BTreeMap<String, ObservedOwner>,
    history: BTreeMap<String, Vec<OwnerChange>>,
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
            history: r.history,
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
    History,
}

impl RecordKind {
    /// Every kind, in load order.
    pub const ALL: [RecordKind; 12] = [
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
        RecordKind::History,
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
            RecordKind::History => "history",
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
    /// Owner history of the HaVip with this id (oldest first, bounded).
    History {
        havip: String,
        entries: Vec<OwnerChange>,
    },
}

/// Most owner changes kept per HaVip; older ones are dropped in the
/// transaction that appends a new one.
pub const HISTORY_LIMIT: usize = 100;

/// What changed an owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerTrigger {
    /// A GARP claim seen by the data plane.
    Claim,
    /// An API operation (SetInitialOwner, force unassociate, delete).
    Api,
    /// The reconciler (resync of the kernel's owners).
    Reconcile,
    /// Adoption at start of owners the store did not have.
    Adoption,
}

impl OwnerChange {
    /// `epoch=E <previous> -> <member> host=H trigger=T` (`-` when absent):
    /// the text form shared by `havipctl havip history` and `havipctl events`.
    pub fn summary(&self) -> String {
        format!(
            "epoch={} {} -> {} host={} trigger={}",
            self.epoch,
            self.previous_member.as_deref().unwrap_or("-"),
            self.member.as_deref().unwrap_or("-"),
            self.host.as_deref().unwrap_or("-"),
            self.trigger.name()
        )
    }
}

impl OwnerTrigger {
    /// Stable name (as serialized).
    pub const fn name(self) -> &'static str {
        match self {
            OwnerTrigger::Claim => "claim",
            OwnerTrigger::Api => "api",
            OwnerTrigger::Reconcile => "reconcile",
            OwnerTrigger::Adoption => "adoption",
        }
    }
}

/// One owner change of a HaVip, as the history keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerChange {
    /// The HaVip's id.
    pub havip: String,
    /// Owner epoch after the change (the kernel increments it on each).
    pub epoch: u64,
    /// Bound member that held the address before (None: no owner, or not
    /// a bound member).
    pub previous_member: Option<String>,
    /// Bound member that holds it now (None: no owner).
    pub member: Option<String>,
    /// Host that recorded the change (multi-host), if known.
    pub host: Option<String>,
    /// Wall-clock time, RFC 3339 UTC.
    pub time: String,
    /// What made the change: `claim`, `api`, `reconcile` or `adoption`.
    pub trigger: OwnerTrigger,
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
            Record::History { havip, .. } => RecordKey::new(RecordKind::History, havip),
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
        out.extend(self.history.iter().map(|(h, e)| Record::History {
            havip: h.clone(),
            entries: e.clone(),
        }));
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
                let mut moved = false;
                if let Some(old) = self.enis.get(&e.id) {
                    let old_mac = old.mac;
                    moved = old.instance != e.instance;
                    self.idx.eni_by_mac.remove(&old_mac);
                }
                self.idx.eni_by_mac.insert(e.mac, e.id.clone());
                if moved {
                    // The instances an ENI binding counts against changed
                    // (detached by DeleteInstance): rare, rebuild.
                    self.insert_raw(r);
                    self.reindex();
                    return;
                }
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
            RecordKind::History => drop(self.history.remove(id)),
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
            Record::History { havip, entries } => drop(self.history.insert(havip, entries)),
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
