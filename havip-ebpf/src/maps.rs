//! The program's maps, declared from the catalogue in
//! `havip_common::catalogue` (name, capacity, flags; key and value types
//! checked against its sizes at compile time). All are pinned by name under
//! the agent's pin dir so a restarted agent adopts them.
//!
//! Reading hash values: `HashMap::get` hands out a pointer into the map.
//! The memory stays mapped while the program runs, but the kernel does not
//! hold an element for its readers: since Linux 6.1 non-preallocated maps
//! reuse elements without waiting (`SLAB_TYPESAFE_BY_RCU`), and array slots
//! are updated in place. So the fields read from one lookup can mix two
//! agent updates; every reader copies the few fields it needs at once and
//! says what a mix would cost. The owner of a HaVip is the exception: one
//! aligned 8-byte word in its `HAVIP_ROWS` row, read with one load and
//! written with one store, so a reader always sees one whole owner.

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{
    bindings::bpf_devmap_val,
    macros::map,
    maps::{lpm_trie::Key, Array, DevMapHash, HashMap, LpmTrie, PerCpuArray, RingBuf},
};
use havip_common::vxlan::{self, Slot, VniSlot, VtepSlot};
use havip_common::{
    catalogue, index_entry, owner_copy, owner_flags, owner_word, row_state, table_hash,
    virtual_mac, BindingEntry, BindingKey, DataplaneConfig, EipEntry, EipSnatEntry, EventBudget,
    HavipEntry, HavipKey, HavipRow, Member, OwnerEntry, PortInfo, RouteNextHop, RoutePrefix,
    TrafficCounter, VpcAddrKey, VtepConfig, VtepEntry, INDEX_SLOTS, MAX_PORTS, MAX_PROBES,
    MAX_VSWITCHES, MEMBERS_PER_HAVIP,
};

pub use crate::counter::count;
use crate::packet::MacWord;

/// Declares a pinned map from its catalogue entry: the static's name is the
/// catalogue name (and so the pin name), capacity and flags come from the
/// entry, and the key and value sizes are checked against it.
macro_rules! catalogued {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $ctor:ident, $key:ty => $value:ty) => {
        $(#[$doc])*
        #[map]
        pub static $name: $ty =
            $ctor::pinned(catalogue::$name.max_entries, catalogue::$name.flags);
        const _: () = {
            assert!(core::mem::size_of::<$key>() == catalogue::$name.key_size as usize);
            assert!(core::mem::size_of::<$value>() == catalogue::$name.value_size as usize);
        };
    };
}

catalogued!(PORTS: Array<PortInfo> = Array, u32 => PortInfo);
catalogued!(PORTS_HIGH: HashMap<u32, PortInfo> = HashMap, u32 => PortInfo);
catalogued!(TX_PORTS: DevMapHash = DevMapHash, u32 => bpf_devmap_val);
catalogued!(HAVIP_INDEX: Array<index_entry::Line> = Array, u32 => index_entry::Line);
catalogued!(HAVIP_ROWS: Array<HavipRow> = Array, u32 => HavipRow);
catalogued!(HAVIP_CHANGED: Array<u64> = Array, u32 => u64);
catalogued!(HAVIP_MEMBERS: Array<Member> = Array, u32 => Member);
catalogued!(VPC_HAVIPS: HashMap<VpcAddrKey, u32> = HashMap, VpcAddrKey => u32);
catalogued!(BINDINGS: HashMap<BindingKey, BindingEntry> = HashMap, BindingKey => BindingEntry);
catalogued!(HAVIP_STATS: PerCpuArray<TrafficCounter> = PerCpuArray, u32 => TrafficCounter);
catalogued!(HANDLED: PerCpuArray<TrafficCounter> = PerCpuArray, u32 => TrafficCounter);
catalogued!(DROPS: PerCpuArray<TrafficCounter> = PerCpuArray, u32 => TrafficCounter);
catalogued!(EVENTS: RingBuf = RingBuf, () => ());
catalogued!(CONFIG: Array<DataplaneConfig> = Array, u32 => DataplaneConfig);
catalogued!(EVENT_BUDGET: PerCpuArray<EventBudget> = PerCpuArray, u32 => EventBudget);
catalogued!(VTEP_CONFIG: Array<VtepConfig> = Array, u32 => VtepConfig);
catalogued!(VTEPS: HashMap<[u8; 4], VtepEntry> = HashMap, [u8; 4] => VtepEntry);
catalogued!(VSWITCH_VNIS: HashMap<u32, u32> = HashMap, u32 => u32);
catalogued!(VNI_VSWITCHES: HashMap<u32, u32> = HashMap, u32 => u32);
catalogued!(VSWITCH_VNI_ARRAY: Array<u32> = Array, u32 => u32);
catalogued!(VNI_TABLE: Array<VniSlot> = Array, u32 => VniSlot);
catalogued!(VTEP_TABLE: Array<VtepSlot> = Array, u32 => VtepSlot);
catalogued!(ROUTES: LpmTrie<RoutePrefix, RouteNextHop> = LpmTrie, Key<RoutePrefix> => RouteNextHop);
catalogued!(EIPS: HashMap<[u8; 4], EipEntry> = HashMap, [u8; 4] => EipEntry);
catalogued!(EIP_SNAT: HashMap<HavipKey, EipSnatEntry> = HashMap, HavipKey => EipSnatEntry);

