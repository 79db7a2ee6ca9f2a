//! The AI-runner paths on the public listener: `POST /text-to-image`, `/image-to-image`, ...
//! as the Livepeer AI runner serves them and the `livepeer-ai` SDK calls them.
//!
//! These clients send no `Livepeer` header, so the gateway builds the job itself: the
//! capability is the path's name (or its alias from `[runner.aliases]`), `request` and
//! `parameters` are `{}`, `timeout_seconds` is `runner.timeout_seconds`. The job goes to the
//! orchestrator's BYOC route `/process/request/<path>`; the orchestrator hands the part after
//! `/process/request/` to the worker, so a BYOC container serving the AI-runner API receives
//! `/text-to-image` as the SDK sent it. Body and `Content-Type` (a multipart boundary
//! included) travel byte for byte, as on `/process/request/`.
//!
//! The body is not copied into the header's `request`: runner bodies are images, audio and
//! video in multipart forms, often megabytes, and not JSON; the orchestrator only reads
//! `stream_id` from `request`, which batch jobs do not have.

use actix_web::http::header::HeaderValue;
use actix_web::{web, HttpRequest, HttpResponse};
use byoc_actors::capability::Capability;
use byoc_actors::protocol::header::{decode_client_header, ClientJob};
use byoc_actors::protocol::{names, PROCESS_REQUEST_PREFIX};
use byoc_actors::route::Job;

use super::body::{read_body, BodyReservation};
use super::error::ApiError;
use super::public::{content_type, request_id, run_job, ErrorShape, PublicState};

/// The AI runner's pipeline paths (ai-runner `runner/openapi.yaml`), without the leading `/`.
pub const PIPELINES: [&str; 10] = [
    "text-to-image",
    "image-to-image",
    "image-to-video",
    "upscale",
    "audio-to-text",
    "segment-anything-2",
    "llm",
    "image-to-text",
    "text-to-speech",
    "live-video-to-video",
];

/// Default `timeout_seconds` of a job built for a runner path: the `livepeer-gateway` SDK's
/// default, long enough for a video pipeline on a cold GPU. The gateway's own bound on an
/// attempt is still the capability policy's `per_try_timeout`.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 300;

/// Where each runner path routes, and the timeout of the jobs built for them.
#[derive(Debug, Clone)]
pub struct RunnerRoutes {
    routes: Vec<(&'static str, Capability)>,
    timeout_seconds: u64,
}

impl RunnerRoutes {
    /// Routes from `(pipeline, capability)` pairs (one per entry of [`PIPELINES`], aliases
    /// applied; see `Config::validate`).
    pub fn new(routes: Vec<(&'static str, Capability)>, timeout_seconds: u64) -> Self {
        Self { routes, timeout_seconds }
    }

    /// The capability a pipeline path (without its `/`) routes to.
    pub fn capability(&self, pipeline: &str) -> Option<&Capability> {
        self.routes.iter().find(|(p, _)| *p == pipeline).map(|(_, c)| c)
    }
}

/// Registers `POST /<pipeline>` for every runner path (other methods get the JSON 405).
pub fn configure(cfg: &mut web::ServiceConfig) {
    for pipeline in PIPELINES {
        cfg.service(
            web::resource(format!("/{pipeline}"))
                .route(web::post().to(runner_job))
                .route(web::route().to(|| async { Err::<HttpResponse, _>(ApiError::method_not_allowed("POST")) })),
        );
    }
}

async fn runner_job(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<PublicState>,
    routes: web::Data<RunnerRoutes>,
) -> Result<HttpResponse, ApiError> {
    let pipeline = req.path().trim_start_matches('/');
    let Some(capability) = routes.capability(pipeline) else {
        // Only the registered paths reach this handler, and each has a route.
        return Err(ApiError::route_not_found(req.method().as_str(), req.path()));
    };
    let client = client_job(&req, capability, routes.timeout_seconds)?;
    let via = super::public::check_loop(&req, &state)?;
    let mut held = BodyReservation::new(&state.bodies, req.peer_addr().map(|a| a.ip()));
    let body = read_body(&req, payload, &state.body, &mut held).await?;
    let slot = state.jobs.admit(held)?;
    let job = Job {
        client,
        path: format!("{PROCESS_REQUEST_PREFIX}{pipeline}"),
        body,
        content_type: content_type(&req),
        request_id: request_id(&req),
        via,
        client_addr: req.peer_addr().map(|a| a.ip()),
    };
    Ok(run_job(&state, job, slot, ErrorShape::Runner).await)
}

/// The job for a runner path. A client that does send a `Livepeer` header (a go-livepeer-style
/// client pointed at a runner path) gets its `id`, `request`, `parameters` and
/// `timeout_seconds` honoured; its capability must be the one the path routes to, since the
/// path decides where the job goes and a silent disagreement would route a job the client
/// did not mean.
fn client_job(req: &HttpRequest, capability: &Capability, timeout_seconds: u64) -> Result<ClientJob, ApiError> {
    let Some(raw) = req.headers().get(names::LIVEPEER).map(HeaderValue::as_bytes) else {
        return Ok(ClientJob {
            capability: capability.clone(),
            id: String::new(),
            request: "{}".into(),
            parameters: "{}".into(),
            timeout_seconds,
            orchestrators: Default::default(),
        });
    };
    let client = decode_client_header(Some(raw))?;
    if &client.capability != capability {
        return Err(ApiError::bad_request(
            "capability-mismatch",
            format!(
                "{} routes to capability '{capability}' but the Livepeer header names '{}'; \
                 drop the header or post to /process/request/ instead",
                req.path(),
                client.capability
            ),
        ));
    }
    Ok(client)
}
