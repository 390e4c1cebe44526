//! The HaVip table as the agent sees it: `HAVIP_INDEX` (open addressing
//! over (vSwitch, address) → tag and row), `HAVIP_ROWS` (32-byte rows with
//! the key, the owner word and its copy, allocated densely by the agent),
//! `HAVIP_MEMBERS` (members by HaVip id) and `HAVIP_CHANGED` (time of the
//! last claim by HaVip id), all `BPF_F_MMAPABLE` arrays mapped into the
//! agent's memory.
//!
//! Why an index in front of the rows: a frame reads one 4-byte index entry
//! (the 1 MiB index is 256 pages) and one row; the rows in use are packed
//! at the bottom of `HAVIP_ROWS` (lowest free row first), so 65,536 HaVips
//! take 2 MiB of rows, not the 8 MiB of a table placed by hash (see
//! docs/benchmark.md, "An index in front of the rows").
//!
//! Why mapped: a map update copies a whole value, so writing a row through
//! `bpf_map_update_elem` would also write its owner word, undoing a claim
//! that landed since the agent read it. Mapped, the agent writes single
//! fields and changes the owner word only with a compare-and-swap
//! ([`HavipTable::cas_owner`]): it moves an owner only from the word its
//! decision was made on, and a claim stored meanwhile makes the swap fail.
//! Member and binding updates never touch the owner word.
//!
//! The row's owner copy (`owner_copy`: port and MAC of the member the word
//! names, tagged with its index) is written before every owner word the
//! agent stores, and again ([`HavipTable::refresh_copy`]) after members are
//! rewritten, so a copy naming member `i` always holds member `i`'s data.
//!
//! [`HavipMap`] and [`OwnerMap`] give the table the shape of the two hash
//! maps it replaced (`HAVIPS`, `OWNERS`): `get`, `iter`, `keys` by key.

use std::{
    collections::{BTreeSet, VecDeque},
    io,
    marker::PhantomData,
    ptr::{self, NonNull},
    sync::{
        atomic::{fence, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, MapError};
use havip_common::{
    index_entry, owner_copy, owner_flags, owner_word, row_state, table_hash, virtual_mac,
    HavipEntry, HavipKey, HavipRow, Member, OwnerEntry, INDEX_SLOTS, MAX_HAVIPS, MAX_PROBES,
    MEMBERS_PER_HAVIP, REMOTE_MEMBER_FIRST,
};

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("mapping {map} into memory: {source}")]
    Mmap {
        map: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("HAVIP_INDEX: no free entry within {MAX_PROBES} of the home entry of {key:?}")]
    Full { key: HavipKey },
    #[error("HAVIP_ROWS: all {MAX_HAVIPS} rows are in use")]
    NoRow,
    #[error("HaVip id {id} is out of range (< {MAX_HAVIPS})")]
    BadId { id: u32 },
    #[error("HaVip {key:?} has {count} bindings; at most {REMOTE_MEMBER_FIRST} fit")]
    TooManyMembers { key: HavipKey, count: usize },
    #[error("HaVip {key:?}: no member slot left for the owner")]
    NoMemberSlot { key: HavipKey },
    #[error("epoch {epoch} does not fit the 32-bit owner word")]
    EpochRange { epoch: u64 },
}

/// One array map mapped into memory (`MAP_SHARED`: the kernel's pages).
struct Mapped<T> {
    base: NonNull<T>,
    entries: u32,
    bytes: usize,
    _t: PhantomData<T>,
}

// SAFETY: the mapping is plain shared memory; all accesses go through
// volatile or atomic operations on aligned fields.
unsafe impl<T> Send for Mapped<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for Mapped<T> {}

