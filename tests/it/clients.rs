//! The real Python clients, unmodified, against the gateway: `livepeer-ai` 0.10.0 on the
//! AI-runner paths and `livepeer-gateway` 1.0.0 on `/process/request/`, with simulated
//! orchestrators behind. Also the runner paths themselves (aliases, the job the gateway
//! builds, multipart bodies byte for byte) with a Rust client. The scripts are in
//! `tests/python/`; the Python tests skip outside CI when the virtualenv is absent.

use byoc_actors::protocol::header::encode_client_header;
use byoc_sim::{sha256_hex, SIM_IMAGE_URL};
use serde_json::{json, Value};

use crate::support::*;

/// Runs one of the `tests/python/` scripts and parses the JSON line it prints.
async fn python_json(python: &std::path::Path, script: &str, args: &[&str]) -> Value {
    let out = run_python(python, script, args).await;
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("script printed no JSON ({e}): {out}"))
}

#[actix_web::test]
async fn livepeer_ai_text_to_image_returns_the_parsed_image_response() {
    let Some(py) = python() else { return };
    let a = sim("a", &[("text-to-image", healthy())]);
    let gw = gateway(&[(&a, &["text-to-image"])]).await;

    let out = python_json(&py, include_str!("../python/livepeer_ai_text_to_image.py"), &[&gw.http]).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["count"], 1, "{out}");
    assert_eq!(out["url"], SIM_IMAGE_URL, "{out}");
    assert_eq!(out["seed"], 1, "the first job on the simulator: {out}");
    assert_eq!(out["nsfw"], false, "{out}");
    assert_eq!(out["orchestrator"], a.url.as_str(), "{out}");

    // What reached the orchestrator: the BYOC route for the runner path, the job the gateway
    // built (no header came from the client), and the SDK's JSON body.
    let got = a.state.last_job().expect("the orchestrator got the job");
    assert_eq!(got.path, "text-to-image");
    assert_eq!(got.capability, "text-to-image");
    assert_eq!(got.timeout_seconds, 300, "runner.timeout_seconds default");
    assert_eq!(got.request, "{}");
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    let body: Value = serde_json::from_slice(&got.body).expect("JSON body");
    assert_eq!(body["prompt"], "a red fox in snow");
    assert_eq!(body["model_id"], "sdxl-turbo");
}

#[actix_web::test]
async fn livepeer_ai_errors_raise_the_sdks_typed_errors_with_our_message() {
    let Some(py) = python() else { return };
    let a = sim("a", &[("text-to-image", healthy())]);
    let gw = gateway(&[(&a, &["text-to-image"])]).await;
    let script = include_str!("../python/livepeer_ai_errors.py");

    // A 400 the gateway makes: the SDK parses {"detail":{"msg"}} into errors.HTTPError.
    let out = python_json(&py, script, &[&gw.http, "mismatch"]).await;
    assert_eq!(out["raised"], "HTTPError", "{out}");
    let msg = out["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("routes to capability 'text-to-image'") && msg.contains("'depth'"), "{out}");
    assert_eq!(a.state.stats("text-to-image").jobs, 0, "a refused job reaches no orchestrator");

    // A 404 (a status the SDK does not parse): errors.SDKError carrying our JSON body.
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&b, &["depth"])]).await;
    let out = python_json(&py, script, &[&gw.http, "unknown"]).await;
    assert_eq!(out["raised"], "SDKError", "{out}");
    assert_eq!(out["status"], 404, "{out}");
    let body: Value = serde_json::from_str(out["body"].as_str().unwrap_or_default()).expect("JSON error body");
    assert_eq!(body["error"]["code"], "unknown-capability", "{body}");
    assert_eq!(body["detail"]["msg"], "no orchestrator offers capability 'text-to-image'", "{body}");
}

#[actix_web::test]
async fn livepeer_ai_image_to_image_multipart_arrives_byte_for_byte() {
    let Some(py) = python() else { return };
    let a = sim("a", &[("image-to-image", healthy())]);
    let gw = gateway(&[(&a, &["image-to-image"])]).await;

    let out = python_json(&py, include_str!("../python/livepeer_ai_image_to_image.py"), &[&gw.http]).await;
    assert_eq!(out["url"], SIM_IMAGE_URL, "{out}");
    let got = a.state.last_job().expect("the orchestrator got the job");
    assert_eq!(got.path, "image-to-image");
    let sent = &out["sent"];
    assert!(sent["content_type"].as_str().is_some_and(|c| c.starts_with("multipart/form-data; boundary=")), "{out}");
    assert_eq!(got.content_type.as_deref(), sent["content_type"].as_str(), "same Content-Type, boundary included");
    assert_eq!(json!(got.body.len()), sent["bytes"], "{out}");
    assert_eq!(json!(sha256_hex(&got.body)), sent["sha256"], "the body the SDK sent, unchanged");
}

