//! Types shared by the havip XDP program (`havip-ebpf`) and the agent.
//!
//! Every map key, map value and event is `#[repr(C)]` with explicit padding
//! so both sides agree on the bytes; sizes are checked at compile time.
//! Addresses are kept as `[u8; 4]` in network order, exactly as on the wire.
#![no_std]

/// HaVip ids (dense, `< MAX_HAVIPS`): rows of `HAVIP_MEMBERS` and
/// `HAVIP_STATS`. Also the number of `HAVIP_ROWS`.
pub const MAX_HAVIPS: u32 = 1 << 17;
/// Entries of the open-addressing `HAVIP_INDEX` (a power of two): 4 per
/// HaVip at the product's 65,536 HaVips, so a lookup ends after ~1.2
/// entries. 4-byte entries, 16 to an array element (one cache line; an
/// array element takes at least 8 bytes): the index is 1 MiB (256 pages).
pub const INDEX_SLOTS: u32 = 1 << 18;
/// Most index entries a lookup probes (linear probing from
/// [`table_hash`]). The agent refuses to place a HaVip further than this
/// from its home entry.
pub const MAX_PROBES: u32 = 32;
/// Member slots per HaVip in `HAVIP_MEMBERS`: up to
/// [`limits::BINDINGS_PER_HAVIP`] local bindings, then two slots for an
/// owner on another host (written alternately, so a remote owner is
/// replaced by writing the spare one and switching the owner word).
pub const MEMBERS_PER_HAVIP: u32 = 12;
/// First of the two remote member slots.
pub const REMOTE_MEMBER_FIRST: u32 = 10;
/// Capacity of the port tables (`PORTS`, `PORTS_HIGH`, `TX_PORTS`); also the
/// first ifindex that goes to `PORTS_HIGH` instead of the `PORTS` array.
pub const MAX_PORTS: u32 = 4096;
/// Capacity of `BINDINGS`: up to 10 bindings for every HaVip a host could hold.
pub const MAX_BINDINGS: u32 = 1 << 18;
/// Ring buffer size for `EVENTS`, in bytes (a power of two, page aligned).
pub const EVENTS_BYTES: u32 = 1 << 18;
/// Default cap on security events per CPU per second.
pub const DEFAULT_SECURITY_EVENTS_PER_SEC: u32 = 64;
/// Capacity of `VTEPS`: remote hypervisors one host can send to.
pub const MAX_VTEPS: u32 = 4096;
/// Capacity of the VNI tables (`VSWITCH_VNIS`, `VNI_VSWITCHES`).
pub const MAX_VSWITCHES: u32 = 4096;
/// IANA VXLAN UDP port (RFC 7348), the default of `VtepConfig::port`.
pub const VXLAN_PORT: u16 = 4789;
/// Bytes VXLAN encapsulation adds in front of the inner Ethernet frame:
/// outer Ethernet (14), IPv4 without options (20), UDP (8), VXLAN (8).
pub const VXLAN_OVERHEAD: usize = 50;
/// The smallest VTEP port MTU havip supports: an encapsulated frame whose
/// outer IPv4 packet is at most this long skips the program's MTU helper,
/// so the agent refuses a VTEP interface with a smaller MTU.
pub const MIN_UNDERLAY_MTU: u32 = 1280;

/// Product limits (docs/design.md, "Product rules and limits"). The
/// control plane enforces them.
pub mod limits {
    /// Instances or ENIs bound to one HaVip.
    pub const BINDINGS_PER_HAVIP: usize = 10;
    /// HaVips bound to one instance at once.
    pub const HAVIPS_PER_INSTANCE: usize = 5;
    /// Default quota: HaVips per account.
    pub const DEFAULT_HAVIPS_PER_ACCOUNT: usize = 5;
    /// Default quota: HaVips per VPC.
    pub const DEFAULT_HAVIPS_PER_VPC: usize = 5;
    /// Default quota: route entries per VPC whose next hop is a HaVip.
    pub const DEFAULT_HAVIP_ROUTES_PER_VPC: usize = 5;
}