impl<T> Mapped<T> {
    fn new(map: &MapData, name: &'static str, entries: u32) -> Result<Self, TableError> {
        use std::os::fd::{AsFd, AsRawFd};
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let bytes = (size_of::<T>() * entries as usize).div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared mapping of the map's value area; the kernel
        // checks the length against the map (BPF_F_MMAPABLE arrays only).
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(TableError::Mmap {
                map: name,
                source: io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(addr.cast::<T>()).ok_or(TableError::Mmap {
            map: name,
            source: io::Error::other("mmap returned NULL"),
        })?;
        Ok(Self {
            base,
            entries,
            bytes,
            _t: PhantomData,
        })
    }

    fn at(&self, index: u32) -> Option<*mut T> {
        // SAFETY: in bounds of the mapping.
        (index < self.entries).then(|| unsafe { self.base.as_ptr().add(index as usize) })
    }
}

impl<T> Drop for Mapped<T> {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// A snapshot of one HaVip's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowView {
    /// Row in `HAVIP_ROWS`.
    pub pos: u32,
    pub key: HavipKey,
    pub id: u32,
    pub word: u64,
}

/// How long a freed row is not handed out again while others are free: a
/// frame that found the row's index entry just before it was removed reads
/// the row within microseconds, never the next HaVip's owner.
const ROW_QUARANTINE: Duration = Duration::from_secs(1);

/// The agent's free rows: the lowest free row first (the rows in use stay
/// packed), except rows freed within [`ROW_QUARANTINE`].
#[derive(Default)]
struct Rows {
    free: BTreeSet<u32>,
    quarantine: VecDeque<(u32, Instant)>,
}

impl Rows {
    fn take(&mut self) -> Option<u32> {
        while let Some(&(row, at)) = self.quarantine.front() {
            if at.elapsed() < ROW_QUARANTINE {
                break;
            }
            self.quarantine.pop_front();
            self.free.insert(row);
        }
        // All rows in use but recently freed ones: the oldest of those.
        self.free
            .pop_first()
            .or_else(|| self.quarantine.pop_front().map(|(row, _)| row))
    }

    fn release(&mut self, row: u32) {
        self.quarantine.push_back((row, Instant::now()));
    }
}

/// The mapped `HAVIP_INDEX`, `HAVIP_ROWS`, `HAVIP_MEMBERS` and `HAVIP_CHANGED`.
pub struct HavipTable {
    index: Mapped<index_entry::Line>,
    rows: Mapped<HavipRow>,
    members: Mapped<Member>,
    changed: Mapped<u64>,
    free: Mutex<Rows>,
}

/// The four arrays of the table, as loaded or pinned.
pub struct TableMaps<'a> {
    pub index: &'a MapData,
    pub rows: &'a MapData,
    pub members: &'a MapData,
    pub changed: &'a MapData,
}

impl HavipTable {
    /// Maps the four arrays (loaded or pinned) and takes stock of the rows:
    /// a row no index entry names is free (a row left `USED` by an agent
    /// stopped while placing it is cleared).
    ///
    /// # Errors
    /// `mmap` failed (e.g. the maps were created without `BPF_F_MMAPABLE`).
    pub fn new(maps: &TableMaps<'_>) -> Result<Self, TableError> {
        let table = Self {
            index: Mapped::new(
                maps.index,
                "HAVIP_INDEX",
                INDEX_SLOTS / index_entry::PER_LINE,
            )?,
            rows: Mapped::new(maps.rows, "HAVIP_ROWS", MAX_HAVIPS)?,
            members: Mapped::new(
                maps.members,
                "HAVIP_MEMBERS",
                MAX_HAVIPS * MEMBERS_PER_HAVIP,
            )?,
            changed: Mapped::new(maps.changed, "HAVIP_CHANGED", MAX_HAVIPS)?,
            free: Mutex::default(),
        };
        let mut named = vec![false; MAX_HAVIPS as usize];
        for row in (0..INDEX_SLOTS).filter_map(|e| table.named_row(e)) {
            named[row as usize] = true;
        }
        let mut free = BTreeSet::new();
        for row in (0..MAX_HAVIPS).filter(|r| !named[*r as usize]) {
            if table.state(row).load(Ordering::Acquire) != row_state::EMPTY {
                table.state(row).store(row_state::EMPTY, Ordering::Release);
            }
            free.insert(row);
        }
        table.rows().free = free;
        Ok(table)
    }

    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        // The free list stays consistent across a panic (plain inserts).
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(&self, e: u32) -> &AtomicU32 {
        let e = e & (INDEX_SLOTS - 1);
        let line = self
            .index
            .at(e / index_entry::PER_LINE)
            .unwrap_or(self.index.base.as_ptr());
        // SAFETY: an aligned u32 of a line inside the mapping (word index
        // below `PER_LINE`), shared with the kernel.
        unsafe { AtomicU32::from_ptr(line.cast::<u32>().add((e % index_entry::PER_LINE) as usize)) }
    }

