//! The API server: one generic handler for operations (`POST /v1/ops`),
//! REST paths that decode into the same operation structs, and the read
//! endpoints.

use std::{
    future::Future, io, net::SocketAddr, os::unix::fs::PermissionsExt, path::Path, sync::Arc,
};

use axum::{
    extract::{rejection::JsonRejection, DefaultBodyLimit, Path as UrlPath, State as AxState},
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Extension, Json, Router,
};
use serde::Serialize;
use serde_json::{json, Map, Value};
use tokio::sync::broadcast;

use super::{
    listen::{self, ApiLimits, ApiListener, ListenerStats, StreamKeepAlive},
    strict::StrictJson,
    wire::Deleted,
    ApiError, ApiSecurity,
};
use crate::{
    cluster::SyncStatus,
    control::{havip_view, history::Event, ControlPlane, HaVipView},
    model::{
        Eip, Eni, Instance, Op, OpError, OwnerChange, Quotas, RecordKey, RecordKind, RouteEntry,
        State, Uplink, VSwitch, Vpc,
    },
};

type Shared = AxState<Arc<ControlPlane>>;
type Reply<T> = Result<Json<T>, ApiError>;

/// Body of every request with one: a JSON object (no key named twice).
type Body = Result<Json<StrictJson>, JsonRejection>;

fn object(b: Body) -> Result<Map<String, Value>, ApiError> {
    let Json(StrictJson(v)) = b.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::BodyTooLarge
        } else {
            ApiError::InvalidBody(e.body_text())
        }
    })?;
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::InvalidBody("expected a JSON object".into())),
    }
}

/// Runs blocking control-plane work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, OpError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| OpError::Internal(format!("worker failed: {e}")))?
        .map_err(ApiError::from)
}

fn describe_one(cp: &ControlPlane, id: &str) -> Result<HaVipView, OpError> {
    cp.describe_havips(Some(id))?
        .into_iter()
        .next()
        .ok_or_else(|| OpError::Internal(format!("HaVip {id:?} vanished")))
}

fn to_json<T: Serialize>(v: T) -> Result<Vec<u8>, OpError> {
    serde_json::to_vec(&v).map_err(|e| OpError::Internal(format!("cannot encode the reply: {e}")))
}

/// The reply of an accepted operation: the resource it created or changed
/// as the read endpoints show it, or `{"deleted": id}`; read from the state
/// as committed and encoded there (JSON bytes).
fn reply_for(
    s: &State,
    cp: &ControlPlane,
    key: RecordKey,
    deleted: bool,
) -> Result<Vec<u8>, OpError> {
    if deleted {
        return to_json(Deleted { deleted: key.id });
    }
    let id = key.id.as_str();
    let v = match key.kind {
        RecordKind::HaVip => s
            .havips
            .get(id)
            .map(|h| {
                // Live counters and the shared owner (not part of the state).
                let mut v = havip_view(s, h, None);
                cp.enrich(&mut v);
                to_json(v)
            })
            .transpose()?,
        RecordKind::Vpc => s.vpcs.get(id).map(to_json).transpose()?,
        RecordKind::VSwitch => s.vswitches.get(id).map(to_json).transpose()?,
        RecordKind::Instance => s.instances.get(id).map(to_json).transpose()?,
        RecordKind::Eni => s.enis.get(id).map(to_json).transpose()?,
        RecordKind::Uplink => s.uplinks.get(id).map(to_json).transpose()?,
        RecordKind::Eip => s.eips.get(id).map(to_json).transpose()?,
        RecordKind::Route => s.routes.get(id).map(to_json).transpose()?,
        RecordKind::Quotas => Some(to_json(s.quotas)?),
        RecordKind::Owner => s.owners.get(id).map(to_json).transpose()?,
        RecordKind::Meta | RecordKind::History => None,
    };
    v.ok_or_else(|| OpError::Internal(format!("{} {id:?} vanished after commit", key.kind.name())))
}

