//! Whether a failed etcd write may still commit ([`Outcome`]): the one place etcd errors are
//! classified. Pure.
//!
//! A write is certainly **not applied** when it never left this replica (the watch says etcd
//! is unreachable, so it is refused at once), when the connection to etcd could not be made,
//! or when etcd answered and refused it (bad request, permission, no leader to take it). It is
//! **unknown** when it was sent and no answer came (a timeout, a connection lost while it was in
//! flight, etcd's own "request timed out" or "leader changed"): it may still commit, so the
//! operator reads back before retrying.

use crate::registry::Outcome;

/// How an etcd call failed, reduced to what decides the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure<'a> {
    /// Refused before sending: the watch had found etcd unreachable.
    NotSent,
    /// No answer within the write timeout.
    TimedOut,
    /// etcd (or the gRPC layer) answered with this status.
    Status(tonic::Code, &'a str),
    /// The connection could not be made.
    Connect,
    /// Refused by the client library before sending (bad arguments).
    Client,
    /// Anything else after sending (an I/O error mid-call).
    Other,
}

/// The outcome of a failed write.
pub(crate) fn outcome(f: Failure<'_>) -> Outcome {
    use tonic::Code;
    match f {
        Failure::NotSent | Failure::Connect | Failure::Client => Outcome::NotApplied,
        Failure::TimedOut | Failure::Other => Outcome::Unknown,
        Failure::Status(code, message) => match code {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::ResourceExhausted
            | Code::AlreadyExists
            | Code::NotFound
            | Code::Unimplemented => Outcome::NotApplied,
            Code::Unavailable if never_reached(message) => Outcome::NotApplied,
            _ => Outcome::Unknown,
        },
    }
}

/// An `Unavailable` status that says the request was not taken: no connection was made, or
/// etcd had no leader to propose it to. (`request timed out` and `leader changed` are
/// `Unavailable` too, but the proposal may still commit.)
fn never_reached(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["tcp connect", "connection refused", "error trying to connect", "dns error", "no leader", "connect error"]
        .iter()
        .any(|needle| m.contains(needle))
}

/// An etcd client error in a few words (the gRPC status' message, not its debug dump).
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.message().is_empty() => format!("{:?}", s.code()),
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}

/// The failure an etcd client error stands for.
pub(crate) fn failure(e: &etcd_client::Error) -> Failure<'_> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Failure::Status(s.code(), s.message()),
        etcd_client::Error::TransportError(_) => Failure::Connect,
        etcd_client::Error::InvalidArgs(_)
        | etcd_client::Error::InvalidUri(_)
        | etcd_client::Error::InvalidHeaderValue(_)
        | etcd_client::Error::EndpointError(_)
        | etcd_client::Error::EndpointsNotManaged
        | etcd_client::Error::OpenSsl(_) => Failure::Client,
        _ => Failure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn refused_before_or_by_etcd_is_not_applied() {
        for f in [
            Failure::NotSent,
            Failure::Connect,
            Failure::Client,
            Failure::Status(Code::InvalidArgument, "etcdserver: request is too large"),
            Failure::Status(Code::PermissionDenied, "etcdserver: permission denied"),
            Failure::Status(Code::Unavailable, "error trying to connect: tcp connect error: Connection refused"),
            Failure::Status(Code::Unavailable, "etcdserver: no leader"),
        ] {
            assert_eq!(outcome(f), Outcome::NotApplied, "{f:?}");
        }
    }

    #[test]
    fn sent_and_unanswered_is_unknown() {
        for f in [
            Failure::TimedOut,
            Failure::Other,
            Failure::Status(Code::Unavailable, "etcdserver: request timed out"),
            Failure::Status(Code::Unavailable, "etcdserver: leader changed"),
            Failure::Status(Code::DeadlineExceeded, ""),
            Failure::Status(Code::Cancelled, "h2 protocol error"),
            Failure::Status(Code::Unknown, "transport is closing"),
        ] {
            assert_eq!(outcome(f), Outcome::Unknown, "{f:?}");
        }
    }

    #[test]
    fn client_errors_map_to_their_failure() {
        let status = etcd_client::Error::GRpcStatus(tonic::Status::new(Code::Unavailable, "etcdserver: no leader"));
        assert_eq!(outcome(failure(&status)), Outcome::NotApplied);
        let args = etcd_client::Error::InvalidArgs("empty endpoints".into());
        assert_eq!(failure(&args), Failure::Client);
        let io = etcd_client::Error::IoError(std::io::Error::other("reset"));
        assert_eq!(outcome(failure(&io)), Outcome::Unknown);
    }
}