/// `aya::Pod` and `bytemuck::Pod` for map keys and values (userspace).
#[cfg(feature = "user")]
macro_rules! pod {
    ($($t:ty),*) => {$(
        // SAFETY: repr(C), only integer fields and byte arrays, no padding
        // (checked by the size asserts next to each type).
        unsafe impl aya::Pod for $t {}
        unsafe impl bytemuck::Zeroable for $t {}
        unsafe impl bytemuck::Pod for $t {}
    )*};
}

pub mod bench;
pub mod catalogue;
mod outcome;
pub mod vxlan;

pub use catalogue::{names, DevMapValue, MapKind, MapSpec};
pub use outcome::{DropReason, Handled};

/// What a host port leads to.
pub mod port_flags {
    /// The host side of an instance's ENI (tap/veth): claims are accepted here.
    pub const INSTANCE: u32 = 1 << 0;
    /// The uplink towards the rest of the vSwitch: never a source of claims.
    pub const UPLINK: u32 = 1 << 1;
    /// The underlay NIC carrying VXLAN between hypervisors (in no vSwitch):
    /// VXLAN to the local VTEP for a HaVip with a local owner is
    /// decapsulated; everything else passes to the stack untouched.
    pub const VTEP: u32 = 1 << 2;
}

/// `PORTS`/`PORTS_HIGH` value: the ingress port's place in the VPC, by
/// ingress ifindex. An all-zero entry (`flags == 0`) is no port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortInfo {
    /// vSwitch (subnet) whose HaVips this port can reach.
    pub vswitch_id: u32,
    /// VPC of that vSwitch: scopes the wrong-vSwitch claim check.
    pub vpc_id: u32,
    /// [`port_flags`].
    pub flags: u32,
    /// Source MAC written on frames forwarded to a HaVip owner.
    pub gateway_mac: [u8; 6],
    pub _pad: [u8; 2],
    pub _pad2: u32,
    /// Summary of the HaVip addresses of the port's vSwitch: the OR of
    /// [`havip_filter_bits`] over them (a 64-bit Bloom filter). An address
    /// whose bits are not all set is no HaVip of the vSwitch, so the source
    /// check needs no table probe for it. Always a superset: the agent sets
    /// a HaVip's bits before it places the HaVip and clears them only after
    /// it removed it.
    pub havip_filter: u64,
}

/// The two bits of `addr` in [`PortInfo::havip_filter`] (a multiplicative
/// hash of the address: the top 6 bits and the 6 below them).
#[inline(always)]
pub const fn havip_filter_bits(addr: [u8; 4]) -> u64 {
    let h = u32::from_ne_bytes(addr).wrapping_mul(0x9E37_79B1);
    (1u64 << (h >> 26)) | (1u64 << ((h >> 20) & 63))
}

/// A HaVip address inside one vSwitch (the key of `HAVIP_INDEX`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HavipKey {
    pub vswitch_id: u32,
    /// IPv4 address, network order.
    pub addr: [u8; 4],
}

impl HavipKey {
    /// The key's 8 bytes as one word, as an aligned 8-byte load of a
    /// `HavipKey` at the start of a [`HavipRow`] reads them (so the XDP
    /// program compares a row's key with one load and one compare).
    /// Built with shifts, not from bytes: on little-endian it is the very
    /// value [`table_hash`] mixes, so the compiler computes it once.
    #[inline(always)]
    pub const fn word(&self) -> u64 {
        let (vswitch, addr) = (self.vswitch_id as u64, u32::from_ne_bytes(self.addr) as u64);
        if cfg!(target_endian = "little") {
            vswitch | addr << 32
        } else {
            vswitch << 32 | addr
        }
    }
}

/// `VPC_HAVIPS` key: a HaVip address inside one VPC (any of its vSwitches).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VpcAddrKey {
    pub vpc_id: u32,
    /// IPv4 address, network order.
    pub addr: [u8; 4],
}

