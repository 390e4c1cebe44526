//! The API's accept loop and connections, with their limits: a connection
//! cap per listener, a header timeout, an idle keep-alive timeout, a
//! request timeout, the body size limit (in the router) and the checks of
//! [`super::security`].
//!
//! A streamed response (`GET /v1/events`) keeps its connection busy while
//! its frames go out: each frame taken for writing counts as activity, so a
//! client that reads is never cut by the idle timeout, and one that stops
//! reading (its frames no longer go out) is closed after it. The stream's
//! keep-alive period ([`StreamKeepAlive`], in the request's extensions) is
//! derived from the idle timeout so that even a quiet stream stays busy.
//!
//! Over the cap a new connection is closed at once (counted in
//! [`ListenerStats::refused`], logged at most once per second). A failing
//! `accept` (`EMFILE`: out of descriptors) is logged the same way and
//! retried after a short pause, so the loop never spins; the data plane
//! does not depend on the agent's descriptors.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    http::{Method, Request, StatusCode},
    Router,
};
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, UnixListener},
    sync::{watch, Semaphore},
    task::JoinSet,
};
use tracing::{debug, info, warn};

use super::security::{check_tcp, refusal, ApiSecurity, Caller};
use crate::config::AgentConfig;

/// Connection and request limits of one listener.
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    /// Open connections per listener; more are closed at once.
    pub max_connections: usize,
    /// From a request's first byte to its complete head.
    pub header_timeout: Duration,
    /// A connection with no request in progress is closed after this; also
    /// bounds one request (body and handling).
    pub idle_timeout: Duration,
    /// Largest request body (413 beyond).
    pub max_body_bytes: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits::from_config(&AgentConfig::default())
    }
}

impl ApiLimits {
    /// The `[agent]` settings.
    pub fn from_config(agent: &AgentConfig) -> Self {
        ApiLimits {
            max_connections: agent.api_max_connections.max(1),
            header_timeout: Duration::from_millis(agent.api_header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(agent.api_idle_timeout_ms.max(1)),
            max_body_bytes: agent.api_max_body_bytes,
        }
    }
}

/// How often a streamed response sends a line when it has nothing else
/// (set by the listener on each request, from its idle timeout).
#[derive(Clone, Copy, Debug)]
pub struct StreamKeepAlive(pub Duration);

impl StreamKeepAlive {
    /// At most 5 s, and a third of the idle timeout.
    pub fn for_idle_timeout(idle: Duration) -> Self {
        StreamKeepAlive(
            (idle / 3)
                .min(Duration::from_secs(5))
                .max(Duration::from_millis(10)),
        )
    }
}

/// Counters of one listener.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Connections closed at once because the cap was reached.
    pub refused: AtomicU64,
    /// Connections closed by the header or idle timeout.
    pub timed_out: AtomicU64,
    /// Failed `accept` calls (e.g. `EMFILE`).
    pub accept_errors: AtomicU64,
}

/// A bound listener of the API.
#[derive(Debug)]
pub enum ApiListener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Logs at most once per second.
struct RateLog(Mutex<Option<Instant>>);

impl RateLog {
    fn ready(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// open connections finish their request and waits for them.
///
/// # Errors
/// None after start-up (accept errors are logged and retried); kept as
/// `io::Result` for the callers.
pub async fn serve(
    listener: ApiListener,
    router: Router,
    limits: ApiLimits,
    security: Arc<ApiSecurity>,
    stats: Arc<ListenerStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let refused_log = RateLog(Mutex::new(None));
    let error_log = RateLog(Mutex::new(None));
    let local = match &listener {
        ApiListener::Tcp(l) => l.local_addr().ok(),
        ApiListener::Unix(_) => None,
    };
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            a = accept(&listener) => a,
        };
        let (io, caller) = match accepted {
            Ok(a) => a,
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if error_log.ready() {
                    warn!(error = %e, "API accept failed (out of descriptors?); retrying");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            drop(io);
            let n = stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
            if refused_log.ready() {
                warn!(
                    cap = limits.max_connections,
                    refused_total = n,
                    "API connection cap reached; new connections are closed"
                );
            }
            continue;
        };
        let conn = Conn {
            router: router.clone(),
            limits,
            security: Arc::clone(&security),
            stats: Arc::clone(&stats),
            caller,
            local,
        };
        let stop = stop_rx.clone();
        conns.spawn(async move {
            match io {
                Io::Unix(s) => conn.run(s, stop).await,
                Io::Tcp(s) => conn.run(s, stop).await,
            }
            drop(permit);
        });
    }
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

enum Io {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
}

async fn accept(l: &ApiListener) -> std::io::Result<(Io, Caller)> {
    match l {
        ApiListener::Unix(l) => {
            let (s, _) = l.accept().await?;
            let caller = match s.peer_cred() {
                Ok(c) => Caller::Unix {
                    uid: c.uid(),
                    gid: c.gid(),
                    pid: c.pid(),
                },
                Err(_) => Caller::Unix {
                    uid: u32::MAX,
                    gid: u32::MAX,
                    pid: None,
                },
            };
            Ok((Io::Unix(s), caller))
        }
        ApiListener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Io::Tcp(s), Caller::Tcp { peer, token: None }))
        }
    }
}

