//! Seeding the store from the config: "ensure exists", through the same
//! operations as the API, in one transaction (see the module docs of
//! [`crate::config`] for the rules).

use super::{Config, ConfigError};
use crate::{
    control::{ControlPlane, PlanError},
    model::{
        apply, Applied, AssociateEip, AssociateHaVip, Member, ModifyEni, ModifyHaVipAttribute, Op,
        SetInitialOwner, SetQuota, State,
    },
};

/// What seeding did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedReport {
    /// `kind id` of resources created from the config.
    pub created: Vec<String>,
    /// `kind id` of config resources already in the store (kept as stored).
    pub kept: Vec<String>,
    /// What the seed changed through a Modify operation because the config
    /// differs from the store (`eni <id> interface <name>`, ...).
    pub modified: Vec<String>,
}

struct Planner {
    state: State,
    applied: Vec<Applied>,
    report: SeedReport,
}

impl Planner {
    fn run(&mut self, item: &str, op: Op) -> Result<(), ConfigError> {
        let a = apply(&self.state, &op).map_err(|error| ConfigError::Invalid {
            item: item.to_owned(),
            error: Box::new(error),
        })?;
        self.state.apply_change(&a.change);
        self.applied.push(a);
        Ok(())
    }

    fn kept(&mut self, what: String) {
        self.report.kept.push(what);
    }

    fn modified(&mut self, what: String) {
        self.report.modified.push(what);
    }

    fn created(&mut self, what: String) {
        self.report.created.push(what);
    }
}

fn same<T: PartialEq + ToString>(
    item: &str,
    field: &'static str,
    config: &T,
    stored: &T,
) -> Result<(), ConfigError> {
    if config == stored {
        Ok(())
    } else {
        Err(ConfigError::Mismatch {
            item: item.to_owned(),
            field,
            config: config.to_string(),
            stored: stored.to_string(),
        })
    }
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "(none)".into())
}

