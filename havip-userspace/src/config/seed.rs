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

    /// The config entry `kind id` ("ensure exists"): when the store has it
    /// (`diffs` of its fields is `Some`) it is kept, unless a field differs
    /// (an error naming the first); else `create` creates it. Returns the
    /// entry's name for the operations that follow.
    fn entry(
        &mut self,
        kind: &str,
        id: &str,
        diffs: Option<Vec<Option<Diff>>>,
        create: Op,
    ) -> Result<String, ConfigError> {
        let item = format!("[[{kind}]] {id:?}");
        let Some(diffs) = diffs else {
            self.run(&item, create)?;
            self.created(format!("{kind} {id}"));
            return Ok(item);
        };
        if let Some((field, config, stored)) = diffs.into_iter().flatten().next() {
            return Err(ConfigError::Mismatch {
                item,
                field,
                config,
                stored,
            });
        }
        self.kept(format!("{kind} {id}"));
        Ok(item)
    }
}

/// A config field that differs from the stored resource's: `(field,
/// config value, stored value)`.
type Diff = (&'static str, String, String);

fn diff<T: PartialEq + ToString>(field: &'static str, config: &T, stored: &T) -> Option<Diff> {
    (config != stored).then(|| (field, config.to_string(), stored.to_string()))
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
        let diffs = p
            .state
            .vpcs
            .get(&v.id)
            .map(|s| vec![diff("cidr", &v.cidr, &s.cidr)]);
        p.entry("vpc", &v.id, diffs, Op::CreateVpc(v.clone()))?;
    }
    for v in &cfg.vswitches {
        let diffs = p.state.vswitches.get(&v.id).map(|s| {
            vec![
                diff("vpc", &v.vpc, &s.vpc),
                diff("cidr", &v.cidr, &s.cidr),
                diff("gateway_mac", &v.gateway_mac, &s.gateway_mac),
            ]
        });
        p.entry("vswitch", &v.id, diffs, Op::CreateVSwitch(v.clone()))?;
    }
    for v in &cfg.instances {
        let stored = p.state.instances.get(&v.id);
        let diffs = stored.map(|s| vec![diff("vswitch", &v.vswitch, &s.vswitch)]);
        p.entry("instance", &v.id, diffs, Op::CreateInstance(v.clone()))?;
    }
    for v in &cfg.enis {
        let stored = p.state.enis.get(&v.id).cloned();
        let diffs = stored.as_ref().map(|s| {
            vec![
                diff("vswitch", &v.vswitch, &s.vswitch),
                diff("mac", &v.mac, &s.mac),
                diff("instance", &opt(&v.instance), &opt(&s.instance)),
                diff("primary", &v.primary, &s.primary),
            ]
        });
        let item = p.entry("eni", &v.id, diffs, Op::CreateEni(v.clone()))?;
        if stored.is_some_and(|s| s.interface != v.interface) {
            p.run(
                &format!("{item} interface"),
                Op::ModifyEni(ModifyEni {
                    id: v.id.clone(),
                    interface: v.interface.clone(),
                }),
            )?;
            p.modified(format!("eni {} interface {}", v.id, v.interface));
        }
    }
    for v in &cfg.uplinks {
        let stored = p.state.uplinks.get(&v.interface);
        let diffs = stored.map(|s| vec![diff("vswitch", &v.vswitch, &s.vswitch)]);
        p.entry("uplink", &v.interface, diffs, Op::CreateUplink(v.clone()))?;
    }
    for v in &cfg.havips {
        let id = v.create.id.clone().unwrap_or_default();
        let stored = p.state.havips.get(&id).cloned();
        let diffs = stored.as_ref().map(|s| {
            vec![
                diff("vswitch", &v.create.vswitch, &s.vswitch),
                v.create
                    .address
                    .and_then(|a| diff("address", &a, &s.address)),
            ]
        });
        let item = p.entry("havip", &id, diffs, Op::CreateHaVip(v.create.clone()))?;
        if let Some(s) = stored {
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
            continue;
        }
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
    }
    for v in &cfg.eips {
        let id = v.create.id.clone().unwrap_or_default();
        let stored = p.state.eips.get(&id);
        let diffs = stored.map(|s| vec![diff("address", &v.create.address, &s.address)]);
        let created = stored.is_none();
        let item = p.entry("eip", &id, diffs, Op::CreateEip(v.create.clone()))?;
        if let (true, Some(h)) = (created, &v.havip) {
            p.run(
                &format!("{item} havip"),
                Op::AssociateEip(AssociateEip {
                    eip: id.clone(),
                    havip: h.clone(),
                }),
            )?;
        }
    }
    for v in &cfg.routes {
        let id = v.id.clone().unwrap_or_default();
        let diffs = p.state.routes.get(&id).map(|s| {
            vec![
                diff("vpc", &v.vpc, &s.vpc),
                diff("destination", &v.destination, &s.destination),
                diff("next_hop", &v.next_hop_havip, &s.next_hop_havip),
            ]
        });
        p.entry("route", &id, diffs, Op::CreateRoute(v.clone()))?;
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
