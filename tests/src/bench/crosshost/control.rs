//! The control plane on the etcd store: associate/unassociate ops/s.

use super::*;

/// A control plane on etcd that follows the others' commits (the agent's
/// sync task, on `rt`), as one host's agent has it.
pub(super) fn etcd_control_plane(
    etcd: &Etcd,
    prefix: &str,
    host: &str,
    rt: &tokio::runtime::Runtime,
) -> Result<Arc<ControlPlane>> {
    let store = EtcdStore::connect(&EtcdConfig {
        endpoints: vec![etcd.endpoint()],
        prefix: prefix.into(),
        ..EtcdConfig::default()
    })?;
    let handle = store.handle();
    let cp = Arc::new(ControlPlane::with_store(store)?);
    let local = LocalHost {
        id: host.into(),
        interface: "lo".into(),
        vtep: Ipv4Addr::LOCALHOST,
        mac: MacAddr([2, 0, 0, 0, 0, 1]),
    };
    rt.spawn(cluster::sync::run(Cluster::new(handle, local, cp.clone())));
    Ok(cp)
}

pub(super) fn control(bench: &mut Bench, report: &mut Report) -> Result<()> {
    super::super::interrupt::check()?;
    let havips = 1_000;
    let ops = if bench.params.quick { 2_000 } else { 8_000 };
    bench.progress.step(format!(
        "cross-host control plane: etcd store, {havips} HaVips, {ops} associate/unassociate ops"
    ));
    let etcd = Etcd::start_local()?;
    let prefix = format!("/{}", lab::unique_name("hvbx"));
    let rt = tokio::runtime::Runtime::new()?;
    let cp = etcd_control_plane(&etcd, &prefix, "bench-1", &rt)?;
    let t = Instant::now();
    // 40 HaVips (and their bindings) per commit: one etcd txn stays under
    // etcd's default limit of 128 operations.
    control_bench::seed_batched(&cp, havips, 40)?;
    let seed_s = t.elapsed().as_secs_f64();
    let one = control_bench::churn(&cp, havips, ops / 4, 1)?;
    let sixteen = control_bench::churn(&cp, havips, ops, 16)?;
    // Two hosts' control planes on the same etcd, 8 callers each: every
    // commit is a compare on the shared revision, so they contend.
    // Two hosts' control planes on the same etcd (each on a fresh prefix,
    // seeded again), each churning its own half of the HaVips, with 1
    // caller each, then 8 callers each.
    let half = havips / 2;
    let two_planes = |callers: usize| -> Result<f64> {
        let prefix = format!("/{}", lab::unique_name("hvbx"));
        let cp1 = etcd_control_plane(&etcd, &prefix, "bench-1", &rt)?;
        control_bench::seed_batched(&cp1, havips, 40)?;
        let cp2 = etcd_control_plane(&etcd, &prefix, "bench-2", &rt)?;
        let t = Instant::now();
        std::thread::scope(|s| -> Result<f64> {
            let h1 = s.spawn(|| control_bench::churn_from(&cp1, 0, half, ops / 2, callers));
            let h2 = s.spawn(|| control_bench::churn_from(&cp2, half, half, ops / 2, callers));
            h1.join()
                .map_err(|_| anyhow::anyhow!("churn on host 1 panicked"))??;
            h2.join()
                .map_err(|_| anyhow::anyhow!("churn on host 2 panicked"))??;
            Ok(ops as f64 / t.elapsed().as_secs_f64())
        })
    };
    let mut two = Vec::new();
    for callers in [1, 8] {
        match two_planes(callers) {
            Ok(v) => two.push((callers, Some(v), None)),
            Err(e) => {
                report.note(format!(
                    "etcd, two control planes with {callers} callers each: {e:#}"
                ));
                two.push((callers, None, Some(format!("{e:#}"))));
            }
        }
    }
    let two_hosts = two.iter().find(|t| t.0 == 8).and_then(|t| t.1);
    let two_hosts_1 = two.iter().find(|t| t.0 == 1).and_then(|t| t.1);
    let two_hosts_error = two.iter().find(|t| t.0 == 8).and_then(|t| t.2.clone());
    drop(cp);
    rt.shutdown_background();
    report.set(
        KEY_CONTROL,
        json!({
            "havips": havips,
            "ops_measured": ops,
            "seed_s": {"unit": "s", "value": seed_s},
            "ops_per_sec_1_caller": {"unit": "ops/s", "value": one},
            "ops_per_sec_16_callers": {"unit": "ops/s", "value": sixteen},
            "ops_per_sec_2_hosts_1_caller_each": {"unit": "ops/s", "value": two_hosts_1},
            "ops_per_sec_2_hosts_8_callers_each": {"unit": "ops/s", "value": two_hosts},
            "error_2_hosts_1_caller_each": two.iter().find(|t| t.0 == 1).and_then(|t| t.2.clone()),
            "error_2_hosts_8_callers_each": two_hosts_error,
            "two_hosts": "two control planes, each following etcd (the agent's sync task), \
                          8 callers each on disjoint halves of the HaVips; their commits race \
                          on the shared revision (a loser re-reads, validates again, retries)",
            "method": "havip_tests::control_bench churn (associate + unassociate of a third ENI on \
                       bound HaVips) on the etcd store: one etcd txn per commit, compared on the \
                       shared commit revision; etcd (Debian etcd-server) on 127.0.0.1, data under \
                       the temp dir, started by the bench",
        }),
    );
    report.md(
        "Control plane on etcd (1,000 HaVips)",
        format!(
            "| measurement | value |\n| --- | --- |\n\
             | associate/unassociate, 1 caller | {one:.0} ops/s |\n\
             | associate/unassociate, 16 callers | **{sixteen:.0} ops/s** |\n\
             | two hosts' control planes, 1 caller each, one etcd | {} |\n\
             | two hosts' control planes, 8 callers each, one etcd | {} |\n\
             | creating and binding 1,000 HaVips (batched) | {seed_s:.2} s |\n",
            two_hosts_1.map_or_else(
                || "failed (see the notes)".to_owned(),
                |v| format!("{v:.0} ops/s")
            ),
            two_hosts.map_or_else(
                || format!("failed: {}", two_hosts_error.as_deref().unwrap_or("-")),
                |v| format!("{v:.0} ops/s")
            ),
        ),
    );
    bench.progress.log(format!(
        "  etcd control plane: {one:.0} ops/s (1 caller), {sixteen:.0} ops/s (16 callers), {} (2 hosts)",
        two_hosts.map_or("-".into(), |v| format!("{v:.0} ops/s"))
    ));
    Ok(())
}
