//! Randomized frame campaign through `BPF_PROG_TEST_RUN`: seeded frames
//! (`gen`) run against the fixture bed, every frame checked against the
//! invariants (`check`). `tests/tests/campaign.rs` runs a short one,
//! `cargo xtask fuzz` (binary `havip-campaign`) the full one.
//!
//! Frame `i` of seed `s` depends only on (`s`, `i`); the bed's state
//! (`OWNERS`) only on the frames before it, so `--seed s --frames i+1`
//! replays a failure exactly.

pub mod check;
pub mod gen;
pub mod rng;

use std::{
    collections::BTreeMap,
    fmt,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use havip::dataplane::{events::DataplaneEvent, stats};
use havip_common::{HavipKey, OwnerEntry};

use self::{
    check::{Checker, Observation, OwnerChange, World},
    gen::{Generated, Pools},
    rng::Rng,
};
use crate::{bed, control_owner, write_owner, Counters, Port, TestBed, ETH_HLEN};

/// Violations kept with their frame (the rest are only counted).
const KEEP_VIOLATIONS: usize = 10;

/// How long and from which seed.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub seed: u64,
    pub frames: u64,
    /// Drain `EVENTS` and match owner changes every this many frames.
    pub drain_every: u64,
    /// Put every owner back as the control plane configured it (initial
    /// owner or none) every this many frames, so "no owner" paths stay hot.
    pub reset_every: u64,
}

impl Config {
    pub fn new(seed: u64, frames: u64) -> Self {
        Self {
            seed,
            frames,
            drain_every: 512,
            reset_every: 1000,
        }
    }
}

/// Frame `index` (from 0) of the run of `seed`: enough to generate it
/// again, alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramePlace {
    pub seed: u64,
    pub index: u64,
}

impl FramePlace {
    /// The frame's own random stream.
    pub fn rng(self) -> Rng {
        Rng::for_frame(self.seed, self.index)
    }
}

/// One frame that broke an invariant, with what is needed to replay it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// The frame's place in the run, which regenerates it (for a drain:
    /// the frame the drain came before).
    pub at: FramePlace,
    /// The frame; `None` for a check not tied to one frame (events matched
    /// at a drain, or events lost at the end).
    pub generated: Option<Generated>,
    /// Each invariant the frame broke, one line each.
    pub errors: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "violation at seed {} index {}:",
            self.at.seed, self.at.index
        )?;
        if let Some(g) = &self.generated {
            writeln!(
                f,
                "  frame ({} bytes, {}, mutation {}) from {:?}:",
                g.frame.len(),
                g.kind.name(),
                g.mutation.name(),
                g.ingress
            )?;
            for (i, chunk) in g.frame.chunks(16).enumerate() {
                let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
                writeln!(f, "    {:04x}: {}", i * 16, hex.join(" "))?;
            }
        }
        for e in &self.errors {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// What a campaign ran and found.
#[derive(Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub generated: u64,
    /// Frames the kernel ran (the rest were shorter than an Ethernet header).
    pub ran: u64,
    pub skipped_short: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    pub by_mutation: BTreeMap<&'static str, u64>,
    pub checked: BTreeMap<&'static str, u64>,
    pub outcomes: BTreeMap<String, u64>,
    pub verdicts: BTreeMap<String, u64>,
    pub owner_changes: u64,
    pub owner_resets: u64,
    pub hairpins: u64,
    pub violation_count: u64,
    pub violations: Vec<Violation>,
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        writeln!(
            f,
            "campaign seed {}: {} frames generated, {} run through BPF_PROG_TEST_RUN, {} skipped \
             (shorter than {ETH_HLEN} bytes: the kernel refuses them with EINVAL), in {secs:.1} s \
             ({:.0} frames/s)",
            self.seed,
            self.generated,
            self.ran,
            self.skipped_short,
            self.generated as f64 / secs.max(1e-9)
        )?;
        table(f, "frames per generator kind", &self.by_kind)?;
        table(f, "frames per mutation", &self.by_mutation)?;
        table(f, "frames per verdict", &self.verdicts)?;
        table(f, "frames per outcome (counter moved)", &self.outcomes)?;
        table(f, "frames checked per invariant", &self.checked)?;
        writeln!(
            f,
            "owner changes by claims: {} (all reported as OWNER_CHANGED); owner resets by the \
             control plane: {}; forwarded back out of the ingress port (owner behind it): {}",
            self.owner_changes, self.owner_resets, self.hairpins
        )?;
        writeln!(f, "violations: {}", self.violation_count)?;
        self.violations.iter().try_for_each(|v| write!(f, "{v}"))
    }
}

fn table<K: fmt::Display>(
    f: &mut fmt::Formatter<'_>,
    title: &str,
    rows: &BTreeMap<K, u64>,
) -> fmt::Result {
    writeln!(f, "{title}:")?;
    rows.iter()
        .try_for_each(|(k, v)| writeln!(f, "  {k:<40} {v:>10}"))
}

/// The generator's pools: the bed's addresses and the configured HaVips.
pub fn pools(bed: &TestBed) -> Pools {
    use bed::*;
    let havips: Vec<Ipv4Addr> = bed
        .desired
        .havips
        .iter()
        .map(|h| Ipv4Addr::from(h.key.addr))
        .collect();
    let mut macs = vec![
        OWNER_MAC,
        STANDBY_MAC,
        CLIENT_MAC,
        OTHER_MAC,
        REMOTE_MAC,
        SPOOF_MAC,
        MULTICAST_MAC,
        [0xff; 6],
    ];
    macs.extend(bed.desired.ports.iter().map(|p| p.gateway_mac));
    macs.extend(bed.desired.havips.iter().map(|h| h.virtual_mac));
    Pools {
        port_macs: vec![
            (Port::Owner, OWNER_MAC),
            (Port::Standby, STANDBY_MAC),
            (Port::Client, CLIENT_MAC),
            (Port::Uplink, REMOTE_MAC),
            (Port::Other, OTHER_MAC),
        ],
        macs,
        havips,
        ips: vec![
            OWNER_IP,
            STANDBY_IP,
            CLIENT_IP,
            REMOTE_IP,
            OTHER_IP,
            PLAIN_IP,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::BROADCAST,
        ],
    }
}