    /// The row index entry `e` names, if any (whatever its tag).
    fn named_row(&self, e: u32) -> Option<u32> {
        index_entry::row(self.entry(e).load(Ordering::Acquire))
    }

    /// `HAVIP_CHANGED[id]`: when the last claim switched the owner of HaVip
    /// `id` (0: set by the control plane, or `id` out of range).
    pub fn changed_ns(&self, id: u32) -> u64 {
        // SAFETY: in bounds, aligned.
        self.changed
            .at(id)
            .map_or(0, |p| unsafe { ptr::read_volatile(p) })
    }

    fn set_changed_ns(&self, id: u32, ns: u64) {
        if let Some(p) = self.changed.at(id) {
            // SAFETY: in bounds, aligned.
            unsafe { ptr::write_volatile(p, ns) };
        }
    }

    fn row_ptr(&self, pos: u32) -> *mut HavipRow {
        // `pos` comes from an index entry or the free list: below MAX_HAVIPS.
        self.rows.at(pos).unwrap_or(self.rows.base.as_ptr())
    }

    fn state(&self, pos: u32) -> &AtomicU32 {
        // SAFETY: aligned u32 inside the mapping, shared with the kernel.
        unsafe { AtomicU32::from_ptr(&raw mut (*self.row_ptr(pos)).state) }
    }

    fn word(&self, pos: u32) -> &AtomicU64 {
        // SAFETY: aligned u64 (rows are 32 bytes from a page boundary).
        unsafe { AtomicU64::from_ptr(&raw mut (*self.row_ptr(pos)).owner) }
    }

    fn copy(&self, pos: u32) -> &AtomicU64 {
        // SAFETY: as `word`.
        unsafe { AtomicU64::from_ptr(&raw mut (*self.row_ptr(pos)).owner_copy) }
    }

    /// The owner copy for `word` of HaVip `id`: its local member's port
    /// and MAC; 0 for no owner, a remote owner or a port beyond the copy.
    fn copy_for(&self, id: u32, word: u64) -> u64 {
        let index = owner_word::member(word);
        if index == 0 {
            return 0;
        }
        let m = self.member(id, u32::from(index) - 1);
        if m.flags & owner_flags::REMOTE != 0 {
            return 0;
        }
        owner_copy::pack(index, m.ifindex, m.mac)
    }

    /// Rewrites the owner copy of `pos` from its current owner word and
    /// members (after members were rewritten in place or freed).
    pub fn refresh_copy(&self, pos: u32) {
        // SAFETY: aligned field inside the mapping.
        let id = unsafe { ptr::read_volatile(&raw const (*self.row_ptr(pos)).id) };
        let copy = self.copy_for(id, self.owner_word(pos));
        self.copy(pos).store(copy, Ordering::Release);
    }

    /// The owner copy of `pos` now (tests, diagnostics).
    pub fn owner_copy(&self, pos: u32) -> u64 {
        self.copy(pos).load(Ordering::Acquire)
    }

    /// Overwrites the owner copy of `pos` (tests: a stale or foreign copy).
    pub fn set_owner_copy(&self, pos: u32, copy: u64) {
        self.copy(pos).store(copy, Ordering::Release);
    }

