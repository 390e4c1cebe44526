//! Counters read back from the per-CPU maps, summed over CPUs.

use aya::maps::{MapData, PerCpuArray};
use havip_common::{DropReason, Handled, TrafficCounter};

use super::maps::Maps;

fn sum(map: &PerCpuArray<MapData, TrafficCounter>, index: u32) -> TrafficCounter {
    map.get(&index, 0)
        .map(|values| {
            values
                .iter()
                .fold(TrafficCounter::default(), |acc, v| TrafficCounter {
                    packets: acc.packets + v.packets,
                    bytes: acc.bytes + v.bytes,
                })
        })
        .unwrap_or_default()
}

/// Frames and bytes forwarded for the HaVip with dense id `havip_id`.
pub fn havip(maps: &Maps, havip_id: u32) -> TrafficCounter {
    sum(&maps.havip_stats, havip_id)
}

/// Every `Handled` outcome with its counter.
pub fn handled(maps: &Maps) -> Vec<(Handled, TrafficCounter)> {
    Handled::ALL
        .iter()
        .map(|h| (*h, sum(&maps.handled, *h as u32)))
        .collect()
}

/// Every `DropReason` with its counter.
pub fn drops(maps: &Maps) -> Vec<(DropReason, TrafficCounter)> {
    DropReason::ALL
        .iter()
        .map(|d| (*d, sum(&maps.drops, *d as u32)))
        .collect()
}

/// Security events suppressed by the rate limiter and events lost to a full
/// ring buffer, summed over CPUs.
pub fn event_losses(maps: &Maps) -> (u64, u64) {
    maps.event_budget
        .get(&0, 0)
        .map(|values| {
            values.iter().fold((0, 0), |(s, l), b| {
                (s + u64::from(b.suppressed), l + b.lost)
            })
        })
        .unwrap_or_default()
}
