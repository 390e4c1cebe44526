//! Instances, ENIs and uplinks: create, delete (bindings go with the
//! member, the owner is cleared if it was the member) and ModifyEni.

use super::{check_interface, check_mac, find, fresh_id, havip::unbind_cleanup, Cx};
use crate::model::{
    error::{OpError, ResourceKind},
    op::{
        CreateEni, CreateInstance, CreateUplink, DeleteEni, DeleteInstance, DeleteUplink, ModifyEni,
    },
    resource::{BindingKind, Eni, Instance, Uplink},
    state::{Record, RecordKey, RecordKind},
};

impl Cx<'_> {
    pub(super) fn create_instance(&mut self, op: &CreateInstance) -> Result<RecordKey, OpError> {
        let id = fresh_id(&op.id, ResourceKind::Instance, &self.state.instances)?;
        self.vswitch(&op.vswitch)?;
        let inst = Instance {
            id,
            vswitch: op.vswitch.clone(),
        };
        Ok(self.put(Record::Instance(inst)))
    }

    /// Deletes an instance: every HaVip binding of the instance goes, and
    /// every binding of its primary ENI (deleted with it); secondary ENIs
    /// are detached and keep their own bindings. An observed owner on one
    /// of the instance's ENIs is cleared.
    pub(super) fn delete_instance(&mut self, op: &DeleteInstance) -> Result<RecordKey, OpError> {
        let inst = self.instance(&op.id)?;
        let state = self.state;
        let attached: Vec<&Eni> = state
            .enis
            .values()
            .filter(|e| e.instance.as_deref() == Some(inst.id.as_str()))
            .collect();
        let primary: Vec<&str> = attached
            .iter()
            .filter(|e| e.primary)
            .map(|e| e.id.as_str())
            .collect();
        // HaVips first: their indexes are computed from the ENIs as they
        // were.
        for h in state.havips.values() {
            let drop_member = |b: &String| match h.binding_kind {
                Some(BindingKind::Instance) => *b == inst.id,
                Some(BindingKind::Eni) => primary.contains(&b.as_str()),
                None => false,
            };
            if h.bindings.iter().any(drop_member) {
                let gone = |e: &Eni| match h.binding_kind {
                    Some(BindingKind::Instance) => e.instance.as_deref() == Some(inst.id.as_str()),
                    _ => primary.contains(&e.id.as_str()),
                };
                self.clear_owner_if(h, gone);
                let mut next = h.clone();
                next.bindings.retain(|b| !drop_member(b));
                unbind_cleanup(&mut next);
                self.change.put(Record::HaVip(next));
            }
        }
        for e in attached {
            if e.primary {
                self.change.delete(RecordKind::Eni, &e.id);
            } else {
                let mut detached = e.clone();
                detached.instance = None;
                self.change.put(Record::Eni(detached));
            }
        }
        Ok(self.delete(RecordKind::Instance, &inst.id))
    }

    pub(super) fn create_eni(&mut self, op: &CreateEni) -> Result<RecordKey, OpError> {
        fresh_id(&op.id, ResourceKind::Eni, &self.state.enis)?;
        let vsw = self.vswitch(&op.vswitch)?;
        check_mac(&format!("ENI {:?}", op.id), op.mac)?;
        check_interface(&op.interface)?;
        if let Some(inst_id) = &op.instance {
            let inst = self.instance(inst_id)?;
            let inst_vpc = self.vswitch(&inst.vswitch)?.vpc.clone();
            if inst_vpc != vsw.vpc {
                return Err(OpError::DifferentVpc {
                    kind: ResourceKind::Eni,
                    id: op.id.clone(),
                    expected: inst_vpc,
                    actual: vsw.vpc.clone(),
                });
            }
            if op.primary {
                if let Some(p) = self
                    .state
                    .enis
                    .values()
                    .find(|e| e.primary && e.instance.as_deref() == Some(inst_id))
                {
                    return Err(OpError::PrimaryEniExists {
                        instance: inst_id.clone(),
                        eni: p.id.clone(),
                    });
                }
            }
        } else if op.primary {
            return Err(OpError::PrimaryEniDetached { eni: op.id.clone() });
        }
        if let Some(other) = self.state.eni_by_mac(op.mac) {
            return Err(OpError::MacInUse {
                mac: op.mac,
                eni: other.id.clone(),
            });
        }
        if let Some((kind, id)) = self.interface_user(&op.interface, op.host.as_deref()) {
            return Err(OpError::InterfaceInUse {
                interface: op.interface.clone(),
                kind,
                id,
            });
        }
        let eni = Eni {
            id: op.id.clone(),
            vswitch: op.vswitch.clone(),
            mac: op.mac,
            interface: op.interface.clone(),
            instance: op.instance.clone(),
            primary: op.primary,
            host: op.host.clone(),
        };
        Ok(self.put(Record::Eni(eni)))
    }

    /// Deletes an ENI: its HaVip bindings go, and an observed owner on it
    /// is cleared (also on a HaVip bound to its instance). The primary ENI
    /// of an instance goes only with the instance.
    pub(super) fn delete_eni(&mut self, op: &DeleteEni) -> Result<RecordKey, OpError> {
        let eni = self.eni(&op.id)?;
        if let (true, Some(inst)) = (eni.primary, &eni.instance) {
            return Err(OpError::DependencyViolation {
                kind: ResourceKind::Eni,
                id: eni.id.clone(),
                dependent_kind: ResourceKind::Instance,
                dependent: inst.clone(),
            });
        }
        let state = self.state;
        for h in state.havips.values() {
            let bound = h.binding_kind == Some(BindingKind::Eni) && h.bindings.contains(&eni.id);
            let via_instance = h.binding_kind == Some(BindingKind::Instance)
                && eni
                    .instance
                    .as_ref()
                    .is_some_and(|i| h.bindings.contains(i));
            if !bound && !via_instance {
                continue;
            }
            self.clear_owner_if(h, |e| e.id == eni.id);
            if bound {
                let mut next = h.clone();
                next.bindings.retain(|b| *b != eni.id);
                unbind_cleanup(&mut next);
                self.change.put(Record::HaVip(next));
            }
        }
        Ok(self.delete(RecordKind::Eni, &eni.id))
    }

    /// Changes an ENI's host interface. The data plane derives ports from
    /// the state by name, so the old name stops being a port of this ENI
    /// at once and a later user of that name starts clean.
    pub(super) fn modify_eni(&mut self, op: &ModifyEni) -> Result<RecordKey, OpError> {
        let eni = self.eni(&op.id)?;
        check_interface(&op.interface)?;
        if eni.interface != op.interface {
            if let Some((kind, id)) = self.interface_user(&op.interface, eni.host.as_deref()) {
                return Err(OpError::InterfaceInUse {
                    interface: op.interface.clone(),
                    kind,
                    id,
                });
            }
            let mut next = eni.clone();
            next.interface = op.interface.clone();
            self.change.put(Record::Eni(next));
        }
        Ok(RecordKey::new(RecordKind::Eni, &eni.id))
    }

    pub(super) fn create_uplink(&mut self, op: &CreateUplink) -> Result<RecordKey, OpError> {
        let interface = op.interface.as_str();
        check_interface(interface)?;
        if self.state.uplinks.contains_key(interface) {
            return Err(OpError::AlreadyExists {
                kind: ResourceKind::Uplink,
                id: interface.to_owned(),
            });
        }
        // Uplinks are on every host: any ENI of that name conflicts.
        if let Some((kind, id)) = self.interface_user(interface, None) {
            return Err(OpError::InterfaceInUse {
                interface: interface.to_owned(),
                kind,
                id,
            });
        }
        self.vswitch(&op.vswitch)?;
        let up = Uplink {
            interface: interface.to_owned(),
            vswitch: op.vswitch.clone(),
        };
        Ok(self.put(Record::Uplink(up)))
    }

    pub(super) fn delete_uplink(&mut self, op: &DeleteUplink) -> Result<RecordKey, OpError> {
        find(&self.state.uplinks, ResourceKind::Uplink, &op.interface)?;
        Ok(self.delete(RecordKind::Uplink, &op.interface))
    }
}