    fn read(&self, pos: u32) -> Option<RowView> {
        if self.state(pos).load(Ordering::Acquire) != row_state::USED {
            return None;
        }
        let p = self.row_ptr(pos);
        // SAFETY: aligned fields inside the mapping.
        let (key, id) = unsafe {
            (
                ptr::read_volatile(&raw const (*p).key),
                ptr::read_volatile(&raw const (*p).id),
            )
        };
        Some(RowView {
            pos,
            key,
            id,
            word: self.word(pos).load(Ordering::Acquire),
        })
    }

    /// The index entries a key of `hash` may be in, in probe order.
    fn probes(hash: u32) -> impl Iterator<Item = u32> {
        let home = index_entry::home(hash);
        (0..MAX_PROBES).map(move |i| home.wrapping_add(i) & (INDEX_SLOTS - 1))
    }

    /// The index entry and row of `key`, probing as the program does.
    fn locate(&self, key: &HavipKey) -> Option<(u32, RowView)> {
        let hash = table_hash(key);
        for e in Self::probes(hash) {
            let entry = self.entry(e).load(Ordering::Acquire);
            if entry == index_entry::EMPTY {
                return None;
            }
            let found = index_entry::row_if_tagged(entry, hash)
                .and_then(|row| self.read(row))
                .filter(|v| v.key == *key);
            if let Some(v) = found {
                return Some((e, v));
            }
        }
        None
    }

    /// The row of `key`, probing as the program does.
    pub fn find(&self, key: &HavipKey) -> Option<RowView> {
        self.locate(key).map(|(_, v)| v)
    }

    /// Every HaVip in the table (a scan of the 1 MiB index).
    pub fn used(&self) -> Vec<RowView> {
        (0..INDEX_SLOTS)
            .filter_map(|e| self.named_row(e))
            .filter_map(|row| self.read(row))
            .collect()
    }

    /// Places `key` (id `id`, owner word `word`) in a free row and the
    /// first free entry of its probe window: the row's fields first, its
    /// state next, the index entry last, so a reader never matches a
    /// half-written row of a new HaVip. The caller has checked that `key`
    /// is not in the table. Returns the row.
    ///
    /// # Errors
    /// No free entry within `MAX_PROBES` of the home entry; no free row.
    pub fn insert(&self, key: HavipKey, id: u32, word: u64) -> Result<u32, TableError> {
        let hash = table_hash(&key);
        let e = Self::probes(hash)
            .find(|e| self.named_row(*e).is_none())
            .ok_or(TableError::Full { key })?;
        let pos = self.rows().take().ok_or(TableError::NoRow)?;
        let p = self.row_ptr(pos);
        self.set_changed_ns(id, 0);
        // SAFETY: aligned fields inside the mapping; the row is not USED,
        // so the program does not match it.
        unsafe {
            ptr::write_volatile(&raw mut (*p).id, id);
            ptr::write_volatile(&raw mut (*p).key, key);
        }
        self.copy(pos)
            .store(self.copy_for(id, word), Ordering::Release);
        self.word(pos).store(word, Ordering::Release);
        fence(Ordering::Release);
        self.state(pos).store(row_state::USED, Ordering::Release);
        self.entry(e)
            .store(index_entry::pack(hash, pos), Ordering::Release);
        Ok(pos)
    }

    /// Takes the HaVip in row `pos` out: its index entry becomes a
    /// tombstone first (lookups stop finding it, probes go on past it),
    /// then the row is cleared and freed (handed out again only after
    /// [`ROW_QUARANTINE`] while other rows are free).
    pub fn remove(&self, pos: u32) {
        let Some(view) = self.read(pos) else {
            return;
        };
        if let Some(e) =
            Self::probes(table_hash(&view.key)).find(|e| self.named_row(*e) == Some(pos))
        {
            self.entry(e)
                .store(index_entry::TOMBSTONE, Ordering::Release);
        }
        self.state(pos).store(row_state::EMPTY, Ordering::Release);
        self.word(pos).store(0, Ordering::Release);
        self.copy(pos).store(0, Ordering::Release);
        self.rows().release(pos);
    }

