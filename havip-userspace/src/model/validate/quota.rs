//! Quotas (bounded by the data plane's capacity) and the kernel-observed
//! owners the agent records.

use havip_common::MAX_HAVIPS;

use super::{Cx, MAX_ROUTES_PER_VPC};
use crate::model::{
    error::OpError,
    op::{RecordOwner, SetQuota},
    resource::Quotas,
    state::{Record, RecordKey, RecordKind},
};

impl Cx<'_> {
    pub(super) fn set_quota(&mut self, op: &SetQuota) -> Result<RecordKey, OpError> {
        let max = MAX_HAVIPS as usize;
        let checks = [
            ("havips_per_account", op.havips_per_account, max),
            ("havips_per_vpc", op.havips_per_vpc, max),
            (
                "havip_routes_per_vpc",
                op.havip_routes_per_vpc,
                MAX_ROUTES_PER_VPC,
            ),
        ];
        for (name, value, max) in checks {
            if let Some(v) = value {
                if v > max {
                    return Err(OpError::InvalidQuota {
                        name,
                        value: v,
                        max,
                    });
                }
            }
        }
        let cur = self.state.quotas;
        let next = Quotas {
            havips_per_account: op.havips_per_account.unwrap_or(cur.havips_per_account),
            havips_per_vpc: op.havips_per_vpc.unwrap_or(cur.havips_per_vpc),
            havip_routes_per_vpc: op.havip_routes_per_vpc.unwrap_or(cur.havip_routes_per_vpc),
        };
        if next != cur {
            self.change.put(Record::Quotas(next));
        }
        Ok(RecordKey::new(RecordKind::Quotas, ""))
    }

    pub(super) fn record_owner(&mut self, op: &RecordOwner) -> Result<RecordKey, OpError> {
        self.havip(&op.havip)?;
        if self.state.owners.get(&op.havip) != Some(&op.owner) {
            self.change.put(Record::Owner {
                havip: op.havip.clone(),
                owner: op.owner,
            });
        }
        Ok(RecordKey::new(RecordKind::Owner, &op.havip))
    }
}