/// Plans the seed of `cfg` over `state` (pure): the changes to commit, in
/// order, and what is created/kept. See the module docs for the rules.
///
/// # Errors
/// The first config entry the validation core refuses, or that disagrees
/// with the stored resource of the same id.
pub fn plan_seed(cfg: &Config, state: &State) -> Result<(Vec<Applied>, SeedReport), ConfigError> {
    let mut p = Planner {
        state: state.clone(),
        applied: Vec::new(),
        report: SeedReport::default(),
    };
    if cfg.quotas != SetQuota::default() {
        p.run("[quotas]", Op::SetQuota(cfg.quotas))?;
    }
    for v in &cfg.vpcs {
        let item = format!("[[vpc]] {:?}", v.id);
        if let Some(s) = p.state.vpcs.get(&v.id) {
            same(&item, "cidr", &v.cidr, &s.cidr)?;
            p.kept(format!("vpc {}", v.id));
            continue;
        }
        p.run(&item, Op::CreateVpc(v.clone()))?;
        p.created(format!("vpc {}", v.id));
    }
    for v in &cfg.vswitches {
        let item = format!("[[vswitch]] {:?}", v.id);
        if let Some(s) = p.state.vswitches.get(&v.id) {
            same(&item, "vpc", &v.vpc, &s.vpc)?;
            same(&item, "cidr", &v.cidr, &s.cidr)?;
            same(&item, "gateway_mac", &v.gateway_mac, &s.gateway_mac)?;
            p.kept(format!("vswitch {}", v.id));
            continue;
        }
        p.run(&item, Op::CreateVSwitch(v.clone()))?;
        p.created(format!("vswitch {}", v.id));
    }
    for v in &cfg.instances {
        let item = format!("[[instance]] {:?}", v.id);
        if let Some(s) = p.state.instances.get(&v.id) {
            same(&item, "vswitch", &v.vswitch, &s.vswitch)?;
            p.kept(format!("instance {}", v.id));
            continue;
        }
        p.run(&item, Op::CreateInstance(v.clone()))?;
        p.created(format!("instance {}", v.id));
    }
    for v in &cfg.enis {
        let item = format!("[[eni]] {:?}", v.id);
        if let Some(s) = p.state.enis.get(&v.id).cloned() {
            same(&item, "vswitch", &v.vswitch, &s.vswitch)?;
            same(&item, "mac", &v.mac, &s.mac)?;
            same(&item, "instance", &opt(&v.instance), &opt(&s.instance))?;
            same(&item, "primary", &v.primary, &s.primary)?;
            if v.interface != s.interface {
                p.run(
                    &format!("{item} interface"),
                    Op::ModifyEni(ModifyEni {
                        id: v.id.clone(),
                        interface: v.interface.clone(),
                    }),
                )?;
                p.modified(format!("eni {} interface {}", v.id, v.interface));
            }
            p.kept(format!("eni {}", v.id));
            continue;
        }
        p.run(&item, Op::CreateEni(v.clone()))?;
        p.created(format!("eni {}", v.id));
    }
    for v in &cfg.uplinks {
        let item = format!("[[uplink]] {:?}", v.interface);
        if let Some(s) = p.state.uplinks.get(&v.interface) {
            same(&item, "vswitch", &v.vswitch, &s.vswitch)?;
            p.kept(format!("uplink {}", v.interface));
            continue;
        }
        p.run(&item, Op::CreateUplink(v.clone()))?;
        p.created(format!("uplink {}", v.interface));
    }
    for v in &cfg.havips {
        let id = v.create.id.clone().unwrap_or_default();
        let item = format!("[[havip]] {id:?}");
        if let Some(s) = p.state.havips.get(&id).cloned() {
            same(&item, "vswitch", &v.create.vswitch, &s.vswitch)?;
            if let Some(a) = v.create.address {
                same(&item, "address", &a, &s.address)?;
            }
            let differs = |c: &Option<String>, s: &Option<String>| c.is_some() && c != s;
            if differs(&v.create.name, &s.name) || differs(&v.create.description, &s.description) {
                p.run(
                    &format!("{item} name/description"),
                    Op::ModifyHaVipAttribute(ModifyHaVipAttribute {
                        id: id.clone(),
                        name: v.create.name.clone(),
                        description: v.create.description.clone(),
                    }),
                )?;
                p.modified(format!("havip {id} attributes"));
            }
            p.kept(format!("havip {id}"));
            continue;
        }
        p.run(&item, Op::CreateHaVip(v.create.clone()))?;
        let members = v
            .instances
            .iter()
            .map(Member::instance)
            .chain(v.enis.iter().map(Member::eni));
        for m in members {
            p.run(
                &format!("{item} {} {:?}", m.kind, m.id),
                Op::AssociateHaVip(AssociateHaVip {
                    havip: id.clone(),
                    member: m,
                }),
            )?;
        }
        if let Some(owner) = &v.initial_owner {
            p.run(
                &format!("{item} initial_owner"),
                Op::SetInitialOwner(SetInitialOwner {
                    havip: id.clone(),
                    member: Some(owner.clone()),
                }),
            )?;
        }
        p.created(format!("havip {id}"));
    }
    for v in &cfg.eips {
        let id = v.create.id.clone().unwrap_or_default();
        let item = format!("[[eip]] {id:?}");
        if let Some(s) = p.state.eips.get(&id) {
            same(&item, "address", &v.create.address, &s.address)?;
            p.kept(format!("eip {id}"));
            continue;
        }
        p.run(&item, Op::CreateEip(v.create.clone()))?;
        if let Some(h) = &v.havip {
            p.run(
                &format!("{item} havip"),
                Op::AssociateEip(AssociateEip {
                    eip: id.clone(),
                    havip: h.clone(),
                }),
            )?;
        }
        p.created(format!("eip {id}"));
    }
    for v in &cfg.routes {
        let id = v.id.clone().unwrap_or_default();
        let item = format!("[[route]] {id:?}");
        if let Some(s) = p.state.routes.get(&id) {
            same(&item, "vpc", &v.vpc, &s.vpc)?;
            same(&item, "destination", &v.destination, &s.destination)?;
            same(&item, "next_hop", &v.next_hop_havip, &s.next_hop_havip)?;
            p.kept(format!("route {id}"));
            continue;
        }
        p.run(&item, Op::CreateRoute(v.clone()))?;
        p.created(format!("route {id}"));
    }
    Ok((p.applied, p.report))
}

/// Seeds the control plane from `cfg`, in one transaction (all or nothing).
///
/// # Errors
/// As [`plan_seed`]; [`ConfigError::Store`] if the commit failed.
pub fn seed(cp: &ControlPlane, cfg: &Config) -> Result<SeedReport, ConfigError> {
    let mut report = None;
    cp.apply_planned(|state| {
        let (applied, r) = plan_seed(cfg, state)?;
        report = Some(r);
        Ok(applied)
    })
    .map_err(|e| match e {
        PlanError::Plan(e) => e,
        PlanError::Store(e) => ConfigError::Store(Box::new(e)),
    })?;
    Ok(report.unwrap_or_default())
}
