//! The map catalogue: ONE declaration per map (name, kind, key and value
//! sizes, capacity, flags). The XDP program declares its maps from these
//! specs (`havip-ebpf/src/maps.rs` checks its key/value types against them
//! at compile time), and the agent takes its pin names, its shape check of
//! adopted pinned maps and its teardown list from [`ALL`].

use core::mem::size_of;

use crate::vxlan::{self, VniSlot, VtepSlot};
use crate::{
    BindingEntry, BindingKey, DataplaneConfig, EipEntry, EipSnatEntry, EventBudget, HavipKey,
    HavipRow, Member, PortInfo, RouteKey, RouteNextHop, TrafficCounter, VpcAddrKey, VtepConfig,
    VtepEntry, EVENTS_BYTES, INDEX_SLOTS, MAX_BINDINGS, MAX_EIPS, MAX_HAVIPS, MAX_PORTS,
    MAX_ROUTES, MAX_VSWITCHES, MAX_VTEPS, MEMBERS_PER_HAVIP,
};

/// `BPF_F_NO_PREALLOC`: hash elements are allocated on update and freed
/// after an RCU grace period (maps written only by the agent).
pub const NO_PREALLOC: u32 = 1;

/// `BPF_F_MMAPABLE` (arrays, Linux 5.5): the agent maps the array into its
/// memory and writes single fields (the owner word with a compare-and-swap)
/// instead of whole values.
pub const MMAPABLE: u32 = 1 << 10;

/// Pin names of maps of the previous layout (HaVips and owners in two hash
/// maps): migrated at start-up by the agent, then unpinned; removed by
/// teardown.
pub const RETIRED: &[&str] = &["HAVIPS", "OWNERS"];

/// Pin names of maps a later layout replaced under a new name, with what
/// they held. Left pinned by an older agent, they are refused at start-up
/// with the teardown advice (never adopted, nothing created): the name, not
/// the value size, tells the layouts apart (`HAVIP_TABLE` held 64-byte
/// slots, and 32-byte slots of other fields before that; `HAVIP_SLOTS`
/// 32-byte slots placed by hash). Removed by teardown.
pub const SUPERSEDED: &[(&str, &str)] = &[
    (
        "HAVIP_TABLE",
        "the HaVip table of a previous slot layout (now HAVIP_INDEX, HAVIP_ROWS and HAVIP_CHANGED)",
    ),
    (
        "HAVIP_SLOTS",
        "the HaVip table of the previous layout, slots placed by hash (now HAVIP_INDEX and HAVIP_ROWS)",
    ),
];

/// Map type, as the kernel numbers it (`enum bpf_map_type`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    Hash = 1,
    Array = 2,
    PerCpuArray = 6,
    LpmTrie = 11,
    DevMapHash = 25,
    RingBuf = 27,
}

/// `struct bpf_devmap_val` (ifindex, then the optional program fd/id): the
/// value of a `DEVMAP_HASH` as aya-ebpf declares it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevMapValue {
    pub ifindex: u32,
    pub prog: u32,
}

/// Shape of one map, as the kernel reports it for a loaded or pinned map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapSpec {
    /// Map name in the object, and file name under the pin dir.
    pub name: &'static str,
    pub kind: MapKind,
    pub key_size: u32,
    pub value_size: u32,
    /// Entries; bytes for the ring buffer.
    pub max_entries: u32,
    /// `map_flags` at creation (`NO_PREALLOC` or 0).
    pub flags: u32,
}

