//! Typed handles on the pinned maps (catalogue: `havip_common::catalogue`).

use std::path::Path;

use aya::maps::{Array, DevMapHash, HashMap, Map, MapData, MapError, PerCpuArray, RingBuf};
use havip_common::{
    names, BindingEntry, BindingKey, DataplaneConfig, EipEntry, EipSnatEntry, EventBudget,
    HavipEntry, HavipKey, MapKind, OwnerEntry, PortInfo, TrafficCounter, VpcAddrKey, VtepConfig,
    VtepEntry,
};

/// The kernel map type of a catalogue kind.
pub fn map_type(kind: MapKind) -> aya::maps::MapType {
    use aya::maps::MapType;
    match kind {
        MapKind::Hash => MapType::Hash,
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
        MapKind::DevMapHash => MapType::DevMapHash,
        MapKind::RingBuf => MapType::RingBuf,
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
    pub vtep_config: Array<MapData, VtepConfig>,
    pub vteps: HashMap<MapData, [u8; 4], VtepEntry>,
    pub vswitch_vnis: HashMap<MapData, u32, u32>,
    pub vni_vswitches: HashMap<MapData, u32, u32>,
    pub eips: HashMap<MapData, [u8; 4], EipEntry>,
    pub eip_snat: HashMap<MapData, HavipKey, EipSnatEntry>,
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
            vtep_config: typed!(names::VTEP_CONFIG),
            vteps: typed!(names::VTEPS),
            vswitch_vnis: typed!(names::VSWITCH_VNIS),
            vni_vswitches: typed!(names::VNI_VSWITCHES),
            eips: typed!(names::EIPS),
            eip_snat: typed!(names::EIP_SNAT),
        })
    }
}
