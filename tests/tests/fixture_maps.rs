//! The loaded program's maps match `havip_common::catalogue` (the source of
//! the agent's shape check, pin names and teardown list), and the counter
//! enums are consistent.

use std::collections::BTreeSet;

use aya::maps::MapData;
use havip::dataplane::maps::map_type;
use havip_common::{catalogue, DropReason, Handled};
use havip_tests::TestBed;

/// `BPF_F_RDONLY_PROG`: the kernel adds it to every devmap (programs may
/// only redirect through them, not write them).
const RDONLY_PROG: u32 = 1 << 7;

#[test]
fn every_pinned_map_has_its_catalogue_shape() {
    let bed = TestBed::new();
    let pin_dir = bed.dp.pin_dir().to_owned();
    for spec in catalogue::ALL {
        let path = pin_dir.join(spec.name);
        let info = MapData::from_pin(&path)
            .and_then(|m| m.info())
            .unwrap_or_else(|e| panic!("{} is not pinned: {e}", path.display()));
        assert_eq!(
            (
                info.map_type().ok(),
                info.key_size(),
                info.value_size(),
                info.max_entries(),
                info.map_flags() & !RDONLY_PROG
            ),
            (
                Some(map_type(spec.kind)),
                spec.key_size,
                spec.value_size,
                spec.max_entries,
                spec.flags
            ),
            "map {} differs from its catalogue entry {spec:?}",
            spec.name
        );
    }
    let pinned: BTreeSet<String> = std::fs::read_dir(&pin_dir)
        .expect("reading the pin dir")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let catalogued: BTreeSet<String> = catalogue::ALL.iter().map(|s| s.name.into()).collect();
    assert_eq!(pinned, catalogued, "every pinned map is in the catalogue");
}

#[test]
fn counter_names_are_unique_snake_case_and_indexed_in_order() {
    let handled: Vec<&str> = Handled::ALL.iter().map(|h| h.name()).collect();
    let drops: Vec<&str> = DropReason::ALL.iter().map(|d| d.name()).collect();
    for names in [&handled, &drops] {
        let unique: BTreeSet<&&str> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')),
            "{names:?}"
        );
    }
    for (i, h) in Handled::ALL.iter().enumerate() {
        assert_eq!((*h as usize, Handled::from_u32(i as u32)), (i, Some(*h)));
    }
    for (i, d) in DropReason::ALL.iter().enumerate() {
        assert_eq!((*d as usize, DropReason::from_u32(i as u32)), (i, Some(*d)));
    }
    assert_eq!(DropReason::from_u32(DropReason::COUNT as u32), None);
}
