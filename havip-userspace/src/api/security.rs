//! Who may talk to the API: bearer tokens and the Host check on TCP, the
//! unix socket's group, and the caller named in the log of every mutating
//! request.
//!
//! # Model
//! - The unix socket (mode 0660, group [`AgentConfig::api_socket_group`])
//!   is the local admin interface: file permissions decide who connects;
//!   every request is logged with the peer's uid/gid/pid (`SO_PEERCRED`).
//! - TCP on a non-loopback address is refused at start-up unless a token
//!   file is configured. With a token file, every TCP request needs
//!   `Authorization: Bearer <token>` (else 401, nothing changes); the log
//!   names the token. The file must be mode 0600 or stricter.
//! - On TCP the `Host` header must name the listen address (or, on a
//!   loopback listener, `localhost`), with or without its port: a web page
//!   in a local browser cannot reach the API through DNS rebinding
//!   (missing: 400, another host: 421).

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use axum::{
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use thiserror::Error;

use super::ErrorBody;
use crate::config::AgentConfig;

/// The API's security settings, checked at start-up.
#[derive(Clone, Debug, Default)]
pub struct ApiSecurity {
    /// Accepted tokens (name, token); `None`: TCP needs no token (loopback
    /// only).
    pub tokens: Option<Vec<(String, String)>>,
    /// Group of the unix socket.
    pub socket_gid: Option<u32>,
}

/// A refused API configuration.
#[derive(Debug, Error)]
pub enum SecurityError {
    #[error("api_tcp = {addr} is not a loopback address: set api_token_file (bearer tokens), or listen on 127.0.0.1/::1")]
    TcpNeedsToken { addr: SocketAddr },
    #[error("cannot read the API token file {path}")]
    ReadTokens {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the API token file {path} has mode {mode:04o}: it must be 0600 or stricter (chmod 600)"
    )]
    TokenFileMode { path: PathBuf, mode: u32 },
    #[error("the API token file {path}: {reason}")]
    BadTokens { path: PathBuf, reason: String },
    #[error("api_socket_group {0:?}: no such group")]
    UnknownGroup(String),
}

/// Shortest accepted token.
const MIN_TOKEN_LEN: usize = 16;

impl ApiSecurity {
    /// Checks the `[agent]` API settings and reads the token file.
    ///
    /// # Errors
    /// [`SecurityError`]: non-loopback TCP without tokens, a token file that
    /// is unreadable, too open or malformed, an unknown socket group.
    pub fn from_config(agent: &AgentConfig) -> Result<Self, SecurityError> {
        let tokens = agent
            .api_token_file
            .as_deref()
            .map(read_tokens)
            .transpose()?;
        if let Some(addr) = agent.api_tcp {
            if tokens.is_none() && !addr.ip().is_loopback() {
                return Err(SecurityError::TcpNeedsToken { addr });
            }
        }
        let socket_gid = agent
            .api_socket_group
            .as_deref()
            .map(|g| group_id(g).ok_or_else(|| SecurityError::UnknownGroup(g.to_owned())))
            .transpose()?;
        Ok(ApiSecurity { tokens, socket_gid })
    }
}

