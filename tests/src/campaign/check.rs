//! Invariant checker: what the data plane may do with any frame, stated in
//! terms of the configuration (`Desired`) and `OWNERS` before the frame, not
//! of a list of outcome names, so new `Handled`/`DropReason` variants keep
//! the checks valid.

use std::collections::BTreeMap;

use havip::dataplane::{Desired, DesiredHavip, DesiredPort};
use havip_common::{owner_flags, port_flags, HavipKey, OwnerEntry, TrafficCounter};

use crate::{action, Counter};

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
const ETH_P_8021Q: [u8; 2] = [0x81, 0x00];
const ETH_P_8021AD: [u8; 2] = [0x88, 0xa8];

/// What the checker knows of the configuration.
#[derive(Clone, Debug)]
pub struct World {
    ports: Vec<DesiredPort>,
    havips: Vec<DesiredHavip>,
    hold_ns: u64,
}

impl World {
    pub fn new(desired: &Desired) -> Self {
        Self {
            ports: desired.ports.clone(),
            havips: desired.havips.clone(),
            hold_ns: desired.config.hold_ns,
        }
    }

    /// Every HaVip's `OWNERS` key.
    pub fn keys(&self) -> Vec<HavipKey> {
        self.havips.iter().map(|h| h.key).collect()
    }

    fn port(&self, ifindex: u32) -> Option<&DesiredPort> {
        self.ports.iter().find(|p| p.ifindex == ifindex)
    }

    fn havip(&self, key: &HavipKey) -> Option<&DesiredHavip> {
        self.havips.iter().find(|h| h.key == *key)
    }

    fn bound(&self, key: &HavipKey, ifindex: u32, mac: [u8; 6]) -> bool {
        self.havip(key).is_some_and(|h| {
            h.bindings
                .iter()
                .any(|b| b.ifindex == ifindex && b.mac == mac)
        })
    }
}

/// The model's view of a frame's headers (one optional 802.1Q/802.1ad tag,
/// as the program parses them).
struct Parsed {
    tagged: bool,
    ether_type: [u8; 2],
    l3: usize,
}

fn parse(frame: &[u8]) -> Option<Parsed> {
    let et = |at: usize| Some([*frame.get(at)?, *frame.get(at + 1)?]);
    let outer = et(12)?;
    if outer == ETH_P_8021Q || outer == ETH_P_8021AD {
        return Some(Parsed {
            tagged: true,
            ether_type: et(16)?,
            l3: 18,
        });
    }
    Some(Parsed {
        tagged: false,
        ether_type: outer,
        l3: 14,
    })
}

/// IPv4 destination if the header is whole with version 4 and IHL >= 5.
fn ipv4_dst(frame: &[u8], p: &Parsed) -> Option<[u8; 4]> {
    let h = frame.get(p.l3..p.l3 + 20)?;
    (p.ether_type == ETH_P_IP && h[0] >> 4 == 4 && h[0] & 0x0f >= 5)
        .then(|| [h[16], h[17], h[18], h[19]])
}

struct Arp {
    oper: u16,
    sha: [u8; 6],
    spa: [u8; 4],
    tpa: [u8; 4],
}

/// Ethernet/IPv4 ARP, whole.
fn arp(frame: &[u8], p: &Parsed) -> Option<Arp> {
    let a = frame.get(p.l3..p.l3 + 28)?;
    let ok = p.ether_type == ETH_P_ARP && a[0..6] == [0, 1, 0x08, 0x00, 6, 4];
    ok.then(|| Arp {
        oper: u16::from_be_bytes([a[6], a[7]]),
        sha: [a[8], a[9], a[10], a[11], a[12], a[13]],
        spa: [a[14], a[15], a[16], a[17]],
        tpa: [a[24], a[25], a[26], a[27]],
    })
}

/// One frame's run through `BPF_PROG_TEST_RUN` and the state around it.
pub struct Observation<'a> {
    pub ingress_ifindex: u32,
    pub input: &'a [u8],
    pub verdict: u32,
    pub output: &'a [u8],
    pub moves: &'a [(Counter, TrafficCounter)],
    pub owners_before: &'a [(HavipKey, OwnerEntry)],
    pub owners_after: &'a [(HavipKey, OwnerEntry)],
}

/// An owner change the kernel must report as an `OWNER_CHANGED` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerChange {
    pub key: HavipKey,
    pub epoch: u64,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// Checks frames one by one; keeps what it learned and what it counted.
