//! The `[registry]` section: where the registry (orchestrators, capability policies, enabled
//! flags, forced trips) lives. `sled` (the default) keeps it in the data dir, as one gateway
//! needs; `etcd` shares it between the replicas of a fleet (docs/fleet.md).
//!
//! Credentials and TLS keys are read from files (never given on the command line, never
//! logged, never shown by the admin API); this section's `Debug` shows only whether they are
//! set.

use std::path::PathBuf;
use std::time::Duration;

use byoc_actors::registry::etcd::{EtcdSettings, EtcdTls};
use byoc_actors::registry::Backend;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The `[registry]` section.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// `sled` (embedded, one gateway) or `etcd` (a fleet).
    pub backend: Backend,
    /// etcd endpoints, `http://host:port` or `https://host:port`, one per member.
    pub etcd_endpoints: Vec<String>,
    /// Key prefix of this fleet in etcd (several fleets may share one etcd).
    pub prefix: String,
    /// TTL of this replica's membership lease: a replica that dies leaves `GET /admin/fleet`
    /// within it.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// Bound on one registry write to etcd; past it the write answers 503 with outcome
    /// `unknown`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// This replica's id in the fleet (default: one generated once for its data dir, kept in
    /// `DATA_DIR/replica-id`).
    pub replica_id: Option<String>,
    /// CA certificate(s) (PEM) that signed etcd's server certificates (`https://` endpoints).
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's `--client-cert-auth`, with `etcd_key_file`.
    pub etcd_cert_file: Option<PathBuf>,
    /// Client key (PEM).
    pub etcd_key_file: Option<PathBuf>,
    /// etcd user (etcd's auth), with `etcd_password_file`.
    pub etcd_username: Option<String>,
    /// File holding that user's password (one trailing newline ignored).
    pub etcd_password_file: Option<PathBuf>,
    /// A registry flag or environment variable that could not be used (reported by validation).
    #[serde(skip)]
    pub(crate) bad_flag: Option<String>,
}

impl std::fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: bool| if o { "(set)" } else { "(none)" };
        f.debug_struct("RegistryConfig")
            .field("backend", &self.backend)
            .field("etcd_endpoints", &self.etcd_endpoints)
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("request_timeout", &self.request_timeout)
            .field("replica_id", &self.replica_id)
            .field("etcd_ca_file", &set(self.etcd_ca_file.is_some()))
            .field("etcd_cert_file", &set(self.etcd_cert_file.is_some()))
            .field("etcd_key_file", &set(self.etcd_key_file.is_some()))
            .field("etcd_username", &set(self.etcd_username.is_some()))
            .field("etcd_password_file", &set(self.etcd_password_file.is_some()))
            .finish()
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Sled,
            etcd_endpoints: Vec::new(),
            prefix: "/byoc-gateway/".into(),
            lease_ttl: Duration::from_secs(10),
            request_timeout: Duration::from_secs(3),
            replica_id: None,
            etcd_ca_file: None,
            etcd_cert_file: None,
            etcd_key_file: None,
            etcd_username: None,
            etcd_password_file: None,
            bad_flag: None,
        }
    }
}

/// The longest lease TTL accepted (a dead replica would linger in the fleet longer than any
/// operator expects).
const MAX_LEASE_TTL: Duration = Duration::from_secs(300);

impl RegistryConfig {
    /// Checks the section; with `etcd`, the settings the backend starts with (the replica id
    /// still to be resolved against the data dir when not configured).
    pub(super) fn settings(&self) -> Result<Option<EtcdSettings>, ConfigError> {
        let invalid = |m: String| ConfigError::Invalid(format!("registry.{m}"));
        if let Some(m) = &self.bad_flag {
            return Err(ConfigError::Invalid(m.clone()));
        }
        if self.backend == Backend::Sled {
            return Ok(None);
        }
        if self.etcd_endpoints.is_empty() {
            return Err(invalid(
                "etcd_endpoints: backend \"etcd\" needs at least one endpoint (http://host:port)".into(),
            ));
        }
        for e in &self.etcd_endpoints {
            let url =
                url::Url::parse(e).map_err(|err| invalid(format!("etcd_endpoints: '{e}' is not a URL ({err})")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() || url.port().is_none() {
                return Err(invalid(format!("etcd_endpoints: '{e}' must be http://host:port or https://host:port")));
            }
            if url.scheme() == "http" && (self.etcd_ca_file.is_some() || self.etcd_cert_file.is_some()) {
                return Err(invalid(format!("etcd_endpoints: '{e}' is http:// but TLS files are configured")));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.len() < 2 || self.prefix.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "prefix '{}' must start with '/' and name something (e.g. /byoc-gateway/)",
                self.prefix
            )));
        }
        if self.lease_ttl < Duration::from_secs(2) || self.lease_ttl > MAX_LEASE_TTL {
            return Err(invalid(format!(
                "lease_ttl must be between 2s and {}s (got {:?})",
                MAX_LEASE_TTL.as_secs(),
                self.lease_ttl
            )));
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(60) {
            return Err(invalid("request_timeout must be more than 0 and at most 60s".into()));
        }
        if let Some(id) = &self.replica_id {
            check_replica_id(id).map_err(|m| invalid(format!("replica_id: {m}")))?;
        }
        let tls = match (&self.etcd_ca_file, &self.etcd_cert_file, &self.etcd_key_file) {
            (None, None, None) => None,
            (ca, cert, key) => {
                let tls = EtcdTls { ca_file: ca.clone(), cert_file: cert.clone(), key_file: key.clone() };
                byoc_actors::registry::etcd::check_tls(&tls).map_err(|e| invalid(format!("etcd TLS files: {e}")))?;
                Some(tls)
            }
        };
        let credentials = match (&self.etcd_username, &self.etcd_password_file) {
            (None, None) => None,
            (Some(user), Some(file)) => {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| invalid(format!("etcd_password_file: cannot read {}: {e}", file.display())))?;
                let password = text.strip_suffix('\n').unwrap_or(&text);
                let password = password.strip_suffix('\r').unwrap_or(password).to_string();
                Some((user.clone(), password))
            }
            _ => return Err(invalid("etcd_username and etcd_password_file go together".into())),
        };
        Ok(Some(EtcdSettings {
            endpoints: self.etcd_endpoints.clone(),
            prefix: if self.prefix.ends_with('/') { self.prefix.clone() } else { format!("{}/", self.prefix) },
            lease_ttl: self.lease_ttl,
            request_timeout: self.request_timeout,
            tls,
            credentials,
            replica_id: self.replica_id.clone().unwrap_or_default(),
        }))
    }
}

