//! State → [`Desired`]: what the data-plane maps should hold, derived from
//! the control-plane state only (the reconciler turns it into map updates).
//!
//! - every ENI's host interface is a port with `INSTANCE` flags, in the ENI's
//!   vSwitch, with that vSwitch's gateway MAC;
//! - every uplink is a port with `UPLINK` flags;
//! - every HaVip is keyed by (vSwitch data-plane id, address), has id = its
//!   slot and its virtual MAC; its bindings are, for each bound instance, the
//!   instance's ENIs in the HaVip's vSwitch (primary first, then by id), and
//!   for each bound ENI the ENI itself, as (host ifindex, ENI MAC);
//! - `initial_owner` is the first binding of the initial owner, if set;
//! - every route entry whose VPC has a vSwitch and whose next-hop HaVip
//!   exists is a route of that VPC's data-plane id to the HaVip's key;
//! - the data-plane VPC id of a port or HaVip is the smallest data-plane id
//!   of the VPC's vSwitches. vSwitch ids are unique, so two VPCs never share
//!   one; deleting a VPC's smallest vSwitch (possible only once it is empty)
//!   moves the VPC to its next id, and the reconciler rewrites the ports;
//! - everything is derived by name from the state as it is now: after
//!   DeleteEni or ModifyEni the old interface is no port of that ENI any
//!   more, and a tap name reused by another ENI or an uplink takes that
//!   resource's vSwitch, nothing of the old one.
//!
//! # Missing interfaces
//! [`desired`] is strict: an ENI or uplink whose host interface does not
//! exist is an error naming it ([`DesiredError::MissingInterface`]).
//! [`desired_lenient`] instead leaves such ports and bindings out and
//! returns them as warnings, so one vanished tap does not stop the rest from
//! being reconciled. The agent chooses.

use std::{collections::HashMap, fmt};

use havip_common::{port_flags, virtual_mac, DataplaneConfig, HavipKey};
use thiserror::Error;

use crate::{
    dataplane::desired::{
        Desired, DesiredBinding, DesiredEip, DesiredHavip, DesiredPort, DesiredRoute,
    },
    model::{BindingKind, Eni, State},
};

/// Who uses a host interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InterfaceUser {
    Eni(String),
    Uplink,
}

impl fmt::Display for InterfaceUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InterfaceUser::Eni(id) => write!(f, "ENI {id:?}"),
            InterfaceUser::Uplink => f.write_str("the uplink"),
        }
    }
}

/// A host interface named in the state that does not exist on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingInterface {
    pub interface: String,
    pub used_by: InterfaceUser,
}

impl fmt::Display for MissingInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interface {:?} of {} does not exist on this host",
            self.interface, self.used_by
        )
    }
}

/// Why the desired state could not be derived.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DesiredError {
    #[error("{0}")]
    MissingInterface(MissingInterface),
    /// The state refers to a vSwitch it does not hold (never happens for
    /// states built by the validation core).
    #[error("{what} refers to unknown vSwitch {vswitch:?}")]
    UnknownVSwitch { what: String, vswitch: String },
}

/// Derives the maps' desired content; strict about host interfaces.
///
/// # Errors
/// [`DesiredError::MissingInterface`] for the first ENI/uplink interface
/// `resolve_ifindex` does not know.
pub fn desired(
    state: &State,
    resolve_ifindex: &dyn Fn(&str) -> Option<u32>,
    config: DataplaneConfig,
) -> Result<Desired, DesiredError> {
    let (d, missing) = build(state, resolve_ifindex, config)?;
    match missing.into_iter().next() {
        Some(m) => Err(DesiredError::MissingInterface(m)),
        None => Ok(d),
    }
}

/// Like [`desired`], but leaves out the ports and bindings of missing
/// interfaces and reports them.
///
/// # Errors
/// Only [`DesiredError::UnknownVSwitch`] (inconsistent state).
pub fn desired_lenient(
    state: &State,
    resolve_ifindex: &dyn Fn(&str) -> Option<u32>,
    config: DataplaneConfig,
) -> Result<(Desired, Vec<MissingInterface>), DesiredError> {
    build(state, resolve_ifindex, config)
}

/// [`desired_lenient`] for one host of several: ENIs whose `host` is
/// another host are neither ports nor bindings here (their HaVips still
/// are, for proxy ARP and tunnelling to a remote owner).
///
/// # Errors
/// As [`desired_lenient`].
pub fn desired_for_host(
    state: &State,
    resolve_ifindex: &dyn Fn(&str) -> Option<u32>,
    config: DataplaneConfig,
    host: &str,
) -> Result<(Desired, Vec<MissingInterface>), DesiredError> {
    build_for(state, resolve_ifindex, config, Some(host))
}

/// Whether `eni` is on this host (`host`: `None` = single host).
pub fn eni_is_local(eni: &Eni, host: Option<&str>) -> bool {
    match (eni.host.as_deref(), host) {
        (Some(e), Some(h)) => e == h,
        _ => true,
    }
}

