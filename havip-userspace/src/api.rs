//! The agent's HTTP/JSON API (server: [`router`], [`serve_unix`],
//! [`serve_tcp`]) and a small blocking client ([`Client`]) used by
//! `havipctl` and the tests.
//!
//! Served on a unix socket (default [`crate::paths::API_SOCKET`]) and
//! optionally on TCP. There is no authentication: the socket is created
//! mode 0660 and TCP should stay on loopback.
//!
//! # Routes
//! | method | path | body | reply |
//! | --- | --- | --- | --- |
//! | GET | `/v1/havips` | | `[HaVipView]` (DescribeHaVips) |
//! | GET | `/v1/havips/{id}` | | `HaVipView` |
//! | POST | `/v1/havips` | `{"id"?, "vswitch", "address"?}` | 201 `HaVipView` |
//! | DELETE | `/v1/havips/{id}` | | `{"deleted": id}` |
//! | POST | `/v1/havips/{id}/associate` | `{"instance": id}` or `{"eni": id}` | `HaVipView` |
//! | POST | `/v1/havips/{id}/unassociate` | `{"instance": id}` or `{"eni": id}` | `HaVipView` |
//! | PUT | `/v1/havips/{id}/master` | `{"member": id or null}` | `HaVipView` |
//! | GET | `/v1/eips` | | `[Eip]` |
//! | POST | `/v1/eips` | `{"id"?, "address"}` | 201 `Eip` |
//! | DELETE | `/v1/eips/{id}` | | `{"deleted": id}` |
//! | POST | `/v1/eips/{id}/associate` | `{"havip": id}` | `Eip` |
//! | POST | `/v1/eips/{id}/unassociate` | | `Eip` |
//! | GET | `/v1/routes` | | `[RouteEntry]` |
//! | POST | `/v1/routes` | `{"id"?, "vpc", "destination", "next_hop"}` | 201 `RouteEntry` |
//! | DELETE | `/v1/routes/{id}` | | `{"deleted": id}` |
//! | GET | `/v1/quotas` | | `Quotas` |
//! | PUT | `/v1/quotas` | any of `{"havips_per_account", "havips_per_vpc", "havip_routes_per_vpc"}` | `Quotas` |
//! | GET, POST | `/v1/vpcs` | `{"id", "cidr"}` | `[Vpc]`, 201 `Vpc` |
//! | GET, POST | `/v1/vswitches` | `{"id", "vpc", "cidr", "gateway_mac"}` | `[VSwitch]`, 201 `VSwitch` |
//! | GET, POST | `/v1/instances` | `{"id", "vswitch"}` | `[Instance]`, 201 `Instance` |
//! | GET, POST | `/v1/enis` | `{"id", "vswitch", "mac", "interface", "instance"?, "primary"?}` | `[Eni]`, 201 `Eni` |
//! | GET, POST | `/v1/uplinks` | `{"interface", "vswitch"}` | `[Uplink]`, 201 `Uplink` |
//! | GET | `/v1/state` | | the whole `State` (debugging, tests) |
//! | GET | `/healthz` | | `{"ok": true, "generation": n}` |
//!
//! Errors are `{"code": "...", "message": "..."}` with 400 (`InvalidParameter.*`,
//! including a malformed body: `InvalidParameter.Body`), 403 (`LimitExceeded.*`,
//! `QuotaExceeded.*`), 404 (`NotFound.*`), 409 (`Conflict.*`,
//! `InsufficientCapacity.*`) or 500 (`Internal`).