    /// Changes the id of the HaVip in `pos` in place (the owner word and
    /// the time of its last claim stay).
    pub fn set_id(&self, pos: u32, id: u32) {
        // SAFETY: aligned field inside the mapping.
        let old = unsafe { ptr::read_volatile(&raw const (*self.row_ptr(pos)).id) };
        self.set_changed_ns(id, self.changed_ns(old));
        // SAFETY: as above.
        unsafe { ptr::write_volatile(&raw mut (*self.row_ptr(pos)).id, id) };
    }

    /// The owner word of `pos` now.
    pub fn owner_word(&self, pos: u32) -> u64 {
        self.word(pos).load(Ordering::Acquire)
    }

    /// Compare-and-swap of the owner word: `new` only if it still holds
    /// `expected`. A claim stored since `expected` was read makes it fail.
    /// The owner copy for `new` is written first; if the swap fails, it is
    /// rewritten for the word that won (a reader meanwhile finds a copy of
    /// another member than its word names and reads the member instead).
    pub fn cas_owner(&self, pos: u32, expected: u64, new: u64) -> bool {
        // SAFETY: aligned field inside the mapping.
        let id = unsafe { ptr::read_volatile(&raw const (*self.row_ptr(pos)).id) };
        self.copy(pos)
            .store(self.copy_for(id, new), Ordering::Release);
        let swapped = self
            .word(pos)
            .compare_exchange(expected, new, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !swapped {
            self.refresh_copy(pos);
        }
        swapped
    }

    fn member_ptr(&self, id: u32, index: u32) -> Result<*mut Member, TableError> {
        if id >= MAX_HAVIPS || index >= MEMBERS_PER_HAVIP {
            return Err(TableError::BadId { id });
        }
        self.members
            .at(id * MEMBERS_PER_HAVIP + index)
            .ok_or(TableError::BadId { id })
    }

    /// Member `index` of HaVip `id` (all zero when free or out of range).
    pub fn member(&self, id: u32, index: u32) -> Member {
        self.member_ptr(id, index)
            // SAFETY: in bounds, aligned.
            .map(|p| unsafe { ptr::read_volatile(p) })
            .unwrap_or_default()
    }

    /// Writes member `index` of HaVip `id` in place.
    ///
    /// # Errors
    /// `id` or `index` out of range.
    pub fn set_member(&self, id: u32, index: u32, member: Member) -> Result<(), TableError> {
        let p = self.member_ptr(id, index)?;
        // SAFETY: in bounds, aligned.
        unsafe { ptr::write_volatile(p, member) };
        Ok(())
    }

    /// The owner `word` of HaVip `id` at `key`, decoded.
    pub fn decode(&self, key: &HavipKey, id: u32, word: u64) -> OwnerEntry {
        let _ = key;
        let index = owner_word::member(word);
        let m = if index == 0 {
            Member::default()
        } else {
            self.member(id, u32::from(index) - 1)
        };
        OwnerEntry {
            epoch: u64::from(owner_word::epoch(word)),
            changed_ns: 0,
            havip_id: id,
            ifindex: m.ifindex,
            mac: m.mac,
            flags: owner_word::flags(word) | m.flags,
            vtep: m.vtep,
            _pad: [0; 4],
        }
    }

    /// The decoded owner of `key`, with its slot view.
    pub fn owner(&self, key: &HavipKey) -> Option<(RowView, OwnerEntry)> {
        let v = self.find(key)?;
        let mut o = self.decode(key, v.id, v.word);
        o.changed_ns = self.changed_ns(v.id);
        Some((v, o))
    }

    /// Index of the local member (`ifindex`, `mac`) of HaVip `id`.
    pub fn local_member(&self, id: u32, ifindex: u32, mac: [u8; 6]) -> Option<u32> {
        (0..REMOTE_MEMBER_FIRST).find(|i| {
            let m = self.member(id, *i);
            m.ifindex == ifindex && m.mac == mac && m.flags & owner_flags::REMOTE == 0
        })
    }

    /// The owner word naming `owner` (a decoded entry) of the HaVip in
    /// `view`: a local owner must be one of its members (`force`: else it
    /// is written into a free local member slot, for tests and tools); a
    /// remote owner is written into the remote member slot the current word
    /// does not name (so a reader of the current owner is not disturbed).
    ///
    /// # Errors
    /// Epoch beyond 32 bits, no member slot left.
    pub fn word_for(
        &self,
        view: &RowView,
        owner: &OwnerEntry,
        force: bool,
    ) -> Result<u64, TableError> {
        let epoch = u32::try_from(owner.epoch)
            .map_err(|_| TableError::EpochRange { epoch: owner.epoch })?;
        let how = owner.flags & (owner_flags::BY_CLAIM | owner_flags::BY_CONTROL);
        if owner.ifindex == 0 {
            return Ok(owner_word::pack(epoch, how, 0));
        }
        let id = view.id;
        if owner.is_remote() {
            let current = u32::from(owner_word::member(view.word));
            let spare = if current == REMOTE_MEMBER_FIRST + 1 {
                REMOTE_MEMBER_FIRST + 1
            } else {
                REMOTE_MEMBER_FIRST
            };
            self.set_member(
                id,
                spare,
                Member {
                    ifindex: owner.ifindex,
                    mac: owner.mac,
                    flags: owner_flags::REMOTE,
                    vtep: owner.vtep,
                },
            )?;
            return Ok(owner_word::pack(epoch, how, spare as u16 + 1));
        }
        let index = match self.local_member(id, owner.ifindex, owner.mac) {
            Some(i) => i,
            None if force => {
                let taken = u32::from(owner_word::member(view.word));
                let free = (0..REMOTE_MEMBER_FIRST)
                    .find(|i| self.member(id, *i).ifindex == 0 && *i + 1 != taken)
                    .ok_or(TableError::NoMemberSlot { key: view.key })?;
                self.set_member(
                    id,
                    free,
                    Member {
                        ifindex: owner.ifindex,
                        mac: owner.mac,
                        flags: 0,
                        vtep: [0; 4],
                    },
                )?;
                free
            }
            None => return Err(TableError::NoMemberSlot { key: view.key }),
        };
        Ok(owner_word::pack(epoch, how, index as u16 + 1))
    }
}

fn not_found() -> MapError {
    MapError::KeyNotFound
}

fn table_err(e: TableError) -> MapError {
    MapError::SyscallError(aya::sys::SyscallError {
        call: "havip_table",
        io_error: io::Error::other(e.to_string()),
    })
}

/// The table by key, shaped like the former `HAVIPS` hash map (read only;
/// the reconciler places HaVips).
#[derive(Clone)]
pub struct HavipMap(pub Arc<HavipTable>);

impl HavipMap {
    /// Id and virtual MAC of `key`.
    ///
    /// # Errors
    /// `MapError::KeyNotFound` if `key` is no HaVip.
    pub fn get(&self, key: &HavipKey, _flags: u64) -> Result<HavipEntry, MapError> {
        let v = self.0.find(key).ok_or_else(not_found)?;
        Ok(havip_entry(&v))
    }