/// The ingress port's entry, if it is one of ours. A reference, not a copy
/// (the forward path reads two fields): `PORTS` slots are rewritten in
/// place by the agent, so a frame racing a port reconfiguration can see the
/// old vSwitch with the new gateway MAC, or the reverse: that one frame is
/// judged or rewritten with mixed port settings.
#[inline(always)]
pub fn port(ifindex: u32) -> Option<&'static PortInfo> {
    let port = if ifindex < MAX_PORTS {
        PORTS.get(ifindex)
    } else {
        // SAFETY: the pointer stays valid while the program runs; its
        // fields can mix two agent updates (see above and the module comment).
        unsafe { PORTS_HIGH.get(&ifindex) }
    }?;
    (port.flags != 0).then_some(port)
}

/// A HaVip found through `HAVIP_INDEX`: its row (for the owner word) and id.
#[derive(Clone, Copy)]
pub struct FoundHavip {
    row: *mut HavipRow,
    pub id: u32,
}

/// Looks `key` up: linear probing in `HAVIP_INDEX` from [`table_hash`], at
/// most `MAX_PROBES` entries, stopping at a never-used entry; an entry with
/// the key's tag names a row of `HAVIP_ROWS`, which holds the key itself.
/// Every probe is an array lookup the verifier inlines (no helper call).
/// The agent fills a row before it publishes its index entry, marks the
/// entry a tombstone before it frees the row, and sets a row's state
/// `USED` after its key (and `EMPTY` before reusing it): a frame racing
/// the add or removal of a HaVip can at worst miss it or be judged under
/// the HaVip the row held before.
#[inline(always)]
pub fn find_havip(key: &HavipKey) -> Option<FoundHavip> {
    let hash = table_hash(key);
    let home = index_entry::home(hash);
    let want = key.word();
    let mut i = 0;
    while i < MAX_PROBES {
        let e = home.wrapping_add(i) & (INDEX_SLOTS - 1);
        let line = HAVIP_INDEX.get_ptr(e / index_entry::PER_LINE)?;
        // SAFETY: `line` points into the array's value area (bounds
        // checked by the lookup), the word index is below `PER_LINE`; one
        // aligned 4-byte load.
        let entry = unsafe {
            read_volatile((line as *const u32).add((e % index_entry::PER_LINE) as usize))
        };
        if entry == index_entry::EMPTY {
            return None;
        }
        if let Some(row) = index_entry::row_if_tagged(entry, hash) {
            if let Some(row) = HAVIP_ROWS.get_ptr_mut(row) {
                // SAFETY: `row` points into the array's value area (bounds
                // checked by the lookup); single aligned loads of
                // agent-written fields (the key, 8 bytes at the start of
                // an 8-byte aligned row, as one word: `HavipKey::word`).
                let (state, r_key) = unsafe {
                    (
                        read_volatile(&raw const (*row).state),
                        read_volatile((&raw const (*row).key).cast::<u64>()),
                    )
                };
                if state == row_state::USED && r_key == want {
                    // SAFETY: as above.
                    let id = unsafe { read_volatile(&raw const (*row).id) };
                    return Some(FoundHavip { row, id });
                }
            }
        }
        i += 1;
    }
    None
}

impl FoundHavip {
    /// The owner word: one aligned 8-byte load, so one whole owner.
    #[inline(always)]
    pub fn owner_word(&self) -> u64 {
        // SAFETY: the row is 8-byte aligned array memory (see `find_havip`).
        unsafe { read_volatile(&raw const (*self.row).owner) }
    }