use std::{
    future::Future,
    io::{self, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::unix::{fs::PermissionsExt, net::UnixStream},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{rejection::JsonRejection, Path as UrlPath, State as AxState},
    http::{Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    routing::{get, post, put},
    Json, Router,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::{
    control::{ControlPlane, HaVipView},
    model::{
        Eip, Eni, Instance, Ipv4Cidr, MacAddr, Quotas, RouteEntry, State, Uplink, VSwitch, Vpc,
    },
    validate::{ApiError, Member, Op},
};

/// Error body of every refused request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

/// `POST /v1/havips`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateHaVipRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub vswitch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
}

/// Body of associate/unassociate: exactly one of `instance`, `eni`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni: Option<String>,
}

impl MemberRequest {
    fn member(self) -> Result<Member, ApiError> {
        match (self.instance, self.eni) {
            (Some(i), None) => Ok(Member::instance(i)),
            (None, Some(e)) => Ok(Member::eni(e)),
            _ => Err(ApiError::InvalidBody(
                "give exactly one of \"instance\" or \"eni\"".into(),
            )),
        }
    }
}

impl From<Member> for MemberRequest {
    fn from(m: Member) -> Self {
        match m.kind {
            crate::model::BindingKind::Instance => MemberRequest {
                instance: Some(m.id),
                eni: None,
            },
            crate::model::BindingKind::Eni => MemberRequest {
                instance: None,
                eni: Some(m.id),
            },
        }
    }
}

/// `PUT /v1/havips/{id}/master`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterRequest {
    pub member: Option<String>,
}

/// `POST /v1/eips`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEipRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub address: Ipv4Addr,
}

/// `POST /v1/eips/{id}/associate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EipAssociateRequest {
    pub havip: String,
}

/// `POST /v1/routes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRouteRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub vpc: String,
    pub destination: Ipv4Cidr,
    pub next_hop: String,
}

/// `PUT /v1/quotas`: keys left out keep their value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub havips_per_account: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub havips_per_vpc: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub havip_routes_per_vpc: Option<usize>,
}

/// `POST /v1/vpcs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVpcRequest {
    pub id: String,
    pub cidr: Ipv4Cidr,
}

/// `POST /v1/vswitches`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVSwitchRequest {
    pub id: String,
    pub vpc: String,
    pub cidr: Ipv4Cidr,
    pub gateway_mac: MacAddr,
}

/// `POST /v1/instances`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInstanceRequest {
    pub id: String,
    pub vswitch: String,
}

/// `POST /v1/enis`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEniRequest {
    pub id: String,
    pub vswitch: String,
    pub mac: MacAddr,
    /// Host-side interface.
    pub interface: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

/// `POST /v1/uplinks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUplinkRequest {
    pub interface: String,
    pub vswitch: String,
}

/// Reply of the DELETE routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub deleted: String,
}

type Shared = AxState<Arc<ControlPlane>>;
type Reply<T> = Result<Json<T>, ApiError>;
type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

/// Body of every request with one: a JSON object decoded into `T`.
type Body = Result<Json<Value>, JsonRejection>;

fn body<T: DeserializeOwned>(b: Body) -> Result<T, ApiError> {
    let Json(v) = b.map_err(|e| ApiError::InvalidBody(e.body_text()))?;
    if !v.is_object() {
        return Err(ApiError::InvalidBody("expected a JSON object".into()));
    }
    serde_json::from_value(v).map_err(|e| ApiError::InvalidBody(e.to_string()))
}

/// Runs blocking control-plane work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("worker failed: {e}")))?
}

fn describe_one(cp: &ControlPlane, id: &str) -> Result<HaVipView, ApiError> {
    cp.describe_havips(Some(id))?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::Internal(format!("HaVip {id:?} vanished")))
}

/// Applies `op`, then reads back the resource it names with `read`.
async fn op_then<T: Send + 'static>(
    cp: Arc<ControlPlane>,
    op: Op,
    read: impl FnOnce(&ControlPlane, Option<String>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(move || {
        let applied = cp.apply(op)?;
        read(&cp, applied.subject.map(|k| k.id))
    })
    .await
}

fn find<T: Clone>(
    map: impl FnOnce(&State) -> Option<T>,
    cp: &ControlPlane,
    what: &str,
) -> Result<T, ApiError> {
    cp.with_state(map)
        .ok_or_else(|| ApiError::Internal(format!("{what} vanished after commit")))
}

async fn list_havips(AxState(cp): Shared) -> Reply<Vec<HaVipView>> {
    blocking(move || cp.describe_havips(None)).await.map(Json)
}

