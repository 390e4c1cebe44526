//! `havipctl route ...`: route entries whose next hop is a HaVip.

use havip::{
    api::{Client, ClientError},
    model::RouteEntry,
};

use crate::{
    args::RouteCmd,
    output::{apply_or_list, table_of, Output},
};

fn rows(routes: &[RouteEntry]) -> String {
    table_of(&["ID", "VPC", "DESTINATION", "NEXT HOP"], routes, |r| {
        vec![
            r.id.clone(),
            r.vpc.clone(),
            r.destination.to_string(),
            r.next_hop_havip.clone(),
        ]
    })
}

pub fn run(client: &Client, out: Output, cmd: RouteCmd) -> Result<(), ClientError> {
    apply_or_list::<RouteEntry>(client, out, cmd.into_op(), "route entry", "routes", rows)
}