fn build(
    state: &State,
    resolve: &dyn Fn(&str) -> Option<u32>,
    config: DataplaneConfig,
) -> Result<(Desired, Vec<MissingInterface>), DesiredError> {
    build_for(state, resolve, config, None)
}

fn build_for(
    state: &State,
    resolve: &dyn Fn(&str) -> Option<u32>,
    config: DataplaneConfig,
    host: Option<&str>,
) -> Result<(Desired, Vec<MissingInterface>), DesiredError> {
    // VPC → data-plane id (smallest vSwitch dp_id of the VPC).
    let mut vpc_ids: HashMap<&str, u32> = HashMap::new();
    for v in state.vswitches.values() {
        let e = vpc_ids.entry(v.vpc.as_str()).or_insert(v.dp_id);
        *e = (*e).min(v.dp_id);
    }
    let vpc_of =
        |vsw: &crate::model::VSwitch| vpc_ids.get(vsw.vpc.as_str()).copied().unwrap_or(vsw.dp_id);
    let mut missing = Vec::new();
    let mut ifindex: HashMap<&str, u32> = HashMap::new();
    let mut ports = Vec::new();
    let vswitch = |what: String, id: &str| {
        state
            .vswitches
            .get(id)
            .ok_or_else(|| DesiredError::UnknownVSwitch {
                what,
                vswitch: id.to_owned(),
            })
    };
    for eni in state.enis.values().filter(|e| eni_is_local(e, host)) {
        let vsw = vswitch(format!("ENI {:?}", eni.id), &eni.vswitch)?;
        match resolve(&eni.interface) {
            Some(idx) => {
                ifindex.insert(eni.interface.as_str(), idx);
                ports.push(DesiredPort {
                    ifindex: idx,
                    vswitch_id: vsw.dp_id,
                    vpc_id: vpc_of(vsw),
                    flags: port_flags::INSTANCE,
                    gateway_mac: vsw.gateway_mac.octets(),
                });
            }
            None => missing.push(MissingInterface {
                interface: eni.interface.clone(),
                used_by: InterfaceUser::Eni(eni.id.clone()),
            }),
        }
    }
    for up in state.uplinks.values() {
        let vsw = vswitch(format!("uplink {:?}", up.interface), &up.vswitch)?;
        match resolve(&up.interface) {
            Some(idx) => ports.push(DesiredPort {
                ifindex: idx,
                vswitch_id: vsw.dp_id,
                vpc_id: vpc_of(vsw),
                flags: port_flags::UPLINK,
                gateway_mac: vsw.gateway_mac.octets(),
            }),
            None => missing.push(MissingInterface {
                interface: up.interface.clone(),
                used_by: InterfaceUser::Uplink,
            }),
        }
    }
    ports.sort_by_key(|p| p.ifindex);

    // Instance → its ENIs, primary first, then by id (BTreeMap order).
    let mut enis_of: HashMap<&str, Vec<&Eni>> = HashMap::new();
    for eni in state.enis.values() {
        if let Some(i) = &eni.instance {
            enis_of.entry(i.as_str()).or_default().push(eni);
        }
    }
    for list in enis_of.values_mut() {
        list.sort_by_key(|e| !e.primary);
    }
    // Interface names are per host: an ENI on another host with the name of
    // a local one must not take the local port.
    let binding_of = |eni: &Eni| {
        if !eni_is_local(eni, host) {
            return None;
        }
        ifindex
            .get(eni.interface.as_str())
            .map(|idx| DesiredBinding {
                ifindex: *idx,
                mac: eni.mac.octets(),
            })
    };

    let mut havips = Vec::with_capacity(state.havips.len());
    for h in state.havips.values() {
        let vsw = vswitch(format!("HaVip {:?}", h.id), &h.vswitch)?;
        let octets = h.address.octets();
        // Bindings of each member, in member order.
        let members: Vec<(&str, Vec<DesiredBinding>)> = h
            .bindings
            .iter()
            .map(|m| {
                let enis: Vec<&Eni> = match h.binding_kind {
                    Some(BindingKind::Instance) => enis_of
                        .get(m.as_str())
                        .map(|l| {
                            l.iter()
                                .copied()
                                .filter(|e| e.vswitch == h.vswitch)
                                .collect()
                        })
                        .unwrap_or_default(),
                    Some(BindingKind::Eni) => state.enis.get(m).into_iter().collect(),
                    None => Vec::new(),
                };
                (
                    m.as_str(),
                    enis.into_iter().filter_map(binding_of).collect(),
                )
            })
            .collect();
        let initial_owner = h.initial_owner.as_deref().and_then(|im| {
            members
                .iter()
                .find(|(m, _)| *m == im)
                .and_then(|(_, b)| b.first().copied())
        });
        havips.push(DesiredHavip {
            key: HavipKey {
                vswitch_id: vsw.dp_id,
                addr: octets,
            },
            vpc_id: vpc_of(vsw),
            id: h.slot,
            virtual_mac: virtual_mac(octets),
            bindings: members.into_iter().flat_map(|(_, b)| b).collect(),
            initial_owner,
        });
    }
    havips.sort_by_key(|h| h.id);
    let routes = routes(state, &vpc_ids);
    // EIPs associated with a HaVip: DNAT/SNAT between the two addresses.
    let eips = state
        .eips
        .values()
        .filter_map(|e| {
            let h = state.havips.get(e.havip.as_deref()?)?;
            let vsw = state.vswitches.get(&h.vswitch)?;
            Some(DesiredEip {
                address: e.address.octets(),
                havip: HavipKey {
                    vswitch_id: vsw.dp_id,
                    addr: h.address.octets(),
                },
                havip_id: h.slot,
            })
        })
        .collect();
    Ok((
        Desired {
            ports,
            havips,
            config,
            routes,
            eips,
            ..Desired::default()
        },
        missing,
    ))
}

