//! Issue 22's low-severity findings, each reproduced through real HTTP with the real simulator:
//! informational answers, framing of the status page, blank-line floods, a pair that answers
//! 4xx to everything, path tricks, admin input, warm-up paths, and which timeout fired.

use byoc_sim::Knobs;

use crate::support::*;

#[actix_web::test]
async fn an_informational_redirect_or_out_of_range_status_is_a_502_never_relayed() {
    for status in [103u16, 101, 302, 600] {
        let bad = sim("bad", &[("depth", Knobs { status: Some(status), status_body: "odd".into(), ..healthy() })]);
        let gw = gateway(&[(&bad, &["depth"])]).await;
        let ans = gw.job("depth", "one").await;
        let v = ans.error(502, "upstream-failed");
        let attempt = &v["error"]["attempts"][0];
        assert_eq!(attempt["status"], status, "{v}");
        assert_eq!(attempt["result"], "bad-status", "{v}");
        // Held against the pair as a broken answer, not counted as a success.
        let pair = gw.pair("depth", &bad.url).await;
        assert_eq!(pair["counters"]["success"], 0, "{status}: {pair}");
        assert_eq!(pair["counters"]["bad_status"], 1, "{status}: {pair}");
        assert_eq!(pair["breaker"]["consecutive_failures"], 1, "{status}: {pair}");
    }
    // With another orchestrator, the job fails over to it.
    let bad = sim("bad", &[("depth", Knobs { status: Some(103), ..healthy() })]);
    let good = sim("good", &[("depth", healthy_but_slower())]);
    let gw = gateway(&[(&bad, &["depth"]), (&good, &["depth"])]).await;
    for i in 0..6 {
        let ans = gw.job("depth", &format!("j{i}")).await;
        assert_eq!(ans.status, 200, "{:?}", ans.body);
        assert_eq!(ans.json()["sim"], "good");
    }
}

#[actix_web::test]
async fn the_status_page_may_not_be_framed() {
    let gw = gateway(&[]).await;
    let ans = read(gw.client.get(format!("{}/admin/ui", gw.admin)).send().await).await;
    assert_eq!(ans.status, 200);
    let csp = ans.header("content-security-policy").expect("a CSP");
    assert!(csp.split(';').any(|d| d.trim() == "frame-ancestors 'none'"), "{csp}");
    assert_eq!(ans.header("x-frame-options").as_deref(), Some("DENY"));
}
