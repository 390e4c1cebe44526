//! `havipctl quota get|set`.

use havip::{
    api::{Client, ClientError},
    model::Quotas,
};

use crate::{
    args::QuotaCmd,
    output::{table, Output},
};

fn rows(q: &Quotas) -> String {
    table(
        &["QUOTA", "VALUE"],
        &[
            vec![
                "havips_per_account".into(),
                q.havips_per_account.to_string(),
            ],
            vec!["havips_per_vpc".into(), q.havips_per_vpc.to_string()],
            vec![
                "havip_routes_per_vpc".into(),
                q.havip_routes_per_vpc.to_string(),
            ],
        ],
    )
}

pub fn run(client: &Client, out: Output, cmd: QuotaCmd) -> Result<(), ClientError> {
    let q: Quotas = match cmd {
        QuotaCmd::Get => client.quotas()?,
        QuotaCmd::Set(op) => client.apply(op)?,
    };
    out.show(&q, rows);
    Ok(())
}