macro_rules! catalogue {
    ($(
        $(#[$doc:meta])*
        $name:ident: $kind:ident, $key:ty => $value:ty, $entries:expr, $flags:expr;
    )*) => {
        $(
            $(#[$doc])*
            pub const $name: MapSpec = MapSpec {
                name: stringify!($name),
                kind: MapKind::$kind,
                key_size: size_of::<$key>() as u32,
                value_size: size_of::<$value>() as u32,
                max_entries: $entries,
                flags: $flags,
            };
        )*

        /// Every map, in catalogue order.
        pub const ALL: &[MapSpec] = &[$($name),*];

        /// Pin names of the maps and of the program.
        pub mod names {
            /// The XDP program, as the object names it.
            pub const PROG_XDP: &str = "havip_xdp";
            $(pub const $name: &str = stringify!($name);)*
        }
    };
}

catalogue! {
    /// ingress ifindex (< `MAX_PORTS`) → vSwitch, role and gateway MAC; an
    /// array so the per-frame lookup is inlined. Written by the agent.
    PORTS: Array, u32 => PortInfo, MAX_PORTS, 0;
    /// The same for ifindexes ≥ `MAX_PORTS`. Written by the agent.
    PORTS_HIGH: Hash, u32 => PortInfo, MAX_PORTS, NO_PREALLOC;
    /// ifindex → ifindex: the ports frames may be redirected to. Written by the agent.
    TX_PORTS: DevMapHash, u32 => DevMapValue, MAX_PORTS, 0;
    /// Open addressing over (vSwitch, address) → `index_entry` (tag and
    /// row): 4-byte entries, 16 to an element (a cache line), so the part a
    /// frame touches stays in few pages at any HaVip count. Written by the
    /// agent (mmapped).
    HAVIP_INDEX: Array, u32 => crate::index_entry::Line, INDEX_SLOTS / crate::index_entry::PER_LINE, MMAPABLE;
    /// Row (allocated densely by the agent) → `HavipRow` {key, id, state,
    /// owner word, owner copy}: owner word switched by claims in XDP with
    /// one 8-byte store and by the agent only by compare-and-swap (mmapped;
    /// see docs/design.md for what a concurrent reader sees). Named anew
    /// for rows found through `HAVIP_INDEX`: see [`SUPERSEDED`].
    HAVIP_ROWS: Array, u32 => HavipRow, MAX_HAVIPS, MMAPABLE;
    /// HaVip id → `bpf_ktime_get_ns` of the last claim that switched its
    /// owner (0 if the control plane set it): the hold time. Written by
    /// claims in XDP and zeroed by the agent when it places a HaVip
    /// (mmapped); never read by the forward path.
    HAVIP_CHANGED: Array, u32 => u64, MAX_HAVIPS, MMAPABLE;
    /// HaVip id × `MEMBERS_PER_HAVIP` + i → `Member` (bound port and MAC, or
    /// an owner on another host). Written by the agent (mmapped).
    HAVIP_MEMBERS: Array, u32 => Member, MAX_HAVIPS * MEMBERS_PER_HAVIP, MMAPABLE;
    /// (HaVip id, port) → bound ENI's MAC. Written by the agent.
    BINDINGS: Hash, BindingKey => BindingEntry, MAX_BINDINGS, NO_PREALLOC;
    /// Per CPU, by HaVip id: frames and bytes forwarded. Written by the program.
    HAVIP_STATS: PerCpuArray, u32 => TrafficCounter, MAX_HAVIPS, 0;
    /// Per CPU, by `Handled`: frames and bytes. Written by the program.
    HANDLED: PerCpuArray, u32 => TrafficCounter, crate::Handled::COUNT as u32, 0;
    /// Per CPU, by `DropReason`: frames and bytes. Written by the program.
    DROPS: PerCpuArray, u32 => TrafficCounter, crate::DropReason::COUNT as u32, 0;
    /// Owner changes and refused claims (`Event`), read by the agent.
    EVENTS: RingBuf, () => (), EVENTS_BYTES, 0;
    /// `[0]`: run-time settings (hold time, event rate). Written by the agent.
    CONFIG: Array, u32 => DataplaneConfig, 1, 0;
    /// `[0]` per CPU: the security-event rate limiter. Written by the program.
    EVENT_BUDGET: PerCpuArray, u32 => EventBudget, 1, 0;
    /// (VPC, address) → vSwitch id of the HaVip: ARP naming a HaVip of a
    /// sibling vSwitch as sender is refused. Written by the agent.
    VPC_HAVIPS: Hash, VpcAddrKey => u32, MAX_HAVIPS, NO_PREALLOC;
    /// `[0]`: this host's VTEP (address, underlay port and MAC, UDP port).
    /// Written by the agent.
    VTEP_CONFIG: Array, u32 => VtepConfig, 1, 0;
    /// Remote VTEP IPv4 (network order) → its underlay MAC. Written by the
    /// agent from the shared host registry.
    VTEPS: Hash, [u8; 4] => VtepEntry, MAX_VTEPS, NO_PREALLOC;
    /// vSwitch id → VNI (encapsulation). Written by the agent.
    VSWITCH_VNIS: Hash, u32 => u32, MAX_VSWITCHES, NO_PREALLOC;
    /// VNI → vSwitch id (decapsulation). Written by the agent.
    VNI_VSWITCHES: Hash, u32 => u32, MAX_VSWITCHES, NO_PREALLOC;
    /// vSwitch id (< `MAX_VSWITCHES`) → VNI | `vxlan::VNI_PRESENT`: the
    /// encapsulation's inlined copy of `VSWITCH_VNIS`. Written by the agent.
    VSWITCH_VNI_ARRAY: Array, u32 => u32, MAX_VSWITCHES, 0;
    /// Open addressing over the VNI → `VniSlot`: the decapsulation's inlined
    /// copy of `VNI_VSWITCHES` (see `vxlan`). Written by the agent.
    VNI_TABLE: Array, u32 => VniSlot, vxlan::SLOTS, 0;
    /// Open addressing over the remote VTEP address → `VtepSlot`: the
    /// encapsulation's inlined copy of `VTEPS`. Written by the agent.
    VTEP_TABLE: Array, u32 => VtepSlot, vxlan::SLOTS, 0;
    /// (VPC, destination prefix) → next-hop HaVip: the VPC's route entries
    /// with a HaVip next hop, longest prefix first (an LPM trie; the kernel
    /// requires `NO_PREALLOC`). Written by the agent.
    ROUTES: LpmTrie, RouteKey => RouteNextHop, MAX_ROUTES, NO_PREALLOC;
    /// EIP (IPv4, network order) → its HaVip (DNAT on the uplink). Written
    /// by the agent.
    EIPS: Hash, [u8; 4] => EipEntry, MAX_EIPS, NO_PREALLOC;
    /// HaVip → its EIP (SNAT of the owner's outbound frames). Written by the
    /// agent.
    EIP_SNAT: Hash, HavipKey => EipSnatEntry, MAX_EIPS, NO_PREALLOC;
}

/// Maps indexed by an outcome (`Handled`, `DropReason`): they grow when a
/// version adds outcomes. A pinned one that differs only in length is
/// replaced at start-up (its counts restart) instead of refusing the
/// upgrade; the program is their only writer.
pub const OUTCOME_COUNTERS: &[MapSpec] = &[HANDLED, DROPS];

/// The spec of the map called `name`.
pub fn find(name: &str) -> Option<&'static MapSpec> {
    ALL.iter().find(|spec| spec.name == name)
}

/// `const` string equality (for compile-time checks).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// Names are unique.
const _: () = {
    let mut i = 0;
    while i < ALL.len() {
        let mut j = i + 1;
        while j < ALL.len() {
            assert!(!str_eq(ALL[i].name, ALL[j].name));
            j += 1;
        }
        i += 1;
    }
};
