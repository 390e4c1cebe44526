//! Prometheus metrics (`[agent] metrics_listen`, off by default): what the
//! kernel counts, read from the pinned maps at scrape time, and what the
//! agent counts itself (owner changes and refused claims seen in the ring
//! buffer, reconcile durations, API requests by status code).
//!
//! Metric names (Prometheus text format 0.0.4; counters end in `_total`):
//!
//! | metric | type | labels | source |
//! | --- | --- | --- | --- |
//! | `havip_handled_frames_total` | counter | `outcome` | `HANDLED`, summed over CPUs |
//! | `havip_handled_bytes_total` | counter | `outcome` | `HANDLED` |
//! | `havip_dropped_frames_total` | counter | `reason` | `DROPS` |
//! | `havip_dropped_bytes_total` | counter | `reason` | `DROPS` |
//! | `havip_forwarded_packets_total` | counter | `havip` | `HAVIP_STATS` |
//! | `havip_forwarded_bytes_total` | counter | `havip` | `HAVIP_STATS` |
//! | `havip_owner_info` | gauge (1) | `havip`, `member`, `host`, `epoch` | `OWNERS` + the state |
//! | `havip_events_lost_total` | counter | | `EVENT_BUDGET` (ring buffer full) |
//! | `havip_security_events_suppressed_total` | counter | | `EVENT_BUDGET` (rate limit) |
//! | `havip_owner_changes_total` | counter | | event consumer |
//! | `havip_claims_refused_total` | counter | `reason` | event consumer |
//! | `havip_reconcile_duration_seconds` | histogram | | reconciler passes |
//! | `havip_api_requests_total` | counter | `code` | API server |
//! | `havip_build_info` | gauge (1) | `version` | the binary |
//!
//! Cardinality: the per-HaVip series (`havip` label: the HaVip id) are
//! bounded by the HaVip quota of the host (at most
//! `havip_common::MAX_HAVIPS` slots); `outcome` and `reason` are the fixed
//! enums of `havip-common`; `code` is an HTTP status. Refused claims are
//! counted as the ring buffer reports them, so rate-limited ones are in
//! `havip_security_events_suppressed_total` instead; the kernel's complete
//! count of refused claims is `havip_dropped_frames_total{reason="claim_..."}`.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, LazyLock, Mutex, PoisonError,
    },
    time::Instant,
};

use axum::{
    extract::{Request, State as AxState},
    http::{header, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use havip_common::{HavipKey, OwnerEntry, TrafficCounter};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        histogram::{exponential_buckets, Histogram},
        MetricType,
    },
    registry::{Registry, Unit},
};
use thiserror::Error;
use tracing::{error, info};

use crate::{
    control::ControlPlane,
    dataplane::{stats, Maps},
    model::MacAddr,
};

/// What the agent counts itself (one agent per process).
pub struct Recorded {
    owner_changes: Counter,
    claims_refused: Family<Vec<(String, String)>, Counter>,
    reconcile: Histogram,
    api_requests: Family<Vec<(String, String)>, Counter>,
    notify_runs: Family<Vec<(String, String)>, Counter>,
    /// Scrapes served (for the log only).
    scrapes: AtomicU64,
}

/// The process-wide counters the event consumer, the reconciler and the
/// API server feed.
pub static RECORDED: LazyLock<Recorded> = LazyLock::new(|| Recorded {
    owner_changes: Counter::default(),
    claims_refused: Family::default(),
    // 100 us .. ~3.3 s: a pass with no change takes well under a ms, one
    // that attaches or checks a veth peer a few ms to a few hundred.
    reconcile: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
    api_requests: Family::default(),
    notify_runs: Family::default(),
    scrapes: AtomicU64::new(0),
});

/// An owner change reported by the kernel (ring buffer).
pub fn owner_changed() {
    RECORDED.owner_changes.inc();
}

/// A refused claim reported by the kernel (ring buffer), by reason.
pub fn claim_refused(reason: &str) {
    RECORDED
        .claims_refused
        .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
        .inc();
}

/// One reconciler pass that started at `started`.
pub fn reconciled(started: Instant) {
    RECORDED.reconcile.observe(started.elapsed().as_secs_f64());
}

/// One API reply with status `code`.
pub fn api_request(code: u16) {
    RECORDED
        .api_requests
        .get_or_create(&vec![("code".to_owned(), code.to_string())])
        .inc();
}

