//! RTMP ingest and outputs with real tools: Debian's ffmpeg pushes a generated test pattern
//! (`testsrc`, H.264 with 2 s keyframes, AAC audio) by RTMP for 20 s; the simulated runner
//! processes the video with ffmpeg (`stream_video_filter`: scaled to half size, so processed video
//! is told from passed-through video by its width); the output, pushed by the gateway to an RTMP
//! listener (`ffmpeg -listen 1`) into a file, is checked with ffprobe. A swap in the middle
//! leaves the publisher and the output connected (one gap in the output). Publishers for unknown,
//! stopped or ingress-less streams are refused at once, and a publisher is disconnected (its
//! ffmpeg reaped) when its stream stops. An output whose destination hangs up is restarted and
//! reaches the destination again when it is back.
//!
//! The media tests take turns (real-time encoders on a shared machine, and the reaping check
//! counts this process's ffmpeg children).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::process::{Child, Command};

use super::*;

pub(super) static MEDIA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The runner's processing: half size, negated (visible in any player).
pub(super) const FILTER: &str = "scale=iw/2:ih/2,negate";
const WIDTH_IN: u64 = 320;
const SECONDS: u64 = 20;
const FPS: u64 = 30;

pub(super) fn tools_or_skip(test: &str) -> bool {
    for tool in ["ffmpeg", "ffprobe"] {
        let ok =
            std::process::Command::new(tool).arg("-version").stdout(Stdio::null()).status().is_ok_and(|s| s.success());
        if !ok {
            skip(Needs::Tool, test, &format!("{tool} (Debian package ffmpeg) is not installed"));
            return false;
        }
    }
    true
}

pub(super) fn knobs() -> Knobs {
    Knobs { stream_video_filter: Some(FILTER.into()), ..live() }
}

/// Media tests' gateway: the stream tests' quick watchdogs, with time for a real encoder's
/// first output.
pub(super) fn media_config(c: &mut byoc_gateway::config::Config) {
    streams_config(c);
    c.streams.output_timeout = Duration::from_secs(15);
}

pub(super) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `ffmpeg -re` pushing `seconds` of test pattern to `url`.
pub(super) fn publisher(url: &str, seconds: u64) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"])
        .args(["-f", "lavfi", "-i", &format!("testsrc=size={WIDTH_IN}x240:rate={FPS}")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p"])
        .args(["-g", &(2 * FPS).to_string(), "-keyint_min", &(2 * FPS).to_string(), "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg publisher")
}

/// An RTMP listener writing what it receives to `file` (`ffmpeg -listen 1`).
pub(super) fn receiver(port: u16, file: &Path) -> Child {
    receiver_for(port, file, None)
}

/// An RTMP listener that hangs up after `seconds` of media, when given.
fn receiver_for(port: u16, file: &Path, seconds: Option<u64>) -> Child {
    let limit = seconds.map(|s| vec!["-t".to_string(), s.to_string()]).unwrap_or_default();
    Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-listen", "1"])
        .args(["-i", &format!("rtmp://127.0.0.1:{port}/live/out")])
        .args(limit)
        .args(["-c", "copy", "-f", "flv"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg receiver")
}

/// Waits for `child` at most `secs`; its exit status and stderr.
pub(super) async fn exited(child: Child, secs: u64, what: &str) -> (std::process::ExitStatus, String) {
    match tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output()).await {
        Ok(Ok(out)) => (out.status, String::from_utf8_lossy(&out.stderr).into_owned()),
        Ok(Err(e)) => panic!("{what}: {e}"),
        Err(_) => panic!("{what} still running after {secs} s"),
    }
}

/// What ffprobe sees of the video in `file`: width, frame count, duration, and the gaps
/// (seconds) between consecutive frames longer than half a second.
pub(super) struct Probe {
    pub(super) width: u64,
    pub(super) frames: u64,
    pub(super) duration: f64,
    pub(super) gaps: Vec<f64>,
    pub(super) audio: bool,
}

pub(super) fn probe(file: &Path) -> Probe {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type,width",
            "-show_entries",
            "packet=pts_time,stream_index",
        ])
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("ffprobe");
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("ffprobe {e}: {}", String::from_utf8_lossy(&out.stderr)));
    let streams = doc["streams"].as_array().cloned().unwrap_or_default();
    let video = streams.iter().position(|s| s["codec_type"] == "video").expect("a video stream");
    let audio = streams.iter().any(|s| s["codec_type"] == "audio");
    let mut pts: Vec<f64> = doc["packets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|p| p["stream_index"].as_u64() == Some(video as u64))
        .filter_map(|p| p["pts_time"].as_str().and_then(|t| t.parse().ok()))
        .collect();
    pts.sort_by(f64::total_cmp);
    let gaps = pts.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0.5).collect();
    Probe {
        width: streams[video]["width"].as_u64().unwrap_or(0),
        frames: pts.len() as u64,
        duration: pts.last().copied().unwrap_or(0.0) - pts.first().copied().unwrap_or(0.0),
        gaps,
        audio,
    }
}

