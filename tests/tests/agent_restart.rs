//! Hitless restart: the agent is killed with SIGKILL while traffic flows to a
//! HaVip and restarted; the pinned data plane keeps forwarding throughout,
//! and owner changes made by claims while no agent ran are kept. A restart
//! on the previous map layout (`HAVIPS`/`OWNERS` hash maps) is migrated
//! whole, or refused with nothing created.

use std::{net::SocketAddrV4, time::Duration};

use havip::{dataplane::Dataplane, status};
use havip_common::{
    owner_flags, virtual_mac, BindingEntry, BindingKey, HavipEntry, HavipKey, OwnerEntry,
    MAX_BINDINGS, MAX_HAVIPS,
};
use havip_tests::{
    frames, lab,
    scenario::{owner_mac, AgentProcess, Stream, Trio},
};

const NET: u8 = 8;

/// The topology with its agent running.
fn setup() -> (Trio, AgentProcess) {
    let t = Trio::new("hvtr", NET, Some("a"), true).expect("topology");
    let agent = t.start_agent().expect("agent ready");
    (t, agent)
}

fn epoch(t: &Trio) -> u64 {
    status::read(&t.scratch.pin_dir)
        .expect("status")
        .havips
        .iter()
        .find(|h| h.address == t.vip.to_string())
        .expect("havip in maps")
        .epoch
}

#[test]
fn sigkill_under_traffic_loses_no_frame_and_keeps_owner() {
    let (t, agent) = setup();
    let (scratch, lab, vip) = (&t.scratch, &t.lab, t.vip);
    let a_mac = t.a.0;
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(a_mac))
    );
    let epoch_before = epoch(&t);

    let interval = Duration::from_micros(500);
    let (ns_c, ns_a, ns_b) = (&lab.guests[0].ns, &lab.guests[1].ns, &lab.guests[2].ns);
    let stream = Stream::start(
        ns_c,
        SocketAddrV4::new(vip, 9000),
        interval,
        &[("a", ns_a), ("b", ns_b)],
    )
    .expect("stream");
    std::thread::sleep(Duration::from_millis(500));
    agent.kill9().expect("SIGKILL");
    std::thread::sleep(Duration::from_millis(500));
    let agent = t.start_agent().expect("agent ready again");
    std::thread::sleep(Duration::from_millis(500));
    let report = stream.finish().expect("stream report");

    println!(
        "sent {}, a {}, b {}",
        report.sent,
        report.count("a"),
        report.count("b")
    );
    assert!(report.sent > 1000, "stream too short: {}", report.sent);
    assert_eq!(report.count("b"), 0, "the standby received HaVip traffic");
    assert_eq!(
        report.count("a") as u64,
        report.sent,
        "frames lost across the agent's SIGKILL and restart"
    );
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(a_mac))
    );
    assert_eq!(epoch(&t), epoch_before, "restart changed the owner epoch");
    agent.stop().expect("stop");
}

#[test]
fn claim_while_agent_is_down_is_adopted_not_overwritten() {
    let (t, agent) = setup();
    let (scratch, lab, vip) = (&t.scratch, &t.lab, t.vip);
    let b_mac = t.b.0;
    agent.kill9().expect("SIGKILL");

    // b takes over while no agent runs: the kernel switches on its own.
    lab::send_raw(
        &lab.guests[2].ns,
        "eth0",
        vec![frames::garp(b_mac, vip).bytes()],
    )
    .expect("garp");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(b_mac))
    );
    let epoch_b = epoch(&t);

    let agent = t.start_agent().expect("agent ready again");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        owner_mac(&scratch.pin_dir, vip),
        Some(lab::mac_string(b_mac)),
        "the restarted agent overwrote the kernel's owner with the config's master"
    );
    assert_eq!(epoch(&t), epoch_b);

    // The store learnt the kernel's owner: Describe reports b as master.
    let out = std::process::Command::new(
        havip_tests::scenario::agent_binary()
            .expect("agent binary")
            .with_file_name("havipctl"),
    )
    .args(["--socket"])
    .arg(scratch.socket())
    .args(["--json", "havip", "describe", "havip-hvtr"])
    .output()
    .expect("havipctl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "havipctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("i-b") || text.contains("eni-b"),
        "describe does not show b as master: {text}"
    );

    // And traffic goes to b.
    let stream = Stream::start(
        &lab.guests[0].ns,
        SocketAddrV4::new(vip, 9001),
        Duration::from_millis(1),
        &[("a", &lab.guests[1].ns), ("b", &lab.guests[2].ns)],
    )
    .expect("stream");
    std::thread::sleep(Duration::from_millis(300));
    let report = stream.finish().expect("report");
    assert_eq!(report.count("a"), 0);
    assert_eq!(report.count("b") as u64, report.sent);
    agent.stop().expect("stop");
}