/// The route entries with a HaVip next hop, by data-plane VPC id. A route
/// whose HaVip or VPC is gone (never in a validated state) is left out.
fn routes(state: &State, vpc_ids: &HashMap<&str, u32>) -> Vec<DesiredRoute> {
    state
        .routes
        .values()
        .filter_map(|r| {
            let h = state.havips.get(&r.next_hop_havip)?;
            let vsw = state.vswitches.get(&h.vswitch)?;
            Some(DesiredRoute {
                vpc_id: *vpc_ids.get(r.vpc.as_str())?,
                addr: r.destination.network().octets(),
                len: r.destination.prefix_len(),
                next_hop: HavipKey {
                    vswitch_id: vsw.dp_id,
                    addr: h.address.octets(),
                },
                havip_id: h.slot,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::model::*;

    /// Members `a` on h1 and `b` on h2, both on an interface named `tap0`.
    fn two_hosts_same_name() -> State {
        let mut s = State::default();
        let ops = [
            Op::CreateVpc(CreateVpc {
                id: "vpc".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
            }),
            Op::CreateVSwitch(CreateVSwitch {
                vni: Some(1001),
                id: "vsw".into(),
                vpc: "vpc".into(),
                cidr: "10.0.1.0/24".parse().unwrap(),
                gateway_mac: "02:00:00:00:00:01".parse().unwrap(),
            }),
        ];
        for op in ops {
            s = apply_to(&s, &op).unwrap();
        }
        for (name, host, mac) in [
            ("a", "h1", "02:00:00:00:0a:01"),
            ("b", "h2", "02:00:00:00:0b:01"),
        ] {
            for op in [
                Op::CreateInstance(CreateInstance {
                    id: format!("i-{name}"),
                    vswitch: "vsw".into(),
                }),
                Op::CreateEni(CreateEni {
                    host: Some(host.into()),
                    id: format!("eni-{name}"),
                    vswitch: "vsw".into(),
                    mac: mac.parse().unwrap(),
                    interface: "tap0".into(),
                    instance: Some(format!("i-{name}")),
                    primary: true,
                }),
            ] {
                s = apply_to(&s, &op).unwrap();
            }
        }
        let h = apply_to(
            &s,
            &Op::CreateHaVip(CreateHaVip {
                id: Some("h".into()),
                vswitch: "vsw".into(),
                address: Some("10.0.1.100".parse().unwrap()),
                ..Default::default()
            }),
        )
        .unwrap();
        let h = apply_to(
            &h,
            &Op::AssociateHaVip(AssociateHaVip {
                havip: "h".into(),
                member: Member::instance("i-a"),
            }),
        )
        .unwrap();
        apply_to(
            &h,
            &Op::AssociateHaVip(AssociateHaVip {
                havip: "h".into(),
                member: Member::instance("i-b"),
            }),
        )
        .unwrap()
    }

    /// Each host binds only its own member to its local `tap0`: the other
    /// host's ENI of the same name never takes the local port.
    #[test]
    fn same_interface_name_on_two_hosts_binds_the_local_eni_only() {
        let s = two_hosts_same_name();
        let resolve = |name: &str| (name == "tap0").then_some(7);
        for (host, mac) in [("h1", "02:00:00:00:0a:01"), ("h2", "02:00:00:00:0b:01")] {
            let (d, missing) =
                desired_for_host(&s, &resolve, DataplaneConfig::default(), host).unwrap();
            assert!(missing.is_empty(), "{missing:?}");
            assert_eq!(d.ports.len(), 1, "{host}: one port, tap0");
            assert_eq!(d.ports[0].ifindex, 7);
            let want: MacAddr = mac.parse().unwrap();
            assert_eq!(
                d.havips[0].bindings,
                vec![DesiredBinding {
                    ifindex: 7,
                    mac: want.octets()
                }],
                "{host}: only its own member is bound to tap0"
            );
        }
    }
}
