//! Route entries with a HaVip next hop: the HaVip is in the route's VPC,
//! the destination is outside every vSwitch of the VPC and unique in it,
//! within the per-VPC quota.

use super::{find, Cx};
use crate::model::{
    error::{OpError, ResourceKind},
    op::{CreateRoute, DeleteRoute},
    resource::RouteEntry,
    state::{Record, RecordKey, RecordKind},
};

impl Cx<'_> {
    pub(super) fn create_route(&mut self, op: &CreateRoute) -> Result<RecordKey, OpError> {
        let state = self.state;
        let destination = op.destination;
        let id = self.new_id(op.id.as_deref(), "rte", ResourceKind::Route, &state.routes)?;
        let v = self.vpc(&op.vpc)?;
        let h = self.havip(&op.next_hop_havip)?;
        let hvpc = state.havip_vpc(h).unwrap_or_default();
        if hvpc != v.id {
            return Err(OpError::DifferentVpc {
                kind: ResourceKind::HaVip,
                id: h.id.clone(),
                expected: v.id.clone(),
                actual: hvpc.to_owned(),
            });
        }
        if let Some(vsw) = state
            .vswitches
            .values()
            .find(|s| s.vpc == v.id && s.cidr.contains_cidr(destination))
        {
            return Err(OpError::InvalidRouteDestination {
                destination,
                vswitch: vsw.id.clone(),
                cidr: vsw.cidr,
            });
        }
        let in_vpc: Vec<&RouteEntry> = state.routes.values().filter(|r| r.vpc == v.id).collect();
        if let Some(r) = in_vpc.iter().find(|r| r.destination == destination) {
            return Err(OpError::RouteDestinationExists {
                vpc: v.id.clone(),
                destination,
                existing: r.id.clone(),
            });
        }
        if in_vpc.len() >= state.quotas.havip_routes_per_vpc {
            return Err(OpError::HaVipRoutesPerVpc {
                vpc: v.id.clone(),
                used: in_vpc.len(),
                quota: state.quotas.havip_routes_per_vpc,
            });
        }
        let r = RouteEntry {
            id,
            vpc: v.id.clone(),
            destination,
            next_hop_havip: h.id.clone(),
        };
        Ok(self.put(Record::Route(r)))
    }

    pub(super) fn delete_route(&mut self, op: &DeleteRoute) -> Result<RecordKey, OpError> {
        find(&self.state.routes, ResourceKind::Route, &op.id)?;
        Ok(self.delete(RecordKind::Route, &op.id))
    }
}