/// Pin dir of the previous-layout tests: unique, torn down on drop.
struct OldPins(std::path::PathBuf);

impl OldPins {
    fn new(tag: &str) -> Self {
        let dir = std::path::PathBuf::from(format!(
            "/sys/fs/bpf/havip-test-{tag}-{}",
            std::process::id()
        ));
        let _ = havip::dataplane::loader::teardown(&dir);
        std::fs::create_dir_all(&dir).expect("pin dir");
        Self(dir)
    }
}

impl Drop for OldPins {
    fn drop(&mut self) {
        if let Err(e) = havip::dataplane::loader::teardown(&self.0) {
            eprintln!("teardown of {}: {e}", self.0.display());
        }
    }
}

/// Creates a map with raw bpf(2) and pins it at `path`: how the previous
/// version's `HAVIPS`/`OWNERS` (and `BINDINGS`) looked, made by hand.
fn pin_map(path: &std::path::Path, key: u32, value: u32, entries: u32, flags: u32) {
    pin_map_of(1, path, key, value, entries, flags); // BPF_MAP_TYPE_HASH
}

/// As [`pin_map`], of map type `map_type` (`enum bpf_map_type`).
fn pin_map_of(
    map_type: u32,
    path: &std::path::Path,
    key: u32,
    value: u32,
    entries: u32,
    flags: u32,
) {
    use std::os::unix::ffi::OsStrExt;
    #[repr(C)]
    struct Create {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        rest: [u8; 108],
    }
    #[repr(C)]
    struct Pin {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
        rest: [u8; 112],
    }
    let create = Create {
        map_type,
        key_size: key,
        value_size: value,
        max_entries: entries,
        map_flags: flags,
        rest: [0; 108],
    };
    // SAFETY: BPF_MAP_CREATE (0) with a zero-padded attribute.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            &raw const create,
            size_of::<Create>() as u32,
        )
    };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let cpath = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let pin = Pin {
        pathname: cpath.as_ptr() as u64,
        bpf_fd: fd as u32,
        file_flags: 0,
        rest: [0; 112],
    };
    // SAFETY: BPF_OBJ_PIN (6); `cpath` outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 6, &raw const pin, size_of::<Pin>() as u32) };
    let err = std::io::Error::last_os_error();
    // SAFETY: our fd; the pin keeps the map.
    unsafe { libc::close(fd as i32) };
    assert_eq!(rc, 0, "BPF_OBJ_PIN {}: {err}", path.display());
}

type OldOwners = aya::maps::HashMap<aya::maps::MapData, HavipKey, OwnerEntry>;

fn old_map<V: aya::Pod>(
    dir: &std::path::Path,
    name: &str,
) -> aya::maps::HashMap<aya::maps::MapData, HavipKey, V> {
    let data = aya::maps::MapData::from_pin(dir.join(name)).expect("old map");
    aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("old map type")
}