#[derive(Default)]
pub struct Checker {
    /// The verdict each outcome (counter) gave the first time it moved.
    verdicts: Vec<(Counter, u32)>,
    /// Frames each invariant was checked on.
    pub checked: BTreeMap<&'static str, u64>,
    /// Frames per counter that moved.
    pub outcomes: BTreeMap<String, u64>,
    /// Frames per verdict.
    pub verdict_counts: BTreeMap<String, u64>,
    /// Forwarded frames whose owner sits behind the ingress port.
    pub hairpins: u64,
    /// Owner changes still to be matched with `OWNER_CHANGED` events.
    pub pending_events: Vec<OwnerChange>,
}

impl Checker {
    fn tick(&mut self, invariant: &'static str) {
        *self.checked.entry(invariant).or_default() += 1;
    }

    /// Checks one frame; returns every violated invariant, described.
    pub fn check(&mut self, world: &World, o: &Observation<'_>) -> Vec<String> {
        let mut errors = Vec::new();
        *self
            .verdict_counts
            .entry(action::name(o.verdict))
            .or_default() += 1;

        // Every frame is counted exactly once, with its length.
        self.tick("counted_once");
        let packets: u64 = o.moves.iter().map(|(_, d)| d.packets).sum();
        let bytes: u64 = o.moves.iter().map(|(_, d)| d.bytes).sum();
        let outcome = match o.moves {
            [(c, d)] if packets == 1 && bytes == o.input.len() as u64 && d.packets == 1 => {
                *self.outcomes.entry(c.name()).or_default() += 1;
                Some(*c)
            }
            _ => {
                errors.push(format!(
                    "counters moved by {packets} frames / {bytes} bytes over {} slots \
                     (want exactly one slot, +1 frame, +{} bytes): {:?}",
                    o.moves.len(),
                    o.input.len(),
                    o.moves
                ));
                None
            }
        };

        // Only the three verdicts the program is written to return.
        if ![action::PASS, action::DROP, action::REDIRECT].contains(&o.verdict) {
            errors.push(format!("verdict {}", action::name(o.verdict)));
        }

        if let Some(c) = outcome {
            // A drop reason always means XDP_DROP; every XDP_DROP is counted
            // either under a drop reason or under an outcome that consumes
            // the frame (a claim, an absorbed probe).
            self.tick("outcome_verdict_stable");
            if matches!(c, Counter::Drop(_)) && o.verdict != action::DROP {
                errors.push(format!(
                    "{} counted with {}",
                    c.name(),
                    action::name(o.verdict)
                ));
            }
            match self.verdicts.iter().find(|(k, _)| *k == c) {
                Some((_, v)) if *v != o.verdict => errors.push(format!(
                    "{} counted with {} here but with {} before",
                    c.name(),
                    action::name(o.verdict),
                    action::name(*v)
                )),
                Some(_) => {}
                None => self.verdicts.push((c, o.verdict)),
            }
        }

        let parsed = parse(o.input);
        let port = world.port(o.ingress_ifindex);
        let owner_before = |key: &HavipKey| {
            o.owners_before
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, e)| *e)
        };

        match o.verdict {
            action::PASS => {
                self.tick("passed_untouched");
                if o.output != o.input {
                    errors.push("XDP_PASS with a modified frame".into());
                }
            }
            action::DROP => self.tick("drop_counted"),
            action::REDIRECT => {
                if let Err(e) = self.check_redirect(world, o, parsed.as_ref(), port, owner_before) {
                    errors.push(e);
                }
            }
            _ => {}
        }

        // Owners: every owner is bound; a change comes only from an
        // authorised claim, as the new owner, epoch + 1.
        self.tick("owners_bound");
        for (key, after) in o.owners_after {
            if after.has_owner() && !world.bound(key, after.ifindex, after.mac) {
                errors.push(format!(
                    "OWNERS[{key:?}] = ifindex {} mac {:02x?}: not a binding of that HaVip",
                    after.ifindex, after.mac
                ));
            }
        }
        let claim = parsed.as_ref().and_then(|p| {
            let port = port?;
            let a = arp(o.input, p)?;
            let key = HavipKey {
                vswitch_id: port.vswitch_id,
                addr: a.spa,
            };
            let havip = world.havip(&key)?;
            let authorised = port.flags & port_flags::INSTANCE != 0
                && o.input[6..12] == a.sha
                && world.bound(&key, o.ingress_ifindex, a.sha)
                && (a.oper == 2 || (a.oper == 1 && a.spa == a.tpa));
            authorised.then_some((key, havip.id, a.sha, p.tagged))
        });
        let changed: Vec<(HavipKey, OwnerEntry, OwnerEntry)> = o
            .owners_after
            .iter()
            .filter_map(|(k, after)| {
                let before = owner_before(k).unwrap_or_default();
                (before != *after).then_some((*k, before, *after))
            })
            .collect();
        for (key, before, after) in &changed {
            self.tick("owner_change_authorised");
            let want = claim.and_then(|(k, id, mac, _)| {
                (k == *key).then_some(OwnerEntry {
                    epoch: before.epoch + 1,
                    changed_ns: after.changed_ns,
                    havip_id: id,
                    ifindex: o.ingress_ifindex,
                    mac,
                    flags: owner_flags::BY_CLAIM,
                    ..OwnerEntry::default()
                })
            });
            if want != Some(*after) || o.verdict != action::DROP {
                errors.push(format!(
                    "OWNERS[{key:?}] changed from {before:?} to {after:?} by a frame that is not \
                     an authorised claim for it (verdict {}, want {want:?})",
                    action::name(o.verdict)
                ));
            }
            self.pending_events.push(OwnerChange {
                key: *key,
                epoch: after.epoch,
                ifindex: after.ifindex,
                mac: after.mac,
            });
        }
        // With no hold time an untagged authorised claim always takes
        // effect (tagged ones may be refused by a VLAN rule).
        if let Some((key, _, mac, false)) = claim {
            if world.hold_ns == 0 {
                self.tick("claim_takes_effect");
                let now = o.owners_after.iter().find(|(k, _)| *k == key);
                if !now.is_some_and(|(_, e)| e.ifindex == o.ingress_ifindex && e.mac == mac) {
                    errors.push(format!(
                        "authorised claim for {key:?} left the owner at {now:?}"
                    ));
                }
            }
        }
        errors
    }

    /// A redirect is either a forward to the owner or a proxy ARP reply.
    fn check_redirect(
        &mut self,
        world: &World,
        o: &Observation<'_>,
        parsed: Option<&Parsed>,
        port: Option<&DesiredPort>,
        owner_before: impl Fn(&HavipKey) -> Option<OwnerEntry>,
    ) -> Result<(), String> {
        let (Some(p), Some(port)) = (parsed, port) else {
            return Err("XDP_REDIRECT of a frame from an unconfigured port or unparsable".into());
        };
        if let Some(dst) = ipv4_dst(o.input, p) {
            self.tick("redirect_to_owner");
            let key = HavipKey {
                vswitch_id: port.vswitch_id,
                addr: dst,
            };
            let Some(owner) = owner_before(&key).filter(|e| e.has_owner()) else {
                return Err(format!(
                    "XDP_REDIRECT of IPv4 to {dst:?}: not a HaVip with an owner in vSwitch {}",
                    port.vswitch_id
                ));
            };
            if o.input[0] & 1 != 0 {
                return Err("XDP_REDIRECT of IPv4 with a group destination MAC".into());
            }
            let mut want = o.input.to_vec();
            want[0..6].copy_from_slice(&owner.mac);
            want[6..12].copy_from_slice(&port.gateway_mac);
            if o.output != want {
                return Err(format!(
                    "forwarded frame is not the input with dst MAC = owner {:02x?} and src MAC = \
                     gateway {:02x?}",
                    owner.mac, port.gateway_mac
                ));
            }
            if owner.ifindex == o.ingress_ifindex {
                self.hairpins += 1;
            }
            return Ok(());
        }
        if let Some(a) = arp(o.input, p) {
            self.tick("redirect_proxy_arp");
            let key = HavipKey {
                vswitch_id: port.vswitch_id,
                addr: a.tpa,
            };
            let Some(havip) = world.havip(&key).filter(|_| a.oper == 1) else {
                return Err(format!(
                    "XDP_REDIRECT of ARP op {} for {:?}: not a request for a HaVip of vSwitch {}",
                    a.oper, a.tpa, port.vswitch_id
                ));
            };
            let vmac = havip.virtual_mac;
            let mut want = o.input.to_vec();
            let l3 = p.l3;
            want[0..6].copy_from_slice(&a.sha);
            want[6..12].copy_from_slice(&vmac);
            want[l3 + 6..l3 + 8].copy_from_slice(&2u16.to_be_bytes());
            want[l3 + 8..l3 + 14].copy_from_slice(&vmac);
            want[l3 + 14..l3 + 18].copy_from_slice(&a.tpa);
            want[l3 + 18..l3 + 24].copy_from_slice(&a.sha);
            want[l3 + 24..l3 + 28].copy_from_slice(&a.spa);
            if o.output != want {
                return Err(format!(
                    "proxy ARP reply is not the request turned into a reply from {vmac:02x?} \
                     back to the requester"
                ));
            }
            return Ok(());
        }
        Err("XDP_REDIRECT of a frame that is neither IPv4 nor ARP".into())
    }

    /// Matches drained `OWNER_CHANGED` events with the changes seen, in
    /// order; clears what matched.
    pub fn match_events(&mut self, events: &[OwnerChange]) -> Result<(), String> {
        for _ in events {
            self.tick("owner_change_reported");
        }
        let seen = std::mem::take(&mut self.pending_events);
        if seen != events {
            return Err(format!(
                "OWNER_CHANGED events {events:?} do not match the owner changes seen {seen:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The checker must catch what it claims to catch: hand-made observations
    //! of a misbehaving data plane.

    use havip::dataplane::{Desired, DesiredBinding, DesiredHavip, DesiredPort};
    use havip_common::{port_flags, Handled, HavipKey, OwnerEntry, TrafficCounter};

    use super::{Checker, Observation, World};
    use crate::{action, control_owner, Counter};

    const GW: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const A: [u8; 6] = [2, 0, 0, 0, 0xa, 1];
    const HAVIP: [u8; 4] = [10, 0, 1, 100];
    const KEY: HavipKey = HavipKey {
        vswitch_id: 1,
        addr: HAVIP,
    };

    fn world() -> World {
        let a = DesiredBinding { ifindex: 5, mac: A };
        World::new(&Desired {
            ports: vec![DesiredPort {
                ifindex: 5,
                vswitch_id: 1,
                vpc_id: 1,
                flags: port_flags::INSTANCE,
                gateway_mac: GW,
            }],
            havips: vec![DesiredHavip {
                key: KEY,
                vpc_id: 1,
                id: 1,
                virtual_mac: havip_common::virtual_mac(HAVIP),
                bindings: vec![a],
                initial_owner: Some(a),
            }],
            config: Default::default(),
            ..Desired::default()
        })
    }

    fn owner() -> OwnerEntry {
        control_owner(1, 1, 5, A)
    }

    /// Unicast IPv4 to `dst` from ifindex 5.
    fn ipv4_to(dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 0x99, 2, 0, 0, 0, 0xc, 1, 0x08, 0x00, 0x45, 0];
        f.extend_from_slice(&[0; 14]);
        f.extend_from_slice(&dst);
        f
    }

    fn check(input: &[u8], verdict: u32, output: &[u8], counter: Counter) -> Vec<String> {
        let moves = [(
            counter,
            TrafficCounter {
                packets: 1,
                bytes: input.len() as u64,
            },
        )];
        let owners = [(KEY, owner())];
        Checker::default().check(
            &world(),
            &Observation {
                ingress_ifindex: 5,
                input,
                verdict,
                output,
                moves: &moves,
                owners_before: &owners,
                owners_after: &owners,
            },
        )
    }

    #[test]
    fn a_correct_forward_passes() {
        let input = ipv4_to(HAVIP);
        let mut output = input.clone();
        output[0..6].copy_from_slice(&A);
        output[6..12].copy_from_slice(&GW);
        let errors = check(&input, action::REDIRECT, &output, Handled::Forwarded.into());
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn wrong_rewrites_and_redirects_are_caught() {
        let input = ipv4_to(HAVIP);
        // Forwarded with the input's MACs (not the owner's).
        let e = check(&input, action::REDIRECT, &input, Handled::Forwarded.into());
        assert!(e.iter().any(|e| e.contains("dst MAC = owner")), "{e:?}");
        // Redirected while not addressed to a HaVip.
        let other = ipv4_to([10, 0, 1, 50]);
        let e = check(&other, action::REDIRECT, &other, Handled::Forwarded.into());
        assert!(e.iter().any(|e| e.contains("not a HaVip")), "{e:?}");
        // Passed but modified.
        let mut changed = input.clone();
        changed[20] ^= 1;
        let e = check(&input, action::PASS, &changed, Handled::Passed.into());
        assert!(e.iter().any(|e| e.contains("modified")), "{e:?}");
        // A drop reason counted on a passed frame.
        let e = check(
            &input,
            action::PASS,
            &input,
            havip_common::DropReason::NoOwner.into(),
        );
        assert!(e.iter().any(|e| e.contains("counted with")), "{e:?}");
    }

    #[test]
    fn uncounted_frames_and_unauthorised_owner_changes_are_caught() {
        let input = ipv4_to(HAVIP);
        let owners = [(KEY, owner())];
        let mut stolen = owner();
        stolen.epoch += 1;
        stolen.mac = [2, 0x66, 0x66, 0x66, 0x66, 0x66];
        let after = [(KEY, stolen)];
        let errors = Checker::default().check(
            &world(),
            &Observation {
                ingress_ifindex: 5,
                input: &input,
                verdict: action::DROP,
                output: &input,
                moves: &[],
                owners_before: &owners,
                owners_after: &after,
            },
        );
        assert!(
            errors.iter().any(|e| e.contains("counters moved by 0")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("not a binding")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("not an authorised claim")),
            "{errors:?}"
        );
    }
}