    pub fn iter(&self) -> impl Iterator<Item = Result<(HavipKey, HavipEntry), MapError>> {
        self.0
            .used()
            .into_iter()
            .map(|v| Ok((v.key, havip_entry(&v))))
    }

    pub fn keys(&self) -> impl Iterator<Item = Result<HavipKey, MapError>> {
        self.0.used().into_iter().map(|v| Ok(v.key))
    }
}

fn havip_entry(v: &RowView) -> HavipEntry {
    HavipEntry {
        id: v.id,
        flags: 0,
        virtual_mac: virtual_mac(v.key.addr),
        _pad: [0; 2],
    }
}

/// Owners by key, shaped like the former `OWNERS` hash map.
#[derive(Clone)]
pub struct OwnerMap(pub Arc<HavipTable>);

impl OwnerMap {
    /// The current owner of `key`, decoded from one read of its owner word.
    ///
    /// # Errors
    /// `MapError::KeyNotFound` if `key` is no HaVip.
    pub fn get(&self, key: &HavipKey, _flags: u64) -> Result<OwnerEntry, MapError> {
        self.0.owner(key).map(|(_, o)| o).ok_or_else(not_found)
    }

    pub fn iter(&self) -> impl Iterator<Item = Result<(HavipKey, OwnerEntry), MapError>> + '_ {
        self.0
            .used()
            .into_iter()
            .map(|v| Ok((v.key, self.0.decode(&v.key, v.id, v.word))))
    }