/// The previous layout with two HaVips: one owned by a claim of member b
/// (epoch 7), one owned on another host (epoch 3).
fn previous_layout(dir: &std::path::Path, owners_value: u32) -> (HavipKey, HavipKey) {
    pin_map(&dir.join("HAVIPS"), 8, 16, MAX_HAVIPS, 1);
    pin_map(&dir.join("OWNERS"), 8, owners_value, MAX_HAVIPS, 0);
    pin_map(&dir.join("BINDINGS"), 8, 8, MAX_BINDINGS, 1);
    let local = HavipKey {
        vswitch_id: 1,
        addr: [10, 0, 1, 50],
    };
    let remote = HavipKey {
        vswitch_id: 1,
        addr: [10, 0, 1, 51],
    };
    if owners_value as usize != size_of::<OwnerEntry>() {
        return (local, remote);
    }
    let mut havips = old_map::<HavipEntry>(dir, "HAVIPS");
    for (key, id) in [(local, 3), (remote, 4)] {
        let entry = HavipEntry {
            id,
            flags: 0,
            virtual_mac: virtual_mac(key.addr),
            _pad: [0; 2],
        };
        havips.insert(key, entry, 0).expect("HAVIPS");
    }
    let data = aya::maps::MapData::from_pin(dir.join("BINDINGS")).expect("BINDINGS");
    let mut bindings: aya::maps::HashMap<_, BindingKey, BindingEntry> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(data)).expect("BINDINGS type");
    for (ifindex, mac) in [(11, MAC_A), (12, MAC_B)] {
        let key = BindingKey {
            havip_id: 3,
            ifindex,
        };
        bindings
            .insert(key, BindingEntry { mac, _pad: [0; 2] }, 0)
            .expect("BINDINGS");
    }
    let mut owners: OldOwners = old_map(dir, "OWNERS");
    let claimed = OwnerEntry {
        epoch: 7,
        changed_ns: 1,
        havip_id: 3,
        ifindex: 12,
        mac: MAC_B,
        flags: owner_flags::BY_CLAIM,
        ..OwnerEntry::default()
    };
    owners.insert(local, claimed, 0).expect("OWNERS");
    let elsewhere = OwnerEntry {
        epoch: 3,
        havip_id: 4,
        ifindex: 1,
        mac: MAC_R,
        flags: owner_flags::REMOTE,
        vtep: [10, 99, 0, 2],
        ..OwnerEntry::default()
    };
    owners.insert(remote, elsewhere, 0).expect("OWNERS");
    (local, remote)
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0x0a, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0x0b, 1];
const MAC_R: [u8; 6] = [2, 0, 0, 0, 0x0c, 1];

#[test]
fn restart_from_the_previous_map_layout_migrates_owners_whole() {
    let pins = OldPins::new("migrate");
    let (local, remote) = previous_layout(&pins.0, size_of::<OwnerEntry>() as u32);

    let mut dp = Dataplane::load(&pins.0).expect("the previous layout is migrated");
    assert!(dp.migrating());
    let o = dp
        .maps
        .owners
        .get(&local, 0)
        .expect("local HaVip in the table");
    assert_eq!((o.epoch, o.ifindex, o.mac, o.havip_id), (7, 12, MAC_B, 3));
    assert_eq!(o.flags, owner_flags::BY_CLAIM);
    let r = dp
        .maps
        .owners
        .get(&remote, 0)
        .expect("remote HaVip in the table");
    assert!(r.is_remote(), "{r:?}");
    assert_eq!((r.epoch, r.vtep, r.mac), (3, [10, 99, 0, 2], MAC_R));
    assert_eq!(dp.maps.havips.get(&local, 0).expect("HaVip").id, 3);
    // Both members of the local HaVip came from BINDINGS (in the hash
    // map's iteration order, which the kernel does not fix).
    let mut members: Vec<u32> = (0..2).map(|i| dp.maps.table.member(3, i).ifindex).collect();
    members.sort_unstable();
    assert_eq!(members, [11, 12]);

    // A claim lands in the old map before the links swap programs: member
    // a takes over (epoch 8). The migration's end copies it over.
    let mut owners: OldOwners = old_map(&pins.0, "OWNERS");
    let claim = OwnerEntry {
        epoch: 8,
        changed_ns: 2,
        havip_id: 3,
        ifindex: 11,
        mac: MAC_A,
        flags: owner_flags::BY_CLAIM,
        ..OwnerEntry::default()
    };
    owners
        .insert(local, claim, 0)
        .expect("claim in the old map");
    dp.finish_migration();
    assert!(!dp.migrating());
    let o = dp.maps.owners.get(&local, 0).expect("local HaVip");
    assert_eq!(
        (o.epoch, o.ifindex, o.mac),
        (8, 11, MAC_A),
        "the late claim was lost"
    );
    for name in ["HAVIPS", "OWNERS"] {
        assert!(
            !pins.0.join(name).exists(),
            "{name} still pinned after the migration"
        );
    }
    assert!(pins.0.join("HAVIP_ROWS").exists() && pins.0.join("HAVIP_INDEX").exists());
}