/// What a connection's watchdog knows.
#[derive(Debug)]
struct Activity {
    /// Requests being handled.
    in_flight: u32,
    /// Since when the connection has had no request in progress.
    idle_since: Instant,
    /// First byte of the next request's head, while it is being read.
    head_since: Option<Instant>,
    /// Streamed response bodies being sent.
    streaming: u32,
    /// When the last frame of a streamed body was taken for writing.
    last_frame: Instant,
}

type Shared = Arc<Mutex<Activity>>;

fn lock(a: &Shared) -> std::sync::MutexGuard<'_, Activity> {
    a.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The stream, noting when a request's head starts arriving.
struct Watched<S> {
    inner: S,
    activity: Shared,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let mut a = lock(&self.activity);
            if a.in_flight == 0 && a.head_since.is_none() {
                a.head_since = Some(Instant::now());
            }
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A streamed response body (no known length): while open, each frame it
/// yields counts as activity on its connection; dropped, the connection is
/// idle from then on.
struct Streaming {
    inner: axum::body::Body,
    activity: Shared,
}

impl Streaming {
    fn new(inner: axum::body::Body, activity: &Shared) -> Self {
        let mut a = lock(activity);
        a.streaming += 1;
        a.last_frame = Instant::now();
        drop(a);
        Streaming {
            inner,
            activity: Arc::clone(activity),
        }
    }
}

impl HttpBody for Streaming {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(_))) = &r {
            lock(&self.activity).last_frame = Instant::now();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let mut g = lock(&self.activity);
        g.streaming = g.streaming.saturating_sub(1);
        g.idle_since = Instant::now();
    }
}

/// Marks a request in progress; its drop marks the connection idle.
struct InFlight(Shared);

impl InFlight {
    fn start(a: &Shared) -> Self {
        let mut g = lock(a);
        g.in_flight += 1;
        g.head_since = None;
        drop(g);
        InFlight(Arc::clone(a))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut g = lock(&self.0);
        g.in_flight = g.in_flight.saturating_sub(1);
        g.idle_since = Instant::now();
    }
}

struct Conn {
    router: Router,
    limits: ApiLimits,
    security: Arc<ApiSecurity>,
    stats: Arc<ListenerStats>,
    caller: Caller,
    local: Option<SocketAddr>,
}

fn mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Conn {
    async fn run<S>(self, stream: S, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity: Shared = Arc::new(Mutex::new(Activity {
            in_flight: 0,
            idle_since: Instant::now(),
            head_since: None,
            streaming: 0,
            last_frame: Instant::now(),
        }));
        let io = Watched {
            inner: stream,
            activity: Arc::clone(&activity),
        };
        let limits = self.limits;
        let stats = Arc::clone(&self.stats);
        let caller = self.caller.clone();
        let this = Arc::new(self);
        let act = Arc::clone(&activity);
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let this = Arc::clone(&this);
            let busy = InFlight::start(&act);
            let act = Arc::clone(&act);
            async move {
                let r = this.handle(req).await;
                // A body of unknown length is a stream: it stays activity.
                let r = if r.body().size_hint().exact().is_none() {
                    r.map(|b| axum::body::Body::new(Streaming::new(b, &act)))
                } else {
                    r
                };
                drop(busy);
                Ok::<_, Infallible>(r)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let tick = (limits.header_timeout.min(limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(tick);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(error = %e, caller = %caller, "API connection ended");
                    }
                    return;
                }
                _ = ticker.tick() => {
                    let a = lock(&activity);
                    let now = Instant::now();
                    let expired = a.in_flight == 0
                        && if a.streaming > 0 {
                            now.duration_since(a.last_frame) > limits.idle_timeout
                        } else {
                            match a.head_since {
                                Some(t) => now.duration_since(t) > limits.header_timeout,
                                None => now.duration_since(a.idle_since) > limits.idle_timeout,
                            }
                        };
                    if expired {
                        drop(a);
                        stats.timed_out.fetch_add(1, Ordering::Relaxed);
                        debug!(caller = %caller, "API connection closed: header or idle timeout");
                        return;
                    }
                }
                r = stop.changed(), if !stopping => {
                    stopping = true;
                    let _ = r;
                    // An event stream never finishes: it would hold the
                    // shutdown forever. Close its connection now.
                    if lock(&activity).streaming > 0 {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> axum::response::Response {
        let mut caller = self.caller.clone();
        if let (Caller::Tcp { token, .. }, Some(local)) = (&mut caller, self.local) {
            match check_tcp(req.headers(), local, self.security.tokens.as_deref()) {
                Ok(name) => *token = name,
                Err(refused) => {
                    warn!(
                        security = true,
                        caller = %caller,
                        method = %req.method(),
                        path = req.uri().path(),
                        status = refused.status().as_u16(),
                        "API request refused"
                    );
                    return *refused;
                }
            }
        }
        if mutating(req.method()) {
            info!(caller = %caller, method = %req.method(), path = req.uri().path(), "API request");
        }
        let mut req = req.map(axum::body::Body::new);
        req.extensions_mut()
            .insert(StreamKeepAlive::for_idle_timeout(self.limits.idle_timeout));
        let mut router = self.router.clone();
        let call = tower_service::Service::call(&mut router, req);
        match tokio::time::timeout(self.limits.idle_timeout, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(never)) => match never {},
            Err(_) => refusal(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                "the request was not received and handled in time",
            ),
        }
    }
}