/// What the control plane configured for a HaVip, as read from
/// `HAVIP_ROWS` (the virtual MAC is [`virtual_mac`] of the address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HavipEntry {
    /// Dense id: index into `HAVIP_STATS`, part of the `BINDINGS` key.
    pub id: u32,
    pub flags: u32,
    /// Stable virtual MAC given in proxy ARP replies.
    pub virtual_mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// The current owner of a HaVip, decoded from its owner word
/// ([`owner_word`]) and member ([`Member`]): what events carry and what the
/// agent reads. Not a map value (the kernel holds the owner word).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerEntry {
    /// Incremented on every change of owner.
    pub epoch: u64,
    /// `bpf_ktime_get_ns` (CLOCK_MONOTONIC) of the last change.
    pub changed_ns: u64,
    pub havip_id: u32,
    /// Owner's host port; 0 = no owner (traffic is dropped and counted).
    /// For a remote owner: the local VTEP port when it was installed
    /// (informational; the program sends out of `VTEP_CONFIG`'s port).
    pub ifindex: u32,
    /// Owner ENI's MAC: destination MAC of forwarded (inner) frames.
    pub mac: [u8; 6],
    /// [`owner_flags`].
    pub flags: u16,
    /// Remote owner only: its host's VTEP IPv4 address (network order).
    pub vtep: [u8; 4],
    pub _pad: [u8; 4],
}

pub mod owner_flags {
    /// The owner was set by an ARP claim in the kernel.
    pub const BY_CLAIM: u16 = 1 << 0;
    /// The owner was set by the control plane (config, initial owner).
    pub const BY_CONTROL: u16 = 1 << 1;
    /// The owner is on another host (`vtep`): frames for it are
    /// VXLAN-encapsulated and sent out of the local VTEP port.
    pub const REMOTE: u16 = 1 << 2;
}

impl OwnerEntry {
    pub const fn has_owner(&self) -> bool {
        self.ifindex != 0
    }

    /// The owner is on another host.
    pub const fn is_remote(&self) -> bool {
        self.flags & owner_flags::REMOTE != 0
    }
}

/// `VTEP_CONFIG[0]`: this host's VXLAN tunnel endpoint. `addr` all zero =
/// no VTEP (frames for remote owners are dropped as `no_vtep`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtepConfig {
    /// Local VTEP IPv4 address (network order): outer source of encapsulated
    /// frames, and the only outer destination decapsulated.
    pub addr: [u8; 4],
    /// The underlay port (flag `VTEP`) encapsulated frames leave through.
    pub ifindex: u32,
    /// That port's MAC: outer Ethernet source.
    pub mac: [u8; 6],
    /// VXLAN UDP port, network order (4789 unless configured).
    pub port: [u8; 2],
}

/// `VTEPS` value: how to reach a remote VTEP on the underlay.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtepEntry {
    /// Underlay MAC of the remote VTEP (outer Ethernet destination).
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `BINDINGS` key: HaVip id and the host port of a bound instance/ENI.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingKey {
    pub havip_id: u32,
    pub ifindex: u32,
}

/// `BINDINGS` value: the MAC the bound ENI must claim with.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BindingEntry {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// `HAVIP_ROWS` row: one HaVip, in a row the agent allocates (densely:
/// the rows in use are few pages), found through `HAVIP_INDEX` (see
/// [`index_entry`]). 32 bytes, two to a cache line (the array's value area
/// is page aligned): the forward path to a local owner reads one index
/// entry and this half line. The owner is one aligned 8-byte word, so a
/// reader sees one whole owner; `owner_copy` caches that owner's port and
/// MAC in one more aligned word (see [`owner_copy`]). When a claim last
/// switched the owner (the hold time, read by claims only) is kept by id
/// in `HAVIP_CHANGED`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HavipRow {
    pub key: HavipKey,
    /// Dense HaVip id: row of `HAVIP_MEMBERS`, index of `HAVIP_STATS` and
    /// `HAVIP_CHANGED`.
    pub id: u32,
    /// [`row_state`].
    pub state: u32,
    /// [`owner_word`]: epoch, how it was set, member index. Written by
    /// claims in XDP (one store) and by the agent only with a
    /// compare-and-swap when it means to move the owner.
    pub owner: u64,
    /// [`owner_copy`]: port and MAC of a local member, tagged with its
    /// member index. Written (one store) before the owner word by whoever
    /// switches the owner to that member, and by the agent when it
    /// rewrites that member.
    pub owner_copy: u64,
}

