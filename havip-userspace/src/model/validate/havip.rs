//! HaVips and their bindings: create (address rules, quotas, dense slot),
//! delete, ModifyHaVipAttribute, associate / unassociate (limits, one
//! binding kind, same vSwitch, the owner only with `force`) and the initial
//! owner.

use havip_common::{limits, MAX_HAVIPS};

use super::{
    allocate_address, check_text, first_free_slot, is_reserved, Cx, MAX_DESCRIPTION_LEN,
    MAX_NAME_LEN,
};
use crate::model::{
    error::{OpError, ResourceKind},
    op::{
        AssociateHaVip, CreateHaVip, DeleteHaVip, Member, ModifyHaVipAttribute, SetInitialOwner,
        UnassociateHaVip,
    },
    resource::{BindingKind, HaVip},
    state::{Record, RecordKey, RecordKind},
};

/// After members were removed from `h.bindings`: no kind when nothing is
/// bound, no initial owner that is not bound any more.
pub(super) fn unbind_cleanup(h: &mut HaVip) {
    if h.bindings.is_empty() {
        h.binding_kind = None;
    }
    if let Some(io) = &h.initial_owner {
        if !h.bindings.contains(io) {
            h.initial_owner = None;
        }
    }
}

/// `Some("")` clears, `None` keeps.
fn text_attr(
    field: &'static str,
    new: Option<&String>,
    cur: &Option<String>,
    max: usize,
) -> Result<Option<String>, OpError> {
    match new {
        None => Ok(cur.clone()),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => {
            check_text(field, v, max)?;
            Ok(Some(v.clone()))
        }
    }
}

impl<'a> Cx<'a> {
    fn address_user(
        &self,
        vswitch: &str,
        addr: std::net::Ipv4Addr,
    ) -> Option<(ResourceKind, String)> {
        if let Some(h) = self.state.havip_by_address(vswitch, addr) {
            return Some((ResourceKind::HaVip, h.id.clone()));
        }
        self.state
            .eips
            .values()
            .find(|e| e.address == addr)
            .map(|e| (ResourceKind::Eip, e.id.clone()))
    }

    pub(super) fn create_havip(&mut self, op: &CreateHaVip) -> Result<RecordKey, OpError> {
        let state = self.state;
        let id = self.new_id(
            op.id.as_deref(),
            "havip",
            ResourceKind::HaVip,
            &state.havips,
        )?;
        let vsw = self.vswitch(&op.vswitch)?;
        let name = text_attr("name", op.name.as_ref(), &None, MAX_NAME_LEN)?;
        let description = text_attr(
            "description",
            op.description.as_ref(),
            &None,
            MAX_DESCRIPTION_LEN,
        )?;
        let quotas = state.quotas;
        let in_vpc = state.havip_count_in_vpc(&vsw.vpc);
        if in_vpc >= quotas.havips_per_vpc {
            return Err(OpError::HaVipsPerVpc {
                vpc: vsw.vpc.clone(),
                used: in_vpc,
                quota: quotas.havips_per_vpc,
            });
        }
        if state.havips.len() >= quotas.havips_per_account {
            return Err(OpError::HaVipsPerAccount {
                quota: quotas.havips_per_account,
            });
        }
        let address = match op.address {
            Some(a) => {
                if !vsw.cidr.contains(a) {
                    return Err(OpError::AddressOutsideVSwitch {
                        address: a,
                        vswitch: vsw.id.clone(),
                        cidr: vsw.cidr,
                    });
                }
                if is_reserved(vsw.cidr, a) {
                    return Err(OpError::AddressReserved {
                        address: a,
                        vswitch: vsw.id.clone(),
                        cidr: vsw.cidr,
                    });
                }
                if let Some((kind, id)) = self.address_user(&vsw.id, a) {
                    return Err(OpError::AddressInUse {
                        address: a,
                        kind,
                        id,
                    });
                }
                a
            }
            None => allocate_address(state, vsw).ok_or_else(|| OpError::NoFreeAddress {
                vswitch: vsw.id.clone(),
                cidr: vsw.cidr,
            })?,
        };
        let slot =
            first_free_slot(state.used_slots()).ok_or(OpError::NoFreeSlot { max: MAX_HAVIPS })?;
        let h = HaVip {
            id,
            vswitch: vsw.id.clone(),
            address,
            binding_kind: None,
            bindings: Vec::new(),
            slot,
            initial_owner: None,
            name,
            description,
        };
        Ok(self.put(Record::HaVip(h)))
    }

    pub(super) fn delete_havip(&mut self, op: &DeleteHaVip) -> Result<RecordKey, OpError> {
        let id = op.id.as_str();
        let h = self.havip(id)?;
        if !h.bindings.is_empty() {
            return Err(OpError::HaVipBound {
                havip: h.id.clone(),
                bindings: h.bindings.clone(),
            });
        }
        if let Some(e) = self
            .state
            .eips
            .values()
            .find(|e| e.havip.as_deref() == Some(id))
        {
            return Err(OpError::HaVipHasEip {
                havip: h.id.clone(),
                eip: e.id.clone(),
            });
        }
        if let Some(r) = self.state.routes.values().find(|r| r.next_hop_havip == id) {
            return Err(OpError::HaVipIsRouteNextHop {
                havip: h.id.clone(),
                route: r.id.clone(),
            });
        }
        self.change.delete(RecordKind::HaVip, id);
        if self.state.owners.contains_key(id) {
            self.change.delete(RecordKind::Owner, id);
        }
        Ok(RecordKey::new(RecordKind::HaVip, id))
    }

