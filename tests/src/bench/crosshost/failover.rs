//! Cross-host failover: a claim on one host -> the first frame at the new
//! owner from a client on a third host (real agents on etcd).

use super::*;

/// Stream interval of the failover measurement (resolution of a latency).
pub(super) const STREAM_INTERVAL: Duration = Duration::from_micros(200);

pub(super) fn failover(bench: &mut Bench, report: &mut Report) -> Result<()> {
    super::super::interrupt::check()?;
    let switches = if bench.params.quick { 20 } else { 100 };
    bench
        .progress
        .step("cross-host failover: 3 hosts, etcd, 3 agents");
    let mh = MultiHost::new("a")?;
    mh.converged(None, Duration::from_secs(15))?;
    let guest = |name: &str| {
        GUESTS
            .iter()
            .find(|g| g.1 == name)
            .map(|g| (g.0, g.3))
            .context("guest")
    };
    let (na, _) = guest("a")?;
    let (nb, _) = guest("b")?;
    let (nc, _) = guest("c")?;
    let a_ns = &mh.fabric.guest(na, "a")?.ns;
    let b_ns = &mh.fabric.guest(nb, "b")?.ns;
    let c_ns = &mh.fabric.guest(nc, "c")?.ns;
    let stream = Stream::start(
        c_ns,
        SocketAddrV4::new(VIP, 7900),
        STREAM_INTERVAL,
        &[("a", a_ns), ("b", b_ns)],
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let mut claims: Vec<(&str, Instant)> = Vec::with_capacity(switches);
    for i in 0..switches {
        super::super::interrupt::check()?;
        bench.progress.step(format!(
            "cross-host failover {}/{switches}: claim on h{}",
            i + 1,
            if i % 2 == 0 { nb } else { na }
        ));
        let who = if i % 2 == 0 { "b" } else { "a" };
        let t = Instant::now();
        mh.claim(who)?;
        claims.push((who, t));
        mh.converged(Some(guest(who)?.1), Duration::from_secs(10))?;
        // Let the stream settle on the new owner before the next claim.
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(50));
    let rep = stream.finish()?;
    let mut lat_ms = Vec::with_capacity(claims.len());
    for (who, t) in &claims {
        let first = rep
            .received
            .get(*who)
            .and_then(|v| v.iter().map(|(_, at)| *at).filter(|at| at > t).min());
        match first {
            Some(at) => lat_ms.push((at - *t).as_secs_f64() * 1000.0),
            None => bail!("no datagram reached {who} after its claim"),
        }
    }
    drop(mh);
    let mut sorted = lat_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&sorted, 50.0), percentile(&sorted, 99.0));
    let max = sorted.last().copied().unwrap_or(0.0);
    report.set(
        KEY_FAILOVER,
        json!({
            "switches": claims.len(),
            "p50_ms": {"unit": "ms", "value": p50},
            "p99_ms": {"unit": "ms", "value": p99},
            "max_ms": {"unit": "ms", "value": max},
            "stream_interval_us": STREAM_INTERVAL.as_micros() as u64,
            "samples_ms": lat_ms,
            "method": "3 hosts (namespaces) with their agents on one etcd; client on h3 streams UDP \
                       to the HaVip every 200 us; a gratuitous ARP from the member on h2, then h1, \
                       alternately; latency = first datagram at the new owner after the claim was \
                       sent (XDP claim, publish to etcd, watch on h3, remote owner installed, \
                       encap to the new host); resolution: the stream interval",
        }),
    );
    report.target(
        "crosshost_failover_ms_p99",
        "cross-host failover (claim on host B -> first frame from a client on another host at the new owner), p99",
        "ms",
        Cmp::AtMost,
        10.0,
        Some(p99),
    );
    report.md(
        "Cross-host failover (claim -> first frame from a client on a third host)",
        format!(
            "{} switches: p50 **{p50:.2} ms**, p99 **{p99:.2} ms**, max {max:.2} ms \
             (stream every {} us).\n",
            claims.len(),
            STREAM_INTERVAL.as_micros()
        ),
    );
    bench.progress.log(format!(
        "  cross-host failover: p50 {p50:.2} ms, p99 {p99:.2} ms over {} switches",
        claims.len()
    ));
    Ok(())
}