/// [`HavipRow::owner_copy`]: `mac << 16 | member << 12 | ifindex` in
/// little-endian byte order (so the MAC is bytes 2..8 of the word):
/// `member` is the member index + 1 (1..=15, as in the owner word),
/// `ifindex` a local port below [`MAX_PORTS`]. 0 = no copy.
///
/// A reader takes the copy only if its member equals the member of the
/// owner word it read: then the port and MAC come from one store of that
/// member's data, never two members mixed. Otherwise (no copy, another
/// member's, a remote owner, a port at or above `MAX_PORTS`) it reads the
/// member from `HAVIP_MEMBERS` as before.
pub mod owner_copy {
    use crate::MAX_PORTS;

    /// The copy of member `member` (index + 1) at `ifindex` with `mac`; 0
    /// when it cannot be expressed (no member, port out of range).
    pub const fn pack(member: u16, ifindex: u32, mac: [u8; 6]) -> u64 {
        if member == 0 || member > 0xf || ifindex == 0 || ifindex >= MAX_PORTS {
            return 0;
        }
        let low = (member << 12) | ifindex as u16;
        let l = low.to_le_bytes();
        u64::from_le_bytes([l[0], l[1], mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
    }
    /// Member index + 1 the copy is of; 0 = no copy.
    pub const fn member(copy: u64) -> u16 {
        ((copy >> 12) & 0xf) as u16
    }
    pub const fn ifindex(copy: u64) -> u32 {
        (copy & 0xfff) as u32
    }
    /// The MAC as the low 48 bits of a word, its bytes in memory order
    /// (little-endian: byte 0 lowest).
    pub const fn mac_bits(copy: u64) -> u64 {
        copy >> 16
    }
    pub const fn mac(copy: u64) -> [u8; 6] {
        let b = mac_bits(copy).to_le_bytes();
        [b[0], b[1], b[2], b[3], b[4], b[5]]
    }
}

/// [`HavipRow::state`].
pub mod row_state {
    /// Free: no HaVip (a reader that reached it through a stale index
    /// entry goes on probing).
    pub const EMPTY: u32 = 0;
    pub const USED: u32 = 1;
}

/// A `HAVIP_INDEX` entry: `tag << 18 | row + 1`, where `row` is the
/// HaVip's row in `HAVIP_ROWS` and `tag` 14 more bits of its
/// [`table_hash`] (so a probe reads a row only when the tags agree).
/// 0 = never used (a lookup stops); [`index_entry::TOMBSTONE`] = was used
/// (a lookup goes on past it; the agent may reuse it).
pub mod index_entry {
    use crate::{INDEX_SLOTS, MAX_HAVIPS};

    /// Entries per `HAVIP_INDEX` element: entry `e` is word `e % PER_LINE`
    /// of element `e / PER_LINE`.
    pub const PER_LINE: u32 = 16;
    /// One `HAVIP_INDEX` element.
    pub type Line = [u32; PER_LINE as usize];

    pub const EMPTY: u32 = 0;
    /// A row field no row has (rows are `< MAX_HAVIPS` < 2^18 - 2).
    pub const TOMBSTONE: u32 = ROW_MASK;
    const ROW_BITS: u32 = 18;
    const ROW_MASK: u32 = (1 << ROW_BITS) - 1;
    const _: () = assert!(MAX_HAVIPS < ROW_MASK);

    /// Home entry of a [`crate::table_hash`].
    pub const fn home(hash: u32) -> u32 {
        hash & (INDEX_SLOTS - 1)
    }
    /// The tag an entry of `hash` carries.
    pub const fn tag(hash: u32) -> u32 {
        hash >> ROW_BITS
    }
    pub const fn pack(hash: u32, row: u32) -> u32 {
        (tag(hash) << ROW_BITS) | (row + 1)
    }
    /// The row `entry` names, if any (whatever its tag).
    pub const fn row(entry: u32) -> Option<u32> {
        let row = entry & ROW_MASK;
        if row == 0 || row > MAX_HAVIPS {
            return None;
        }
        Some(row - 1)
    }
    /// The row of `entry` if it names one and carries `hash`'s tag.
    pub const fn row_if_tagged(entry: u32, hash: u32) -> Option<u32> {
        if entry >> ROW_BITS != tag(hash) {
            return None;
        }
        row(entry)
    }
}

/// The owner word of a [`HavipRow`]: `epoch << 32 | flags << 16 | member`,
/// `member` = member index + 1 (0 = no owner), `flags` = [`owner_flags`]
/// (`BY_CLAIM` / `BY_CONTROL`).
pub mod owner_word {
    pub const fn pack(epoch: u32, flags: u16, member: u16) -> u64 {
        ((epoch as u64) << 32) | ((flags as u64) << 16) | member as u64
    }
    pub const fn epoch(word: u64) -> u32 {
        (word >> 32) as u32
    }
    pub const fn flags(word: u64) -> u16 {
        (word >> 16) as u16
    }
    /// Member index + 1; 0 = no owner.
    pub const fn member(word: u64) -> u16 {
        word as u16
    }
}

/// `HAVIP_MEMBERS[id * MEMBERS_PER_HAVIP + i]`: a member of HaVip `id`
/// (a local binding, or an owner on another host). `ifindex` 0 = free.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Member {
    /// Host port; for a remote member the local VTEP port.
    pub ifindex: u32,
    pub mac: [u8; 6],
    /// [`owner_flags::REMOTE`] for a member on another host.
    pub flags: u16,
    /// Remote member only: its host's VTEP IPv4 address (network order).
    pub vtep: [u8; 4],
}

/// Hash of `key` (SplitMix64's finaliser over the 8 key bytes): its home
/// entry in `HAVIP_INDEX` (low 18 bits) and the tag of its entry (the 14
/// above, see [`index_entry`]). The XDP program and the agent both use it.
#[inline(always)]
pub const fn table_hash(key: &HavipKey) -> u32 {
    let mut x = (key.vswitch_id as u64) | ((u32::from_ne_bytes(key.addr) as u64) << 32);
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 32;
    x as u32
}

/// Packet and byte counter (per CPU in the maps).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounter {
    pub packets: u64,
    pub bytes: u64,
}

