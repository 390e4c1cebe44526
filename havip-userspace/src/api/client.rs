//! A blocking client of the API on hyper: one HTTP/1.1 connection, kept
//! alive and reused for every request (re-opened if the agent closed it),
//! driven by a current-thread runtime inside the client. Used by `havipctl`,
//! the tests and the benchmark.

use std::{
    io,
    path::PathBuf,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{client::conn::http1::SendRequest, Request};
use hyper_util::rt::TokioIo;
use serde::{de::DeserializeOwned, Serialize};
use thiserror::Error;

use super::ErrorBody;
use crate::{
    control::HaVipView,
    model::{Eip, Op, OwnerChange, Quotas, RouteEntry, State},
};

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
    #[error("HTTP error talking to the agent: {0}")]
    Http(#[from] hyper::Error),
    #[error("no reply from the agent within {0:?}")]
    Timeout(Duration),
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

/// The runtime and the open connection, created on first use.
struct Conn {
    rt: tokio::runtime::Runtime,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// Blocking client of the API. One connection per client: share a client
/// between threads and they take turns; give each thread its own (clone)
/// for parallel requests.
pub struct Client {
    endpoint: Endpoint,
    timeout: Duration,
    conn: Mutex<Option<Conn>>,
}

impl Clone for Client {
    /// A client of the same endpoint with its own connection.
    fn clone(&self) -> Self {
        Client {
            endpoint: self.endpoint.clone(),
            timeout: self.timeout,
            conn: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn snippet(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).chars().take(200).collect()
}

impl Client {
    fn new(endpoint: Endpoint) -> Self {
        Client {
            endpoint,
            timeout: Duration::from_secs(30),
            conn: Mutex::new(None),
        }
    }

    /// A client of the API on unix socket `path`.
    pub fn unix(path: impl Into<PathBuf>) -> Self {
        Self::new(Endpoint::Unix(path.into()))
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
        Ok(Self::new(Endpoint::Tcp(hostport.to_owned())))
    }

    /// Changes the per-request timeout (default 30 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn connect(endpoint: &Endpoint) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let (sender, driver) = match endpoint {
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p).await.map_err(|source| {
                    ClientError::Connect {
                        endpoint: p.display().to_string(),
                        source,
                    }
                })?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                (sender, tokio::spawn(conn))
            }
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await.map_err(|source| {
                    ClientError::Connect {
                        endpoint: a.clone(),
                        source,
                    }
                })?;
                s.set_nodelay(true)?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                (sender, tokio::spawn(conn))
            }
        };
        // The driver ends with the connection; its error surfaces on the
        // next request.
        drop(driver);
        Ok(sender)
    }

    async fn send(
        endpoint: &Endpoint,
        slot: &mut Option<SendRequest<Full<Bytes>>>,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Bytes), ClientError> {
        // A kept-alive connection the agent closed is replaced once; a
        // request is never sent twice.
        let reusable = match slot.as_mut() {
            Some(s) => !s.is_closed() && s.ready().await.is_ok(),
            None => false,
        };
        let mut sender = match slot.take() {
            Some(s) if reusable => s,
            _ => Self::connect(endpoint).await?,
        };
        sender.ready().await?;
        let host = match endpoint {
            Endpoint::Unix(_) => "localhost",
            Endpoint::Tcp(a) => a.as_str(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("accept", "application/json");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        *slot = Some(sender);
        Ok((status, bytes))
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
        let mut guard = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => guard.insert(Conn {
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?,
                sender: None,
            }),
        };
        let Conn { rt, sender } = conn;
        let timeout = self.timeout;
        let endpoint = &self.endpoint;
        let r = rt.block_on(async {
            tokio::time::timeout(timeout, Self::send(endpoint, sender, method, path, body)).await
        });
        match r {
            Ok(r) => r.map(|(s, b)| (s, b.to_vec())),
            Err(_) => {
                *sender = None;
                Err(ClientError::Timeout(timeout))
            }
        }
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
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("{e}: {}", snippet(&bytes))))
        } else {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => Err(ClientError::Api {
                    status,
                    code: e.code,
                    message: e.message,
                }),
                Err(_) => Err(ClientError::Protocol(format!(
                    "HTTP {status}: {}",
                    snippet(&bytes)
                ))),
            }
        }
    }

    /// Applies one operation (`POST /v1/ops`) and decodes the reply: the
    /// resource it created or changed as the read endpoints show it
    /// ([`HaVipView`] for HaVips), or [`super::Deleted`] for deletes.
    ///
    /// # Errors
    /// [`ClientError::Api`] with the refusal's code and message.
    pub fn apply<T: DeserializeOwned>(&self, op: impl Into<Op>) -> Result<T, ClientError> {
        self.call("POST", "/v1/ops", Some(&op.into()))
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call::<(), T>("GET", path, None)
    }

    /// The owner history of HaVip `id` (`GET /v1/havips/{id}/history`),
    /// oldest first.
    ///
    /// # Errors
    /// [`ClientError::Api`] (`NotFound.HaVip`), connection errors.
    pub fn history(&self, id: &str) -> Result<Vec<OwnerChange>, ClientError> {
        self.get(&format!("/v1/havips/{}/history", enc(id)))
    }

    /// Follows `GET /v1/events` on a connection of its own: calls `on_line`
    /// with each JSON line as it arrives (keep-alive lines included) until
    /// it returns false (then `Ok(true)`) or the agent ends the stream
    /// (`Ok(false)`; call again to reconnect). No request timeout applies.
    ///
    /// # Errors
    /// Connection and protocol errors, [`ClientError::Api`] for a refusal.
    pub fn follow_events(
        &self,
        mut on_line: impl FnMut(&str) -> bool,
    ) -> Result<bool, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let endpoint = &self.endpoint;
        rt.block_on(async {
            let mut sender = Self::connect(endpoint).await?;
            sender.ready().await?;
            let host = match endpoint {
                Endpoint::Unix(_) => "localhost",
                Endpoint::Tcp(a) => a.as_str(),
            };
            let req = Request::builder()
                .method("GET")
                .uri("/v1/events")
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            if !(200..300).contains(&status) {
                let bytes = body.collect().await?.to_bytes();
                return Err(ClientError::Protocol(format!(
                    "HTTP {status}: {}",
                    snippet(&bytes)
                )));
            }
            let mut buf: Vec<u8> = Vec::new();
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(n) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=n).collect();
                    let line = String::from_utf8_lossy(&line[..n]);
                    if !on_line(&line) {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        })
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

    /// Lists EIPs.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list_eips(&self) -> Result<Vec<Eip>, ClientError> {
        self.get("/v1/eips")
    }

    /// Lists route entries.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn list_routes(&self) -> Result<Vec<RouteEntry>, ClientError> {
        self.get("/v1/routes")
    }

    /// Reads the quotas.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub fn quotas(&self) -> Result<Quotas, ClientError> {
        self.get("/v1/quotas")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(Client::from_url("http://127.0.0.1:7878").is_ok());
        assert!(Client::from_url("http://127.0.0.1:7878/").is_ok());
        assert!(Client::from_url("https://x:1").is_err());
        assert!(Client::from_url("http://host").is_err());
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