/// One notify command run (or skip) with `result`: `ok`, `failed`,
/// `timeout`, `skipped`, `spawn_error`, `lagged` (events missed).
pub fn notify_run(result: &str) {
    RECORDED
        .notify_runs
        .get_or_create(&vec![("result".to_owned(), result.to_owned())])
        .inc();
}

/// Axum middleware: counts every API reply by status code.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    api_request(resp.status().as_u16());
    resp
}

/// Errors of the metrics endpoint set-up.
#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("metrics_listen = {0} is not a loopback address; set metrics_allow_remote = true to serve metrics on it (they have no authentication)")]
    Remote(SocketAddr),
    #[error("cannot bind the metrics listener {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Refuses a non-loopback metrics address unless `allow_remote`.
///
/// # Errors
/// [`MetricsError::Remote`].
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), MetricsError> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(MetricsError::Remote(addr))
    }
}

/// Reads the kernel's counters from the pinned maps at each scrape.
struct Pinned {
    pin_dir: PathBuf,
    /// Opened on first use (and again after a failure): the agent opens the
    /// metrics listener after the data plane is loaded, but a teardown can
    /// unpin the maps under it.
    maps: Mutex<Option<Maps>>,
    cp: Arc<ControlPlane>,
    host: String,
}

impl std::fmt::Debug for Pinned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pinned")
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

type Labels = Vec<(&'static str, String)>;

fn counter_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, v) in series {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Two counter families from the same traffic counters: packets
/// (`(name, help)` of `packets`) and bytes (`bytes`, unit bytes).
fn traffic_families(
    enc: &mut DescriptorEncoder,
    series: &[(Labels, TrafficCounter)],
    packets: (&str, &str),
    bytes: (&str, &str),
) -> Result<(), std::fmt::Error> {
    let values = |f: fn(&TrafficCounter) -> u64| -> Vec<(Labels, u64)> {
        series.iter().map(|(l, c)| (l.clone(), f(c))).collect()
    };
    counter_family(enc, packets.0, packets.1, None, &values(|c| c.packets))?;
    counter_family(
        enc,
        bytes.0,
        bytes.1,
        Some(&Unit::Bytes),
        &values(|c| c.bytes),
    )
}

fn host_of(owner: &OwnerEntry, local: &str) -> String {
    if owner.is_remote() {
        Ipv4Addr::from(owner.vtep).to_string()
    } else {
        local.to_owned()
    }
}

impl Collector for Pinned {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut guard = self.maps.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            match Maps::open_pinned(&self.pin_dir) {
                Ok(m) => *guard = Some(m),
                Err(e) => {
                    error!(error = %e, pin_dir = %self.pin_dir.display(), "metrics: pinned maps unreadable");
                    return Ok(());
                }
            }
        }
        let Some(maps) = guard.as_ref() else {
            return Ok(());
        };
        let label = |k: &'static str, v: &str| vec![(k, v.to_owned())];
        let handled: Vec<(Labels, TrafficCounter)> = stats::handled(maps)
            .into_iter()
            .map(|(h, c)| (label("outcome", h.name()), c))
            .collect();
        let drops: Vec<(Labels, TrafficCounter)> = stats::drops(maps)
            .into_iter()
            .map(|(d, c)| (label("reason", d.name()), c))
            .collect();

        // Per HaVip: ids and members from the state, numbers from the maps.
        let owners: Vec<(HavipKey, OwnerEntry)> =
            maps.owners.iter().filter_map(Result::ok).collect();
        let (rows, owner_rows): (Vec<(String, u32)>, Vec<Labels>) = self.cp.with_state(|s| {
            let rows = s.havips.values().map(|h| (h.id.clone(), h.slot)).collect();
            let owner_rows = owners
                .iter()
                .filter(|(_, o)| o.has_owner())
                .filter_map(|(key, o)| {
                    let h = s.havip_by_key(key.vswitch_id, Ipv4Addr::from(key.addr))?;
                    let member = s
                        .member_with_mac(h, MacAddr(o.mac))
                        .map_or_else(|| MacAddr(o.mac).to_string(), str::to_owned);
                    Some(vec![
                        ("havip", h.id.clone()),
                        ("member", member),
                        ("host", host_of(o, &self.host)),
                        ("epoch", o.epoch.to_string()),
                    ])
                })
                .collect();
            (rows, owner_rows)
        });
        let forwarded: Vec<(Labels, TrafficCounter)> = rows
            .iter()
            .map(|(id, slot)| (label("havip", id), stats::havip(maps, *slot)))
            .collect();
        for (series, packets, bytes) in [
            (
                &handled,
                (
                    "havip_handled_frames",
                    "Frames the XDP program handled, by outcome",
                ),
                (
                    "havip_handled",
                    "Bytes of the frames the XDP program handled, by outcome",
                ),
            ),
            (
                &drops,
                (
                    "havip_dropped_frames",
                    "Frames the XDP program dropped, by reason",
                ),
                (
                    "havip_dropped",
                    "Bytes of the frames the XDP program dropped, by reason",
                ),
            ),
            (
                &forwarded,
                (
                    "havip_forwarded_packets",
                    "Packets forwarded to the HaVip's owner",
                ),
                ("havip_forwarded", "Bytes forwarded to the HaVip's owner"),
            ),
        ] {
            traffic_families(&mut enc, series, packets, bytes)?;
        }
        let mut m = enc.encode_descriptor(
            "havip_owner",
            "Current owner of each HaVip as the kernel holds it (value 1)",
            None,
            MetricType::Info,
        )?;
        for labels in &owner_rows {
            m.encode_info(labels)?;
        }
        let (suppressed, lost) = stats::event_losses(maps);
        for (name, help, value) in [
            (
                "havip_events_lost",
                "Data-plane events lost to a full ring buffer",
                lost,
            ),
            (
                "havip_security_events_suppressed",
                "Security events suppressed by the per-CPU rate limit",
                suppressed,
            ),
        ] {
            counter_family(&mut enc, name, help, None, &[(vec![], value)])?;
        }
        drop(guard);
        let mut m = enc.encode_descriptor(
            "havip_build",
            "havip-agent build (value 1)",
            None,
            MetricType::Info,
        )?;
        m.encode_info(&vec![("version", env!("CARGO_PKG_VERSION"))])?;
        Ok(())
    }
}