fn read_owners(bed: &TestBed, keys: &[HavipKey]) -> Vec<(HavipKey, OwnerEntry)> {
    keys.iter()
        .map(|k| (*k, bed.dp.maps.owners.get(k, 0).unwrap_or_default()))
        .collect()
}

/// Writes every owner back as configured (initial owner or none), epoch + 1,
/// as the control plane would.
fn reset_owners(bed: &mut TestBed) {
    for h in bed.desired.havips.clone() {
        let current = bed.dp.maps.owners.get(&h.key, 0).unwrap_or_default();
        let (ifindex, mac) = h.initial_owner.map_or((0, [0; 6]), |b| (b.ifindex, b.mac));
        let next = control_owner(current.epoch + 1, h.id, ifindex, mac);
        write_owner(&bed.dp, h.key, next);
    }
}

fn owner_events(bed: &mut TestBed) -> Vec<OwnerChange> {
    bed.events()
        .into_iter()
        .filter_map(|e| match e {
            DataplaneEvent::OwnerChanged(e) => Some(OwnerChange {
                key: e.key,
                epoch: e.epoch,
                ifindex: e.ifindex,
                mac: e.mac,
            }),
            _ => None,
        })
        .collect()
}

impl Report {
    /// Counts a violation at frame `index` of this report's seed; keeps the
    /// first `KEEP_VIOLATIONS`.
    fn violate(&mut self, index: u64, generated: Option<Generated>, errors: Vec<String>) {
        self.violation_count += 1;
        if self.violations.len() < KEEP_VIOLATIONS {
            self.violations.push(Violation {
                at: FramePlace {
                    seed: self.seed,
                    index,
                },
                generated,
                errors,
            });
        }
    }
}

/// Matches the drained `OWNER_CHANGED` events with the changes seen.
fn drain(bed: &mut TestBed, checker: &mut Checker, report: &mut Report, index: u64) {
    report.owner_changes += checker.pending_events.len() as u64;
    let events = owner_events(bed);
    if let Err(e) = checker.match_events(&events) {
        report.violate(index, None, vec![e]);
    }
}

/// Runs the campaign on `bed` (a fresh standard bed); `progress` is called
/// with the number of frames done every 65,536 frames.
pub fn run(bed: &mut TestBed, config: &Config, mut progress: impl FnMut(u64)) -> Report {
    let start = Instant::now();
    let pools = pools(bed);
    let world = World::new(&bed.desired);
    let keys = world.keys();
    let mut checker = Checker::default();
    let mut report = Report {
        seed: config.seed,
        ..Report::default()
    };
    // Events from before the campaign are not ours to match.
    let _ = bed.events();
    let mut counters = Counters::read(&bed.dp);
    let mut owners = read_owners(bed, &keys);
    for index in 0..config.frames {
        if index > 0 && index % 65_536 == 0 {
            progress(index);
        }
        if index > 0 && index % config.drain_every == 0 {
            drain(bed, &mut checker, &mut report, index);
        }
        if index > 0 && index % config.reset_every == 0 {
            reset_owners(bed);
            owners = read_owners(bed, &keys);
            report.owner_resets += 1;
        }
        let at = FramePlace {
            seed: config.seed,
            index,
        };
        let generated = pools.generate(&mut at.rng());
        report.generated += 1;
        *report.by_kind.entry(generated.kind.name()).or_default() += 1;
        *report
            .by_mutation
            .entry(generated.mutation.name())
            .or_default() += 1;
        let (verdict, output) = match bed.try_run(generated.ingress, &generated.frame) {
            Ok(r) => r,
            Err(_) if generated.frame.len() < ETH_HLEN => {
                report.skipped_short += 1;
                continue;
            }
            Err(e) => {
                report.violate(
                    index,
                    Some(generated),
                    vec![format!("BPF_PROG_TEST_RUN refused the frame: {e}")],
                );
                continue;
            }
        };
        report.ran += 1;
        let after = Counters::read(&bed.dp);
        let moves = after.since(&counters);
        let owners_after = read_owners(bed, &keys);
        let errors = checker.check(
            &world,
            &Observation {
                ingress_ifindex: bed.ifindex(generated.ingress),
                input: &generated.frame,
                verdict,
                output: &output,
                moves: &moves,
                owners_before: &owners,
                owners_after: &owners_after,
            },
        );
        counters = after;
        owners = owners_after;
        if !errors.is_empty() {
            report.violate(index, Some(generated), errors);
        }
    }
    drain(bed, &mut checker, &mut report, config.frames);
    let (_, lost) = stats::event_losses(&bed.dp.maps);
    if lost != 0 {
        report.violate(
            config.frames,
            None,
            vec![format!("{lost} events lost to a full ring buffer")],
        );
    }
    report.checked = checker.checked.clone();
    report.outcomes = checker.outcomes.clone();
    report.verdicts = checker.verdict_counts.clone();
    report.hairpins = checker.hairpins;
    report.elapsed = start.elapsed();
    report
}