    pub(super) fn modify_havip_attribute(
        &mut self,
        op: &ModifyHaVipAttribute,
    ) -> Result<RecordKey, OpError> {
        let h = self.havip(&op.id)?;
        let mut next = h.clone();
        next.name = text_attr("name", op.name.as_ref(), &h.name, MAX_NAME_LEN)?;
        next.description = text_attr(
            "description",
            op.description.as_ref(),
            &h.description,
            MAX_DESCRIPTION_LEN,
        )?;
        if next != *h {
            self.change.put(Record::HaVip(next));
        }
        Ok(RecordKey::new(RecordKind::HaVip, &h.id))
    }

    /// vSwitch and instance (if any) of a member.
    fn member_place(&self, m: &Member) -> Result<(String, Option<String>), OpError> {
        match m.kind {
            BindingKind::Instance => {
                let i = self.instance(&m.id)?;
                Ok((i.vswitch.clone(), Some(i.id.clone())))
            }
            BindingKind::Eni => {
                let e = self.eni(&m.id)?;
                Ok((e.vswitch.clone(), e.instance.clone()))
            }
        }
    }

    pub(super) fn associate(&mut self, op: &AssociateHaVip) -> Result<RecordKey, OpError> {
        let m = &op.member;
        let h = self.havip(&op.havip)?;
        let (member_vswitch, instance) = self.member_place(m)?;
        if h.bindings.contains(&m.id) && h.binding_kind == Some(m.kind) {
            return Err(OpError::AlreadyBound {
                havip: h.id.clone(),
                kind: m.kind.into(),
                id: m.id.clone(),
            });
        }
        if let Some(existing) = h.binding_kind {
            if existing != m.kind && !h.bindings.is_empty() {
                return Err(OpError::MixedBindingKinds {
                    havip: h.id.clone(),
                    existing,
                    requested: m.kind,
                    id: m.id.clone(),
                });
            }
        }
        if member_vswitch != h.vswitch {
            return Err(OpError::DifferentVSwitch {
                havip: h.id.clone(),
                havip_vswitch: h.vswitch.clone(),
                kind: m.kind.into(),
                id: m.id.clone(),
                member_vswitch,
            });
        }
        if h.bindings.len() >= limits::BINDINGS_PER_HAVIP {
            return Err(OpError::BindingsPerHaVip {
                havip: h.id.clone(),
                limit: limits::BINDINGS_PER_HAVIP,
            });
        }
        if let Some(inst) = instance {
            let held = self.state.havips_of_instance(&inst);
            if !held.contains(&h.id.as_str()) && held.len() >= limits::HAVIPS_PER_INSTANCE {
                return Err(OpError::HaVipsPerInstance {
                    instance: inst,
                    limit: limits::HAVIPS_PER_INSTANCE,
                    havips: held.iter().map(|s| (*s).to_owned()).collect(),
                });
            }
        }
        let mut next = h.clone();
        next.binding_kind = Some(m.kind);
        next.bindings.push(m.id.clone());
        self.change.put(Record::HaVip(next));
        Ok(RecordKey::new(RecordKind::HaVip, &h.id))
    }

    /// Unassociates a member. The member holding the address now (the
    /// kernel-observed owner) is refused unless `force`; with `force` the
    /// owner is cleared (epoch kept) and the data plane elects anew.
    pub(super) fn unassociate(&mut self, op: &UnassociateHaVip) -> Result<RecordKey, OpError> {
        let m = &op.member;
        let h = self.havip(&op.havip)?;
        let pos = h
            .bindings
            .iter()
            .position(|b| *b == m.id)
            .filter(|_| h.binding_kind == Some(m.kind))
            .ok_or_else(|| OpError::NotBound {
                havip: h.id.clone(),
                kind: m.kind.into(),
                id: m.id.clone(),
            })?;
        let state = self.state;
        let is_owner = state.owners.get(&h.id).is_some_and(|o| {
            o.has_owner() && state.member_with_mac(h, o.mac) == Some(m.id.as_str())
        });
        if is_owner {
            if !op.force {
                return Err(OpError::MemberIsOwner {
                    havip: h.id.clone(),
                    member: m.id.clone(),
                });
            }
            self.clear_owner_if(h, |_| true);
        }
        let mut next = h.clone();
        next.bindings.remove(pos);
        unbind_cleanup(&mut next);
        self.change.put(Record::HaVip(next));
        Ok(RecordKey::new(RecordKind::HaVip, &h.id))
    }

    pub(super) fn set_initial_owner(&mut self, op: &SetInitialOwner) -> Result<RecordKey, OpError> {
        let h = self.havip(&op.havip)?;
        let member = op.member.as_deref();
        if let Some(m) = member {
            if !h.bindings.iter().any(|b| b == m) {
                return Err(OpError::OwnerNotBound {
                    havip: h.id.clone(),
                    member: m.to_owned(),
                });
            }
        }
        if h.initial_owner.as_deref() != member {
            let mut next = h.clone();
            next.initial_owner = member.map(str::to_owned);
            self.change.put(Record::HaVip(next));
        }
        Ok(RecordKey::new(RecordKind::HaVip, &h.id))
    }
}