/// `CONFIG[0]`: run-time settings written by the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Minimum time between owner changes to a *different* member; 0 = none.
    pub hold_ns: u64,
    /// Security events emitted per CPU per second at most; 0 = default.
    pub security_events_per_sec: u32,
    pub flags: u32,
}

/// `EVENT_BUDGET[0]` (per CPU): the security-event rate limiter's window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventBudget {
    pub window_start_ns: u64,
    /// Events that found the ring buffer full (the agent is not keeping up).
    pub lost: u64,
    pub emitted: u32,
    pub suppressed: u32,
}

/// Kind of an [`Event`].
pub mod event_kind {
    /// A bound member took over a HaVip.
    pub const OWNER_CHANGED: u32 = 1;
    /// A claim or spoofed ARP was refused; `reason` is a [`crate::DropReason`].
    pub const CLAIM_REFUSED: u32 = 2;
}

/// Ring-buffer record sent to the agent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    pub epoch: u64,
    pub ts_ns: u64,
    /// [`event_kind`].
    pub kind: u32,
    /// [`DropReason`] as u32 for refusals, 0 otherwise.
    pub reason: u32,
    pub havip_id: u32,
    pub key: HavipKey,
    pub ifindex: u32,
    pub prev_ifindex: u32,
    pub mac: [u8; 6],
    pub prev_mac: [u8; 6],
    /// Security events suppressed by the rate limiter before this one.
    pub suppressed: u32,
    pub _pad: u32,
}

