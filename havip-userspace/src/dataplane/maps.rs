//! Typed handles on the pinned maps (catalogue: `havip-ebpf/src/maps.rs`).

use std::path::Path;

use aya::maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf};
use havip_common::{
    names, BindingEntry, BindingKey, DataplaneConfig, EventBudget, HavipEntry, HavipKey,
    OwnerEntry, PortInfo, TrafficCounter, VpcAddrKey,
};

/// Map sizes both sides agree on: a pinned map whose shape differs (left by
/// an incompatible older version) is refused instead of silently misread.
pub fn expected_shape(name: &str) -> Option<(u32, u32, u32)> {
    use core::mem::size_of;
    use havip_common::*;
    let s = |k: usize, v: usize, n: u32| Some((k as u32, v as u32, n));
    match name {
        names::PORTS | names::PORTS_HIGH => s(4, size_of::<PortInfo>(), MAX_PORTS),
        names::TX_PORTS => None,
        names::HAVIPS => s(size_of::<HavipKey>(), size_of::<HavipEntry>(), MAX_HAVIPS),
        names::OWNERS => s(size_of::<HavipKey>(), size_of::<OwnerEntry>(), MAX_HAVIPS),
        names::BINDINGS => s(
            size_of::<BindingKey>(),
            size_of::<BindingEntry>(),
            MAX_BINDINGS,
        ),
        names::HAVIP_STATS => s(4, size_of::<TrafficCounter>(), MAX_HAVIPS),
        names::HANDLED => s(4, size_of::<TrafficCounter>(), Handled::COUNT as u32),
        names::DROPS => s(4, size_of::<TrafficCounter>(), DropReason::COUNT as u32),
        names::CONFIG => s(4, size_of::<DataplaneConfig>(), 1),
        names::EVENT_BUDGET => s(4, size_of::<EventBudget>(), 1),
        names::VPC_HAVIPS => s(size_of::<VpcAddrKey>(), 4, MAX_HAVIPS),
        _ => None,
    }
}

/// Map types, for the same check (PORTS was a hash map before 0.1).
pub fn expected_type(name: &str) -> Option<aya::maps::MapType> {
    use aya::maps::MapType;
    match name {
        names::PORTS | names::CONFIG => Some(MapType::Array),
        names::PORTS_HIGH | names::HAVIPS | names::OWNERS | names::BINDINGS | names::VPC_HAVIPS => {
            Some(MapType::Hash)
        }
        names::HAVIP_STATS | names::HANDLED | names::DROPS | names::EVENT_BUDGET => {
            Some(MapType::PerCpuArray)
        }
        _ => None,
    }
}

/// Every map of the program, typed. `events` is `None` once taken by the
/// event consumer.
pub struct Maps {
    pub ports: Array<MapData, PortInfo>,
    pub ports_high: HashMap<MapData, u32, PortInfo>,
    pub tx_ports: DevMapHash<MapData>,
    pub havips: HashMap<MapData, HavipKey, HavipEntry>,
    pub owners: HashMap<MapData, HavipKey, OwnerEntry>,
    pub bindings: HashMap<MapData, BindingKey, BindingEntry>,
    pub vpc_havips: HashMap<MapData, VpcAddrKey, u32>,
    pub havip_stats: PerCpuArray<MapData, TrafficCounter>,
    pub handled: PerCpuArray<MapData, TrafficCounter>,
    pub drops: PerCpuArray<MapData, TrafficCounter>,
    pub config: Array<MapData, DataplaneConfig>,
    pub event_budget: PerCpuArray<MapData, EventBudget>,
    pub events: Option<RingBuf<MapData>>,
}

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("map {0} is missing")]
    Missing(&'static str),
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: MapError,
    },
}

impl Maps {
    /// Takes the maps out of a loaded program object.
    pub fn take_from(ebpf: &mut aya::Ebpf) -> Result<Self, MapsError> {
        Self::build(|name| ebpf.take_map(name).ok_or(MapsError::Missing(name)))
    }

    /// Opens the maps pinned in `pin_dir` (no program needed: `status`, tests).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, MapsError> {
        Self::build(|name| {
            let data = MapData::from_pin(pin_dir.join(name))
                .map_err(|source| MapsError::Map { name, source })?;
            Map::from_map_data(data).map_err(|source| MapsError::Map { name, source })
        })
    }

    fn build(
        mut get: impl FnMut(&'static str) -> Result<Map, MapsError>,
    ) -> Result<Self, MapsError> {
        macro_rules! typed {
            ($name:expr) => {{
                let name: &'static str = $name;
                get(name)?
                    .try_into()
                    .map_err(|source| MapsError::Map { name, source })?
            }};
        }
        Ok(Self {
            ports: typed!(names::PORTS),
            ports_high: typed!(names::PORTS_HIGH),
            tx_ports: typed!(names::TX_PORTS),
            havips: typed!(names::HAVIPS),
            owners: typed!(names::OWNERS),
            bindings: typed!(names::BINDINGS),
            vpc_havips: typed!(names::VPC_HAVIPS),
            havip_stats: typed!(names::HAVIP_STATS),
            handled: typed!(names::HANDLED),
            drops: typed!(names::DROPS),
            config: typed!(names::CONFIG),
            event_budget: typed!(names::EVENT_BUDGET),
            events: Some(typed!(names::EVENTS)),
        })
    }
}