    /// When the last claim switched the owner (hold time): `HAVIP_CHANGED`
    /// by id, 0 if it has no entry.
    #[inline(always)]
    pub fn changed_ns(&self) -> u64 {
        HAVIP_CHANGED.get(self.id).copied().unwrap_or(0)
    }

    /// Switches the owner: `changed_ns` (in `HAVIP_CHANGED`) and the owner
    /// copy `copy` first (see [`owner_copy`]), then the word with one
    /// aligned 8-byte store (a reader sees the old owner or the new one).
    #[inline(always)]
    pub fn set_owner(&self, word: u64, changed_ns: u64, copy: u64) {
        if let Some(changed) = HAVIP_CHANGED.get_ptr_mut(self.id) {
            // SAFETY: an aligned u64 of the array's value area.
            unsafe { write_volatile(changed, changed_ns) };
        }
        // SAFETY: as `owner_word`.
        unsafe {
            write_volatile(&raw mut (*self.row).owner_copy, copy);
            write_volatile(&raw mut (*self.row).owner, word);
        }
    }

    /// The current owner's port and MAC for the forward path: the owner
    /// word (one load), then the owner copy in the same cache line (one
    /// load), used only if it is of the member the word names (so port and
    /// MAC are one member's, from one store); else the member is read
    /// from `HAVIP_MEMBERS` (as [`FoundHavip::owner_from`] does).
    #[inline(always)]
    pub fn owner(&self) -> Owner {
        let word = self.owner_word();
        // SAFETY: as `owner_word`.
        let copy = unsafe { read_volatile(&raw const (*self.row).owner_copy) };
        let index = owner_word::member(word);
        if index != 0 && owner_copy::member(copy) == index {
            return Owner {
                havip_id: self.id,
                ifindex: owner_copy::ifindex(copy),
                mac: MacWord::from_low48(owner_copy::mac_bits(copy)),
                remote: false,
                vtep: [0; 4],
            };
        }
        let member = self.owner_member(word);
        Owner {
            havip_id: self.id,
            ifindex: member.ifindex,
            mac: MacWord::new(&member.mac),
            remote: (owner_word::flags(word) | member.flags) & owner_flags::REMOTE != 0,
            vtep: member.vtep,
        }
    }

    /// Member `index` of this HaVip (copied).
    #[inline(always)]
    pub fn member(&self, index: u32) -> Option<Member> {
        member(self.id, index)
    }

    /// The owner named by `word`, decoded (member copied at once: the agent
    /// rewrites a member in place only to move it to its port's new
    /// ifindex, so a frame racing that can see the old ifindex with the
    /// member's MAC).
    #[inline(always)]
    pub fn owner_from(&self, word: u64) -> OwnerEntry {
        let member = self.owner_member(word);
        OwnerEntry {
            epoch: u64::from(owner_word::epoch(word)),
            changed_ns: 0,
            havip_id: self.id,
            ifindex: member.ifindex,
            mac: member.mac,
            flags: owner_word::flags(word) | member.flags,
            vtep: member.vtep,
            _pad: [0; 4],
        }
    }

    /// The member `word` names (copied), or an empty one for no owner.
    #[inline(always)]
    fn owner_member(&self, word: u64) -> Member {
        match owner_word::member(word) {
            0 => Member::default(),
            index => self.member(u32::from(index) - 1).unwrap_or_default(),
        }
    }
}

/// A HaVip's current owner as the forward path uses it ([`FoundHavip::owner`]).
#[derive(Clone, Copy)]
pub struct Owner {
    pub havip_id: u32,
    /// Owner's host port; 0 = no owner.
    pub ifindex: u32,
    pub mac: MacWord,
    /// On another host (`vtep`): frames for it are VXLAN-encapsulated.
    pub remote: bool,
    pub vtep: [u8; 4],
}

/// Member `index` of HaVip `id`, if the row exists.
#[inline(always)]
pub fn member(id: u32, index: u32) -> Option<Member> {
    HAVIP_MEMBERS
        .get(id.wrapping_mul(MEMBERS_PER_HAVIP).wrapping_add(index))
        .copied()
}

/// The HaVip `key`, if configured (id and virtual MAC).
#[inline(always)]
pub fn havip(key: &HavipKey) -> Option<HavipEntry> {
    find_havip(key).map(|h| HavipEntry {
        id: h.id,
        flags: 0,
        virtual_mac: virtual_mac(key.addr),
        _pad: [0; 2],
    })
}

