//! Job bodies and memory: the gateway-wide budget of buffered body bytes, and clients that send
//! their bodies slowly.

use byoc_sim::Knobs;
use tokio::io::AsyncWriteExt as _;

use crate::support::*;

/// Held by the tests that read the process-wide byte gauges (`byoc_gateway_body_bytes`,
/// `byoc_gateway_answer_bytes`) or hold bytes in them for a while: every gateway of the test
/// process adds to the same gauges, so these tests take turns.
static GAUGES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _turn = GAUGES.lock().await;
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
    let _turn = GAUGES.lock().await;
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

/// Opens a connection from `source` (a loopback address: `127.0.0.2` is another client) and
/// sends a job's request head for `capability` with `head` (framing headers) and then `body`.
async fn raw_job(gw: &TestGateway, source: &str, id: &str, head: &str, body: &[u8]) -> tokio::net::TcpStream {
    let addr: std::net::SocketAddr = gw.http.trim_start_matches("http://").parse().expect("address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("source")).expect("bind source");
    let mut s = socket.connect(addr).await.expect("connect");
    let request = format!(
        "POST /process/request/depth HTTP/1.1\r\nHost: {addr}\r\nLivepeer: {}\r\nContent-Type: application/octet-stream\r\n{head}\r\n",
        job_header("depth", id)
    );
    s.write_all(request.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    s
}

/// The status line and body of the answer on `s` (read to its end: the gateway closes
/// after an error, and the tests send `Connection: close`).
async fn raw_answer(s: &mut tokio::net::TcpStream) -> (u16, String) {
    use tokio::io::AsyncReadExt as _;
    let mut text = Vec::new();
    s.read_to_end(&mut text).await.expect("read answer");
    let text = String::from_utf8_lossy(&text).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[actix_web::test]
async fn a_body_sent_as_one_byte_chunks_arrives_whole() {
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"])]).await;
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut framed = Vec::with_capacity(body.len() * 6 + 5);
    for b in &body {
        framed.extend_from_slice(b"1\r\n");
        framed.push(*b);
        framed.extend_from_slice(b"\r\n");
    }
    framed.extend_from_slice(b"0\r\n\r\n");
    let mut s =
        raw_job(&gw, "127.0.0.1", "chunks", "Transfer-Encoding: chunked\r\nConnection: close\r\n", &framed).await;
    let (status, text) = raw_answer(&mut s).await;
    assert_eq!(status, 200, "{text}");
    let sent = a.state.last_job().expect("a job arrived");
    assert_eq!(&sent.body[..], &body[..], "the orchestrator got every byte in order");
}

#[actix_web::test]
async fn a_stalled_upload_is_cut_once_its_pace_drops_and_jobs_are_served_meanwhile() {
    let _turn = GAUGES.lock().await;
    let a = sim("a", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.limits.body_read_timeout = std::time::Duration::from_secs(20);
        c.limits.body_min_bytes_per_sec = 1000;
        c.limits.body_rate_grace = std::time::Duration::from_secs(1);
    })
    .await;
    // Announces 100 kB, sends half at once, then nothing: its next window has no bytes.
    let mut stalled =
        raw_job(&gw, "127.0.0.2", "stalled", "Content-Length: 100000\r\nConnection: close\r\n", &[0u8; 50_000]).await;
    assert_eq!(gw.job("depth", "meanwhile").await.status, 200, "an ordinary job is served meanwhile");
    let (status, text) = raw_answer(&mut stalled).await;
    assert_eq!(status, 408, "{text}");
    assert!(text.contains("\"body-too-slow\""), "the minimum rate cut it, not the read timeout: {text}");
    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
    assert!(metric(&metrics, "byoc_gateway_body_too_slow_total").is_some_and(|n| n >= 1.0), "counted");
    assert_eq!(a.state.stats("depth").jobs, 1, "the stalled job reached no orchestrator");
}

#[actix_web::test]
async fn one_client_holds_at_most_its_share_of_the_body_budget() {
    let _turn = GAUGES.lock().await;
    let a = sim("a", &[("depth", Knobs { hold: true, ..healthy() })]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.limits.max_body_bytes = 400_000;
        c.limits.body_budget_bytes = 1 << 20;
        c.limits.body_budget_client_percent = 50;
    })
    .await;
    // 127.0.0.2 holds 300 kB of its 512 KiB share while its job is held upstream.
    let framing = "Content-Length: 300000\r\nConnection: close\r\n";
    let mut first = raw_job(&gw, "127.0.0.2", "first", framing, &[1u8; 300_000]).await;
    eventually("the first job reached the orchestrator", 500, || async {
        (a.state.inflight("depth") == 1).then_some(())
    })
    .await;
    // Another 300 kB from the same client would pass its share: 429, nothing sent upstream.
    let mut second = raw_job(&gw, "127.0.0.2", "second", framing, &[2u8; 300_000]).await;
    let (status, text) = tokio::time::timeout(std::time::Duration::from_secs(20), raw_answer(&mut second))
        .await
        .expect("the second body was answered at once");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("\"body-share-exhausted\"") && text.to_ascii_lowercase().contains("retry-after"), "{text}");
    // Another client still has room in the budget (its job then waits for the held one's
    // slot).
    let mut other = raw_job(&gw, "127.0.0.3", "other", framing, &[3u8; 300_000]).await;
    a.state.release_jobs(2);
    assert_eq!(raw_answer(&mut first).await.0, 200);
    assert_eq!(raw_answer(&mut other).await.0, 200);
    // Its share is back: the same body from the first client is accepted now.
    a.state.release_jobs(1);
    let mut again = raw_job(&gw, "127.0.0.2", "again", framing, &[4u8; 300_000]).await;
    assert_eq!(raw_answer(&mut again).await.0, 200);
    assert_eq!(a.state.stats("depth").jobs, 3, "the refused body reached no orchestrator");
}

