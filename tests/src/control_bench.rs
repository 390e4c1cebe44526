//! Control-plane figures for `cargo xtask bench` (issue 4): associate /
//! unassociate operations per second (in process, and over the HTTP API on a
//! unix socket) and the agent's cold and warm start with many HaVips.
//! Everything durable: each acknowledged operation is on disk (redb commit).

use std::{
    net::Ipv4Addr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;

use havip::{
    api,
    control::{desired, ControlPlane, HaVipView},
    dataplane::{loader::ifindex_of, reconcile, AttachMode, Dataplane},
    model::{
        AssociateHaVip, BindingKind, CreateEni, CreateHaVip, CreateVSwitch, CreateVpc, Ipv4Cidr,
        MacAddr, Member, Op, SetQuota, UnassociateHaVip,
    },
};

use crate::{
    lab::{self, Netns},
    scenario::Scratch,
};

/// What [`measure`] found.
#[derive(Clone, Debug, Serialize)]
pub struct ControlFigures {
    pub havips: usize,
    /// Creating and binding all HaVips (batched transactions).
    pub seed_s: f64,
    pub ops_measured: usize,
    /// Associate/unassociate, one caller, in process.
    pub ops_per_sec_1_caller: f64,
    /// The same with 16 concurrent callers (group commit).
    pub ops_per_sec_16_callers: f64,
    /// 16 concurrent `havipctl`-style HTTP clients on the unix socket.
    pub api_ops_per_sec_16_clients: f64,
    /// Opening the store and loading every resource.
    pub store_open_ms: f64,
    /// Store open + desired state + load the XDP object + attach to the
    /// ports + reconcile every HaVip into empty maps.
    pub agent_cold_start_ms: f64,
    /// The same with the maps and links already pinned (a restart).
    pub agent_warm_start_ms: f64,
}

const INTERFACES: [&str; 3] = ["cb0", "cb1", "cb2"];

fn member(i: usize) -> Member {
    Member {
        kind: BindingKind::Eni,
        id: format!("eni-{i}"),
    }
}

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, (i / 250 + 1) as u8, (i % 250 + 2) as u8)
}

/// Creates the VPC, vSwitch, three ENIs and `havips` HaVips bound to two
/// of them, in batches of 500 HaVips.
///
/// # Errors
/// A refused operation (e.g. a store that is not empty).
pub fn seed(cp: &ControlPlane, havips: usize) -> Result<()> {
    seed_batched(cp, havips, 500)
}

/// As [`seed`], `batch` HaVips per transaction (etcd refuses a transaction
/// of more than `--max-txn-ops` operations, 128 by default).
///
/// # Errors
/// A refused operation (e.g. a store that is not empty).
pub fn seed_batched(cp: &ControlPlane, havips: usize, batch: usize) -> Result<()> {
    let parse = |s: &str| s.parse::<Ipv4Cidr>().map_err(|e| anyhow::anyhow!("{e}"));
    let mut ops = vec![
        Op::CreateVpc(CreateVpc {
            id: "vpc-b".into(),
            cidr: parse("10.0.0.0/8")?,
        }),
        Op::CreateVSwitch(CreateVSwitch {
            vni: None,
            id: "vsw-b".into(),
            vpc: "vpc-b".into(),
            cidr: parse("10.64.0.0/16")?,
            gateway_mac: MacAddr([2, 0, 0, 0, 0, 1]),
        }),
        Op::SetQuota(SetQuota {
            havips_per_account: Some(havips + 10),
            havips_per_vpc: Some(havips + 10),
            havip_routes_per_vpc: None,
        }),
    ];
    for (i, ifname) in INTERFACES.iter().enumerate() {
        ops.push(Op::CreateEni(CreateEni {
            host: None,
            id: format!("eni-{i}"),
            vswitch: "vsw-b".into(),
            mac: MacAddr([2, 0, 0, 0, 0xe0, i as u8]),
            interface: (*ifname).into(),
            instance: None,
            primary: false,
        }));
    }
    cp.apply_all(&ops)
        .map_err(|(i, e)| anyhow::anyhow!("setup op {i}: {e}"))?;
    for chunk in (0..havips).collect::<Vec<_>>().chunks(batch.max(1)) {
        let mut ops = Vec::with_capacity(chunk.len() * 3);
        for &i in chunk {
            ops.push(Op::CreateHaVip(CreateHaVip {
                id: Some(format!("hv-{i}")),
                vswitch: "vsw-b".into(),
                address: Some(address(i)),
                ..Default::default()
            }));
            for m in 0..2 {
                ops.push(Op::AssociateHaVip(AssociateHaVip {
                    havip: format!("hv-{i}"),
                    member: member(m),
                }));
            }
        }
        cp.apply_all(&ops)
            .map_err(|(i, e)| anyhow::anyhow!("seed op {i}: {e}"))?;
    }
    Ok(())
}

/// Associate + unassociate of ENI 2 on `count / 2` HaVips from `callers`
/// threads; returns operations per second.
///
/// # Errors
/// A refused operation.
pub fn churn(cp: &Arc<ControlPlane>, havips: usize, count: usize, callers: usize) -> Result<f64> {
    churn_from(cp, 0, havips, count, callers)
}

