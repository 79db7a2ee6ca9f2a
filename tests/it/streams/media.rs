//! Media over HTTP: the client publishes segments to the gateway's trickle ingress and reads the
//! runner's output from its trickle egress; both URLs are the gateway's own.

use super::*;

#[actix_web::test]
async fn ingress_segments_come_back_processed_through_the_gateways_own_urls() {
    let a = sim("a", &[(CAP, live())]);
    let gw = gateway_with(&[(&a, &[CAP])], streams_config).await;
    let urls = gw.started("m1").await;
    assert_eq!(urls["publish_url"], format!("{}/process/stream/m1/in", gw.http));
    assert_eq!(urls["subscribe_url"], format!("{}/process/stream/m1/out", gw.http));
    for i in 0..3i64 {
        let input = format!("segment-{i}-").repeat(1000).into_bytes();
        let out = round_trip(&gw, &urls, i, &input).await;
        assert_eq!(out.status, 200);
        assert_eq!(out.header("lp-trickle-seq").as_deref(), Some(i.to_string().as_str()));
        assert_eq!(out.body.as_ref(), processed("a", &input).as_slice(), "segment {i}");
    }
    // A segment counts in once the orchestrator answered its POST, which can come after its output.
    let r = eventually("three segments counted each way", 500, || async {
        let r = gw.stream_report("m1").await;
        (r["ingress"]["segments"] == 3 && r["egress"]["segments"] == 3).then_some(r)
    })
    .await;
    assert_eq!(r["ingress"]["dropped"], 0, "{r}");
    assert_eq!(a.state.live_stats().ingress_segments, 3);
    // The relay time of each segment is in the metrics, each way (process-wide: at least these).
    let m = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    for direction in ["in", "out"] {
        let count = format!("byoc_gateway_stream_segment_duration_seconds_count{{direction=\"{direction}\"}} ");
        let n: f64 =
            text.lines().find_map(|l| l.strip_prefix(&count)).and_then(|v| v.trim().parse().ok()).expect(&count);
        assert!(n >= 3.0, "{count}{n}");
    }
    assert!(text.contains(&format!("byoc_gateway_streams_active{{capability=\"{CAP}\"}}")), "the live streams gauge");
    // A segment far behind the window is a 470 naming the latest, as go-livepeer's server answers.
    let old = subscribe(&gw.client, &urls, 100).await;
    assert_eq!(old.status, 470);
    assert_eq!(old.header("lp-trickle-latest").as_deref(), Some("3"));
}