/// Stable locally administered virtual MAC of a HaVip: `02:48` + the address.
/// Unique inside a vSwitch (addresses are), identical on every host.
pub const fn virtual_mac(addr: [u8; 4]) -> [u8; 6] {
    [0x02, 0x48, addr[0], addr[1], addr[2], addr[3]]
}

// No hidden padding: every size is the sum of its fields.
const _: () = {
    assert!(core::mem::size_of::<PortInfo>() == 32);
    assert!(core::mem::size_of::<HavipKey>() == 8);
    assert!(core::mem::size_of::<HavipEntry>() == 16);
    assert!(core::mem::size_of::<OwnerEntry>() == 40);
    assert!(core::mem::size_of::<VtepConfig>() == 16);
    assert!(core::mem::size_of::<VtepEntry>() == 8);
    assert!(core::mem::size_of::<BindingKey>() == 8);
    assert!(core::mem::size_of::<BindingEntry>() == 8);
    assert!(core::mem::size_of::<TrafficCounter>() == 16);
    assert!(core::mem::size_of::<DataplaneConfig>() == 16);
    assert!(core::mem::size_of::<EventBudget>() == 24);
    assert!(core::mem::size_of::<Event>() == 64);
    assert!(core::mem::size_of::<VpcAddrKey>() == 8);
    assert!(core::mem::size_of::<DevMapValue>() == 8);
    assert!(core::mem::size_of::<HavipRow>() == 32);
    // The XDP program reads a row's key as one aligned word (`HavipKey::word`).
    assert!(core::mem::align_of::<HavipRow>() == 8 && core::mem::offset_of!(HavipRow, key) == 0);
    assert!(MAX_PORTS <= 1 << 12 && MEMBERS_PER_HAVIP <= 0xf);
    assert!(core::mem::size_of::<Member>() == 16);
    assert!(INDEX_SLOTS.is_power_of_two());
};

#[cfg(feature = "user")]
mod user {
    use super::*;

    pod!(
        PortInfo,
        HavipKey,
        VpcAddrKey,
        HavipEntry,
        OwnerEntry,
        BindingKey,
        BindingEntry,
        TrafficCounter,
        DataplaneConfig,
        EventBudget,
        Event,
        VtepConfig,
        VtepEntry,
        HavipRow,
        Member
    );
}

/// Capacity of `ROUTES`: route entries with a HaVip next hop, all VPCs of a
/// host together (5 per VPC by default).
pub const MAX_ROUTES: u32 = 1 << 14;

/// The data part of a `ROUTES` key, matched bit by bit from the first byte:
/// the scope and its id first, so a route of one VPC never matches another
/// VPC's frames.
///
/// Every route is stored twice: in its VPC's scope (looked up for frames
/// from instance ports) and in the scope of its next hop's vSwitch (looked
/// up on the owner's host for a routed frame that arrives VXLAN-encapsulated
/// with that vSwitch's VNI, where the VPC is not known).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutePrefix {
    /// [`route_scope`], big-endian.
    pub scope: [u8; 4],
    /// Data-plane VPC id (`PortInfo::vpc_id`) or vSwitch id, big-endian.
    pub id: [u8; 4],
    /// Destination address, network order (host bits beyond the prefix zero).
    pub addr: [u8; 4],
}

/// [`RoutePrefix::scope`] values.
pub mod route_scope {
    /// Keyed by the VPC of the frame's ingress port.
    pub const VPC: u32 = 0;
    /// Keyed by the vSwitch of the next-hop HaVip.
    pub const NEXT_HOP_VSWITCH: u32 = 1;
}

impl RoutePrefix {
    /// In the scope of VPC `vpc_id`.
    pub const fn in_vpc(vpc_id: u32, addr: [u8; 4]) -> Self {
        Self {
            scope: route_scope::VPC.to_be_bytes(),
            id: vpc_id.to_be_bytes(),
            addr,
        }
    }

