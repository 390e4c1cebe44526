//! Reads `EVENTS` (owner changes, refused claims) from the ring buffer.

use aya::maps::{MapData, RingBuf};
use havip_common::{event_kind, DropReason, Event};
use tokio::io::unix::AsyncFd;

/// A decoded event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataplaneEvent {
    OwnerChanged(Event),
    ClaimRefused {
        event: Event,
        reason: Option<DropReason>,
    },
    Unknown(Event),
}

impl DataplaneEvent {
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < core::mem::size_of::<Event>() {
            return None;
        }
        let event: Event = bytemuck::pod_read_unaligned(&bytes[..core::mem::size_of::<Event>()]);
        Some(match event.kind {
            event_kind::OWNER_CHANGED => Self::OwnerChanged(event),
            event_kind::CLAIM_REFUSED => Self::ClaimRefused {
                event,
                reason: DropReason::from_u32(event.reason),
            },
            _ => Self::Unknown(event),
        })
    }
}

/// Drains the ring buffer without waiting.
pub fn drain(ring: &mut RingBuf<MapData>, mut sink: impl FnMut(DataplaneEvent)) {
    while let Some(item) = ring.next() {
        if let Some(event) = DataplaneEvent::decode(&item) {
            sink(event);
        }
    }
}

/// How often the consumer drains `EVENTS` without being woken: the program
/// commits records with `BPF_RB_NO_WAKEUP` (a wake-up per record cost the
/// claiming CPU ~12 us) and wakes the agent only when the ring is a quarter
/// full, so the agent learns of an owner change within this period.
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);

/// Hands every event to `sink` until the ring buffer's fd fails: drains
/// on each wake-up (the ring past its fill threshold) and every
/// [`POLL_INTERVAL`] otherwise.
///
/// # Errors
/// The ring buffer's fd cannot be registered with the reactor.
pub async fn consume(
    ring: RingBuf<MapData>,
    mut sink: impl FnMut(DataplaneEvent),
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd and lives inside the AsyncFd, so the
    // fd stays open for as long as it is registered.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)?;
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ready = fd.readable_mut() => {
                let mut guard = ready?;
                drain(guard.get_inner_mut(), &mut sink);
                guard.clear_ready();
            }
            _ = tick.tick() => drain(fd.get_mut(), &mut sink),
        }
    }
}
