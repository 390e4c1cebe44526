//! `havipctl eip ...`: EIPs and their association with HaVips.

use havip::{
    api::{Client, ClientError},
    model::Eip,
};

use crate::{
    args::EipCmd,
    output::{apply_or_list, or_dash, table_of, Output},
};

fn rows(eips: &[Eip]) -> String {
    table_of(&["ID", "ADDRESS", "HAVIP"], eips, |e| {
        vec![
            e.id.clone(),
            e.address.to_string(),
            or_dash(e.havip.as_ref()),
        ]
    })
}

pub fn run(client: &Client, out: Output, cmd: EipCmd) -> Result<(), ClientError> {
    apply_or_list::<Eip>(client, out, cmd.into_op(), "EIP", "eips", rows)
}