/// Applies one operation and replies with its subject (201 for creates),
/// encoded inside the commit's critical section (see [`reply_for`]). The
/// operation joins the next group commit through the control plane's
/// commit worker: no thread waits per request.
async fn run_op(cp: Arc<ControlPlane>, op: Op) -> Result<Response, ApiError> {
    let status = if op.is_create() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let deleted = op.is_delete();
    let source = Arc::clone(&cp);
    let (_, reply) = cp
        .apply_and_read_async(op, move |s, applied| {
            let key = applied
                .subject
                .clone()
                .ok_or_else(|| OpError::Internal("operation without a subject".into()))?;
            reply_for(s, &source, key, deleted)
        })
        .await?;
    let body = reply?;
    Ok((
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

fn decode_op(obj: Map<String, Value>) -> Result<Op, ApiError> {
    serde_json::from_value(Value::Object(obj)).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

/// `POST /v1/ops`: any operation, `{"op": "<name>", ...fields}`.
async fn post_op(AxState(cp): Shared, b: Body) -> Result<Response, ApiError> {
    let op = decode_op(object(b)?)?;
    run_op(cp, op).await
}

/// How a REST path becomes an operation: its name, the field the path's
/// `{id}` fills, and (for member bodies) the field the body is nested in,
/// with the body keys that stay at the top.
#[derive(Clone, Copy)]
struct Rest {
    op: &'static str,
    id_field: Option<&'static str>,
    nest: Option<(&'static str, &'static [&'static str])>,
}

const fn rest(op: &'static str, id_field: Option<&'static str>) -> Rest {
    Rest {
        op,
        id_field,
        nest: None,
    }
}

impl Rest {
    fn op(self, id: Option<String>, body: Option<Map<String, Value>>) -> Result<Op, ApiError> {
        let mut obj = body.unwrap_or_default();
        if let Some((field, keep)) = self.nest {
            let mut inner = obj;
            obj = Map::new();
            for k in keep {
                if let Some(v) = inner.remove(*k) {
                    obj.insert((*k).to_owned(), v);
                }
            }
            obj.insert(field.to_owned(), Value::Object(inner));
        }
        if let (Some(field), Some(id)) = (self.id_field, id) {
            obj.insert(field.to_owned(), Value::String(id));
        }
        obj.insert("op".to_owned(), Value::String(self.op.to_owned()));
        decode_op(obj)
    }
}

macro_rules! with_body {
    ($r:expr) => {
        |AxState(cp): Shared, b: Body| async move { run_op(cp, $r.op(None, Some(object(b)?))?).await }
    };
}
macro_rules! id_body {
    ($r:expr) => {
        |AxState(cp): Shared, UrlPath(id): UrlPath<String>, b: Body| async move {
            run_op(cp, $r.op(Some(id), Some(object(b)?))?).await
        }
    };
}
macro_rules! id_only {
    ($r:expr) => {
        |AxState(cp): Shared, UrlPath(id): UrlPath<String>| async move {
            run_op(cp, $r.op(Some(id), None)?).await
        }
    };
}

/// The routes of resource collections: `GET <path>` lists them as stored,
/// `POST <path>` creates one, `DELETE <path>/{id}` deletes one (the id
/// filling the named field).
macro_rules! collections {
    ($router:expr; $($path:literal => $field:ident: $ty:ty, $create:literal, $delete:literal by $id:literal;)*) => {{
        let r = $router;
        $(
            let r = r
                .route(
                    $path,
                    get(|AxState(cp): Shared| async move {
                        list(&cp, |s| s.$field.values().cloned().collect::<Vec<$ty>>())
                    })
                    .post(with_body!(rest($create, None))),
                )
                .route(concat!($path, "/{id}"), delete(id_only!(rest($delete, Some($id)))));
        )*
        r
    }};
}

const MEMBER: Option<(&str, &[&str])> = Some(("member", &["force"]));

async fn list_havips(AxState(cp): Shared) -> Reply<Vec<HaVipView>> {
    blocking(move || cp.describe_havips(None)).await.map(Json)
}

async fn get_havip(AxState(cp): Shared, UrlPath(id): UrlPath<String>) -> Reply<HaVipView> {
    blocking(move || describe_one(&cp, &id)).await.map(Json)
}

fn list<T: Clone>(cp: &ControlPlane, f: impl FnOnce(&State) -> Vec<T>) -> Json<Vec<T>> {
    Json(cp.with_state(f))
}

async fn get_history(AxState(cp): Shared, UrlPath(id): UrlPath<String>) -> Reply<Vec<OwnerChange>> {
    blocking(move || cp.owner_history(&id)).await.map(Json)
}

/// `GET /v1/events`: the agent's events as JSON lines, chunked, while the
/// client reads, with a keep-alive line when nothing happened for a while
/// ([`StreamKeepAlive`], set by the listener from its idle timeout; 5 s
/// when served without one). A client that falls
/// [`crate::control::history::EVENT_BUFFER`] events behind gets a `lagged`
/// event naming how many it missed.
async fn get_events(
    AxState(cp): Shared,
    keepalive: Option<Extension<StreamKeepAlive>>,
) -> Response {
    let period = keepalive.map_or(std::time::Duration::from_secs(5), |Extension(k)| k.0);
    let rx = cp.events();
    let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
        let event = match tokio::time::timeout(period, rx.recv()).await {
            Ok(Ok(e)) => e,
            Ok(Err(broadcast::error::RecvError::Lagged(missed))) => Event::Lagged { missed },
            Ok(Err(broadcast::error::RecvError::Closed)) => return None,
            Err(_) => Event::KeepAlive,
        };
        let mut line = serde_json::to_vec(&event).unwrap_or_else(|_| b"{}".to_vec());
        line.push(b'\n');
        Some((
            Ok::<_, std::convert::Infallible>(bytes::Bytes::from(line)),
            rx,
        ))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

async fn get_state(AxState(cp): Shared) -> Reply<State> {
    blocking(move || Ok(cp.snapshot())).await.map(Json)
}

/// `GET /v1/cluster`: this host's sync with etcd (connected, revisions,
/// hosts); `null` on a single-host agent.
async fn get_cluster(AxState(cp): Shared) -> Json<Option<SyncStatus>> {
    Json(cp.cluster_status())
}

async fn healthz(AxState(cp): Shared) -> Json<Value> {
    Json(json!({"ok": true, "generation": cp.generation()}))
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NoRoute {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// The API's routes over `cp` (see the module docs), with the default
/// body limit ([`ApiLimits::default`]).
pub fn router(cp: Arc<ControlPlane>) -> Router {
    router_with(cp, ApiLimits::default().max_body_bytes)
}

/// The API's routes over `cp`; bodies above `max_body_bytes` get 413.
pub fn router_with(cp: Arc<ControlPlane>, max_body_bytes: usize) -> Router {
    use axum::routing::{delete, patch};
    let set_owner = put(id_body!(rest("set_initial_owner", Some("havip"))));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/ops", post(post_op))
        .route("/v1/state", get(get_state))
        .route("/v1/cluster", get(get_cluster))
        .route("/v1/events", get(get_events))
        .route("/v1/havips/{id}/history", get(get_history))
        .route(
            "/v1/havips",
            get(list_havips).post(with_body!(rest("create_havip", None))),
        )
        .route(
            "/v1/havips/{id}",
            get(get_havip)
                .delete(id_only!(rest("delete_havip", Some("id"))))
                .patch(id_body!(rest("modify_havip_attribute", Some("id")))),
        )
        .route(
            "/v1/havips/{id}/associate",
            post(id_body!(Rest {
                nest: MEMBER,
                ..rest("associate_havip", Some("havip"))
            })),
        )
        .route(
            "/v1/havips/{id}/unassociate",
            post(id_body!(Rest {
                nest: MEMBER,
                ..rest("unassociate_havip", Some("havip"))
            })),
        )
        // `/master` is the old name of `/initial-owner`.
        .route("/v1/havips/{id}/master", set_owner.clone())
        .route("/v1/havips/{id}/initial-owner", set_owner)
        .route(
            "/v1/eips/{id}/associate",
            post(id_body!(rest("associate_eip", Some("eip")))),
        )
        .route(
            "/v1/eips/{id}/unassociate",
            post(id_only!(rest("unassociate_eip", Some("eip")))),
        )
        .route(
            "/v1/quotas",
            get(|AxState(cp): Shared| async move { Json::<Quotas>(cp.with_state(|s| s.quotas)) })
                .put(with_body!(rest("set_quota", None))),
        )
        .route(
            "/v1/enis/{id}",
            patch(id_body!(rest("modify_eni", Some("id")))),
        );
    let router = collections!(router;
        "/v1/eips" => eips: Eip, "create_eip", "delete_eip" by "id";
        "/v1/routes" => routes: RouteEntry, "create_route", "delete_route" by "id";
        "/v1/vpcs" => vpcs: Vpc, "create_vpc", "delete_vpc" by "id";
        "/v1/vswitches" => vswitches: VSwitch, "create_vswitch", "delete_vswitch" by "id";
        "/v1/instances" => instances: Instance, "create_instance", "delete_instance" by "id";
        "/v1/enis" => enis: Eni, "create_eni", "delete_eni" by "id";
        "/v1/uplinks" => uplinks: Uplink, "create_uplink", "delete_uplink" by "interface";
    );
    router
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(cp)
}

/// Binds the API's unix socket: creates the directory, replaces a stale
/// socket file, sets mode 0660 and, if given, the group `gid`. Call inside
/// a tokio runtime.
///
/// # Errors
/// I/O errors; refuses to replace a path that is not a socket.
pub fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
    bind_unix_group(path, None)
}

/// [`bind_unix`], then the socket's group set to `gid`.
///
/// # Errors
/// As [`bind_unix`]; `chown` failed.
pub fn bind_unix_group(path: &Path, gid: Option<u32>) -> io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let l = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = gid {
        super::security::chgrp(path, gid)?;
    }
    Ok(l)
}

/// Serves the API on a bound unix listener until `shutdown` completes,
/// with the default limits.
///
/// # Errors
/// I/O errors of the server.
pub async fn serve_unix_listener(
    listener: tokio::net::UnixListener,
    cp: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_default(ApiListener::Unix(listener), cp, shutdown).await
}

/// [`serve`] with the default limits, no tokens and fresh counters.
async fn serve_default(
    listener: ApiListener,
    cp: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let limits = ApiLimits::default();
    serve(
        listener,
        cp,
        limits,
        Arc::default(),
        Arc::default(),
        shutdown,
    )
    .await
}

/// Binds `path` ([`bind_unix`]) and serves the API until `shutdown`.
///
/// # Errors
/// I/O errors (bind, serve).
pub async fn serve_unix(
    path: &Path,
    cp: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let l = bind_unix(path)?;
    serve_unix_listener(l, cp, shutdown).await
}

/// Serves the API on TCP `addr` until `shutdown`, loopback only (no
/// tokens; see [`serve`] for the general case).
///
/// # Errors
/// I/O errors (bind, serve); a non-loopback `addr`.
pub async fn serve_tcp(
    addr: SocketAddr,
    cp: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{addr} is not a loopback address: the API needs tokens there"),
        ));
    }
    let l = tokio::net::TcpListener::bind(addr).await?;
    serve_default(ApiListener::Tcp(l), cp, shutdown).await
}

/// Serves the API on `listener` with explicit limits and security.
///
/// # Errors
/// I/O errors of the server.
pub async fn serve(
    listener: ApiListener,
    cp: Arc<ControlPlane>,
    limits: ApiLimits,
    security: Arc<ApiSecurity>,
    stats: Arc<ListenerStats>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    listen::serve(
        listener,
        router_with(cp, limits.max_body_bytes),
        limits,
        security,
        stats,
        shutdown,
    )
    .await
}
