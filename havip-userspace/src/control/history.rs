//! Owner history and the event stream.
//!
//! Every committed owner change (a claim recorded by the owner recorder, an
//! adoption, SetInitialOwner, a forced unassociate, a delete that clears an
//! owner) appends an [`OwnerChange`] to the HaVip's `history` record in the
//! same transaction, keeping the last [`HISTORY_LIMIT`]. After the commit
//! the changes are published on the agent's [`Event`] broadcast channel,
//! with the API changes and the refused claims.

use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::model::{
    Change, Mutation, ObservedOwner, Op, OwnerChange, OwnerTrigger, Record, RecordKind, State,
    HISTORY_LIMIT,
};

/// Events buffered per subscriber; a slower one misses events and gets
/// [`Event::Lagged`] instead of holding the agent back.
pub const EVENT_BUFFER: usize = 256;

/// One event of `GET /v1/events` (one JSON line each).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A HaVip's owner changed (durably recorded).
    OwnerChanged(OwnerChange),
    /// The data plane refused an ARP claim.
    ClaimRefused {
        time: String,
        address: String,
        vswitch: u32,
        ifindex: u32,
        mac: String,
        reason: String,
    },
    /// An API operation was committed.
    ApiChange {
        time: String,
        op: String,
        subject: Option<String>,
    },
    /// This subscriber was too slow: `missed` events were dropped for it.
    Lagged { missed: u64 },
    /// Sent when nothing else was, so idle streams stay open.
    KeepAlive,
}

impl Event {
    /// One line of text for `havipctl events`.
    pub fn text(&self) -> String {
        match self {
            Event::OwnerChanged(c) => {
                format!("{} owner_changed havip={} {}", c.time, c.havip, c.summary())
            }
            Event::ClaimRefused {
                time,
                address,
                vswitch,
                ifindex,
                mac,
                reason,
            } => format!(
                "{time} claim_refused address={address} vswitch={vswitch} ifindex={ifindex} mac={mac} reason={reason}"
            ),
            Event::ApiChange { time, op, subject } => format!(
                "{time} api_change op={op} subject={}",
                subject.as_deref().unwrap_or("-")
            ),
            Event::Lagged { missed } => format!("lagged: {missed} events missed"),
            Event::KeepAlive => "keepalive".to_owned(),
        }
    }
}

/// The current wall-clock time, RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

/// `secs` since the epoch (UTC) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn rfc3339(secs: u64, millis: u32) -> String {
    format!("{}.{millis:03}Z", utc_date_time(secs))
}

/// `secs` since the epoch (UTC) as `YYYY-MM-DDTHH:MM:SSZ` (whole seconds).
pub fn rfc3339_secs(secs: u64) -> String {
    format!("{}Z", utc_date_time(secs))
}

/// `secs` since the epoch (UTC) as `YYYY-MM-DDTHH:MM:SS`.
fn utc_date_time(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm), days since 1970-01-01.
    let z = i64::try_from(days).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The trigger of an API operation's owner changes.
pub(super) fn trigger_of(op: &Op) -> OwnerTrigger {
    match op {
        Op::RecordOwner(_) => OwnerTrigger::Claim,
        _ => OwnerTrigger::Api,
    }
}

/// The operation's wire name (`create_havip`, ...).
pub(super) fn op_name(op: &Op) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.get("op").and_then(|n| n.as_str().map(str::to_owned)))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn member_of(state: &State, havip: &str, owner: Option<&ObservedOwner>) -> Option<String> {
    let o = owner.filter(|o| o.has_owner())?;
    let h = state.havips.get(havip)?;
    state.member_with_mac(h, o.mac).map(str::to_owned)
}

fn same(a: Option<&ObservedOwner>, b: Option<&ObservedOwner>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.epoch == b.epoch && a.ifindex == b.ifindex && a.mac == b.mac,
        (None, None) => true,
        _ => false,
    }
}

/// Appends to `changes` (validated against `state`, in order, not yet
/// applied) the history records of the owner changes they make; returns
/// those owner changes. A deleted HaVip loses its history.
pub(super) fn extend(
    state: &State,
    changes: &mut [Change],
    trigger: OwnerTrigger,
    host: Option<&str>,
    time: &str,
) -> Vec<OwnerChange> {
    let mut out = Vec::new();
    for change in changes.iter_mut() {
        // Owners as this change's earlier mutations left them.
        let mut owners: BTreeMap<String, Option<ObservedOwner>> = BTreeMap::new();
        let mut lists: BTreeMap<String, Option<Vec<OwnerChange>>> = BTreeMap::new();
        for m in &change.mutations {
            let (havip, new) = match m {
                Mutation::Put(Record::Owner { havip, owner }) => (havip, Some(*owner)),
                Mutation::Delete(k) if k.kind == RecordKind::Owner => (&k.id, None),
                Mutation::Delete(k) if k.kind == RecordKind::HaVip => {
                    if state.history.contains_key(&k.id) {
                        lists.insert(k.id.clone(), None);
                    }
                    continue;
                }
                _ => continue,
            };
            let old = owners
                .get(havip)
                .copied()
                .unwrap_or_else(|| state.owners.get(havip).copied());
            owners.insert(havip.clone(), new);
            if same(old.as_ref(), new.as_ref()) {
                continue;
            }
            if !new.as_ref().is_some_and(ObservedOwner::has_owner)
                && !old.as_ref().is_some_and(ObservedOwner::has_owner)
            {
                continue;
            }
            let entry = OwnerChange {
                havip: havip.clone(),
                epoch: new.or(old).map_or(0, |o| o.epoch),
                previous_member: member_of(state, havip, old.as_ref()),
                member: member_of(state, havip, new.as_ref()),
                host: host.map(str::to_owned),
                time: time.to_owned(),
                trigger,
            };
            out.push(entry.clone());
            if let Some(list) = lists
                .entry(havip.clone())
                .or_insert_with(|| Some(state.history.get(havip).cloned().unwrap_or_default()))
            {
                list.push(entry);
                let excess = list.len().saturating_sub(HISTORY_LIMIT);
                list.drain(..excess);
            }
        }
        for (havip, list) in lists {
            match list {
                Some(entries) => change.put(Record::History { havip, entries }),
                None => change.delete(RecordKind::History, havip),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_767_225_599, 999), "2025-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_secs(1_767_225_599), "2025-12-31T23:59:59Z");
    }
}
