//! `havipctl eip ...`: EIPs and their association with HaVips.

use havip::{
    api::{Client, ClientError, Deleted},
    model::Eip,
};

use crate::{
    args::EipCmd,
    output::{or_dash, table, Output},
};

fn rows(eips: &[Eip]) -> String {
    let rows: Vec<Vec<String>> = eips
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.address.to_string(),
                or_dash(e.havip.as_ref()),
            ]
        })
        .collect();
    table(&["ID", "ADDRESS", "HAVIP"], &rows)
}

pub fn run(client: &Client, out: Output, cmd: EipCmd) -> Result<(), ClientError> {
    let e: Eip = match cmd {
        EipCmd::Delete(op) => {
            let d: Deleted = client.apply(op)?;
            out.show(&d, |d| format!("deleted EIP {}", d.deleted));
            return Ok(());
        }
        EipCmd::List => {
            let e = client.list_eips()?;
            out.show(&e, |e| rows(e));
            return Ok(());
        }
        EipCmd::Create(op) => client.apply(op)?,
        EipCmd::Associate(op) => client.apply(op)?,
        EipCmd::Unassociate(op) => client.apply(op)?,
    };
    out.show(&e, |e| rows(std::slice::from_ref(e)));
    Ok(())
}
