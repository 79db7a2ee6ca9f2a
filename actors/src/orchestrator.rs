//! Orchestrators as the registry knows them: id, normalised URL, declared capabilities, the
//! operator's label and where the entry came from.

mod label;

pub use label::{split_labelled, Label, LabelError, MAX_LABEL_CHARS};

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::capability::Capability;

/// Gateway-assigned orchestrator id (`orch-1`, `orch-2`, ...). Stable across restarts because
/// the registry is persisted and entries are found again by URL. Shared, not copied: every
/// pair key holds one, and a pair's key lives in its actor, view, scoreboard slot and the
/// supervisor's maps.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(value_type = String)]
pub struct OrchestratorId(pub Arc<str>);

impl fmt::Display for OrchestratorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a registry entry came from; decides what may remove it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// `--orch-addr` or the config file: re-read at every start, removed when no longer listed.
    Config,
    /// Added through the admin API: kept until deleted through the admin API.
    Admin,
    /// Listed by the discovery webhook (`--orch-webhook-url`): added when it appears there,
    /// removed when a successful fetch no longer lists it. Discovery never adds a URL another
    /// source already registered and never removes an entry of another source.
    Webhook,
}

/// One registered orchestrator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Orchestrator {
    /// Gateway-assigned id.
    pub id: OrchestratorId,
    /// Normalised base URL (scheme, host, port; no path).
    pub url: String,
    /// Capabilities the operator declared for it. Pairs for these are created at once; any
    /// other capability a client asks for is probed lazily.
    #[serde(default)]
    pub(crate) capabilities: Vec<Capability>,
    /// Unix time in milliseconds when the entry was first added.
    pub(crate) added_at: u64,
    /// Where the entry came from.
    pub source: Source,
    /// Whether it takes new jobs. A disabled orchestrator's pairs drain: in-flight jobs finish,
    /// no new ones are sent, tokens are still probed so the view stays current.
    #[serde(default = "enabled_default")]
    pub(crate) enabled: bool,
    /// The operator's name for it ("fast", "l40s-frankfurt"), if given: shown beside the id.
    #[serde(default)]
    pub label: Option<Label>,
}

/// An orchestrator as a static source (flags, config file, webhook) lists it: normalised URL,
/// declared capabilities and the operator's label, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Normalised base URL.
    pub url: String,
    /// Declared capabilities (deduplicated).
    pub capabilities: Vec<Capability>,
    /// The label the source gives it. `None` leaves the registry's label as it is: a label set
    /// through the admin API survives a reload of a file that names none.
    pub label: Option<Label>,
}

/// An operator's change to one orchestrator (`PATCH /admin/orchestrators/{id}`): each field
/// given is set, the others are left as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrchestratorChange {
    /// Take new jobs (`true`) or drain (`false`).
    pub enabled: Option<bool>,
    /// A new label (`Some(Some(..))`) or none (`Some(None)`).
    pub label: Option<Option<Label>>,
}

impl OrchestratorChange {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.enabled.is_none() && self.label.is_none()
    }

    /// Applies it to `orch`.
    pub(crate) fn apply(&self, orch: &mut Orchestrator) {
        if let Some(enabled) = self.enabled {
            orch.enabled = enabled;
        }
        if let Some(label) = &self.label {
            orch.label = label.clone();
        }
    }
}

fn enabled_default() -> bool {
    true
}

/// Why an orchestrator URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not parseable as a URL or `host:port`.
    #[error("'{0}' is not a URL or host:port: {1}")]
    Parse(String, String),
    /// A scheme other than http or https.
    #[error("'{0}' has scheme '{1}'; only http and https are supported")]
    Scheme(String, String),
    /// No host.
    #[error("'{0}' has no host")]
    NoHost(String),
    /// A path, query, fragment or credentials, which the protocol has no place for.
    #[error("'{0}' must be a bare origin (scheme://host:port) without path, query or credentials")]
    NotOrigin(String),
    /// Longer than any orchestrator address (the address is not echoed back).
    #[error("the address is {0} characters long; at most {MAX_URL_LEN} are accepted, and a host name at most 253")]
    TooLong(usize),
    /// A host that is neither an IP address nor a DNS name (quotes, braces, `$` and the like
    /// parse as a URL host, but no resolver knows them, and they end up in logs and pages).
    #[error("'{0}' has host '{1}': a host must be an IP address or a DNS name (letters, digits, '-', '_' and dots)")]
    BadHost(String, String),
    /// Port 0, which no orchestrator listens on.
    #[error("'{0}' has port 0; an orchestrator listens on a port from 1 to 65535")]
    PortZero(String),
}

/// Longest orchestrator address accepted (a DNS name is at most 253 characters).
pub(crate) const MAX_URL_LEN: usize = 512;

