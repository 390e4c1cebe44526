//! VPCs and vSwitches: create (CIDR inside the VPC, no overlap, dense
//! data-plane id) and delete (refused while anything lives in them).

use super::{check_mac, check_prefix, first_in, fresh_id, Cx};
use crate::model::{
    error::{OpError, ResourceKind},
    op::{CreateVSwitch, CreateVpc, DeleteVSwitch, DeleteVpc},
    resource::{VSwitch, Vpc},
    state::{Record, RecordKey, RecordKind},
};

impl Cx<'_> {
    pub(super) fn create_vpc(&mut self, op: &CreateVpc) -> Result<RecordKey, OpError> {
        let id = fresh_id(&op.id, ResourceKind::Vpc, &self.state.vpcs)?;
        check_prefix("VPC", op.cidr)?;
        let vpc = Vpc { id, cidr: op.cidr };
        Ok(self.put(Record::Vpc(vpc)))
    }

    pub(super) fn delete_vpc(&mut self, op: &DeleteVpc) -> Result<RecordKey, OpError> {
        let vpc = self.vpc(&op.id)?;
        let dependency = |kind, dependent: &str| OpError::DependencyViolation {
            kind: ResourceKind::Vpc,
            id: vpc.id.clone(),
            dependent_kind: kind,
            dependent: dependent.to_owned(),
        };
        if let Some(v) = self.state.vswitches.values().find(|v| v.vpc == vpc.id) {
            return Err(dependency(ResourceKind::VSwitch, &v.id));
        }
        if let Some(r) = self.state.routes.values().find(|r| r.vpc == vpc.id) {
            return Err(dependency(ResourceKind::Route, &r.id));
        }
        Ok(self.delete(RecordKind::Vpc, &vpc.id))
    }

    pub(super) fn create_vswitch(&mut self, op: &CreateVSwitch) -> Result<RecordKey, OpError> {
        let id = fresh_id(&op.id, ResourceKind::VSwitch, &self.state.vswitches)?;
        let cidr = op.cidr;
        let vpc = self.vpc(&op.vpc)?;
        check_prefix("vSwitch", cidr)?;
        if !vpc.cidr.contains_cidr(cidr) {
            return Err(OpError::InvalidCidr {
                what: format!("vSwitch {id:?}"),
                cidr,
                reason: format!("it is not inside VPC {:?} ({})", vpc.id, vpc.cidr),
            });
        }
        if let Some(other) = self
            .state
            .vswitches
            .values()
            .find(|v| v.vpc == vpc.id && v.cidr.overlaps(cidr))
        {
            return Err(OpError::CidrOverlap {
                id,
                cidr,
                other: other.id.clone(),
                other_cidr: other.cidr,
            });
        }
        check_mac("the vSwitch gateway", op.gateway_mac)?;
        if let Some(vni) = op.vni.filter(|v| *v == 0 || *v >= 1 << 24) {
            return Err(OpError::InvalidVni { vni });
        }
        let dp_id = (1..=u32::MAX)
            .find(|n| self.state.vswitch_by_dp_id(*n).is_none())
            .ok_or(OpError::NoFreeVSwitchId)?;
        let vsw = VSwitch {
            id,
            vpc: vpc.id.clone(),
            cidr,
            gateway_mac: op.gateway_mac,
            dp_id,
            vni: op.vni,
        };
        Ok(self.put(Record::VSwitch(vsw)))
    }

    pub(super) fn delete_vswitch(&mut self, op: &DeleteVSwitch) -> Result<RecordKey, OpError> {
        let vsw = self.vswitch(&op.id)?;
        let s = self.state;
        let dependent = first_in(ResourceKind::Instance, &s.instances, |i| {
            i.vswitch == vsw.id
        })
        .or_else(|| first_in(ResourceKind::Eni, &s.enis, |e| e.vswitch == vsw.id))
        .or_else(|| first_in(ResourceKind::Uplink, &s.uplinks, |u| u.vswitch == vsw.id))
        .or_else(|| first_in(ResourceKind::HaVip, &s.havips, |h| h.vswitch == vsw.id));
        if let Some((dependent_kind, dependent)) = dependent {
            return Err(OpError::DependencyViolation {
                kind: ResourceKind::VSwitch,
                id: vsw.id.clone(),
                dependent_kind,
                dependent,
            });
        }
        Ok(self.delete(RecordKind::VSwitch, &vsw.id))
    }
}
