//! Job bodies and memory: the gateway-wide budget of buffered body bytes, and clients that send
//! their bodies slowly.

use byoc_sim::Knobs;
use tokio::io::AsyncWriteExt as _;

use crate::support::*;

async fn post_body(gw: &TestGateway, id: &str, bytes: usize) -> Answer {
    let req = gw
        .client
        .post(format!("{}/process/request/depth", gw.http))
        .insert_header(("Livepeer", job_header("depth", id)))
        .insert_header(("Content-Type", "application/octet-stream"));
    read(req.send_body(vec![7u8; bytes]).await).await
}

#[actix_web::test]
async fn past_the_body_budget_a_job_gets_a_fast_503_and_the_budget_comes_back() {
    let a = sim("a", &[("depth", Knobs { hold: true, ..healthy() })]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.limits.max_body_bytes = 1 << 20;
        c.limits.body_budget_bytes = 1 << 20;
    })
    .await;
    // One job holds 700 KB of the 1 MiB budget while its orchestrator holds it.
    let (c, url, header) =
        (gw.client.clone(), format!("{}/process/request/depth", gw.http), job_header("depth", "big"));
    let held = actix_web::rt::spawn(async move {
        read(c.post(url).insert_header(("Livepeer", header)).send_body(vec![1u8; 700_000]).await).await
    });
    eventually("the first job reached the orchestrator", 500, || async {
        (a.state.inflight("depth") == 1).then_some(())
    })
    .await;
    let refused = post_body(&gw, "over-budget", 700_000).await;
    let v = refused.error(503, "body-budget-exhausted");
    assert!(refused.header("retry-after").is_some(), "{v}");
    assert_eq!(a.state.stats("depth").jobs, 1, "the refused job reached no orchestrator");
    // A small job still fits.
    a.state.release_jobs(2);
    assert_eq!(post_body(&gw, "small", 1000).await.status, 200);
    assert_eq!(held.await.expect("task").status, 200);
    // The first job's bytes are back: the same body is accepted now.
    a.state.release_jobs(1);
    assert_eq!(post_body(&gw, "after", 700_000).await.status, 200);
    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
    assert!(metrics.contains("byoc_gateway_body_budget_refused_total 1"), "counted");
}

#[actix_web::test]
async fn clients_sending_their_bodies_slowly_do_not_take_job_places() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| c.limits.max_inflight_jobs = 4).await;
    let addr = gw.http.trim_start_matches("http://").to_string();
    // Twice as many clients as job places send their headers and one byte of a 1,000-byte body.
    let mut slow = Vec::new();
    for i in 0..8 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
        let head = format!(
            "POST /process/request/depth HTTP/1.1\r\nHost: {addr}\r\nLivepeer: {}\r\nContent-Length: 1000\r\n\r\nx",
            job_header("depth", &format!("slow-{i}"))
        );
        s.write_all(head.as_bytes()).await.expect("write");
        slow.push(s);
    }
    // The gateway has read what they sent (each sits in its body read).
    eventually("the slow clients' first bytes are held", 500, || async {
        let m = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
        m.contains("byoc_gateway_body_bytes 8\n").then_some(())
    })
    .await;
    for i in 0..3 {
        let ans = gw.job("depth", &format!("real-{i}")).await;
        assert_eq!(
            ans.status,
            200,
            "a real job is served while slow bodies drip: {}",
            String::from_utf8_lossy(&ans.body)
        );
    }
    drop(slow);
}

#[actix_web::test]
async fn a_large_body_arrives_byte_for_byte_and_is_replayed_on_failover() {
    let bad = sim("bad", &[("depth", Knobs { error_rate: 1.0, ..healthy() })]);
    let good = sim("good", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&bad, &["depth"]), (&good, &["depth"])]).await;
    // Several megabytes: read in many chunks, held as they are, sent chunk by chunk.
    let body: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let sha = byoc_sim::sha256_hex(&body);
    for i in 0..4 {
        let req = gw
            .client
            .post(format!("{}/process/request/depth", gw.http))
            .insert_header(("Livepeer", job_header("depth", &format!("big-{i}"))));
        let ans = read(req.send_body(body.clone()).await).await;
        assert_eq!(ans.status, 200);
        let v = ans.json();
        assert_eq!((v["body_bytes"].as_u64(), v["body_sha256"].as_str()), (Some(3_000_000), Some(sha.as_str())));
    }
    assert!(bad.state.stats("depth").jobs >= 1, "a failover replayed the body at least once");
}