impl RegistryConfig {
    /// The etcd settings of this section (for `store import`): an error unless the backend is
    /// etcd and the section is valid.
    pub fn etcd_settings(&self) -> Result<EtcdSettings, ConfigError> {
        self.settings()?.ok_or_else(|| ConfigError::Invalid("registry.backend is not etcd".into()))
    }
}

/// A replica id: 1 to 64 letters, digits, `-`, `_` or `.` (it is an etcd key segment and is
/// shown in URLs and logs).
pub fn check_replica_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(format!("'{id}' must be 1 to 64 letters, digits, '-', '_' or '.'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etcd(toml_extra: &str) -> Result<Option<EtcdSettings>, ConfigError> {
        let text = format!("[registry]\nbackend = \"etcd\"\n{toml_extra}");
        let cfg = crate::config::Config::from_toml(&text).map_err(ConfigError::Invalid)?;
        cfg.registry.settings()
    }

    #[test]
    fn sled_is_the_default_and_needs_nothing() {
        let cfg = RegistryConfig::default();
        assert_eq!(cfg.backend, Backend::Sled);
        assert!(cfg.settings().expect("valid").is_none());
    }

    #[test]
    fn etcd_needs_endpoints_and_sane_values() {
        for (extra, needle) in [
            ("", "etcd_endpoints"),
            ("etcd_endpoints = [\"127.0.0.1:2379\"]\n", "etcd_endpoints"),
            ("etcd_endpoints = [\"ftp://a:1\"]\n", "etcd_endpoints"),
            ("etcd_endpoints = [\"http://a:1\"]\nprefix = \"nope\"\n", "prefix"),
            ("etcd_endpoints = [\"http://a:1\"]\nlease_ttl = \"1s\"\n", "lease_ttl"),
            ("etcd_endpoints = [\"http://a:1\"]\nlease_ttl = \"1h\"\n", "lease_ttl"),
            ("etcd_endpoints = [\"http://a:1\"]\nreplica_id = \"a/b\"\n", "replica_id"),
            ("etcd_endpoints = [\"http://a:1\"]\netcd_username = \"u\"\n", "etcd_password_file"),
            ("etcd_endpoints = [\"http://a:1\"]\netcd_ca_file = \"/nonexistent\"\n", "TLS"),
            ("etcd_endpoints = [\"https://a:1\"]\netcd_ca_file = \"/nonexistent\"\n", "etcd TLS"),
        ] {
            match etcd(extra) {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(needle), "{extra}: {m}"),
                other => panic!("{extra}: expected invalid, got {other:?}"),
            }
        }
        let s = etcd("etcd_endpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/fleet-a\"\n")
            .expect("valid")
            .expect("etcd");
        assert_eq!((s.prefix.as_str(), s.lease_ttl), ("/fleet-a/", Duration::from_secs(10)));
        assert!(crate::config::Config::from_toml("[registry]\nbackend = \"consul\"\n").is_err());
    }

    #[test]
    fn the_password_is_read_from_its_file_and_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret-value\n").expect("write");
        let extra = format!(
            "etcd_endpoints = [\"http://a:1\"]\netcd_username = \"gw\"\netcd_password_file = {:?}\n",
            file.display().to_string()
        );
        let s = etcd(&extra).expect("valid").expect("etcd");
        assert_eq!(s.credentials.as_ref().map(|c| c.1.as_str()), Some("s3cret-value"));
        assert!(!format!("{s:?}").contains("s3cret"));
        let text = format!("[registry]\nbackend = \"etcd\"\n{extra}");
        let cfg = crate::config::Config::from_toml(&text).expect("toml");
        assert!(!format!("{cfg:?}").contains("s3cret") && !format!("{cfg:?}").contains("\"gw\""));
    }
}
