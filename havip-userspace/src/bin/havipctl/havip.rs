//! `havipctl havip ...`: Create/Delete/Describe/Associate/Unassociate HaVip.

use havip::{
    api::{Client, ClientError, CreateHaVipRequest},
    control::{HaVipStatus, HaVipView},
    validate::Member,
};

use crate::{
    args::{HavipCmd, MemberArgs},
    output::{list, or_dash, table, Output},
};

fn member(m: MemberArgs) -> Member {
    match (m.instance, m.eni) {
        (Some(i), _) => Member::instance(i),
        (None, Some(e)) => Member::eni(e),
        // clap's group guarantees one of them.
        (None, None) => Member::instance(String::new()),
    }
}

fn status(s: HaVipStatus) -> &'static str {
    match s {
        HaVipStatus::Available => "Available",
        HaVipStatus::InUse => "InUse",
    }
}

fn rows(views: &[HaVipView]) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.address.to_string(),
                v.vswitch.clone(),
                status(v.status).to_owned(),
                or_dash(v.binding_kind),
                list(&v.bindings),
                or_dash(v.master.as_ref()),
                v.epoch.to_string(),
                or_dash(v.eip.as_ref().map(|e| e.address)),
            ]
        })
        .collect();
    table(
        &[
            "ID", "ADDRESS", "VSWITCH", "STATUS", "KIND", "BINDINGS", "MASTER", "EPOCH", "EIP",
        ],
        &rows,
    )
}

/// Key/value view of one HaVip.
pub fn detail(v: &HaVipView) -> String {
    let owner = v
        .owner
        .filter(|o| o.has_owner())
        .map(|o| format!("ifindex {} mac {}", o.ifindex, o.mac));
    let counters = v
        .counters
        .map(|c| format!("{} packets, {} bytes", c.packets, c.bytes));
    let lines = [
        ("id", v.id.clone()),
        ("address", v.address.to_string()),
        ("vpc", v.vpc.clone()),
        ("vswitch", v.vswitch.clone()),
        ("status", status(v.status).to_owned()),
        ("binding kind", or_dash(v.binding_kind)),
        ("bindings", list(&v.bindings)),
        ("master", or_dash(v.master.as_ref())),
        ("owner", or_dash(owner)),
        ("epoch", v.epoch.to_string()),
        ("initial master", or_dash(v.initial_master.as_ref())),
        (
            "eip",
            or_dash(v.eip.as_ref().map(|e| format!("{} ({})", e.id, e.address))),
        ),
        ("slot", v.slot.to_string()),
        ("counters", or_dash(counters)),
    ];
    lines
        .iter()
        .map(|(k, v)| format!("{k:<15} {v}\n"))
        .collect()
}

pub fn run(client: &Client, out: Output, cmd: HavipCmd) -> Result<(), ClientError> {
    match cmd {
        HavipCmd::Create {
            vswitch,
            address,
            id,
        } => {
            let v = client.create_havip(&CreateHaVipRequest {
                id,
                vswitch,
                address,
            })?;
            out.show(&v, detail);
        }
        HavipCmd::Delete { id } => {
            let d = client.delete_havip(&id)?;
            out.show(&d, |d| format!("deleted HaVip {}", d.deleted));
        }
        HavipCmd::List => {
            let v = client.list_havips()?;
            out.show(&v, |v| rows(v));
        }
        HavipCmd::Describe { id } => {
            let v = client.get_havip(&id)?;
            out.show(&v, detail);
        }
        HavipCmd::Associate { id, member: m } => {
            let v = client.associate_havip(&id, member(m))?;
            out.show(&v, detail);
        }
        HavipCmd::Unassociate { id, member: m } => {
            let v = client.unassociate_havip(&id, member(m))?;
            out.show(&v, detail);
        }
        HavipCmd::SetMaster { id, member, clear } => {
            let member = if clear { None } else { member };
            let v = client.set_master(&id, member.as_deref())?;
            out.show(&v, detail);
        }
    }
    Ok(())
}
