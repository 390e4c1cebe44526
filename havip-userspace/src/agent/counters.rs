//! Live HaVip counters for Describe, from the pinned `HAVIP_STATS`.

use anyhow::{Context, Result};
use aya::maps::{MapData, PerCpuArray};
use havip_common::{names, TrafficCounter};

use crate::control::{CountersSource, HavipCounters};

/// `HAVIP_STATS` opened from its pin, summed over CPUs on read.
pub struct PinnedCounters {
    stats: PerCpuArray<MapData, TrafficCounter>,
}

impl PinnedCounters {
    /// Opens `<pin_dir>/HAVIP_STATS`.
    ///
    /// # Errors
    /// Not pinned, or not a per-CPU array of counters.
    pub fn open(pin_dir: &std::path::Path) -> Result<Self> {
        let data = MapData::from_pin(pin_dir.join(names::HAVIP_STATS))
            .context("opening pinned HAVIP_STATS")?;
        let stats = PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data))
            .context("typing HAVIP_STATS")?;
        Ok(Self { stats })
    }
}

impl CountersSource for PinnedCounters {
    fn havip_counters(&self, slot: u32) -> Option<HavipCounters> {
        let values = self.stats.get(&slot, 0).ok()?;
        let (packets, bytes) = values
            .iter()
            .fold((0, 0), |(p, b), v| (p + v.packets, b + v.bytes));
        Some(HavipCounters { packets, bytes })
    }
}