    pub fn keys(&self) -> impl Iterator<Item = Result<HavipKey, MapError>> {
        self.0.used().into_iter().map(|v| Ok(v.key))
    }

    /// Sets the owner of `key` unconditionally (tests, tools; the agent
    /// uses [`OwnerMap::replace`] or the reconciler's compare-and-swap): a
    /// local owner that is no member is written into a free member slot.
    ///
    /// # Errors
    /// `KeyNotFound` if `key` is no HaVip; no member slot left.
    pub fn insert(&self, key: HavipKey, owner: OwnerEntry, _flags: u64) -> Result<(), MapError> {
        loop {
            let v = self.0.find(&key).ok_or_else(not_found)?;
            let word = self.0.word_for(&v, &owner, true).map_err(table_err)?;
            if self.0.cas_owner(v.pos, v.word, word) {
                return Ok(());
            }
        }
    }

    /// Sets the owner of `key` to `new` only if it still is `expected`
    /// (epoch, port, MAC, flags, VTEP): a compare-and-swap on the owner
    /// word. Returns whether it was written.
    ///
    /// # Errors
    /// `KeyNotFound` if `key` is no HaVip; `new` names a local port that
    /// is no member of the HaVip.
    pub fn replace(
        &self,
        key: HavipKey,
        expected: &OwnerEntry,
        new: OwnerEntry,
    ) -> Result<bool, MapError> {
        let v = self.0.find(&key).ok_or_else(not_found)?;
        let now = self.0.decode(&key, v.id, v.word);
        let same = (now.epoch, now.ifindex, now.mac, now.flags, now.vtep)
            == (
                expected.epoch,
                expected.ifindex,
                expected.mac,
                expected.flags,
                expected.vtep,
            );
        if !same {
            return Ok(false);
        }
        let word = self.0.word_for(&v, &new, false).map_err(table_err)?;
        Ok(self.0.cas_owner(v.pos, v.word, word))
    }
}

#[cfg(test)]
mod tests {
    use super::Rows;

    fn rows(free: impl IntoIterator<Item = u32>) -> Rows {
        Rows {
            free: free.into_iter().collect(),
            ..Rows::default()
        }
    }

    #[test]
    fn lowest_free_row_first() {
        let mut r = rows([5, 2, 9]);
        assert_eq!((r.take(), r.take(), r.take()), (Some(2), Some(5), Some(9)));
        assert_eq!(r.take(), None);
    }

    #[test]
    fn a_released_row_waits_while_others_are_free() {
        let mut r = rows([3, 4]);
        assert_eq!(r.take(), Some(3));
        r.release(3);
        assert_eq!(r.take(), Some(4), "the row released just now waits");
        // Nothing else free: the oldest released row is handed out.
        assert_eq!(r.take(), Some(3));
        assert_eq!(r.take(), None);
    }

    /// The XDP program compares a row's key as the word at the row's start.
    #[test]
    fn a_rows_first_word_is_its_key_word() {
        let key = havip_common::HavipKey {
            vswitch_id: 0x0102_0304,
            addr: [10, 0, 0, 7],
        };
        for other in [
            havip_common::HavipKey {
                vswitch_id: 0x0102_0305,
                ..key
            },
            havip_common::HavipKey {
                addr: [10, 0, 0, 8],
                ..key
            },
        ] {
            assert_ne!(other.word(), key.word());
        }
        let row = havip_common::HavipRow {
            key,
            ..Default::default()
        };
        // SAFETY: `HavipRow` is 8-byte aligned with the key at offset 0.
        let first = unsafe { std::ptr::read((&raw const row).cast::<u64>()) };
        assert_eq!(first, key.word());
    }
}