/// The MAC bound to (HaVip id, port), if the port is bound.
#[inline(always)]
pub fn binding(havip_id: u32, ifindex: u32) -> Option<[u8; 6]> {
    let key = BindingKey { havip_id, ifindex };
    // SAFETY: as `havip`: agent-written, copied at once; a racing update can
    // at worst judge this one frame against the binding being replaced.
    unsafe { BINDINGS.get(&key) }.map(|b| b.mac)
}

/// This host's VTEP, if configured (copied: an agent update racing this
/// frame can at worst give it the old address or MAC).
#[inline(always)]
pub fn local_vtep() -> Option<VtepConfig> {
    let cfg = *VTEP_CONFIG.get(0)?;
    (u32::from_ne_bytes(cfg.addr) != 0).then_some(cfg)
}

/// The entry for `key` in the open-addressed `table` (see
/// `havip_common::vxlan`): every probe is an array lookup the verifier
/// inlines. A slot is copied once per probe; the agent writes a new entry's
/// key and value before its state, so a frame racing an insert misses (and
/// takes the hash map) rather than matching half an entry.
#[inline(always)]
fn probe<T: Slot>(table: &Array<T>, key: u32) -> Option<T> {
    let home = vxlan::home(key);
    let mut i = 0;
    while i < vxlan::PROBES {
        let slot = *table.get(home.wrapping_add(i) & (vxlan::SLOTS - 1))?;
        let state = slot.state();
        if state == vxlan::state::EMPTY {
            return None;
        }
        if state == vxlan::state::USED && slot.key() == key {
            return Some(slot);
        }
        i += 1;
    }
    None
}

/// Underlay MAC of the remote VTEP `addr`, if known: `VTEP_TABLE`, else
/// `VTEPS` (agent-written, copied at once: a racing MAC change can at worst
/// give this one frame the old MAC).
#[inline(always)]
pub fn remote_vtep_mac(addr: &[u8; 4]) -> Option<[u8; 6]> {
    if let Some(slot) = probe(&VTEP_TABLE, vxlan::vtep_key(*addr)) {
        return Some(slot.mac);
    }
    // SAFETY: agent-written, copied at once (see `havip`).
    unsafe { VTEPS.get(addr) }.map(|v| v.mac)
}

/// VNI of the vSwitch `vswitch_id`, if it has one: `VSWITCH_VNI_ARRAY`
/// (one 4-byte word), else `VSWITCH_VNIS`.
#[inline(always)]
pub fn vni_of(vswitch_id: u32) -> Option<u32> {
    if vswitch_id < MAX_VSWITCHES {
        if let Some(word) = VSWITCH_VNI_ARRAY.get(vswitch_id) {
            let word = *word;
            if word & vxlan::VNI_PRESENT != 0 {
                return Some(word & !vxlan::VNI_PRESENT);
            }
        }
    }
    // SAFETY: agent-written, copied at once (see `havip`).
    unsafe { VSWITCH_VNIS.get(&vswitch_id) }.copied()
}

/// vSwitch of the VNI `vni`, if it is one of this host's: `VNI_TABLE`, else
/// `VNI_VSWITCHES`.
#[inline(always)]
pub fn vswitch_of(vni: u32) -> Option<u32> {
    if let Some(slot) = probe(&VNI_TABLE, vni) {
        return Some(slot.vswitch_id);
    }
    // SAFETY: agent-written, copied at once (see `havip`).
    unsafe { VNI_VSWITCHES.get(&vni) }.copied()
}

/// Next hop of the most specific route covering `daddr` in `scope` (a
/// `RoutePrefix::in_vpc` or `in_vswitch` with the address zero).
#[inline(always)]
pub fn route(scope: RoutePrefix, daddr: [u8; 4]) -> Option<RouteNextHop> {
    let key = Key::new(
        RoutePrefix::LOOKUP_LEN,
        RoutePrefix {
            addr: daddr,
            ..scope
        },
    );
    // Agent-written, copied at once: a racing route change can at worst
    // send this one frame by the route being replaced.
    ROUTES.get(&key).copied()
}

/// The HaVip the EIP `addr` is associated with, if any (copied).
#[inline(always)]
pub fn eip(addr: &[u8; 4]) -> Option<EipEntry> {
    // SAFETY: agent-written, copied at once (see `havip`): a racing
    // (un)association can at worst translate this one frame the old way.
    unsafe { EIPS.get(addr) }.copied()
}

/// The EIP of the HaVip `key`, if it has one (copied).
#[inline(always)]
pub fn eip_of(key: &HavipKey) -> Option<EipSnatEntry> {
    // SAFETY: agent-written, copied at once (see `eip`).
    unsafe { EIP_SNAT.get(key) }.copied()
}
