//! `havipctl eip ...`: EIPs and their association with HaVips.

use havip::{
    api::{Client, ClientError, CreateEipRequest},
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
    match cmd {
        EipCmd::Create { address, id } => {
            let e = client.create_eip(&CreateEipRequest { id, address })?;
            out.show(&e, |e| rows(std::slice::from_ref(e)));
        }
        EipCmd::Delete { id } => {
            let d = client.delete_eip(&id)?;
            out.show(&d, |d| format!("deleted EIP {}", d.deleted));
        }
        EipCmd::List => {
            let e = client.list_eips()?;
            out.show(&e, |e| rows(e));
        }
        EipCmd::Associate { id, havip } => {
            let e = client.associate_eip(&id, &havip)?;
            out.show(&e, |e| rows(std::slice::from_ref(e)));
        }
        EipCmd::Unassociate { id } => {
            let e = client.unassociate_eip(&id)?;
            out.show(&e, |e| rows(std::slice::from_ref(e)));
        }
    }
    Ok(())
}
