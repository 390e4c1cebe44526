//! Task: this host's registration, `<prefix>/hosts/<host>` = [`HostRecord`]
//! under a lease of [`LEASE_TTL_S`] seconds kept alive every second. When
//! the agent dies the record expires (Describe shows the host down); its
//! VTEP record `<prefix>/vteps/<host>` is permanent, so the other hosts keep
//! tunnelling to its data plane, which still forwards; its ENIs stay in
//! the state. After any error (etcd away, lease
//! lost) it registers again with a new lease.

use std::{sync::Arc, time::Duration};

use anyhow::{anyhow, Context, Result};
use etcd_client::PutOptions;
use tracing::{info, warn};

use super::{Cluster, HostRecord};

/// Lease time to live of a registration.
pub const LEASE_TTL_S: i64 = 5;
/// Keep-alive period.
const KEEPALIVE: Duration = Duration::from_secs(1);

/// Runs forever (spawn it).
pub async fn run(c: Arc<Cluster>) {
    let mut logged = false;
    loop {
        if let Err(e) = once(&c).await {
            if !logged {
                warn!(error = format!("{e:#}"), "host registration lost; retrying");
                logged = true;
            }
        } else {
            logged = false;
        }
        tokio::time::sleep(super::sync::RETRY).await;
    }
}

async fn once(c: &Cluster) -> Result<()> {
    let mut client = c.etcd.client.clone();
    let t = c.etcd.timeout;
    let lease = tokio::time::timeout(t, client.lease_grant(LEASE_TTL_S, None))
        .await
        .context("lease grant timed out")??
        .id();
    let rec = HostRecord {
        host: c.local.id.clone(),
        vtep: c.local.vtep,
        mac: c.local.mac,
    };
    let key = format!("{}{}", c.etcd.hosts_prefix(), c.local.id);
    let vtep_key = format!("{}{}", c.etcd.vteps_prefix(), c.local.id);
    tokio::time::timeout(t, client.put(vtep_key, serde_json::to_vec(&rec)?, None))
        .await
        .context("VTEP record timed out")??;
    tokio::time::timeout(
        t,
        client.put(
            key,
            serde_json::to_vec(&rec)?,
            Some(PutOptions::new().with_lease(lease)),
        ),
    )
    .await
    .context("registration timed out")??;
    info!(host = %c.local.id, vtep = %c.local.vtep, "host registered");
    let (mut keeper, mut stream) = client.lease_keep_alive(lease).await?;
    loop {
        keeper.keep_alive().await?;
        let resp = tokio::time::timeout(t, stream.message())
            .await
            .context("keep-alive timed out")??
            .ok_or_else(|| anyhow!("keep-alive stream ended"))?;
        if resp.ttl() <= 0 {
            return Err(anyhow!("lease {lease} expired"));
        }
        tokio::time::sleep(KEEPALIVE).await;
    }
}
