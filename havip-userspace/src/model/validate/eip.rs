//! EIPs: create (a unicast address no HaVip or EIP uses), delete (refused
//! while associated), associate with one HaVip, unassociate.

use std::net::Ipv4Addr;

use super::Cx;
use crate::model::{
    error::{OpError, ResourceKind},
    op::{AssociateEip, CreateEip, DeleteEip, UnassociateEip},
    resource::Eip,
    state::{Record, RecordKey, RecordKind},
};

/// An EIP must be a unicast address; checked before an id is taken.
fn check_unicast(address: Ipv4Addr) -> Result<(), OpError> {
    if address.is_unspecified()
        || address.is_broadcast()
        || address.is_multicast()
        || address.is_loopback()
    {
        return Err(OpError::InvalidAddress {
            address,
            reason: "an EIP must be a unicast address".to_owned(),
        });
    }
    Ok(())
}

impl Cx<'_> {
    pub(super) fn create_eip(&mut self, op: &CreateEip) -> Result<RecordKey, OpError> {
        let state = self.state;
        let address = op.address;
        check_unicast(address)?;
        let id = self.new_id(op.id.as_deref(), "eip", ResourceKind::Eip, &state.eips)?;
        if let Some(e) = state.eips.values().find(|e| e.address == address) {
            return Err(OpError::AddressInUse {
                address,
                kind: ResourceKind::Eip,
                id: e.id.clone(),
            });
        }
        if let Some(h) = state.havips.values().find(|h| h.address == address) {
            return Err(OpError::AddressInUse {
                address,
                kind: ResourceKind::HaVip,
                id: h.id.clone(),
            });
        }
        let eip = Eip {
            id,
            address,
            havip: None,
        };
        Ok(self.put(Record::Eip(eip)))
    }

    pub(super) fn delete_eip(&mut self, op: &DeleteEip) -> Result<RecordKey, OpError> {
        let e = self.eip(&op.id)?;
        if let Some(h) = &e.havip {
            return Err(OpError::EipAssociated {
                eip: e.id.clone(),
                havip: h.clone(),
            });
        }
        Ok(self.delete(RecordKind::Eip, &e.id))
    }

    pub(super) fn associate_eip(&mut self, op: &AssociateEip) -> Result<RecordKey, OpError> {
        let e = self.eip(&op.eip)?;
        let h = self.havip(&op.havip)?;
        if let Some(cur) = &e.havip {
            return Err(OpError::EipAssociated {
                eip: e.id.clone(),
                havip: cur.clone(),
            });
        }
        if let Some(other) = self
            .state
            .eips
            .values()
            .find(|o| o.havip.as_deref() == Some(h.id.as_str()))
        {
            return Err(OpError::HaVipHasEip {
                havip: h.id.clone(),
                eip: other.id.clone(),
            });
        }
        let mut next = e.clone();
        next.havip = Some(h.id.clone());
        self.change.put(Record::Eip(next));
        Ok(RecordKey::new(RecordKind::Eip, &e.id))
    }

    pub(super) fn unassociate_eip(&mut self, op: &UnassociateEip) -> Result<RecordKey, OpError> {
        let e = self.eip(&op.eip)?;
        if e.havip.is_none() {
            return Err(OpError::EipNotAssociated { eip: e.id.clone() });
        }
        let mut next = e.clone();
        next.havip = None;
        self.change.put(Record::Eip(next));
        Ok(RecordKey::new(RecordKind::Eip, &e.id))
    }
}
