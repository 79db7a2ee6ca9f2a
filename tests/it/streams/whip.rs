//! WHIP ingest with a real browser: Debian's headless chromium with its fake camera loads a
//! small page (served by the test on a loopback port) that publishes by WHIP (RTCPeerConnection,
//! H.264, the SDP offer POSTed to the stream's `whip_url`). The video reaches the simulated
//! runner as MPEG-TS segments, is processed there (`stream_video_filter`: half size), and the
//! stream's RTMP output, received by `ffmpeg -listen 1`, is checked with ffprobe. A swap in the
//! middle leaves the WebRTC session connected (one session throughout, the new orchestrator
//! processes its video); a second publisher (WHIP or RTMP) is refused while it publishes; its
//! `DELETE` ends the session and the remux (every ffmpeg reaped). Offers for unknown, stopped or
//! ingress-less streams, and malformed ones, are refused at once with clear errors.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use super::rtmp::{
    exited, free_port, knobs, media_config, out_file, piped_ffmpegs, probe, publisher, receiver, rtmp_url,
    tools_or_skip, MEDIA,
};
use super::*;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The fake camera's size asked for (the runner halves it).
const WIDTH_IN: u64 = 640;

/// The publishing page: the fake camera and microphone over WHIP (H.264 preferred), each step
/// reported back to the test as JSON.
const PAGE: &str = r#"<!doctype html><html><body><script>
const report = (o) => fetch('/report', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(o)});
async function main() {
  const whip = new URLSearchParams(location.search).get('whip');
  const media = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480, frameRate: 30}, audio: true});
  const pc = new RTCPeerConnection();
  pc.onconnectionstatechange = () => report({event: 'state', state: pc.connectionState});
  for (const track of media.getTracks()) {
    const t = pc.addTransceiver(track, {direction: 'sendonly'});
    if (track.kind === 'video') {
      const h264 = RTCRtpSender.getCapabilities('video').codecs
        .filter(c => c.mimeType === 'video/H264' && (c.sdpFmtpLine || '').includes('packetization-mode=1'));
      t.setCodecPreferences(h264);
      try {
        const p = t.sender.getParameters();
        p.degradationPreference = 'maintain-resolution';
        await t.sender.setParameters(p);
      } catch (e) { report({event: 'note', note: String(e)}); }
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(done => {
    if (pc.iceGatheringState === 'complete') done();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') done(); };
    setTimeout(done, 2000);
  });
  const offer = pc.localDescription.sdp;
  const res = await fetch(whip, {method: 'POST', headers: {'Content-Type': 'application/sdp'}, body: offer});
  const answer = await res.text();
  report({event: 'answer', status: res.status, location: res.headers.get('Location'), offer: offer, body: answer});
  if (res.status === 201) await pc.setRemoteDescription({type: 'answer', sdp: answer});
}
main().catch(e => report({event: 'error', error: String(e)}));
</script></body></html>"#;

fn chromium_or_skip(test: &str) -> bool {
    if !Path::new(CHROMIUM).exists() {
        skip(Needs::Browser, test, "chromium is not installed (apt-get install chromium; .ci/run does it)");
        return false;
    }
    tools_or_skip(test)
}

/// The page's server on a loopback port; what the page reports comes out of the receiver.
fn page_server() -> (String, mpsc::UnboundedReceiver<Value>, actix_web::dev::ServerHandle) {
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let server = HttpServer::new(move || {
        let tx = tx.clone();
        App::new()
            .route("/", web::get().to(|| async { HttpResponse::Ok().content_type("text/html").body(PAGE) }))
            .route(
                "/report",
                web::post().to(move |body: web::Json<Value>| {
                    let _ = tx.send(body.into_inner());
                    async { HttpResponse::NoContent().finish() }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .expect("bind the page server");
    let addr = server.addrs()[0];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}"), rx, handle)
}

/// Headless chromium on `url` with a fake camera and microphone, allowed to use loopback for
/// WebRTC (the gateway's candidate is 127.0.0.1).
fn chromium(url: &str, profile: &Path) -> Child {
    Command::new(CHROMIUM)
        .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
        .args(["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        .args(["--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn chromium")
}

/// The next report with `event`, failing on a page error.
async fn report(rx: &mut mpsc::UnboundedReceiver<Value>, event: &str, secs: u64) -> Value {
    let until = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let r = tokio::time::timeout_at(until, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no '{event}' from the page within {secs} s"))
            .expect("the page server is up");
        assert_ne!(r["event"], "error", "the page failed: {r}");
        if r["event"] == event {
            return r;
        }
    }
}

/// A WHIP offer POSTed by the test itself.
async fn offer(gw: &TestGateway, id: &str, content_type: &str, sdp: impl Into<bytes::Bytes>) -> Answer {
    let url = format!("{}/process/stream/{id}/whip", gw.http);
    read(gw.client.post(url).insert_header(("Content-Type", content_type)).send_body(sdp.into()).await).await
}

#[actix_web::test]
async fn a_browser_publishes_by_whip_through_a_swap_and_the_output_carries_processed_video() {
    let test = "a_browser_publishes_by_whip_through_a_swap_and_the_output_carries_processed_video";
    if !chromium_or_skip(test) {
        return;
    }
    let _turn = MEDIA.lock().await;
    let a = sim("a", &[(CAP, knobs())]);
    let b = sim("b", &[(CAP, knobs())]);
    let gw = gateway_with(&[(&a, &[CAP])], |c| {
        media_config(c);
        // The page is served from another origin (its own port).
        c.streams.allow_cors = true;
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let recv = receiver(port, &out_file(&dir));
    let output = format!("rtmp://127.0.0.1:{port}/live/out");
    let started = gw.start_stream(CAP, &all(), &json!({"stream_id": "w1", "rtmp_output": output})).await;
    assert_eq!(started.status, 200, "{}", String::from_utf8_lossy(&started.body));
    let urls = started.json();
    let whip_url = urls["whip_url"].as_str().expect("whip_url").to_string();
    assert_eq!(whip_url, format!("{}/process/stream/w1/whip", gw.http));
    gw.runs_on("w1", &a).await;
    gw.add_live(&b).await;

    let (page, mut reports, page_handle) = page_server();
    let browser = chromium(&format!("{page}/?whip={whip_url}"), dir.path());
    let answer = report(&mut reports, "answer", 60).await;
    assert_eq!(answer["status"], 201, "{answer}");
    let location = answer["location"].as_str().expect("Location").to_string();
    assert!(location.starts_with("/process/stream/w1/whip/"), "{location}");
    assert!(answer["body"].as_str().is_some_and(|s| s.contains("H264/90000")), "{answer}");
    loop {
        let s = report(&mut reports, "state", 30).await;
        assert!(s["state"] != "failed" && s["state"] != "closed", "{s}");
        if s["state"] == "connected" {
            break;
        }
    }
    // Video through a: segments cut, processed, pushed to the output.
    let before = eventually("output through a", 2000, || async {
        let r = gw.stream_report("w1").await;
        (r["media"]["outputs"][0]["segments"].as_u64() >= Some(3)).then_some(r)
    })
    .await;
    // The browser's address (its host candidate that reached the gateway's 127.0.0.1).
    let publisher_addr = before["media"]["whip_publisher"].as_str().map(str::parse::<std::net::SocketAddr>);
    assert!(matches!(publisher_addr, Some(Ok(_))), "{before}");
    assert!(before["media"]["whip_video_frames"].as_u64() > Some(0), "{before}");
    assert!(before["media"]["whip_audio_frames"].as_u64() > Some(0), "the microphone's Opus goes in: {before}");

    // Another publisher is refused while this one publishes: the same offer again, or RTMP.
    let offer_sdp = answer["offer"].as_str().expect("offer").to_string();
    offer(&gw, "w1", "application/sdp", offer_sdp.clone()).await.error(409, "publisher-exists");
    let (status, err) = exited(publisher(&rtmp_url(&urls), 60), 30, "an RTMP publisher beside WHIP").await;
    assert!(!status.success(), "{err}");

    // a goes silent: the stream moves to b; the browser stays connected to the gateway.
    a.state.patch(Some(CAP), &json!({"stream_events_stop": true})).expect("knob");
    gw.runs_on("w1", &b).await;
    let b_before = b.state.live_stats().egress_segments;
    let after = eventually("b processes the browser's video", 2000, || async {
        let r = gw.stream_report("w1").await;
        let out = r["media"]["outputs"][0]["segments"].as_u64().unwrap_or(0);
        let b_done = b.state.live_stats().egress_segments >= b_before + 3;
        (b_done && out >= before["media"]["outputs"][0]["segments"].as_u64().unwrap_or(0) + 3).then_some(r)
    })
    .await;
    assert_eq!(after["swaps"], 1, "{after}");
    assert_eq!(after["media"]["whip_sessions"], 1, "one WHIP session throughout: {after}");
    assert_eq!(after["media"]["outputs"][0]["starts"], 1, "the output stayed connected: {after}");
    assert!(after["media"]["whip_publisher"].is_string(), "{after}");
    while let Ok(r) = reports.try_recv() {
        assert!(r["event"] != "state" || r["state"] == "connected", "the browser's connection changed: {r}");
    }

    // The publisher's DELETE ends the session and its remux; a second is a 404.
    let resource = format!("{}{location}", gw.http);
    let deleted = read(gw.client.delete(resource.clone()).send().await).await;
    assert_eq!(deleted.status, 200, "{}", String::from_utf8_lossy(&deleted.body));
    let r = eventually("the session ended", 1000, || async {
        let r = gw.stream_report("w1").await;
        r["media"]["whip_publisher"].is_null().then_some(r)
    })
    .await;
    assert!(r["media"].get("whip_last_error").is_none(), "a DELETE is no failure: {r}");
    read(gw.client.delete(resource).send().await).await.error(404, "whip-session-not-found");
    drop(browser);
    page_handle.stop(false).await;

    // Everything the runner got goes out, then the stream stops and the output file is whole.
    let r = eventually("the output caught up", 1500, || async {
        let r = gw.stream_report("w1").await;
        let s = b.state.live_stats();
        let out_done = r["media"]["outputs"][0]["segments"].as_u64() >= r["egress"]["segments"].as_u64();
        (s.ingress_segments == s.egress_segments && out_done).then_some(r)
    })
    .await;
    let stop = read(gw.client.post(format!("{}/process/stream/w1/stop", gw.http)).send().await).await;
    assert_eq!(stop.status, 200);
    let (status, _) = exited(recv, 60, "the receiver").await;
    assert!(status.success(), "{r}");
    let p = probe(&out_file(&dir));
    // Processed: the runner's half-size video of the browser's camera.
    assert_eq!(p.width, WIDTH_IN / 2, "{r}");
    let segments = r["media"]["whip_segments"].as_u64().unwrap_or(0);
    assert!(segments >= 6, "{r}");
    // Moving video, not a still: at least 5 frames a second; and most of what the browser sent
    // (all but the swap's gap, which is the only one).
    assert!(p.frames as f64 >= p.duration * 5.0 && p.duration >= 6.0, "{} frames in {} s: {r}", p.frames, p.duration);
    let sent = r["media"]["whip_video_frames"].as_u64().unwrap_or(0);
    assert!(p.frames * 100 >= sent * 60, "{} frames out of {sent} sent: {r}", p.frames);
    assert!(!p.gaps.is_empty() && p.gaps.len() <= 2, "the swap's gap, and no other: {:?}", p.gaps);
    assert!(p.audio, "the browser's Opus reaches the output (as AAC): {r}");
    assert!(r["media"]["whip_audio_frames"].as_u64() > Some(0), "{r}");
    eventually("every ffmpeg of the stream reaped", 500, || async { (piped_ffmpegs() == 0).then_some(()) }).await;
}

#[actix_web::test]
async fn whip_offers_for_unknown_stopped_or_ingressless_streams_and_bad_offers_are_refused() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";
    offer(&gw, "nosuch", "application/sdp", sdp).await.error(404, "stream-not-found");
    let data_only = gw.start_stream(CAP, &json!({"enable_data_output": true}), &json!({"stream_id": "d1"})).await;
    assert_eq!(data_only.status, 200);
    assert_eq!(data_only.json()["whip_url"], "", "no ingress, no whip_url");
    offer(&gw, "d1", "application/sdp", sdp).await.error(404, "media-not-enabled");
    let urls = gw.started("s1").await;
    assert_eq!(urls["whip_url"], format!("{}/process/stream/s1/whip", gw.http));
    offer(&gw, "s1", "application/json", sdp).await.error(415, "unsupported-media-type");
    offer(&gw, "s1", "application/sdp", "not sdp at all").await.error(400, "invalid-sdp");
    offer(&gw, "s1", "application/sdp", vec![b'v'; 65 << 10]).await.error(413, "body-too-large");
    // None of these took the stream's publisher slot.
    let r = gw.stream_report("s1").await;
    assert!(r["media"]["whip_publisher"].is_null() && r["media"]["whip_sessions"] == 0, "{r}");
    let session = read(gw.client.delete(format!("{}/process/stream/s1/whip/nosuch", gw.http)).send().await).await;
    session.error(404, "whip-session-not-found");
    let stop = read(gw.client.post(format!("{}/process/stream/s1/stop", gw.http)).send().await).await;
    assert_eq!(stop.status, 200);
    offer(&gw, "s1", "application/sdp", sdp).await.error(409, "stream-ended");
}
