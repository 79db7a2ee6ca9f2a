//! The gateway's loop marker: an entry it adds to the `Via` header of every job it forwards
//! (`1.1 byoc-gateway-<id>`, `id` random per process) and refuses to see again on a job it
//! receives, as HTTP proxies do (RFC 9110 7.6.3). An orchestrator whose token's `service_addr`
//! points back at the gateway (or at another gateway that points back) would otherwise make
//! one job recurse until the in-flight limit.

use awc::http::header::{HeaderMap, HeaderValue, VIA};

/// This process's marker.
#[derive(Debug, Clone)]
pub struct LoopMarker {
    /// `byoc-gateway-<id>`, searched for in received `Via` headers.
    token: String,
    /// `1.1 byoc-gateway-<id>`, the entry added upstream.
    entry: HeaderValue,
}

impl Default for LoopMarker {
    fn default() -> Self {
        Self::new()
    }
}

impl LoopMarker {
    /// A marker with a fresh random id.
    pub fn new() -> Self {
        let token = format!("byoc-gateway-{:016x}", rand::random::<u64>());
        // Hex digits and dashes are always a valid header value.
        let entry =
            HeaderValue::from_str(&format!("1.1 {token}")).unwrap_or(HeaderValue::from_static("1.1 byoc-gateway"));
        Self { token, entry }
    }

    /// The entry alone, for jobs the gateway makes itself (warm-up jobs).
    pub(crate) fn entry(&self) -> &HeaderValue {
        &self.entry
    }

    /// Whether a job carrying `headers` already passed through this gateway.
    pub fn seen_in(&self, headers: &HeaderMap) -> bool {
        headers.get_all(VIA).any(|v| v.to_str().is_ok_and(|v| v.contains(self.token.as_str())))
    }

    /// The `Via` value to send upstream: what the job arrived with, then this gateway.
    pub fn upstream(&self, headers: &HeaderMap) -> HeaderValue {
        let received: Vec<&str> = headers.get_all(VIA).filter_map(|v| v.to_str().ok()).collect();
        if received.is_empty() {
            return self.entry.clone();
        }
        let mut value = received.join(", ");
        value.push_str(", ");
        value.push_str(self.entry.to_str().unwrap_or_default());
        HeaderValue::from_str(&value).unwrap_or_else(|_| self.entry.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_sees_itself_and_not_others() {
        let (a, b) = (LoopMarker::new(), LoopMarker::new());
        let mut headers = HeaderMap::new();
        assert!(!a.seen_in(&headers));
        assert_eq!(a.upstream(&headers), a.entry);
        headers.insert(VIA, HeaderValue::from_static("1.0 fred, 1.1 p.example.net"));
        let via_a = a.upstream(&headers);
        assert!(via_a.to_str().is_ok_and(|v| v.starts_with("1.0 fred, 1.1 p.example.net, 1.1 byoc-gateway-")));
        headers.insert(VIA, via_a);
        assert!(a.seen_in(&headers));
        assert!(!b.seen_in(&headers), "another gateway adds itself and passes the job on");
    }
}
