//! `havipctl vpc|vswitch|instance|eni|uplink create|list`: the resources
//! HaVips live in.

use havip::{
    api::{
        Client, ClientError, CreateEniRequest, CreateInstanceRequest, CreateUplinkRequest,
        CreateVSwitchRequest, CreateVpcRequest,
    },
    model::{Eni, Instance, Uplink, VSwitch, Vpc},
};

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
                v.host_interface.clone(),
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

pub fn vpc(client: &Client, out: Output, cmd: VpcCmd) -> Result<(), ClientError> {
    match cmd {
        VpcCmd::Create { id, cidr } => {
            let v = client.create_vpc(&CreateVpcRequest { id, cidr })?;
            out.show(&v, |v| vpcs(std::slice::from_ref(v)));
        }
        VpcCmd::List => {
            let v: Vec<Vpc> = client.list("vpcs")?;
            out.show(&v, |v| vpcs(v));
        }
    }
    Ok(())
}

pub fn vswitch(client: &Client, out: Output, cmd: VswitchCmd) -> Result<(), ClientError> {
    match cmd {
        VswitchCmd::Create {
            id,
            vpc,
            cidr,
            gateway_mac,
        } => {
            let v = client.create_vswitch(&CreateVSwitchRequest {
                id,
                vpc,
                cidr,
                gateway_mac,
            })?;
            out.show(&v, |v| vswitches(std::slice::from_ref(v)));
        }
        VswitchCmd::List => {
            let v: Vec<VSwitch> = client.list("vswitches")?;
            out.show(&v, |v| vswitches(v));
        }
    }
    Ok(())
}

pub fn instance(client: &Client, out: Output, cmd: InstanceCmd) -> Result<(), ClientError> {
    match cmd {
        InstanceCmd::Create { id, vswitch } => {
            let v = client.create_instance(&CreateInstanceRequest { id, vswitch })?;
            out.show(&v, |v| instances(std::slice::from_ref(v)));
        }
        InstanceCmd::List => {
            let v: Vec<Instance> = client.list("instances")?;
            out.show(&v, |v| instances(v));
        }
    }
    Ok(())
}

pub fn eni(client: &Client, out: Output, cmd: EniCmd) -> Result<(), ClientError> {
    match cmd {
        EniCmd::Create {
            id,
            vswitch,
            mac,
            interface,
            instance,
            primary,
        } => {
            let v = client.create_eni(&CreateEniRequest {
                id,
                vswitch,
                mac,
                interface,
                instance,
                primary,
            })?;
            out.show(&v, |v| enis(std::slice::from_ref(v)));
        }
        EniCmd::List => {
            let v: Vec<Eni> = client.list("enis")?;
            out.show(&v, |v| enis(v));
        }
    }
    Ok(())
}

pub fn uplink(client: &Client, out: Output, cmd: UplinkCmd) -> Result<(), ClientError> {
    match cmd {
        UplinkCmd::Create { interface, vswitch } => {
            let v = client.create_uplink(&CreateUplinkRequest { interface, vswitch })?;
            out.show(&v, |v| uplinks(std::slice::from_ref(v)));
        }
        UplinkCmd::List => {
            let v: Vec<Uplink> = client.list("uplinks")?;
            out.show(&v, |v| uplinks(v));
        }
    }
    Ok(())
}
