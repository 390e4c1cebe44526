//! `havipctl vpc|vswitch|instance|eni|uplink create|delete|list` (and
//! `eni modify`): the resources
//! HaVips live in.

use havip::{
    api::{Client, ClientError, Deleted},
    model::{Eni, Instance, Op, Uplink, VSwitch, Vpc},
};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    args::{EniCmd, InstanceCmd, UplinkCmd, VpcCmd, VswitchCmd},
    output::{or_dash, table, Output},
};

fn vpcs(v: &[Vpc]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|v| vec![v.id.clone(), v.cidr.to_string()])
        .collect();
    table(&["ID", "CIDR"], &rows)
}

fn vswitches(v: &[VSwitch]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.vpc.clone(),
                v.cidr.to_string(),
                v.gateway_mac.to_string(),
                v.dp_id.to_string(),
            ]
        })
        .collect();
    table(&["ID", "VPC", "CIDR", "GATEWAY MAC", "DP ID"], &rows)
}

fn instances(v: &[Instance]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|v| vec![v.id.clone(), v.vswitch.clone()])
        .collect();
    table(&["ID", "VSWITCH"], &rows)
}

fn enis(v: &[Eni]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.vswitch.clone(),
                v.mac.to_string(),
                v.interface.clone(),
                or_dash(v.instance.as_ref()),
                if v.primary { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    table(
        &["ID", "VSWITCH", "MAC", "INTERFACE", "INSTANCE", "PRIMARY"],
        &rows,
    )
}

fn uplinks(v: &[Uplink]) -> String {
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|v| vec![v.interface.clone(), v.vswitch.clone()])
        .collect();
    table(&["INTERFACE", "VSWITCH"], &rows)
}

/// Runs a create / delete / modify operation and shows its reply, or lists.
fn apply_or_list<T: DeserializeOwned + Serialize>(
    client: &Client,
    out: Output,
    op: Option<Op>,
    kind: &str,
    list: &str,
    table: fn(&[T]) -> String,
) -> Result<(), ClientError> {
    match op {
        Some(op) if op.is_delete() => {
            let d: Deleted = client.apply(op)?;
            out.show(&d, |d| format!("deleted {kind} {}", d.deleted));
        }
        Some(op) => {
            let v: T = client.apply(op)?;
            out.show(&v, |v| table(std::slice::from_ref(v)));
        }
        None => {
            let v: Vec<T> = client.list(list)?;
            out.show(&v, |v| table(v));
        }
    }
    Ok(())
}

pub fn vpc(client: &Client, out: Output, cmd: VpcCmd) -> Result<(), ClientError> {
    let op = match cmd {
        VpcCmd::Create(op) => Some(op.into()),
        VpcCmd::Delete(op) => Some(op.into()),
        VpcCmd::List => None,
    };
    apply_or_list::<Vpc>(client, out, op, "VPC", "vpcs", vpcs)
}

pub fn vswitch(client: &Client, out: Output, cmd: VswitchCmd) -> Result<(), ClientError> {
    let op = match cmd {
        VswitchCmd::Create(op) => Some(op.into()),
        VswitchCmd::Delete(op) => Some(op.into()),
        VswitchCmd::List => None,
    };
    apply_or_list::<VSwitch>(client, out, op, "vSwitch", "vswitches", vswitches)
}

pub fn instance(client: &Client, out: Output, cmd: InstanceCmd) -> Result<(), ClientError> {
    let op = match cmd {
        InstanceCmd::Create(op) => Some(op.into()),
        InstanceCmd::Delete(op) => Some(op.into()),
        InstanceCmd::List => None,
    };
    apply_or_list::<Instance>(client, out, op, "instance", "instances", instances)
}

pub fn eni(client: &Client, out: Output, cmd: EniCmd) -> Result<(), ClientError> {
    let op = match cmd {
        EniCmd::Create(op) => Some(op.into()),
        EniCmd::Delete(op) => Some(op.into()),
        EniCmd::Modify(op) => Some(op.into()),
        EniCmd::List => None,
    };
    apply_or_list::<Eni>(client, out, op, "ENI", "enis", enis)
}

pub fn uplink(client: &Client, out: Output, cmd: UplinkCmd) -> Result<(), ClientError> {
    let op = match cmd {
        UplinkCmd::Create(op) => Some(op.into()),
        UplinkCmd::Delete(op) => Some(op.into()),
        UplinkCmd::List => None,
    };
    apply_or_list::<Uplink>(client, out, op, "uplink", "uplinks", uplinks)
}
