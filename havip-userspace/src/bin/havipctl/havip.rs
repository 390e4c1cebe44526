//! `havipctl havip ...`: Create/Delete/Describe/Associate/Unassociate HaVip.

use havip::{
    api::{Client, ClientError, Deleted},
    control::{HaVipUsage, HaVipView},
};

use crate::{
    args::HavipCmd,
    output::{list, or_dash, table_of, Output},
};

fn status(s: HaVipUsage) -> &'static str {
    match s {
        HaVipUsage::Available => "Available",
        HaVipUsage::InUse => "InUse",
    }
}

fn rows(views: &[HaVipView]) -> String {
    table_of(
        &[
            "ID", "ADDRESS", "VSWITCH", "STATUS", "KIND", "BINDINGS", "OWNER", "EPOCH", "EIP",
        ],
        views,
        |v| {
            vec![
                v.id.clone(),
                v.address.to_string(),
                v.vswitch.clone(),
                status(v.status).to_owned(),
                or_dash(v.binding_kind),
                list(&v.bindings),
                or_dash(v.owner_member.as_ref()),
                v.epoch.to_string(),
                or_dash(v.eip.as_ref().map(|e| e.address)),
            ]
        },
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
        ("name", or_dash(v.name.as_ref())),
        ("description", or_dash(v.description.as_ref())),
        ("owner member", or_dash(v.owner_member.as_ref())),
        ("owner", or_dash(owner)),
        ("epoch", v.epoch.to_string()),
        ("owner host", or_dash(v.owner_host.as_ref())),
        (
            "shared owner",
            or_dash(
                v.shared_owner
                    .as_ref()
                    .map(|o| format!("{} on {} (epoch {})", o.eni, o.host, o.epoch)),
            ),
        ),
        ("initial owner", or_dash(v.initial_owner.as_ref())),
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
    let v: HaVipView = match cmd {
        HavipCmd::Delete(op) => {
            let d: Deleted = client.apply(op)?;
            out.show(&d, |d| format!("deleted HaVip {}", d.deleted));
            return Ok(());
        }
        HavipCmd::List => {
            let v = client.list_havips()?;
            out.show(&v, |v| rows(v));
            return Ok(());
        }
        HavipCmd::Describe { id } => client.get_havip(&id)?,
        HavipCmd::History { id } => {
            let h = client.history(&id)?;
            out.show(&h, |h| {
                h.iter()
                    .map(|c| format!("{} {}\n", c.time, c.summary()))
                    .collect()
            });
            return Ok(());
        }
        HavipCmd::Create(op) => client.apply(op)?,
        HavipCmd::Modify(op) => client.apply(op)?,
        HavipCmd::Associate(op) => client.apply(op)?,
        HavipCmd::Unassociate(op) => client.apply(op)?,
        HavipCmd::SetOwner(op) => client.apply(op)?,
    };
    out.show(&v, detail);
    Ok(())
}
