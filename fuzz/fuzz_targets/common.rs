//! Checks shared by the header fuzz targets.

use byoc_actors::capability::Capability;
use byoc_actors::protocol::header::{
    decode_client_header, decode_job_request, encode_client_header, JobRequest, MAX_TIMEOUT_SECONDS,
};

/// Decodes `header` as the gateway does; when it is accepted, checks the job's invariants and
/// that re-encoding it (as a client header and as the orchestrator-facing `JobRequest`) decodes
/// back to the same job. Panics (a fuzzer crash) on any violation.
pub fn check_header(header: &[u8]) {
    let Ok(job) = decode_client_header(Some(header)) else { return };

    assert!(Capability::new(job.capability.as_str()).is_ok(), "bad capability {:?}", job.capability);
    assert!((1..=MAX_TIMEOUT_SECONDS).contains(&job.timeout_seconds), "timeout {}", job.timeout_seconds);

    // The decoded job as a client would send it (documents as strings): same job back.
    let client = serde_json::json!({
        "id": job.id,
        "capability": job.capability.as_str(),
        "request": job.request,
        "parameters": job.parameters,
        "timeout_seconds": job.timeout_seconds,
    });
    let again = decode_client_header(Some(encode_client_header(&client).as_bytes()))
        .unwrap_or_else(|e| panic!("re-encoded job refused: {e}: {client}"));
    assert_eq!(again.capability, job.capability);
    assert_eq!(again.timeout_seconds, job.timeout_seconds);
    assert_eq!(again, job);

    // The orchestrator-facing header round-trips, and decodes as a client header to the same job.
    let req = JobRequest::for_job(&job, String::new(), String::new());
    let encoded = req.encode();
    assert_eq!(decode_job_request(&encoded).as_ref(), Ok(&req));
    assert_eq!(decode_client_header(Some(encoded.as_bytes())).as_ref(), Ok(&job));
}