/// Starts stream `id` with every feature and `rtmp_output`.
async fn start_with_output(gw: &TestGateway, id: &str, output: &str) -> Value {
    let a = gw.start_stream(CAP, &all(), &json!({"stream_id": id, "rtmp_output": output})).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    a.json()
}

pub(super) fn rtmp_url(urls: &Value) -> String {
    urls["rtmp_url"].as_str().filter(|u| u.starts_with("rtmp://127.0.0.1:")).expect("rtmp_url").to_string()
}

/// ffmpeg processes of this test process fed by a pipe (the gateway's remuxes and the runner's).
pub(super) fn piped_ffmpegs() -> usize {
    let me = std::process::id().to_string();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| {
            let p = e.path();
            let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
            let ppid = stat.rsplit(')').next().and_then(|s| s.split_whitespace().nth(1)).unwrap_or("");
            let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            ppid == me && cmd.starts_with("ffmpeg") && cmd.contains("pipe:0")
        })
        .count()
}

/// Once the publisher is gone: waits until the runner on `sim` has processed every segment it
/// got (with `all_cut`: every segment the ingest cut) and the output has sent every processed
/// segment, then stops the stream.
async fn drain_and_stop(gw: &TestGateway, id: &str, sim: &SimHandle, all_cut: bool) -> Value {
    let r = eventually("the output caught up with the ingest", 1500, || async {
        let r = gw.stream_report(id).await;
        let m = &r["media"];
        let cut = m["rtmp_segments"].as_u64().unwrap_or(0);
        let s = sim.state.live_stats();
        let runner_done = s.ingress_segments == s.egress_segments && (!all_cut || s.ingress_segments >= cut);
        let output_done = m["outputs"][0]["segments"].as_u64() >= r["egress"]["segments"].as_u64();
        (cut > 0 && m["rtmp_publisher"].is_null() && runner_done && output_done).then_some(r)
    })
    .await;
    let stop = read(gw.client.post(format!("{}/process/stream/{id}/stop", gw.http)).send().await).await;
    assert_eq!(stop.status, 200, "{}", String::from_utf8_lossy(&stop.body));
    r
}

pub(super) fn out_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("out.flv")
}