#[actix_web::test]
async fn answers_wait_for_room_in_the_answer_budget_and_a_job_that_finds_none_gets_a_clear_503() {
    let _turn = GAUGES.lock().await;
    // Answers larger than the kernel's largest socket send buffer (4 MiB), so that one a
    // client does not read cannot leave the gateway.
    let a = sim("a", &[("depth", Knobs { answer_bytes: 6_000_000, ..healthy() })]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.limits.max_response_bytes = 8 << 20;
        c.limits.answer_budget_bytes = 8 << 20;
    })
    .await;
    // A client that does not read its answer: the gateway holds those 6 MB until it is sent.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small receive buffer");
    let addr: std::net::SocketAddr = gw.http.trim_start_matches("http://").parse().expect("address");
    let mut slow = socket.connect(addr).await.expect("connect");
    let head = format!(
        "POST /process/request/depth HTTP/1.1\r\nHost: {addr}\r\nLivepeer: {}\r\nContent-Length: 2\r\n\r\n{{}}",
        job_header("depth", "slow-reader")
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    eventually("the unread answer is held", 500, || async {
        let m = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
        metric(&m, "byoc_gateway_answer_bytes").is_some_and(|b| b >= 6_000_000.0).then_some(())
    })
    .await;
    // The next answer does not fit beside it: the job waits for room within its time, then
    // ends with a 503 (not a failover, and not held against the orchestrator).
    let header = byoc_actors::protocol::header::encode_client_header(
        &serde_json::json!({"id": "short", "capability": "depth", "request": "{}", "timeout_seconds": 2}),
    );
    let req = gw.client.post(format!("{}/process/request/depth", gw.http)).insert_header(("Livepeer", header));
    let ans = read(req.send_body("{}").await).await;
    let v = ans.error(503, "answer-budget-exhausted");
    assert!(ans.header("retry-after").is_some(), "{v}");
    let pair = gw.pair("depth", &a.url).await;
    assert_eq!(pair["breaker"]["state"], "closed", "the orchestrator is not blamed: {pair}");
    // A job arriving now waits in line; once the slow reader hangs up, its answer gets room.
    let waiting = gw.spawn_job("depth", "waits");
    eventually("the waiting job reached the orchestrator", 500, || async {
        (a.state.stats("depth").jobs >= 3).then_some(())
    })
    .await;
    drop(slow);
    let ans = waiting.await.expect("task");
    assert_eq!(ans.status, 200, "{}", String::from_utf8_lossy(&ans.body[..ans.body.len().min(300)]));
    assert!(ans.body.len() >= 6_000_000);
    let metrics = String::from_utf8_lossy(&gw.admin_get("/metrics").await.body).to_string();
    assert!(metric(&metrics, "byoc_gateway_answer_budget_refused_total").is_some_and(|n| n >= 1.0), "counted");
}

#[actix_web::test]
async fn a_large_answer_without_content_length_arrives_whole() {
    let _turn = GAUGES.lock().await;
    let a = sim("a", &[("depth", Knobs { answer_bytes: 3_000_000, answer_chunked: true, ..healthy() })]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.limits.max_response_bytes = 4 << 20;
        c.limits.answer_budget_bytes = 8 << 20;
    })
    .await;
    let jobs: Vec<_> = (0..4).map(|i| gw.spawn_job("depth", &format!("big-{i}"))).collect();
    for j in jobs {
        let ans = j.await.expect("task");
        assert_eq!(ans.status, 200);
        let v = ans.json();
        assert_eq!(v["padding"].as_str().map(str::len).map(|n| n > 2_900_000), Some(true));
    }
}