#[actix_web::test]
async fn livepeer_gateway_submit_byoc_job_returns_the_workers_data() {
    let Some(py) = python() else { return };
    let a = sim("a", &[("text-reversal", healthy())]);
    let gw = gateway(&[(&a, &["text-reversal"])]).await;

    let out = python_json(&py, include_str!("../python/livepeer_gateway_byoc.py"), &[&gw.http, "text-reversal"]).await;
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["orchestrator_url"], gw.http.as_str(), "the SDK took the gateway for its orchestrator: {out}");
    assert_eq!(out["x_orchestrator_url"], a.url.as_str(), "{out}");
    assert_eq!(out["balance"], "1000", "{out}");
    // The worker's data, as the SDK parsed it: the simulator's echo of what arrived.
    let data = &out["data"];
    assert_eq!(data["sim"], "a", "{out}");
    assert_eq!(data["capability"], "text-reversal", "{out}");
    assert_eq!(data["path"], "text-reversal", "{out}");
    assert_eq!(data["job_id"], "py-job-1", "{out}");
    assert_eq!(data["request"], out["sent_body"], "the SDK's request field, forwarded: {out}");
    assert_eq!(data["parameters"], "{}", "parameters omitted by the SDK default to {{}}: {out}");
    let sent = out["sent_body"].as_str().unwrap_or_default();
    assert_eq!(data["body_sha256"], sha256_hex(sent.as_bytes()), "{out}");
    assert_eq!(a.state.last_job().map(|j| j.timeout_seconds), Some(30), "the client's timeout is honoured");
}

/// A multipart body with every byte value and a line that looks like a boundary.
fn multipart(boundary: &str) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nmake it blue\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"in.png\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend((0..=255u8).cycle().take(70_000));
    body.extend_from_slice(b"\r\n--x\r\n");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

#[actix_web::test]
async fn runner_paths_route_by_alias_and_forward_multipart_unchanged() {
    let a = sim("a", &[("sdxl-turbo", healthy()), ("upscale", healthy())]);
    let gw = gateway_with(&[(&a, &["sdxl-turbo", "upscale"])], |c| {
        c.runner.aliases.insert("image-to-image".into(), "sdxl-turbo".into());
        c.runner.timeout_seconds = 42;
    })
    .await;

    let content_type = "multipart/form-data; boundary=----byoc-test-7MA4YWxkTrZu0gW";
    let body = multipart("----byoc-test-7MA4YWxkTrZu0gW");
    let req = gw.client.post(format!("{}/image-to-image", gw.http)).insert_header(("Content-Type", content_type));
    let ans = read(req.send_body(body.clone()).await).await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    let v = ans.json();
    assert_eq!(v["images"][0]["url"], SIM_IMAGE_URL, "{v}");
    assert_eq!(v["capability"], "sdxl-turbo", "routed by the alias: {v}");
    assert_eq!(v["path"], "image-to-image", "forwarded on the runner path, not the alias: {v}");
    let got = a.state.last_job().expect("the orchestrator got the job");
    assert_eq!(got.content_type.as_deref(), Some(content_type));
    assert!(
        got.body == body,
        "the multipart body arrived changed ({} bytes sent, {} received)",
        body.len(),
        got.body.len()
    );
    assert_eq!(got.timeout_seconds, 42, "runner.timeout_seconds");

    // A path without an alias routes to its own name.
    let ans = read(gw.client.post(format!("{}/upscale", gw.http)).send_body("x").await).await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.json()["capability"], "upscale");
}

#[actix_web::test]
async fn runner_paths_take_a_matching_livepeer_header_and_answer_errors_in_both_shapes() {
    let a = sim("a", &[("llm", healthy())]);
    let gw = gateway(&[(&a, &["llm"])]).await;
    let url = format!("{}/llm", gw.http);

    // A header naming the path's capability is honoured (its timeout and id).
    let h = encode(&json!({"capability": "llm", "id": "j-7", "request": "{}", "timeout_seconds": 9}));
    let ans = read(gw.client.post(&url).insert_header(("Livepeer", h)).send_body("{}").await).await;
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body));
    assert_eq!(ans.json()["job_id"], "j-7");
    assert_eq!(a.state.last_job().map(|j| j.timeout_seconds), Some(9));

    // One naming another capability is refused; a broken one is the usual header error.
    let h = encode(&json!({"capability": "depth", "timeout_seconds": 9}));
    let v = read(gw.client.post(&url).insert_header(("Livepeer", h)).send_body("{}").await)
        .await
        .error(400, "capability-mismatch");
    assert!(v["detail"]["msg"].as_str().is_some_and(|m| m.contains("'llm'")), "{v}");
    read(gw.client.post(&url).insert_header(("Livepeer", "%%%")).send_body("{}").await)
        .await
        .error(400, "invalid-livepeer-header");
    assert_eq!(a.state.stats("llm").jobs, 1, "refused jobs reach no orchestrator");

    // Other methods get the JSON 405; a runner's JSON error relayed by the orchestrator (as
    // text/plain, as go-livepeer does) keeps its bytes and gets its JSON type back.
    read(gw.client.get(&url).send().await).await.error(405, "method-not-allowed");
    a.state
        .patch(Some("llm"), &json!({"status": 422, "status_body": "{\"detail\":{\"msg\":\"bad prompt\"}}"}))
        .expect("knobs");
    let ans = read(gw.client.post(&url).send_body("{}").await).await;
    assert_eq!(ans.status, 422);
    assert_eq!(&ans.body[..], b"{\"detail\":{\"msg\":\"bad prompt\"}}\n");
    assert_eq!(ans.header("content-type").as_deref(), Some("application/json"));

    // go-livepeer's own text errors are put in the runner's shape, so runner clients read them.
    a.state
        .patch(Some("llm"), &json!({"status": 400, "status_body": "Unable to unmarshal job request details err=EOF"}))
        .expect("knobs");
    let ans = read(gw.client.post(&url).send_body("{}").await).await;
    assert_eq!(ans.status, 400);
    assert_eq!(ans.json()["detail"]["msg"], "Unable to unmarshal job request details err=EOF");
}

fn encode(v: &Value) -> String {
    encode_client_header(v)
}
