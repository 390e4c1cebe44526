//! `havipctl cluster`: this host's view of the cluster (`GET /v1/cluster`).

use havip::{
    api::{Client, ClientError},
    cluster::SyncStatus,
};

use crate::output::{list, Output};

/// Prints this host's sync with etcd: connection, revisions, hosts and
/// claims waiting to be published. With the embedded (redb) store there is
/// no cluster: says so (JSON: `null`).
///
/// # Errors
/// The agent is unreachable or its reply is not a cluster status.
pub fn run(client: &Client, out: Output) -> Result<(), ClientError> {
    let status: Option<SyncStatus> = client.call::<(), _>("GET", "/v1/cluster", None)?;
    out.show(&status, |s| match s {
        None => "single host (embedded store, no etcd)\n".to_owned(),
        Some(s) => text(s),
    });
    Ok(())
}

fn text(s: &SyncStatus) -> String {
    let down: Vec<String> = s
        .hosts
        .iter()
        .filter(|h| !s.hosts_alive.contains(h))
        .cloned()
        .collect();
    format!(
        "host:              {}\n\
         etcd:              {}\n\
         etcd revision:     {}\n\
         state revision:    {}\n\
         hosts alive:       {}\n\
         hosts down:        {}\n\
         pending publishes: {}\n",
        s.host,
        if s.connected {
            "connected"
        } else {
            "NOT CONNECTED"
        },
        s.last_revision,
        s.state_revision,
        list(&s.hosts_alive),
        list(&down),
        s.pending_publishes,
    )
}
