//! `havipctl vpc|vswitch|instance|eni|uplink create|delete|list` (and
//! `eni modify`): the resources
//! HaVips live in.

use havip::{
    api::{Client, ClientError},
    model::{Eni, Instance, Uplink, VSwitch, Vpc},
};

use crate::{
    args::{EniCmd, InstanceCmd, UplinkCmd, VpcCmd, VswitchCmd},
    output::{apply_or_list, or_dash, table_of, Output},
};

fn vpcs(v: &[Vpc]) -> String {
    table_of(&["ID", "CIDR"], v, |v| {
        vec![v.id.clone(), v.cidr.to_string()]
    })
}

fn vswitches(v: &[VSwitch]) -> String {
    table_of(&["ID", "VPC", "CIDR", "GATEWAY MAC", "DP ID"], v, |v| {
        vec![
            v.id.clone(),
            v.vpc.clone(),
            v.cidr.to_string(),
            v.gateway_mac.to_string(),
            v.dp_id.to_string(),
        ]
    })
}

fn instances(v: &[Instance]) -> String {
    table_of(&["ID", "VSWITCH"], v, |v| {
        vec![v.id.clone(), v.vswitch.clone()]
    })
}

fn enis(v: &[Eni]) -> String {
    table_of(
        &["ID", "VSWITCH", "MAC", "INTERFACE", "INSTANCE", "PRIMARY"],
        v,
        |v| {
            vec![
                v.id.clone(),
                v.vswitch.clone(),
                v.mac.to_string(),
                v.interface.clone(),
                or_dash(v.instance.as_ref()),
                if v.primary { "yes" } else { "no" }.to_owned(),
            ]
        },
    )
}

fn uplinks(v: &[Uplink]) -> String {
    table_of(&["INTERFACE", "VSWITCH"], v, |v| {
        vec![v.interface.clone(), v.vswitch.clone()]
    })
}

pub fn vpc(client: &Client, out: Output, cmd: VpcCmd) -> Result<(), ClientError> {
    apply_or_list::<Vpc>(client, out, cmd.into_op(), "VPC", "vpcs", vpcs)
}

pub fn vswitch(client: &Client, out: Output, cmd: VswitchCmd) -> Result<(), ClientError> {
    apply_or_list::<VSwitch>(
        client,
        out,
        cmd.into_op(),
        "vSwitch",
        "vswitches",
        vswitches,
    )
}

pub fn instance(client: &Client, out: Output, cmd: InstanceCmd) -> Result<(), ClientError> {
    apply_or_list::<Instance>(
        client,
        out,
        cmd.into_op(),
        "instance",
        "instances",
        instances,
    )
}

pub fn eni(client: &Client, out: Output, cmd: EniCmd) -> Result<(), ClientError> {
    apply_or_list::<Eni>(client, out, cmd.into_op(), "ENI", "enis", enis)
}

pub fn uplink(client: &Client, out: Output, cmd: UplinkCmd) -> Result<(), ClientError> {
    apply_or_list::<Uplink>(client, out, cmd.into_op(), "uplink", "uplinks", uplinks)
}