#[test]
fn previous_layout_of_unknown_shape_is_refused_and_left_untouched() {
    let pins = OldPins::new("refuse");
    // An OWNERS value of 48 bytes: no version of havip pinned that.
    previous_layout(&pins.0, 48);
    let err = match Dataplane::load(&pins.0) {
        Ok(_) => panic!("an unknown previous layout was adopted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("previous layout") && err.contains("teardown"),
        "{err}"
    );
    // Nothing half-adopted: no new table, the old maps where they were.
    assert!(!pins.0.join("HAVIP_ROWS").exists());
    assert!(!pins.0.join("HAVIP_INDEX").exists());
    assert!(!pins.0.join("HAVIP_MEMBERS").exists());
    assert!(pins.0.join("OWNERS").exists() && pins.0.join("HAVIPS").exists());
}

/// An upgrade that adds outcomes: the previous version's `HANDLED` and
/// `DROPS` are shorter. They are replaced (counts restart), not refused.
#[test]
fn shorter_outcome_counters_of_the_previous_version_are_replaced() {
    use havip_common::{DropReason, Handled, TrafficCounter};
    let pins = OldPins::new("counters");
    let value = size_of::<TrafficCounter>() as u32;
    let per_cpu_array = 6;
    pin_map_of(
        per_cpu_array,
        &pins.0.join("HANDLED"),
        4,
        value,
        Handled::COUNT as u32 - 3,
        0,
    );
    pin_map_of(
        per_cpu_array,
        &pins.0.join("DROPS"),
        4,
        value,
        DropReason::COUNT as u32 - 1,
        0,
    );
    let dp = match Dataplane::load(&pins.0) {
        Ok(dp) => dp,
        Err(e) => panic!("shorter outcome counters refused: {e}"),
    };
    drop(dp);
    for (name, want) in [("HANDLED", Handled::COUNT), ("DROPS", DropReason::COUNT)] {
        let info = aya::maps::MapData::from_pin(pins.0.join(name))
            .and_then(|m| m.info())
            .expect("pinned counter");
        assert_eq!(
            info.max_entries(),
            want as u32,
            "{name} replaced at its new length"
        );
    }
}

/// A counter of another value size is no shorter table of the same thing:
/// refused with the teardown advice, nothing created.
#[test]
fn outcome_counters_of_another_shape_are_refused() {
    let pins = OldPins::new("counters-shape");
    pin_map_of(6, &pins.0.join("HANDLED"), 4, 8, 4, 0);
    let err = match Dataplane::load(&pins.0) {
        Ok(_) => panic!("a HANDLED of another value size was adopted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("HANDLED") && err.contains("teardown"), "{err}");
    assert!(!pins.0.join("HAVIP_ROWS").exists(), "nothing created");
}

/// A table of an older layout (`name`, `value`-byte slots) left pinned by
/// an older agent: refused with the teardown advice, never adopted (the
/// slot fields or their placement differ), and nothing else created or
/// removed.
fn old_havip_table_is_refused(tag: &str, name: &str, value: u32) {
    use havip_common::{catalogue, INDEX_SLOTS};
    let pins = OldPins::new(tag);
    let array = 2;
    pin_map_of(
        array,
        &pins.0.join(name),
        4,
        value,
        INDEX_SLOTS,
        catalogue::MMAPABLE,
    );
    let err = match Dataplane::load(&pins.0) {
        Ok(_) => panic!("a {name} of {value}-byte slots was adopted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(name)
            && err.contains(&format!("value {value}"))
            && err.contains("previous")
            && err.contains("layout")
            && err.contains("teardown"),
        "{err}"
    );
    assert!(pins.0.join(name).exists(), "the old table left as it was");
    for created in [
        "HAVIP_INDEX",
        "HAVIP_ROWS",
        "HAVIP_MEMBERS",
        "HAVIP_CHANGED",
    ] {
        assert!(!pins.0.join(created).exists(), "{created} created");
    }
}

/// The first table layout: 32-byte slots of other fields (no owner copy). The
/// same size as today's slot: only the name tells them apart.
#[test]
fn havip_table_of_the_32_byte_slot_layout_is_refused() {
    old_havip_table_is_refused("slots32", "HAVIP_TABLE", 32);
}

/// The layout before this one: 64-byte slots (`changed_ns` in the slot).
#[test]
fn havip_table_of_the_64_byte_slot_layout_is_refused() {
    old_havip_table_is_refused("slots64", "HAVIP_TABLE", 64);
}

/// The layout before this one: 32-byte slots placed by hash in
/// `HAVIP_SLOTS` (no index; the same slot fields as today's rows, so only
/// the name tells them apart).
#[test]
fn havip_slots_placed_by_hash_are_refused() {
    old_havip_table_is_refused("slots-hashed", "HAVIP_SLOTS", 32);
}
