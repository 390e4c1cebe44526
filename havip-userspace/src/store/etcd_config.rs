//! `[agent.etcd]`: where the etcd store is and how the agent connects to
//! it (timeouts, auth, TLS).

use std::{path::PathBuf, time::Duration};

use etcd_client::{Certificate, ConnectOptions, Identity, TlsOptions};
use serde::{Deserialize, Serialize};

use super::{etcd::backend, StoreError};

/// `[agent.etcd]` of the agent config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EtcdConfig {
    /// `http://host:port` of the etcd members (`https://` with TLS;
    /// default `http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// Key prefix of this deployment: starts with `/`, no trailing `/`
    /// (default `/havip`). Hosts sharing a prefix share one state.
    pub prefix: String,
    /// Connect timeout to an endpoint, in ms (default 2,000; 0 counts as 1).
    pub dial_timeout_ms: u64,
    /// Timeout of one etcd request, in ms (default 2,000; 0 counts as 1).
    pub request_timeout_ms: u64,
    /// etcd's `--max-txn-ops` (default 128, etcd's own default): a commit
    /// with more operations is refused before it is sent
    /// ([`StoreError::TooLarge`]).
    pub max_txn_ops: usize,
    /// etcd user (etcd's auth); its password is read from `password_file`.
    pub user: Option<String>,
    /// File holding `user`'s password (one line; a trailing newline is
    /// dropped). Set both or neither.
    pub password_file: Option<PathBuf>,
    /// TLS: the CA that signed etcd's server certificate (PEM). With it
    /// the endpoints must be `https://`.
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate and key (PEM), for etcd's
    /// `--client-cert-auth`; both or neither.
    pub cert_file: Option<PathBuf>,
    /// Private key of `cert_file` (PEM).
    pub key_file: Option<PathBuf>,
}

/// etcd's default `--max-txn-ops`.
pub const DEFAULT_MAX_TXN_OPS: usize = 128;

impl EtcdConfig {
    /// etcd-client's connect options: timeouts, user, TLS.
    ///
    /// # Errors
    /// A password or TLS file that cannot be read, a user without password
    /// (or the reverse), a certificate without its key (or the reverse),
    /// TLS files with an `http://` endpoint.
    pub fn connect_options(&self) -> Result<ConnectOptions, StoreError> {
        let read = |what: &str, p: &PathBuf| {
            std::fs::read(p)
                .map_err(|e| backend(format!("[agent.etcd] {what} {}: {e}", p.display())))
        };
        let dial = Duration::from_millis(self.dial_timeout_ms.max(1));
        let timeout = Duration::from_millis(self.request_timeout_ms.max(1));
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(dial)
            .with_timeout(timeout)
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2));
        match (&self.user, &self.password_file) {
            (Some(user), Some(file)) => {
                let password = String::from_utf8(read("password_file", file)?)
                    .map_err(|_| backend("[agent.etcd] password_file is not UTF-8"))?;
                opts = opts.with_user(user.clone(), password.trim_end_matches(['\n', '\r']));
            }
            (None, None) => {}
            _ => return Err(backend("[agent.etcd] user and password_file go together")),
        }
        let tls = self.ca_file.is_some() || self.cert_file.is_some();
        if tls {
            if let Some(e) = self.endpoints.iter().find(|e| !e.starts_with("https://")) {
                return Err(backend(format!(
                    "[agent.etcd] TLS files are set but endpoint {e:?} is not https://"
                )));
            }
            let mut t = TlsOptions::new();
            if let Some(ca) = &self.ca_file {
                t = t.ca_certificate(Certificate::from_pem(read("ca_file", ca)?));
            }
            match (&self.cert_file, &self.key_file) {
                (Some(c), Some(k)) => {
                    t = t.identity(Identity::from_pem(
                        read("cert_file", c)?,
                        read("key_file", k)?,
                    ));
                }
                (None, None) => {}
                _ => return Err(backend("[agent.etcd] cert_file and key_file go together")),
            }
            opts = opts.with_tls(t);
        } else if self.key_file.is_some() {
            return Err(backend("[agent.etcd] key_file without cert_file"));
        }
        Ok(opts)
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/havip".into(),
            dial_timeout_ms: 2000,
            request_timeout_ms: 2000,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            user: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> EtcdConfig {
        toml::from_str(toml_text).expect("an [agent.etcd] table")
    }

    #[test]
    fn tls_and_auth_options_parse_and_are_checked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).expect("write");
            p.display().to_string()
        };
        let (ca, cert, key, pw) = (
            file("ca.pem", "ca"),
            file("c.pem", "cert"),
            file("k.pem", "key"),
            file("pw", "s3cret\n"),
        );
        let cfg = parse(&format!(
            "endpoints = [\"https://10.0.0.1:2379\"]\nuser = \"havip\"\npassword_file = \"{pw}\"\n\
             ca_file = \"{ca}\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\nmax_txn_ops = 1024\n"
        ));
        assert_eq!(cfg.user.as_deref(), Some("havip"));
        assert_eq!(cfg.max_txn_ops, 1024);
        assert_eq!(cfg.prefix, "/havip", "unset keys keep their defaults");
        assert!(cfg.connect_options().is_ok());

        let err = |c: EtcdConfig| match c.connect_options() {
            Ok(_) => panic!("accepted: {c:?}"),
            Err(e) => format!("{:?}", e),
        };
        let http = EtcdConfig {
            endpoints: vec!["http://10.0.0.1:2379".into()],
            ..cfg.clone()
        };
        assert!(err(http).contains("not https://"));
        let no_key = EtcdConfig {
            key_file: None,
            ..cfg.clone()
        };
        assert!(err(no_key).contains("cert_file and key_file go together"));
        let no_pw = EtcdConfig {
            password_file: None,
            ..cfg.clone()
        };
        assert!(err(no_pw).contains("user and password_file go together"));
        let missing = EtcdConfig {
            ca_file: Some(dir.path().join("absent.pem")),
            ..cfg
        };
        assert!(err(missing).contains("absent.pem"));
        assert_eq!(
            parse("").max_txn_ops,
            DEFAULT_MAX_TXN_OPS,
            "etcd's default limit"
        );
        assert!(toml::from_str::<EtcdConfig>("pasword_file = \"x\"").is_err());
    }
}
