//! Restart from the previous map layout: HaVips in the `HAVIPS` hash map and
//! owners in the preallocated `OWNERS` hash map (catalogue::RETIRED).
//!
//! The rule: migrated whole or refused, never half-adopted.
//! 1. Before the new object is loaded, the old maps are opened and their
//!    shapes checked (a shape we do not know: refused, nothing created).
//! 2. The new object is loaded (`HAVIP_INDEX`, `HAVIP_ROWS`, `HAVIP_MEMBERS` and
//!    `HAVIP_CHANGED` created, the other pinned maps reused as they are)
//!    and the table is built from the old maps: each HaVip with its members
//!    (from `BINDINGS`) and its owner (epoch, how it was set, port and MAC
//!    or remote VTEP). Any error: the new pins are removed again and the
//!    load fails; the old program keeps running on the old maps.
//! 3. The agent attaches: the new program replaces the old one on each
//!    pinned link (`bpf_link_update`, no frame lost).
//! 4. [`Legacy::finish`]: owners claimed in the old map between step 2 and
//!    the swap (a higher epoch) are copied over by compare-and-swap, then
//!    `HAVIPS` and `OWNERS` are unpinned.

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::maps::{HashMap, Map, MapData, MapError};
use havip_common::{
    catalogue, names, owner_flags, BindingEntry, BindingKey, HavipEntry, HavipKey, OwnerEntry,
};
use tracing::{info, warn};

use super::{maps::Maps, table::TableError};

/// The old maps, opened from their pins.
pub struct Legacy {
    pin_dir: PathBuf,
    havips: Vec<(HavipKey, HavipEntry)>,
    owners: HashMap<MapData, HavipKey, OwnerEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(
        "pinned {path} is a map of the previous layout with an unexpected shape \
         (key {key}, value {value}): not migrated; run `havip-agent teardown` first"
    )]
    Shape { path: PathBuf, key: u32, value: u32 },
    #[error("reading the previous layout's {map}: {source}")]
    Read {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "building the HaVip table from the previous layout failed ({source}); \
         the new maps were removed and the running data plane left as it was"
    )]
    Build {
        #[source]
        source: TableError,
    },
}

fn open_hash<V: aya::Pod>(
    pin_dir: &Path,
    name: &'static str,
    value_size: usize,
) -> Result<HashMap<MapData, HavipKey, V>, MigrationError> {
    let path = pin_dir.join(name);
    let read = |source| MigrationError::Read { map: name, source };
    let data = MapData::from_pin(&path).map_err(read)?;
    let info = data.info().map_err(read)?;
    if info.key_size() as usize != size_of::<HavipKey>() || info.value_size() as usize != value_size
    {
        return Err(MigrationError::Shape {
            path,
            key: info.key_size(),
            value: info.value_size(),
        });
    }
    HashMap::try_from(Map::HashMap(data)).map_err(read)
}

impl Legacy {
    /// Opens the previous layout's maps if they are pinned in `pin_dir`.
    ///
    /// # Errors
    /// A retired map is pinned with a shape we do not know, or unreadable.
    pub fn open(pin_dir: &Path) -> Result<Option<Self>, MigrationError> {
        if !catalogue::RETIRED.iter().any(|n| pin_dir.join(n).exists()) {
            return Ok(None);
        }
        let havips: HashMap<MapData, HavipKey, HavipEntry> =
            open_hash(pin_dir, "HAVIPS", size_of::<HavipEntry>())?;
        let owners = open_hash(pin_dir, "OWNERS", size_of::<OwnerEntry>())?;
        let havips = havips
            .iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| MigrationError::Read {
                map: "HAVIPS",
                source,
            })?;
        info!(
            havips = havips.len(),
            "pinned maps of the previous layout found: migrating to the HaVip table"
        );
        Ok(Some(Self {
            pin_dir: pin_dir.to_owned(),
            havips,
            owners,
        }))
    }

    /// Builds the HaVip table in `maps` from the old maps (step 2). On
    /// error the new table pins are removed (the caller drops the object).
    ///
    /// # Errors
    /// The table refused an entry (full probe window, too many members).
    pub fn build(&self, maps: &Maps) -> Result<usize, MigrationError> {
        let result = self.try_build(maps);
        if result.is_err() {
            for name in [
                names::HAVIP_INDEX,
                names::HAVIP_ROWS,
                names::HAVIP_MEMBERS,
                names::HAVIP_CHANGED,
            ] {
                let _ = fs::remove_file(self.pin_dir.join(name));
            }
        }
        result.map_err(|source| MigrationError::Build { source })
    }

    fn try_build(&self, maps: &Maps) -> Result<usize, TableError> {
        let bindings: Vec<(BindingKey, BindingEntry)> =
            maps.bindings.iter().filter_map(Result::ok).collect();
        let table = &maps.table;
        let mut built = 0;
        for (key, havip) in &self.havips {
            let id = havip.id;
            let mut index = 0;
            for (b, entry) in bindings.iter().filter(|(b, _)| b.havip_id == id) {
                if index >= havip_common::REMOTE_MEMBER_FIRST {
                    return Err(TableError::TooManyMembers {
                        key: *key,
                        count: index as usize + 1,
                    });
                }
                table.set_member(
                    id,
                    index,
                    havip_common::Member {
                        ifindex: b.ifindex,
                        mac: entry.mac,
                        flags: 0,
                        vtep: [0; 4],
                    },
                )?;
                index += 1;
            }
            for i in index..havip_common::MEMBERS_PER_HAVIP {
                table.set_member(id, i, havip_common::Member::default())?;
            }
            let view = match table.find(key) {
                Some(v) => v,
                None => {
                    table.insert(*key, id, 0)?;
                    table.find(key).ok_or(TableError::Full { key: *key })?
                }
            };
            if let Ok(owner) = self.owners.get(key, 0) {
                let owner = OwnerEntry {
                    flags: owner.flags
                        & (owner_flags::BY_CLAIM | owner_flags::BY_CONTROL | owner_flags::REMOTE),
                    ..owner
                };
                if owner.epoch >= u64::from(havip_common::owner_word::epoch(view.word)) {
                    let word = table.word_for(&view, &owner, true)?;
                    table.cas_owner(view.pos, view.word, word);
                }
            }
            built += 1;
        }
        Ok(built)
    }

    /// Step 4, after the new program replaced the old one on the links:
    /// owners claimed in the old map meanwhile (a higher epoch than the
    /// table's) are copied over, then the old maps are unpinned.
    pub fn finish(self, maps: &Maps) {
        let mut caught_up = 0;
        for (key, owner) in self.owners.iter().filter_map(Result::ok) {
            if let Some(view) = maps.table.find(&key) {
                if owner.epoch > u64::from(havip_common::owner_word::epoch(view.word)) {
                    match maps.table.word_for(&view, &owner, true) {
                        Ok(word) => {
                            caught_up +=
                                usize::from(maps.table.cas_owner(view.pos, view.word, word))
                        }
                        Err(e) => {
                            warn!(error = %e, "an owner claimed during the migration was not copied")
                        }
                    }
                }
            }
        }
        for name in catalogue::RETIRED {
            if let Err(e) = fs::remove_file(self.pin_dir.join(name)) {
                warn!(map = name, error = %e, "unpinning a map of the previous layout failed");
            }
        }
        info!(caught_up, "migration from the previous map layout finished");
    }
}
