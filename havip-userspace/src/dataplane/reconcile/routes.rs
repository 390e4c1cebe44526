//! The routes part of the reconciler: `ROUTES` (VPC route entries with a
//! HaVip next hop, an LPM trie keyed by VPC and destination prefix) made
//! equal to the desired routes. Removals first, so a deleted route stops
//! matching as soon as this pass runs.

use std::collections::BTreeMap;

use aya::maps::lpm_trie::Key;
use havip_common::{names, RouteNextHop, RoutePrefix};

use super::{err, ReconcileError, ReconcileReport};
use crate::dataplane::{desired::DesiredRoute, maps::Maps};

/// The `ROUTES` entries of a desired route: in its VPC's scope and in its
/// next hop's vSwitch's scope (see `havip_common::RoutePrefix`). The
/// destination's host bits are cleared (the trie compares only the prefix,
/// but an exact key is what a later removal must name).
pub fn entries(route: &DesiredRoute) -> [((u32, RoutePrefix), RouteNextHop); 2] {
    let len = route.len.min(32);
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    let addr = (u32::from_be_bytes(route.addr) & mask).to_be_bytes();
    let hop = RouteNextHop {
        vswitch_id: route.next_hop.vswitch_id,
        addr: route.next_hop.addr,
        havip_id: route.havip_id,
    };
    let prefixlen = RoutePrefix::prefixlen(len);
    [
        ((prefixlen, RoutePrefix::in_vpc(route.vpc_id, addr)), hop),
        (
            (
                prefixlen,
                RoutePrefix::in_vswitch(route.next_hop.vswitch_id, addr),
            ),
            hop,
        ),
    ]
}

/// Makes `ROUTES` equal to `want`. Two routes with the same VPC and
/// prefix (never produced by the control plane): the last one wins; the
/// same for two VPCs' routes with the same prefix to HaVips of one vSwitch
/// (impossible: a vSwitch is in one VPC).
pub(super) fn reconcile_routes(
    maps: &mut Maps,
    want: &[DesiredRoute],
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let want: BTreeMap<(u32, RoutePrefix), RouteNextHop> = want.iter().flat_map(entries).collect();
    // An existing key looked up with its own length finds itself.
    let have: BTreeMap<(u32, RoutePrefix), RouteNextHop> = maps
        .routes
        .iter()
        .filter_map(Result::ok)
        .map(|(k, v)| ((k.prefix_len(), k.data()), v))
        .collect();
    for (len, prefix) in have.keys().filter(|k| !want.contains_key(*k)) {
        maps.routes
            .remove(&Key::new(*len, *prefix))
            .map_err(err(names::ROUTES))?;
        report.routes_removed += 1;
    }
    for ((len, prefix), hop) in &want {
        if have.get(&(*len, *prefix)) != Some(hop) {
            maps.routes
                .insert(&Key::new(*len, *prefix), hop, 0)
                .map_err(err(names::ROUTES))?;
            report.routes_set += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use havip_common::HavipKey;

    use super::*;

    fn route(addr: [u8; 4], len: u8) -> DesiredRoute {
        DesiredRoute {
            vpc_id: 7,
            addr,
            len,
            next_hop: HavipKey {
                vswitch_id: 3,
                addr: [10, 0, 1, 100],
            },
            havip_id: 9,
        }
    }

    #[test]
    fn the_keys_hold_the_scope_then_the_prefix() {
        let [(vpc_key, hop), (vsw_key, hop2)] = entries(&route([192, 168, 10, 0], 24));
        assert_eq!(vpc_key.0, 88);
        assert_eq!(vpc_key.1, RoutePrefix::in_vpc(7, [192, 168, 10, 0]));
        assert_eq!(vsw_key, (88, RoutePrefix::in_vswitch(3, [192, 168, 10, 0])));
        assert_eq!(vpc_key.1.id, [0, 0, 0, 7]);
        assert_eq!(hop, hop2);
        assert_eq!(
            (hop.vswitch_id, hop.addr, hop.havip_id),
            (3, [10, 0, 1, 100], 9)
        );
    }

    #[test]
    fn host_bits_are_cleared_and_zero_and_full_lengths_work() {
        let [((_, p), _), _] = entries(&route([192, 168, 10, 77], 24));
        assert_eq!(p.addr, [192, 168, 10, 0]);
        let [((len, p), _), _] = entries(&route([8, 8, 8, 8], 0));
        assert_eq!((len, p.addr), (64, [0; 4]));
        let [((len, p), _), _] = entries(&route([8, 8, 8, 8], 32));
        assert_eq!((len, p.addr), (96, [8, 8, 8, 8]));
    }
}
