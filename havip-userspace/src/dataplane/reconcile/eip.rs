//! The EIP part of the reconciler: `EIPS` (EIP → HaVip, DNAT) and
//! `EIP_SNAT` (HaVip → EIP, SNAT) made equal to the associated EIPs of the
//! desired state. An EIP whose HaVip is not in the desired state is left
//! out. Runs on every reconcile, so (un)associating takes effect with the
//! next pass; SNAT entries go first on removal and last on addition, so a
//! HaVip never sends from an EIP that no longer comes back to it.

use std::collections::{BTreeMap, BTreeSet};

use havip_common::{names, EipEntry, EipSnatEntry, HavipKey};

use super::{put_if_changed, remove_unwanted, ReconcileError, ReconcileReport};
use crate::dataplane::{desired::Desired, maps::Maps};

/// The two maps' desired content.
fn wanted(
    desired: &Desired,
) -> (
    BTreeMap<[u8; 4], EipEntry>,
    BTreeMap<HavipKey, EipSnatEntry>,
) {
    let havips: BTreeSet<(HavipKey, u32)> = desired.havips.iter().map(|h| (h.key, h.id)).collect();
    let mut dnat = BTreeMap::new();
    let mut snat = BTreeMap::new();
    let mut eips = desired.eips.clone();
    eips.sort();
    for e in eips
        .iter()
        .filter(|e| havips.contains(&(e.havip, e.havip_id)))
    {
        dnat.insert(
            e.address,
            EipEntry {
                vswitch_id: e.havip.vswitch_id,
                havip: e.havip.addr,
                havip_id: e.havip_id,
            },
        );
        // One EIP per HaVip (the control plane enforces it); should a
        // state hold two, the smallest address is the SNAT source.
        snat.entry(e.havip).or_insert(EipSnatEntry {
            eip: e.address,
            havip_id: e.havip_id,
        });
    }
    (dnat, snat)
}

/// Makes `EIPS` and `EIP_SNAT` equal to the associated EIPs of `desired`.
pub(super) fn reconcile_eips(
    maps: &mut Maps,
    desired: &Desired,
    report: &mut ReconcileReport,
) -> Result<(), ReconcileError> {
    let (want_dnat, want_snat) = wanted(desired);

    report.eips_removed += remove_unwanted(&mut maps.eip_snat, names::EIP_SNAT, |k| {
        want_snat.contains_key(k)
    })?;
    report.eips_removed +=
        remove_unwanted(&mut maps.eips, names::EIPS, |a| want_dnat.contains_key(a))?;
    for (addr, entry) in &want_dnat {
        report.eips_set += put_if_changed(&mut maps.eips, names::EIPS, addr, entry)?;
    }
    for (key, entry) in &want_snat {
        report.eips_set += put_if_changed(&mut maps.eip_snat, names::EIP_SNAT, key, entry)?;
    }
    Ok(())
}