async fn get_havip(AxState(cp): Shared, UrlPath(id): UrlPath<String>) -> Reply<HaVipView> {
    blocking(move || describe_one(&cp, &id)).await.map(Json)
}

async fn create_havip(AxState(cp): Shared, b: Body) -> Created<HaVipView> {
    let b: CreateHaVipRequest = body(b)?;
    let op = Op::CreateHaVip {
        id: b.id,
        vswitch: b.vswitch,
        address: b.address,
    };
    let v = op_then(cp, op, |cp, id| describe_one(cp, &id.unwrap_or_default())).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn delete_havip(AxState(cp): Shared, UrlPath(id): UrlPath<String>) -> Reply<Deleted> {
    let op = Op::DeleteHaVip { id: id.clone() };
    op_then(cp, op, move |_, _| Ok(Deleted { deleted: id }))
        .await
        .map(Json)
}

async fn associate_havip(
    AxState(cp): Shared,
    UrlPath(id): UrlPath<String>,
    b: Body,
) -> Reply<HaVipView> {
    let member = body::<MemberRequest>(b)?.member()?;
    let op = Op::AssociateHaVip {
        havip: id.clone(),
        member,
    };
    op_then(cp, op, move |cp, _| describe_one(cp, &id))
        .await
        .map(Json)
}

async fn unassociate_havip(
    AxState(cp): Shared,
    UrlPath(id): UrlPath<String>,
    b: Body,
) -> Reply<HaVipView> {
    let member = body::<MemberRequest>(b)?.member()?;
    let op = Op::UnassociateHaVip {
        havip: id.clone(),
        member,
    };
    op_then(cp, op, move |cp, _| describe_one(cp, &id))
        .await
        .map(Json)
}

async fn set_master(
    AxState(cp): Shared,
    UrlPath(id): UrlPath<String>,
    b: Body,
) -> Reply<HaVipView> {
    let op = Op::SetInitialMaster {
        havip: id.clone(),
        member: body::<MasterRequest>(b)?.member,
    };
    op_then(cp, op, move |cp, _| describe_one(cp, &id))
        .await
        .map(Json)
}

fn read_eip(cp: &ControlPlane, id: Option<String>) -> Result<Eip, ApiError> {
    let id = id.unwrap_or_default();
    find(|s| s.eips.get(&id).cloned(), cp, "EIP")
}

async fn list_eips(AxState(cp): Shared) -> Reply<Vec<Eip>> {
    Ok(Json(cp.with_state(|s| s.eips.values().cloned().collect())))
}

async fn create_eip(AxState(cp): Shared, b: Body) -> Created<Eip> {
    let b: CreateEipRequest = body(b)?;
    let op = Op::CreateEip {
        id: b.id,
        address: b.address,
    };
    let e = op_then(cp, op, read_eip).await?;
    Ok((StatusCode::CREATED, Json(e)))
}

async fn delete_eip(AxState(cp): Shared, UrlPath(id): UrlPath<String>) -> Reply<Deleted> {
    let op = Op::DeleteEip { id: id.clone() };
    op_then(cp, op, move |_, _| Ok(Deleted { deleted: id }))
        .await
        .map(Json)
}

async fn associate_eip(AxState(cp): Shared, UrlPath(id): UrlPath<String>, b: Body) -> Reply<Eip> {
    let op = Op::AssociateEip {
        eip: id,
        havip: body::<EipAssociateRequest>(b)?.havip,
    };
    op_then(cp, op, read_eip).await.map(Json)
}

async fn unassociate_eip(AxState(cp): Shared, UrlPath(id): UrlPath<String>) -> Reply<Eip> {
    op_then(cp, Op::UnassociateEip { eip: id }, read_eip)
        .await
        .map(Json)
}

async fn list_routes(AxState(cp): Shared) -> Reply<Vec<RouteEntry>> {
    Ok(Json(
        cp.with_state(|s| s.routes.values().cloned().collect()),
    ))
}

async fn create_route(AxState(cp): Shared, b: Body) -> Created<RouteEntry> {
    let b: CreateRouteRequest = body(b)?;
    let op = Op::CreateRoute {
        id: b.id,
        vpc: b.vpc,
        destination: b.destination,
        next_hop_havip: b.next_hop,
    };
    let r = op_then(cp, op, |cp, id| {
        let id = id.unwrap_or_default();
        find(|s| s.routes.get(&id).cloned(), cp, "route")
    })
    .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

async fn delete_route(AxState(cp): Shared, UrlPath(id): UrlPath<String>) -> Reply<Deleted> {
    let op = Op::DeleteRoute { id: id.clone() };
    op_then(cp, op, move |_, _| Ok(Deleted { deleted: id }))
        .await
        .map(Json)
}

async fn get_quotas(AxState(cp): Shared) -> Reply<Quotas> {
    Ok(Json(cp.with_state(|s| s.quotas)))
}

async fn set_quotas(AxState(cp): Shared, b: Body) -> Reply<Quotas> {
    let b: QuotaRequest = body(b)?;
    let op = Op::SetQuota {
        havips_per_account: b.havips_per_account,
        havips_per_vpc: b.havips_per_vpc,
        havip_routes_per_vpc: b.havip_routes_per_vpc,
    };
    op_then(cp, op, |cp, _| Ok(cp.with_state(|s| s.quotas)))
        .await
        .map(Json)
}

async fn list_vpcs(AxState(cp): Shared) -> Reply<Vec<Vpc>> {
    Ok(Json(cp.with_state(|s| s.vpcs.values().cloned().collect())))
}

async fn create_vpc(AxState(cp): Shared, b: Body) -> Created<Vpc> {
    let b: CreateVpcRequest = body(b)?;
    let op = Op::CreateVpc {
        id: b.id,
        cidr: b.cidr,
    };
    let v = op_then(cp, op, |cp, id| {
        let id = id.unwrap_or_default();
        find(|s| s.vpcs.get(&id).cloned(), cp, "VPC")
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list_vswitches(AxState(cp): Shared) -> Reply<Vec<VSwitch>> {
    Ok(Json(
        cp.with_state(|s| s.vswitches.values().cloned().collect()),
    ))
}

async fn create_vswitch(AxState(cp): Shared, b: Body) -> Created<VSwitch> {
    let b: CreateVSwitchRequest = body(b)?;
    let op = Op::CreateVSwitch {
        id: b.id,
        vpc: b.vpc,
        cidr: b.cidr,
        gateway_mac: b.gateway_mac,
    };
    let v = op_then(cp, op, |cp, id| {
        let id = id.unwrap_or_default();
        find(|s| s.vswitches.get(&id).cloned(), cp, "vSwitch")
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list_instances(AxState(cp): Shared) -> Reply<Vec<Instance>> {
    Ok(Json(
        cp.with_state(|s| s.instances.values().cloned().collect()),
    ))
}

async fn create_instance(AxState(cp): Shared, b: Body) -> Created<Instance> {
    let b: CreateInstanceRequest = body(b)?;
    let op = Op::CreateInstance {
        id: b.id,
        vswitch: b.vswitch,
    };
    let v = op_then(cp, op, |cp, id| {
        let id = id.unwrap_or_default();
        find(|s| s.instances.get(&id).cloned(), cp, "instance")
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list_enis(AxState(cp): Shared) -> Reply<Vec<Eni>> {
    Ok(Json(cp.with_state(|s| s.enis.values().cloned().collect())))
}

async fn create_eni(AxState(cp): Shared, b: Body) -> Created<Eni> {
    let b: CreateEniRequest = body(b)?;
    let op = Op::CreateEni {
        id: b.id,
        vswitch: b.vswitch,
        mac: b.mac,
        host_interface: b.interface,
        instance: b.instance,
        primary: b.primary,
    };
    let v = op_then(cp, op, |cp, id| {
        let id = id.unwrap_or_default();
        find(|s| s.enis.get(&id).cloned(), cp, "ENI")
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn list_uplinks(AxState(cp): Shared) -> Reply<Vec<Uplink>> {
    Ok(Json(
        cp.with_state(|s| s.uplinks.values().cloned().collect()),
    ))
}

async fn create_uplink(AxState(cp): Shared, b: Body) -> Created<Uplink> {
    let b: CreateUplinkRequest = body(b)?;
    let op = Op::CreateUplink {
        interface: b.interface,
        vswitch: b.vswitch,
    };
    let v = op_then(cp, op, |cp, id| {
        let id = id.unwrap_or_default();
        find(|s| s.uplinks.get(&id).cloned(), cp, "uplink")
    })
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn get_state(AxState(cp): Shared) -> Reply<State> {
    blocking(move || Ok(cp.snapshot())).await.map(Json)
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

/// The API's routes over `cp` (see the module docs).
pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/state", get(get_state))
        .route("/v1/havips", get(list_havips).post(create_havip))
        .route("/v1/havips/{id}", get(get_havip).delete(delete_havip))
        .route("/v1/havips/{id}/associate", post(associate_havip))
        .route("/v1/havips/{id}/unassociate", post(unassociate_havip))
        .route("/v1/havips/{id}/master", put(set_master))
        .route("/v1/eips", get(list_eips).post(create_eip))
        .route("/v1/eips/{id}", axum::routing::delete(delete_eip))
        .route("/v1/eips/{id}/associate", post(associate_eip))
        .route("/v1/eips/{id}/unassociate", post(unassociate_eip))
        .route("/v1/routes", get(list_routes).post(create_route))
        .route("/v1/routes/{id}", axum::routing::delete(delete_route))
        .route("/v1/quotas", get(get_quotas).put(set_quotas))
        .route("/v1/vpcs", get(list_vpcs).post(create_vpc))
        .route("/v1/vswitches", get(list_vswitches).post(create_vswitch))
        .route("/v1/instances", get(list_instances).post(create_instance))
        .route("/v1/enis", get(list_enis).post(create_eni))
        .route("/v1/uplinks", get(list_uplinks).post(create_uplink))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .with_state(cp)
}

/// Binds the API's unix socket: creates the directory, replaces a stale
/// socket file, sets mode 0660. Call inside a tokio runtime.
///
/// # Errors
/// I/O errors; refuses to replace a path that is not a socket.
pub fn bind_unix(path: &Path) -> io::Result<tokio::net::UnixListener> {
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
    Ok(l)
}

/// Serves the API on a bound unix listener until `shutdown` completes.
///
/// # Errors
/// I/O errors of the server.
pub async fn serve_unix_listener(
    listener: tokio::net::UnixListener,
    cp: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, router(cp))
        .with_graceful_shutdown(shutdown)
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

/// Serves the API on TCP `addr` until `shutdown`.
///
/// # Errors
/// I/O errors (bind, serve).
pub async fn serve_tcp(
    addr: SocketAddr,
    cp: Arc<ControlPlane>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(l, router(cp))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Where the client connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

/// A client-side failure.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the agent at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    #[error("i/o error talking to the agent: {0}")]
    Io(#[from] io::Error),
    #[error("bad reply from the agent: {0}")]
    Protocol(String),
    /// The agent refused the request.
    #[error("{code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("invalid URL {0:?}: expected http://host:port")]
    Url(String),
}

impl ClientError {
    /// The API error code, if the agent refused the request.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Blocking HTTP/1.1 client of the API (one connection per request).
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

impl Client {
    /// A client of the API on unix socket `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Client {
            endpoint: Endpoint::Unix(path.into()),
            timeout: Duration::from_secs(30),
        }
    }

    /// A client of the API at `http://host:port` (a trailing `/` is ok).
    ///
    /// # Errors
    /// [`ClientError::Url`] for anything else.
    pub fn from_url(url: &str) -> Result<Self, ClientError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ClientError::Url(url.to_owned()))?;
        let hostport = rest.trim_end_matches('/');
        if hostport.is_empty() || hostport.contains('/') || !hostport.contains(':') {
            return Err(ClientError::Url(url.to_owned()));
        }
        Ok(Client {
            endpoint: Endpoint::Tcp(hostport.to_owned()),
            timeout: Duration::from_secs(30),
        })
    }

    /// Changes the per-request I/O timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn connect(&self) -> Result<Box<dyn Stream>, ClientError> {
        match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = UnixStream::connect(p).map_err(|source| ClientError::Connect {
                    endpoint: p.display().to_string(),
                    source,
                })?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                Ok(Box::new(s))
            }
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a).map_err(|source| ClientError::Connect {
                    endpoint: a.clone(),
                    source,
                })?;
                s.set_read_timeout(Some(self.timeout))?;
                s.set_write_timeout(Some(self.timeout))?;
                s.set_nodelay(true)?;
                Ok(Box::new(s))
            }
        }
    }

    /// Sends a raw request; returns the status and body bytes.
    ///
    /// # Errors
    /// Connection and protocol errors (not HTTP error statuses).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), ClientError> {
        let mut s = self.connect()?;
        let host = match &self.endpoint {
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp(a) => a.as_str(),
        };
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        if let Some(b) = body {
            bytes.extend_from_slice(b);
        }
        s.write_all(&bytes)?;
        s.flush()?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        parse_response(&resp)
    }

    /// Sends a JSON request and decodes the JSON reply.
    ///
    /// # Errors
    /// [`ClientError::Api`] with the agent's code and message for refusals.
    pub fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let encoded = body
            .map(serde_json::to_vec)
            .transpose()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let (status, bytes) = self.raw(method, path, encoded.as_deref())?;
        if (200..300).contains(&status) {
            serde_json::from_slice(&bytes).map_err(|e| {
                ClientError::Protocol(format!(
                    "{e}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ))
            })
        } else {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => Err(ClientError::Api {
                    status,
                    code: e.code,
                    message: e.message,
                }),
                Err(_) => Err(ClientError::Protocol(format!(
                    "HTTP {status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ))),
            }
        }
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>("GET", path, None)
    }

    /// DescribeHaVips.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list_havips(&self) -> Result<Vec<HaVipView>, ClientError> {
        self.get("/v1/havips")
    }

    /// Describes one HaVip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn get_havip(&self, id: &str) -> Result<HaVipView, ClientError> {
        self.get(&format!("/v1/havips/{}", enc(id)))
    }

    /// CreateHaVip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_havip(&self, req: &CreateHaVipRequest) -> Result<HaVipView, ClientError> {
        self.call("POST", "/v1/havips", Some(req))
    }

    /// DeleteHaVip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn delete_havip(&self, id: &str) -> Result<Deleted, ClientError> {
        self.call::<(), _>("DELETE", &format!("/v1/havips/{}", enc(id)), None)
    }

    /// AssociateHaVip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn associate_havip(&self, id: &str, member: Member) -> Result<HaVipView, ClientError> {
        let b = MemberRequest::from(member);
        self.call(
            "POST",
            &format!("/v1/havips/{}/associate", enc(id)),
            Some(&b),
        )
    }

    /// UnassociateHaVip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn unassociate_havip(&self, id: &str, member: Member) -> Result<HaVipView, ClientError> {
        let b = MemberRequest::from(member);
        self.call(
            "POST",
            &format!("/v1/havips/{}/unassociate", enc(id)),
            Some(&b),
        )
    }

    /// Sets or clears a HaVip's initial master.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn set_master(&self, id: &str, member: Option<&str>) -> Result<HaVipView, ClientError> {
        let b = MasterRequest {
            member: member.map(str::to_owned),
        };
        self.call("PUT", &format!("/v1/havips/{}/master", enc(id)), Some(&b))
    }

    /// Lists EIPs.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list_eips(&self) -> Result<Vec<Eip>, ClientError> {
        self.get("/v1/eips")
    }

    /// Creates an EIP.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_eip(&self, req: &CreateEipRequest) -> Result<Eip, ClientError> {
        self.call("POST", "/v1/eips", Some(req))
    }

    /// Deletes an EIP.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn delete_eip(&self, id: &str) -> Result<Deleted, ClientError> {
        self.call::<(), _>("DELETE", &format!("/v1/eips/{}", enc(id)), None)
    }

    /// Associates an EIP with a HaVip.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn associate_eip(&self, id: &str, havip: &str) -> Result<Eip, ClientError> {
        let b = EipAssociateRequest {
            havip: havip.to_owned(),
        };
        self.call("POST", &format!("/v1/eips/{}/associate", enc(id)), Some(&b))
    }

    /// Unassociates an EIP.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn unassociate_eip(&self, id: &str) -> Result<Eip, ClientError> {
        self.call::<(), _>("POST", &format!("/v1/eips/{}/unassociate", enc(id)), None)
    }

    /// Lists route entries.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list_routes(&self) -> Result<Vec<RouteEntry>, ClientError> {
        self.get("/v1/routes")
    }

    /// Creates a route entry with a HaVip next hop.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_route(&self, req: &CreateRouteRequest) -> Result<RouteEntry, ClientError> {
        self.call("POST", "/v1/routes", Some(req))
    }

    /// Deletes a route entry.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn delete_route(&self, id: &str) -> Result<Deleted, ClientError> {
        self.call::<(), _>("DELETE", &format!("/v1/routes/{}", enc(id)), None)
    }

    /// Reads the quotas.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn quotas(&self) -> Result<Quotas, ClientError> {
        self.get("/v1/quotas")
    }

    /// Changes quotas (keys left `None` are kept).
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn set_quotas(&self, req: &QuotaRequest) -> Result<Quotas, ClientError> {
        self.call("PUT", "/v1/quotas", Some(req))
    }

    /// Creates a VPC.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_vpc(&self, req: &CreateVpcRequest) -> Result<Vpc, ClientError> {
        self.call("POST", "/v1/vpcs", Some(req))
    }

    /// Creates a vSwitch.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_vswitch(&self, req: &CreateVSwitchRequest) -> Result<VSwitch, ClientError> {
        self.call("POST", "/v1/vswitches", Some(req))
    }

    /// Creates an instance.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_instance(&self, req: &CreateInstanceRequest) -> Result<Instance, ClientError> {
        self.call("POST", "/v1/instances", Some(req))
    }

    /// Creates an ENI.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_eni(&self, req: &CreateEniRequest) -> Result<Eni, ClientError> {
        self.call("POST", "/v1/enis", Some(req))
    }

    /// Creates an uplink.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn create_uplink(&self, req: &CreateUplinkRequest) -> Result<Uplink, ClientError> {
        self.call("POST", "/v1/uplinks", Some(req))
    }

    /// Lists resources of a setup kind: `vpcs`, `vswitches`, `instances`,
    /// `enis` or `uplinks`.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list<T: DeserializeOwned>(&self, kind: &str) -> Result<Vec<T>, ClientError> {
        self.get(&format!("/v1/{kind}"))
    }

    /// The whole state.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn state(&self) -> Result<State, ClientError> {
        self.get("/v1/state")
    }
}

/// Percent-encodes a path segment (ids are restricted, but be safe).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_response(resp: &[u8]) -> Result<(u16, Vec<u8>), ClientError> {
    let bad = |m: &str| ClientError::Protocol(m.to_owned());
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&resp[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty reply"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let v = v.trim();
            if k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k.eq_ignore_ascii_case("content-length") {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let rest = &resp[end + 4..];
    let body = if chunked {
        dechunk(rest).ok_or_else(|| bad("bad chunked body"))?
    } else if let Some(n) = length {
        rest.get(..n).ok_or_else(|| bad("truncated body"))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_plain_and_chunked_replies() {
        let (s, b) = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((s, b.as_slice()), (200, b"{}".as_slice()));
        let (s, b) = parse_response(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((s, b.as_slice()), (404, b"abcde".as_slice()));
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn urls() {
        assert!(Client::from_url("http://127.0.0.1:7878").is_ok());
        assert!(Client::from_url("http://127.0.0.1:7878/").is_ok());
        assert!(Client::from_url("https://x:1").is_err());
        assert!(Client::from_url("http://host").is_err());
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
