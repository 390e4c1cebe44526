//! `havipctl route ...`: route entries whose next hop is a HaVip.

use havip::{
    api::{Client, ClientError, Deleted},
    model::RouteEntry,
};

use crate::{
    args::RouteCmd,
    output::{table, Output},
};

fn rows(routes: &[RouteEntry]) -> String {
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.vpc.clone(),
                r.destination.to_string(),
                r.next_hop_havip.clone(),
            ]
        })
        .collect();
    table(&["ID", "VPC", "DESTINATION", "NEXT HOP"], &rows)
}

pub fn run(client: &Client, out: Output, cmd: RouteCmd) -> Result<(), ClientError> {
    match cmd {
        RouteCmd::Create(op) => {
            let r: RouteEntry = client.apply(op)?;
            out.show(&r, |r| rows(std::slice::from_ref(r)));
        }
        RouteCmd::Delete(op) => {
            let d: Deleted = client.apply(op)?;
            out.show(&d, |d| format!("deleted route entry {}", d.deleted));
        }
        RouteCmd::List => {
            let r = client.list_routes()?;
            out.show(&r, |r| rows(r));
        }
    }
    Ok(())
}