/// Reads `name token` lines (or one bare token, named `token`); `#`
/// comments and blank lines are skipped.
fn read_tokens(path: &Path) -> Result<Vec<(String, String)>, SecurityError> {
    let read_err = |source| SecurityError::ReadTokens {
        path: path.to_path_buf(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_err)?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(SecurityError::TokenFileMode {
            path: path.to_path_buf(),
            mode: mode & 0o7777,
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    let bad = |reason: String| SecurityError::BadTokens {
        path: path.to_path_buf(),
        reason,
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (name, token) = match (words.next(), words.next(), words.next()) {
            (Some(t), None, _) => ("token", t),
            (Some(name), Some(t), None) => (name, t),
            _ => return Err(bad(format!("line {}: expected \"name token\"", n + 1))),
        };
        if token.len() < MIN_TOKEN_LEN {
            return Err(bad(format!(
                "line {}: token shorter than {MIN_TOKEN_LEN} characters",
                n + 1
            )));
        }
        out.push((name.to_owned(), token.to_owned()));
    }
    if out.is_empty() {
        return Err(bad("no token".into()));
    }
    Ok(out)
}

/// The gid of group `name` (or a number).
fn group_id(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let cname = std::ffi::CString::new(name).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf outlives it and its
    // length is passed; result is only read after the call.
    let rc = unsafe {
        libc::getgrnam_r(
            cname.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

/// Sets the group of the unix socket at `path`.
///
/// # Errors
/// `chown` failed.
pub fn chgrp(path: &Path, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, None, Some(gid))
}

/// Who sent a request, for the log.
#[derive(Clone, Debug)]
pub enum Caller {
    /// A unix-socket peer (`SO_PEERCRED`).
    Unix {
        uid: u32,
        gid: u32,
        pid: Option<i32>,
    },
    /// A TCP peer, with the name of its token once checked.
    Tcp {
        peer: SocketAddr,
        token: Option<String>,
    },
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Caller::Unix { uid, gid, pid } => {
                write!(f, "unix uid={uid} gid={gid}")?;
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
            Caller::Tcp { peer, token } => {
                write!(f, "tcp {peer}")?;
                if let Some(t) = token {
                    write!(f, " token={t}")?;
                }
                Ok(())
            }
        }
    }
}

/// A refused request: status, code, message, as a JSON error body.
pub(super) fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

/// Byte-wise comparison whose time does not depend on where `a` and `b`
/// differ (only on their lengths).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Is `host` (a Host header value) one of the listen address's names?
fn host_allowed(host: &str, listen: SocketAddr) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        // "[::1]:80", "127.0.0.1:80", "localhost:80"; a bare IPv6 literal
        // is always bracketed in Host.
        Some((n, p)) if !n.is_empty() && (n.ends_with(']') || !n.contains(':')) => (n, Some(p)),
        _ => (host, None),
    };
    if port.is_some_and(|p| p.parse() != Ok(listen.port())) {
        return false;
    }
    let ip = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name)
        .parse::<IpAddr>();
    match ip {
        Ok(ip) if listen.ip().is_unspecified() => !ip.is_unspecified(),
        Ok(ip) => ip == listen.ip(),
        Err(_) => listen.ip().is_loopback() && name.eq_ignore_ascii_case("localhost"),
    }
}

/// Checks a TCP request's Host and token; returns the token's name, or
/// the refusal to send.
pub(super) fn check_tcp(
    headers: &HeaderMap,
    listen: SocketAddr,
    tokens: Option<&[(String, String)]>,
) -> Result<Option<String>, Box<Response>> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    match host {
        None => {
            return Err(Box::new(refusal(
                StatusCode::BAD_REQUEST,
                "InvalidParameter.Host",
                "missing Host header",
            )))
        }
        Some(h) if !host_allowed(h, listen) => {
            return Err(Box::new(refusal(
                StatusCode::MISDIRECTED_REQUEST,
                "InvalidParameter.Host",
                &format!("Host {h:?} is not this API's address ({listen})"),
            )))
        }
        Some(_) => {}
    }
    let Some(tokens) = tokens else {
        return Ok(None);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(Box::new(refusal(
            StatusCode::UNAUTHORIZED,
            "AuthFailure.MissingToken",
            "this API needs \"Authorization: Bearer <token>\"",
        )));
    };
    // Every token is compared, so the time does not tell which one matched.
    let mut found = None;
    for (name, token) in tokens {
        if same(presented.as_bytes(), token.as_bytes()) && found.is_none() {
            found = Some(name.clone());
        }
    }
    found.map(Some).ok_or_else(|| {
        Box::new(refusal(
            StatusCode::UNAUTHORIZED,
            "AuthFailure.InvalidToken",
            "the bearer token is not valid",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let lo: SocketAddr = "127.0.0.1:7878".parse().unwrap_or_else(|_| unreachable!());
        assert!(host_allowed("127.0.0.1:7878", lo));
        assert!(host_allowed("127.0.0.1", lo));
        assert!(host_allowed("localhost:7878", lo));
        assert!(host_allowed("LOCALHOST", lo));
        assert!(!host_allowed("evil.example:7878", lo));
        assert!(!host_allowed("127.0.0.1:80", lo));
        assert!(!host_allowed("127.0.0.2:7878", lo));
        let v6: SocketAddr = "[::1]:7878".parse().unwrap_or_else(|_| unreachable!());
        assert!(host_allowed("[::1]:7878", v6));
        assert!(host_allowed("localhost", v6));
        let pub4: SocketAddr = "192.0.2.5:7878".parse().unwrap_or_else(|_| unreachable!());
        assert!(host_allowed("192.0.2.5:7878", pub4));
        assert!(!host_allowed("localhost:7878", pub4));
        let any: SocketAddr = "0.0.0.0:7878".parse().unwrap_or_else(|_| unreachable!());
        assert!(host_allowed("192.0.2.5:7878", any));
        assert!(!host_allowed("rebind.example:7878", any));
    }

    #[test]
    fn constant_time_compare() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }
}