    /// In the scope of the next hop's vSwitch `vswitch_id`.
    pub const fn in_vswitch(vswitch_id: u32, addr: [u8; 4]) -> Self {
        Self {
            scope: route_scope::NEXT_HOP_VSWITCH.to_be_bytes(),
            id: vswitch_id.to_be_bytes(),
            addr,
        }
    }

    /// The LPM prefix length of a route of `route_len` bits (0..=32): scope
    /// and id (64 bits) are always part of the prefix.
    pub const fn prefixlen(route_len: u8) -> u32 {
        64 + route_len as u32
    }

    /// Prefix length of a lookup (a whole address in one scope).
    pub const LOOKUP_LEN: u32 = 96;
}

/// `ROUTES` key as the kernel lays out `struct bpf_lpm_trie_key`: the
/// prefix length in bits (host order), then the data.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteKey {
    pub prefixlen: u32,
    pub prefix: RoutePrefix,
}

/// `ROUTES` value: the HaVip a route sends its frames to (the frame goes to
/// that HaVip's current owner, IPv4 header untouched).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteNextHop {
    /// vSwitch of the HaVip (its `HAVIPS`/`OWNERS` key).
    pub vswitch_id: u32,
    /// HaVip address, network order.
    pub addr: [u8; 4],
    /// The HaVip's dense id (informational: the owner lookup gives its own).
    pub havip_id: u32,
}

const _: () = {
    assert!(core::mem::size_of::<RoutePrefix>() == 12);
    assert!(core::mem::size_of::<RouteKey>() == 16);
    assert!(core::mem::size_of::<RouteNextHop>() == 12);
};

#[cfg(feature = "user")]
mod user_routes {
    use super::*;

    // SAFETY: repr(C), byte arrays and u32s only, no padding (sizes above).
    unsafe impl aya::Pod for RoutePrefix {}
    unsafe impl aya::Pod for RouteNextHop {}
    unsafe impl bytemuck::Zeroable for RoutePrefix {}
    unsafe impl bytemuck::Pod for RoutePrefix {}
    unsafe impl bytemuck::Zeroable for RouteNextHop {}
    unsafe impl bytemuck::Pod for RouteNextHop {}
}

/// Capacity of the EIP tables (`EIPS`, `EIP_SNAT`).
pub const MAX_EIPS: u32 = 1 << 16;

/// `EIPS` value, keyed by the EIP (IPv4, network order): the HaVip the EIP
/// is associated with. Frames from an uplink to the EIP get the HaVip as
/// destination (DNAT) and go to its owner.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EipEntry {
    /// vSwitch of the HaVip.
    pub vswitch_id: u32,
    /// HaVip address, network order.
    pub havip: [u8; 4],
    /// The HaVip's dense id (its table slot id).
    pub havip_id: u32,
}

/// `EIP_SNAT` value, keyed by the HaVip ([`HavipKey`]): its EIP. Frames
/// from the HaVip's current owner to the outside get it as source (SNAT).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EipSnatEntry {
    /// EIP address, network order.
    pub eip: [u8; 4],
    pub havip_id: u32,
}

const _: () = {
    assert!(core::mem::size_of::<EipEntry>() == 12);
    assert!(core::mem::size_of::<EipSnatEntry>() == 8);
};

#[cfg(feature = "user")]
mod user_eip {
    use super::{EipEntry, EipSnatEntry};

    // SAFETY: repr(C), only integer fields and byte arrays, no padding
    // (checked by the size asserts above).
    unsafe impl aya::Pod for EipEntry {}
    unsafe impl bytemuck::Zeroable for EipEntry {}
    unsafe impl bytemuck::Pod for EipEntry {}
    // SAFETY: as above.
    unsafe impl aya::Pod for EipSnatEntry {}
    unsafe impl bytemuck::Zeroable for EipSnatEntry {}
    unsafe impl bytemuck::Pod for EipSnatEntry {}
}