/// Most capabilities one orchestrator may be declared with (the admin API and the config
/// file): each starts a pair actor at once, and an orchestrator serves a handful.
pub const MAX_DECLARED_CAPABILITIES: usize = 256;

/// Normalises an orchestrator address the way go-livepeer's `-orchAddr` does: a bare
/// `host:port` becomes `https://host:port`; an explicit `http://` is honoured. The result has
/// no trailing slash, so `service_addr + path` concatenation is exact.
pub fn normalize_url(raw: &str) -> Result<String, UrlError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(UrlError::TooLong(raw.len()));
    }
    let with_scheme = if raw.contains("://") { raw.to_string() } else { format!("https://{raw}") };
    let url = Url::parse(&with_scheme).map_err(|e| UrlError::Parse(raw.into(), e.to_string()))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(UrlError::Scheme(raw.into(), other.into())),
    }
    let Some(host) = url.host_str() else {
        return Err(UrlError::NoHost(raw.into()));
    };
    if host.is_empty() {
        return Err(UrlError::NoHost(raw.into()));
    }
    if host.len() > 253 {
        return Err(UrlError::TooLong(raw.len()));
    }
    if let Some(url::Host::Domain(name)) = url.host() {
        if !is_dns_name(name) {
            return Err(UrlError::BadHost(raw.into(), name.into()));
        }
    }
    if url.port() == Some(0) {
        return Err(UrlError::PortZero(raw.into()));
    }
    if (url.path() != "/" && !url.path().is_empty())
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(UrlError::NotOrigin(raw.into()));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// A DNS name as resolvers take it: dot-separated labels of 1 to 63 ASCII letters, digits,
/// `-` and `_` (container and service names use underscores), not starting or ending with `-`.
/// (The URL parser has already lower-cased it and turned an international name into its
/// `xn--` form.)
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_host_port_becomes_https() {
        assert_eq!(normalize_url("1.2.3.4:8935").as_deref(), Ok("https://1.2.3.4:8935"));
        assert_eq!(normalize_url("http://127.0.0.1:9/").as_deref(), Ok("http://127.0.0.1:9"));
        assert_eq!(normalize_url(" https://Orch.Example:8935 ").as_deref(), Ok("https://orch.example:8935"));
    }

    #[test]
    fn refuses_what_the_protocol_cannot_use() {
        assert!(matches!(normalize_url("ftp://x:1"), Err(UrlError::Scheme(..))));
        assert!(matches!(normalize_url("http://x:1/path"), Err(UrlError::NotOrigin(..))));
        assert!(matches!(normalize_url("http://u:p@x:1"), Err(UrlError::NotOrigin(..))));
        assert!(matches!(normalize_url("http://x:1?q=1"), Err(UrlError::NotOrigin(..))));
        assert!(normalize_url("not a url at all").is_err());
        assert!(normalize_url("").is_err());
        assert!(normalize_url("http://:80").is_err());
        let long = format!("http://{}.example:80", "a".repeat(60_000));
        assert_eq!(normalize_url(&long), Err(UrlError::TooLong(long.len())));
        let long_host = format!("http://{}.example:80", "a".repeat(300));
        assert!(matches!(normalize_url(&long_host), Err(UrlError::TooLong(_))));
    }

    #[test]
    fn hosts_are_ip_addresses_or_dns_names_and_ports_are_not_0() {
        for raw in [
            "http://a\"b:1",
            "a'b:1",
            "http://a`b:1",
            "http://a{b}:1",
            "http://a$b:1",
            "http://a!b:1",
            "http://-a:1",
            "http://a-.b:1",
            "http://a..b:1",
            "http://a*b:1",
            "http://a(b):1",
            "http://a=b:1",
        ] {
            // Refused here, or already by the URL parser.
            let verdict = normalize_url(raw);
            assert!(matches!(verdict, Err(UrlError::BadHost(..) | UrlError::Parse(..))), "{raw}: {verdict:?}");
        }
        for raw in ["http://127.0.0.1:0", "127.0.0.1:0", "http://[::1]:0", "https://orch.example:0"] {
            assert!(matches!(normalize_url(raw), Err(UrlError::PortZero(_))), "{raw}");
        }
        for (raw, url) in [
            ("http://orch-1.example_net.local:8935", "http://orch-1.example_net.local:8935"),
            ("http://[::1]:8935", "http://[::1]:8935"),
            ("orch.example.:8935", "https://orch.example.:8935"),
            ("http://Bücher.example:1", "http://xn--bcher-kva.example:1"),
            ("http://localhost", "http://localhost"),
            ("http://10.0.0.1:1", "http://10.0.0.1:1"),
        ] {
            assert_eq!(normalize_url(raw).as_deref(), Ok(url), "{raw}");
        }
    }
}
