//! `HANDLED` / `DROPS` snapshots and their differences.

use havip::dataplane::{stats, Dataplane};
use havip_common::{DropReason, Handled, TrafficCounter};

/// One slot of `HANDLED` or `DROPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    Handled(Handled),
    Drop(DropReason),
}

impl Counter {
    pub fn name(self) -> String {
        match self {
            Counter::Handled(h) => format!("HANDLED[{}]", h.name()),
            Counter::Drop(d) => format!("DROPS[{}]", d.name()),
        }
    }
}

impl From<Handled> for Counter {
    fn from(h: Handled) -> Self {
        Counter::Handled(h)
    }
}

impl From<DropReason> for Counter {
    fn from(d: DropReason) -> Self {
        Counter::Drop(d)
    }
}

/// Snapshot of every `HANDLED` and `DROPS` counter, summed over CPUs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters(Vec<(Counter, TrafficCounter)>);

impl Counters {
    pub fn read(dp: &Dataplane) -> Self {
        let mut all: Vec<(Counter, TrafficCounter)> = stats::handled(&dp.maps)
            .into_iter()
            .map(|(h, c)| (Counter::Handled(h), c))
            .collect();
        all.extend(
            stats::drops(&dp.maps)
                .into_iter()
                .map(|(d, c)| (Counter::Drop(d), c)),
        );
        Self(all)
    }

    pub fn get(&self, counter: impl Into<Counter>) -> TrafficCounter {
        let counter = counter.into();
        self.0
            .iter()
            .find(|(c, _)| *c == counter)
            .map(|(_, v)| *v)
            .unwrap_or_default()
    }

    /// Counters that moved since `before`, with how much.
    pub fn since(&self, before: &Counters) -> Vec<(Counter, TrafficCounter)> {
        self.0
            .iter()
            .filter_map(|(c, now)| {
                let then = before.get(*c);
                let d = TrafficCounter {
                    packets: now.packets - then.packets,
                    bytes: now.bytes - then.bytes,
                };
                (d != TrafficCounter::default()).then_some((*c, d))
            })
            .collect()
    }
}

pub(crate) fn describe_moves(moves: &[(Counter, TrafficCounter)]) -> String {
    if moves.is_empty() {
        return "no counter moved".into();
    }
    moves
        .iter()
        .map(|(c, d)| format!("{} +{} pkts/+{} bytes", c.name(), d.packets, d.bytes))
        .collect::<Vec<_>>()
        .join(", ")
}
