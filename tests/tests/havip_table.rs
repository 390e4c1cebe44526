//! The HaVip table's placement (`HAVIP_INDEX` in front of `HAVIP_ROWS`):
//! rows are handed out lowest first, a freed row is not handed out again
//! at once, lookups go on past removed entries, and a reloaded agent finds
//! the rows and the free ones where they were.

use havip::dataplane::Dataplane;
use havip_common::{index_entry, owner_word, table_hash, HavipKey};
use havip_tests::PinDir;

fn key(vswitch_id: u32, last: u32) -> HavipKey {
    HavipKey {
        vswitch_id,
        addr: (0x0a00_0000u32 | last).to_be_bytes(),
    }
}

/// Keys of vSwitch 7 whose home index entry is `home` (so they probe the
/// same entries in turn).
fn colliding(home: u32, n: usize) -> Vec<HavipKey> {
    (1..)
        .map(|last| key(7, last))
        .filter(|k| index_entry::home(table_hash(k)) == home)
        .take(n)
        .collect()
}

/// A data plane on its own pin dir (dropped before the pin dir).
fn loaded() -> (PinDir, Dataplane) {
    let pins = PinDir::for_test();
    let dp = Dataplane::load(pins.path()).expect("load");
    (pins, dp)
}

#[test]
fn rows_are_packed_and_a_freed_row_waits() {
    let (_pins, dp) = loaded();
    let table = &dp.maps.table;
    let word = owner_word::pack(1, 0, 0);
    let rows: Vec<u32> = (0..4)
        .map(|i| table.insert(key(1, i + 1), i, word).expect("insert"))
        .collect();
    assert_eq!(rows, [0, 1, 2, 3], "lowest free row first");
    table.remove(1);
    assert_eq!(table.find(&key(1, 2)), None, "removed");
    // Row 1 was freed just now: the next HaVip gets the next free row, so a
    // frame that found row 1 a moment ago never reads another HaVip there.
    let next = table.insert(key(1, 9), 9, word).expect("insert");
    assert_eq!(
        next, 4,
        "a just-freed row is not handed out while others are free"
    );
    for (i, last) in [(0, 1), (2, 3), (3, 4), (4, 9)] {
        let v = table.find(&key(1, last)).expect("found");
        assert_eq!(v.pos, i, "row of 10.0.0.{last}");
    }
}

#[test]
fn lookups_go_on_past_removed_entries() {
    let (_pins, dp) = loaded();
    let keys = colliding(1234, 3);
    let (table, word) = (&dp.maps.table, owner_word::pack(1, 0, 0));
    let rows: Vec<u32> = keys
        .iter()
        .zip(0..)
        .map(|(k, id)| table.insert(*k, id, word).expect("insert"))
        .collect();
    table.remove(rows[0]);
    assert_eq!(table.find(&keys[0]), None);
    for (k, row) in keys.iter().zip(&rows).skip(1) {
        assert_eq!(
            table.find(k).map(|v| v.pos),
            Some(*row),
            "found past the tombstone"
        );
    }
    // The tombstone's entry is reused: the key goes back in, found again.
    let again = table.insert(keys[0], 0, word).expect("reinsert");
    assert_eq!(table.find(&keys[0]).map(|v| v.pos), Some(again));
    assert_eq!(table.used().len(), 3);
}

#[test]
fn a_reloaded_agent_finds_rows_and_free_rows_where_they_were() {
    let pins = PinDir::for_test();
    let word = owner_word::pack(3, 0, 0);
    {
        let dp = Dataplane::load(pins.path()).expect("load");
        for i in 0..3 {
            dp.maps
                .table
                .insert(key(2, i + 1), 10 + i, word)
                .expect("insert");
        }
        dp.maps.table.remove(0);
    }
    let dp = Dataplane::load(pins.path()).expect("reload");
    let table = &dp.maps.table;
    let mut used: Vec<(u32, u32)> = table.used().iter().map(|v| (v.pos, v.id)).collect();
    used.sort_unstable();
    assert_eq!(used, [(1, 11), (2, 12)], "rows adopted as they were");
    assert_eq!(table.find(&key(2, 2)).map(|v| v.word), Some(word));
    // The row freed before the restart is the lowest free one now.
    assert_eq!(table.insert(key(2, 7), 17, word).expect("insert"), 0);
}