#[actix_web::test]
async fn an_rtmp_push_is_processed_and_pushed_to_the_rtmp_output() {
    if !tools_or_skip("an_rtmp_push_is_processed_and_pushed_to_the_rtmp_output") {
        return;
    }
    let _turn = MEDIA.lock().await;
    let a = sim("a", &[(CAP, knobs())]);
    let gw = gateway_with(&[(&a, &[CAP])], media_config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let recv = receiver(port, &out_file(&dir));
    let urls = start_with_output(&gw, "r1", &format!("rtmp://127.0.0.1:{port}/live/out")).await;
    assert_eq!(urls["rtmp_output_url"], format!("rtmp://127.0.0.1:{port}/live/out"));
    let push = publisher(&rtmp_url(&urls), SECONDS);
    let (status, err) = exited(push, SECONDS + 60, "the publisher").await;
    assert!(status.success(), "the publisher failed: {err}");
    let r = drain_and_stop(&gw, "r1", &a, true).await;
    let (status, _) = exited(recv, 60, "the receiver").await;
    assert!(status.success(), "{r}");
    assert_eq!(r["media"]["rtmp_sessions"], 1, "{r}");
    assert_eq!(r["swaps"], 0, "{r}");
    let p = probe(&out_file(&dir));
    // Processed: the runner's half-size video, not the input's.
    assert_eq!(p.width, WIDTH_IN / 2);
    assert!(p.audio, "the audio is passed through");
    // All of it, within a tolerance (the first frames before the first keyframe cut, the
    // encoders' start).
    let expected = SECONDS * FPS;
    assert!(p.frames >= expected * 85 / 100 && p.frames <= expected + FPS, "{} frames of {expected}: {r}", p.frames);
    assert!(p.duration >= (SECONDS as f64) * 0.85, "{} s", p.duration);
    assert!(p.gaps.is_empty(), "gaps {:?}", p.gaps);
    eventually("every ffmpeg of the stream reaped", 500, || async { (piped_ffmpegs() == 0).then_some(()) }).await;
}

#[actix_web::test]
async fn a_swap_mid_stream_keeps_the_publisher_and_the_output_connected() {
    if !tools_or_skip("a_swap_mid_stream_keeps_the_publisher_and_the_output_connected") {
        return;
    }
    let _turn = MEDIA.lock().await;
    let a = sim("a", &[(CAP, knobs())]);
    let b = sim("b", &[(CAP, knobs())]);
    let gw = gateway_with(&[(&a, &[CAP])], media_config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let recv = receiver(port, &out_file(&dir));
    let urls = start_with_output(&gw, "r2", &format!("rtmp://127.0.0.1:{port}/live/out")).await;
    gw.runs_on("r2", &a).await;
    gw.add_live(&b).await;
    let push = publisher(&rtmp_url(&urls), SECONDS);
    // A few segments out through a, then a goes silent: the stream moves to b.
    let before = eventually("output through a", 1500, || async {
        let r = gw.stream_report("r2").await;
        (r["media"]["outputs"][0]["segments"].as_u64() >= Some(3)).then_some(r)
    })
    .await;
    a.state.patch(Some(CAP), &json!({"stream_events_stop": true})).expect("knob");
    gw.runs_on("r2", &b).await;
    let (status, err) = exited(push, SECONDS + 60, "the publisher").await;
    // The publisher was never disconnected: it pushed its 20 s and ended well.
    assert!(status.success(), "the publisher failed: {err}");
    let r = drain_and_stop(&gw, "r2", &b, false).await;
    let (status, _) = exited(recv, 60, "the receiver").await;
    assert!(status.success(), "{r}");
    assert_eq!(r["swaps"], 1, "{r}");
    assert_eq!(r["media"]["rtmp_sessions"], 1, "one RTMP session throughout: {r}");
    // The output's ffmpeg kept its connection: started once, before and after the swap.
    assert_eq!(before["media"]["outputs"][0]["starts"], 1, "{before}");
    assert_eq!(r["media"]["outputs"][0]["starts"], 1, "{r}");
    assert!(b.state.live_stats().egress_segments >= 2, "b processed video");
    let p = probe(&out_file(&dir));
    assert_eq!(p.width, WIDTH_IN / 2);
    // The output continues after the swap, with a gap where no orchestrator ran the stream.
    assert!(!p.gaps.is_empty() && p.gaps.len() <= 2, "gaps {:?}", p.gaps);
    assert!(p.duration >= (SECONDS as f64) * 0.7, "{} s", p.duration);
    assert!(p.frames >= SECONDS * FPS / 2, "{} frames", p.frames);
}

#[actix_web::test]
async fn publishers_for_unknown_stopped_or_ingressless_streams_are_refused_and_a_stop_disconnects() {
    if !tools_or_skip("publishers_for_unknown_stopped_or_ingressless_streams_are_refused_and_a_stop_disconnects") {
        return;
    }
    let _turn = MEDIA.lock().await;
    let a = sim("a", &[(CAP, knobs())]);
    let gw = gateway_with(&[(&a, &[CAP])], media_config).await;
    let port = gw.gw.rtmp_addr.expect("rtmp on").port();
    // Each refused publisher would push for a minute; a refusal ends it at once.
    let refused = |id: &str| {
        let url = format!("rtmp://127.0.0.1:{port}/{id}");
        async move {
            let (status, err) = exited(publisher(&url, 60), 30, "a refused publisher").await;
            assert!(!status.success(), "{url}: {err}");
        }
    };
    refused("nosuch").await;
    let data_only = gw.start_stream(CAP, &json!({"enable_data_output": true}), &json!({"stream_id": "d1"})).await;
    assert_eq!(data_only.status, 200);
    assert_eq!(data_only.json()["rtmp_url"], "", "no ingress, no rtmp_url");
    refused("d1").await;
    // A live publisher is disconnected when its stream stops, and every ffmpeg is reaped.
    let urls = gw.started("s1").await;
    let push = publisher(&rtmp_url(&urls), 60);
    eventually("segments from the publisher", 1500, || async {
        (gw.stream_report("s1").await["media"]["rtmp_segments"].as_u64() >= Some(1)).then_some(())
    })
    .await;
    let stop = read(gw.client.post(format!("{}/process/stream/s1/stop", gw.http)).send().await).await;
    assert_eq!(stop.status, 200);
    let (status, err) = exited(push, 30, "the publisher of a stopped stream").await;
    assert!(!status.success(), "{err}");
    eventually("every ffmpeg of the stream reaped", 500, || async { (piped_ffmpegs() == 0).then_some(()) }).await;
    refused("s1").await;
    // An output that is not RTMP is refused with a clear error.
    let bad = gw.start_stream(CAP, &all(), &json!({"stream_id": "o1", "rtmp_output": "http://x/y"})).await;
    bad.error(400, "invalid-rtmp-output");
}

#[actix_web::test]
async fn an_output_whose_destination_hangs_up_is_restarted_and_reaches_it_again() {
    if !tools_or_skip("an_output_whose_destination_hangs_up_is_restarted_and_reaches_it_again") {
        return;
    }
    let _turn = MEDIA.lock().await;
    let a = sim("a", &[(CAP, knobs())]);
    let gw = gateway_with(&[(&a, &[CAP])], media_config).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    // The first destination takes 3 s of video and hangs up.
    let first = receiver_for(port, &dir.path().join("first.flv"), Some(3));
    let urls = start_with_output(&gw, "r4", &format!("rtmp://127.0.0.1:{port}/live/out")).await;
    let push = publisher(&rtmp_url(&urls), SECONDS);
    let (status, err) = exited(first, SECONDS + 30, "the first destination").await;
    assert!(status.success(), "{err}");
    // It comes back at the same address: the output, restarted after its back-off, reaches it.
    let second_file = dir.path().join("second.flv");
    let second = receiver_for(port, &second_file, None);
    let restarted = eventually("the output restarted", 1500, || async {
        let r = gw.stream_report("r4").await;
        let o = &r["media"]["outputs"][0];
        (o["starts"].as_u64() >= Some(2) && o["connected"] == true).then_some(r)
    })
    .await;
    let from = restarted["media"]["outputs"][0]["segments"].as_u64().unwrap_or(0);
    let r = eventually("segments into the second destination", 1500, || async {
        let r = gw.stream_report("r4").await;
        (r["media"]["outputs"][0]["segments"].as_u64() >= Some(from + 2)).then_some(r)
    })
    .await;
    let o = &r["media"]["outputs"][0];
    assert!(o["last_error"].is_string(), "the hang-up is reported: {r}");
    // Neither the publisher nor the stream noticed: one RTMP session, pushed to its end.
    let (status, err) = exited(push, SECONDS + 60, "the publisher").await;
    assert!(status.success(), "the publisher failed: {err}");
    let stop = read(gw.client.post(format!("{}/process/stream/r4/stop", gw.http)).send().await).await;
    assert_eq!(stop.status, 200, "{}", String::from_utf8_lossy(&stop.body));
    let (status, _) = exited(second, 60, "the second destination").await;
    assert!(status.success(), "{r}");
    let r = gw.stream_report("r4").await;
    assert_eq!(r["media"]["rtmp_sessions"], 1, "{r}");
    assert_eq!(r["swaps"], 0, "{r}");
    let p = probe(&second_file);
    assert_eq!(p.width, WIDTH_IN / 2, "processed video in the second destination");
    assert!(p.frames >= 2 * FPS, "{} frames after the restart: {r}", p.frames);
    eventually("every ffmpeg of the stream reaped", 500, || async { (piped_ffmpegs() == 0).then_some(()) }).await;
}