/// The registry: the agent's own metrics plus the pinned maps.
fn registry(pin_dir: &Path, cp: Arc<ControlPlane>) -> Registry {
    let mut r = Registry::default();
    let rec = &*RECORDED;
    r.register(
        "havip_owner_changes",
        "Owner changes reported by the kernel's event ring buffer",
        rec.owner_changes.clone(),
    );
    r.register_with_unit(
        "havip_reconcile_duration",
        "Duration of the reconciler's passes",
        Unit::Seconds,
        rec.reconcile.clone(),
    );
    for (name, help, family) in [
        (
            "havip_claims_refused",
            "Refused ARP claims reported by the kernel's event ring buffer, by reason (rate-limited: see havip_dropped_frames_total)",
            &rec.claims_refused,
        ),
        (
            "havip_api_requests",
            "API requests served, by HTTP status code",
            &rec.api_requests,
        ),
        (
            "havip_notify_runs",
            "Runs of the notify command on owner changes, by result (ok, failed, timeout, skipped, spawn_error, lagged)",
            &rec.notify_runs,
        ),
    ] {
        r.register(name, help, family.clone());
    }
    r.register_collector(Box::new(Pinned {
        pin_dir: pin_dir.to_path_buf(),
        maps: Mutex::new(None),
        cp,
        host: hostname(),
    }));
    r
}

/// This host's name (the `host` label of local owners).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer and its length are valid; gethostname writes at
    // most len bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

async fn scrape(AxState(reg): AxState<Arc<Registry>>) -> Response {
    RECORDED.scrapes.fetch_add(1, Ordering::Relaxed);
    // Map reads are syscalls: off the async threads.
    let body = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).map(|()| out)
    })
    .await;
    match body {
        Ok(Ok(text)) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n").into_response(),
    }
}

/// Binds `addr` and serves `GET /metrics` until `shutdown`.
///
/// # Errors
/// [`MetricsError::Bind`].
pub async fn spawn(
    addr: SocketAddr,
    pin_dir: &Path,
    cp: Arc<ControlPlane>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry(pin_dir, cp)));
    info!(%addr, "metrics listening (GET /metrics)");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}
