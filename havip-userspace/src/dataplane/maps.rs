//! Typed handles on the pinned maps (catalogue: `havip_common::catalogue`).

use std::{path::Path, sync::Arc};

use aya::maps::{
    Array, DevMapHash, HashMap, LpmTrie, Map, MapData, MapError, PerCpuArray, RingBuf,
};
use havip_common::vxlan::{VniSlot, VtepSlot};
use havip_common::{
    names, BindingEntry, BindingKey, DataplaneConfig, EipEntry, EipSnatEntry, EventBudget,
    HavipKey, MapKind, PortInfo, RouteNextHop, RoutePrefix, TrafficCounter, VpcAddrKey, VtepConfig,
    VtepEntry,
};

use super::table::{HavipMap, HavipTable, OwnerMap, TableError, TableMaps};

/// The kernel map type of a catalogue kind.
pub fn map_type(kind: MapKind) -> aya::maps::MapType {
    use aya::maps::MapType;
    match kind {
        MapKind::Hash => MapType::Hash,
        MapKind::Array => MapType::Array,
        MapKind::PerCpuArray => MapType::PerCpuArray,
        MapKind::DevMapHash => MapType::DevMapHash,
        MapKind::RingBuf => MapType::RingBuf,
        MapKind::LpmTrie => MapType::LpmTrie,
    }
}

/// Every map of the program, typed. `events` is `None` once taken by the
/// event consumer.
pub struct Maps {
    pub ports: Array<MapData, PortInfo>,
    pub ports_high: HashMap<MapData, u32, PortInfo>,
    pub tx_ports: DevMapHash<MapData>,
    /// `HAVIP_INDEX` + `HAVIP_ROWS` + `HAVIP_MEMBERS` + `HAVIP_CHANGED`, mapped (see [`super::table`]).
    pub table: Arc<HavipTable>,
    /// The table by key, read as the former `HAVIPS` map.
    pub havips: HavipMap,
    /// Owners by key (the table's owner words, decoded).
    pub owners: OwnerMap,
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
    /// Inlined copies of the three maps above (`havip_common::vxlan`).
    pub vswitch_vni_array: Array<MapData, u32>,
    pub vni_table: Array<MapData, VniSlot>,
    pub vtep_table: Array<MapData, VtepSlot>,
    pub routes: LpmTrie<MapData, RoutePrefix, RouteNextHop>,
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
    #[error(transparent)]
    Table(#[from] TableError),
}

/// The array under a generic map handle.
fn array_data(name: &'static str, map: Map) -> Result<MapData, MapsError> {
    match map {
        Map::Array(data) => Ok(data),
        _ => Err(MapsError::Map {
            name,
            source: MapError::InvalidName {
                name: format!("{name} is not an array"),
            },
        }),
    }
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
        let mut array = |name| array_data(name, get(name)?);
        let (index, rows) = (array(names::HAVIP_INDEX)?, array(names::HAVIP_ROWS)?);
        let (members, changed) = (array(names::HAVIP_MEMBERS)?, array(names::HAVIP_CHANGED)?);
        let table = Arc::new(HavipTable::new(&TableMaps {
            index: &index,
            rows: &rows,
            members: &members,
            changed: &changed,
        })?);
        Ok(Self {
            havips: HavipMap(Arc::clone(&table)),
            owners: OwnerMap(Arc::clone(&table)),
            table,
            ports: typed!(names::PORTS),
            ports_high: typed!(names::PORTS_HIGH),
            tx_ports: typed!(names::TX_PORTS),
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
            vswitch_vni_array: typed!(names::VSWITCH_VNI_ARRAY),
            vni_table: typed!(names::VNI_TABLE),
            vtep_table: typed!(names::VTEP_TABLE),
            routes: typed!(names::ROUTES),
            eips: typed!(names::EIPS),
            eip_snat: typed!(names::EIP_SNAT),
        })
    }
}