/// As [`churn`] on HaVips `first .. first + havips` only (two control
/// planes churning disjoint HaVips).
///
/// # Errors
/// A refused operation.
pub fn churn_from(
    cp: &Arc<ControlPlane>,
    first: usize,
    havips: usize,
    count: usize,
    callers: usize,
) -> Result<f64> {
    let per = count / 2 / callers;
    let start = Instant::now();
    let handles: Vec<_> = (0..callers)
        .map(|t| {
            let cp = cp.clone();
            std::thread::spawn(move || -> Result<()> {
                for k in 0..per {
                    // Each caller owns the HaVips ≡ t (mod callers): no two
                    // callers ever bind the same HaVip at once.
                    let h = format!("hv-{}", first + (k % (havips / callers)) * callers + t);
                    cp.apply(Op::AssociateHaVip(AssociateHaVip {
                        havip: h.clone(),
                        member: member(2),
                    }))?;
                    cp.apply(Op::UnassociateHaVip(UnassociateHaVip {
                        havip: h,
                        member: member(2),
                        force: false,
                    }))?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("caller panicked"))??;
    }
    Ok((per * callers * 2) as f64 / start.elapsed().as_secs_f64())
}

fn churn_api(socket: &std::path::Path, havips: usize, count: usize, clients: usize) -> Result<f64> {
    let per = count / 2 / clients;
    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|t| {
            let client = api::Client::unix(socket);
            std::thread::spawn(move || -> Result<()> {
                for k in 0..per {
                    let h = format!("hv-{}", (k % (havips / clients)) * clients + t);
                    let _: HaVipView = client.apply(AssociateHaVip {
                        havip: h.clone(),
                        member: member(2),
                    })?;
                    let _: HaVipView = client.apply(UnassociateHaVip {
                        havip: h,
                        member: member(2),
                        force: false,
                    })?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
    }
    Ok((per * clients * 2) as f64 / start.elapsed().as_secs_f64())
}

/// One agent start, as `agent::run` does it up to "data plane ready".
fn agent_start(db: &std::path::Path, pin_dir: &std::path::Path) -> Result<Duration> {
    let start = Instant::now();
    let cp = ControlPlane::open(db)?;
    let mut dp = Dataplane::load(pin_dir)?;
    for ifname in INTERFACES {
        dp.attach(ifname, AttachMode::Native)?;
    }
    let want = cp.with_state(|s| {
        desired::desired(s, &ifindex_of, havip_common::DataplaneConfig::default())
    })?;
    reconcile(&mut dp.maps, &want)?;
    Ok(start.elapsed())
}

/// Measures everything with `havips` HaVips and `ops` churn operations.
///
/// # Errors
/// Set-up failures (root, bpffs, netns) or a refused operation.
pub fn measure(havips: usize, ops: usize) -> Result<ControlFigures> {
    let scratch = Scratch::new("cb")?;
    let db = scratch.dir.join("state.redb");
    let cp = Arc::new(ControlPlane::open(&db)?);
    let t = Instant::now();
    seed(&cp, havips)?;
    let seed_s = t.elapsed().as_secs_f64();

    let ops_per_sec_1_caller = churn(&cp, havips, ops / 4, 1)?;
    let ops_per_sec_16_callers = churn(&cp, havips, ops, 16)?;

    let socket = scratch.dir.join("api.sock");
    let rt = tokio::runtime::Runtime::new()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let listener = {
        let _guard = rt.enter();
        api::bind_unix(&socket)?
    };
    let server = rt.spawn(api::serve_unix_listener(listener, cp.clone(), async move {
        let _ = stop_rx.await;
    }));
    let api_ops_per_sec_16_clients = churn_api(&socket, havips, ops, 16)?;
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    drop(cp);

    let t = Instant::now();
    let cp = ControlPlane::open(&db)?;
    let store_open_ms = t.elapsed().as_secs_f64() * 1000.0;
    let loaded = cp.with_state(|s| s.havips.len());
    anyhow::ensure!(
        loaded == havips,
        "store reopened with {loaded} HaVips, want {havips}"
    );
    drop(cp);

    // The agent's start in a namespace with the ENIs' host interfaces.
    let ns = Netns::create(&lab::unique_name("hvtc"))?;
    for ifname in INTERFACES {
        lab::veth(&ns, ifname, &ns, &format!("{ifname}p"))?;
    }
    let (db2, pins) = (db.clone(), scratch.pin_dir.clone());
    let (cold, warm) = ns.run(move || -> Result<(Duration, Duration)> {
        let cold = agent_start(&db2, &pins).context("cold start")?;
        let warm = agent_start(&db2, &pins).context("warm start")?;
        Ok((cold, warm))
    })??;
    Ok(ControlFigures {
        havips,
        seed_s,
        ops_measured: ops,
        ops_per_sec_1_caller,
        ops_per_sec_16_callers,
        api_ops_per_sec_16_clients,
        store_open_ms,
        agent_cold_start_ms: cold.as_secs_f64() * 1000.0,
        agent_warm_start_ms: warm.as_secs_f64() * 1000.0,
    })
}
