//! Stream payments with the payments core: at the start (the start call carries the tickets), then
//! over time, each time with a fresh token from the orchestrator running the stream **now** (the
//! simulator refuses tickets drawn on params it did not issue, so a stale token after a swap would
//! show), a refused payment moving the stream, and the operator's spend cap ending it.

use std::time::Duration;

use super::*;

/// 10^10 wei per second (each ticket the simulator issues is worth 10^10 wei: one second), the
/// stream's time debited a second per 50 ms round: a long stream played 20 times faster. The
/// gateway's payment rounds are 50 ms apart too, and it counts at least a second of the stream's
/// time per round (the orchestrator charges whole seconds), so both ledgers move at that pace.
fn priced() -> Knobs {
    Knobs {
        price_per_unit: 10_000_000_000,
        tickets: true,
        stream_debit_interval_ms: 50,
        stream_debit_seconds: 1,
        ..live()
    }
}

fn paying(c: &mut byoc_gateway::config::Config) {
    streams_config(c);
    with_key(c);
    c.streams.payment_interval = Duration::from_millis(50);
}

#[actix_web::test]
async fn a_priced_stream_pays_at_start_and_over_time_to_its_current_orchestrator() {
    let a = sim("a", &[(CAP, priced())]);
    let b = sim("b", &[(CAP, priced())]);
    let gw = gateway_with(&[(&a, &[CAP])], paying).await;
    eventually("the priced pair routable", 250, || async {
        gw.find_pair(CAP, &a.url).await.filter(|p| p["routable"] == true).map(drop)
    })
    .await;
    let urls = gw.started("p1").await;
    // The start itself was paid: 120 s + 60 s of the price = 180 tickets.
    let at_start = a.state.payment_stats();
    assert_eq!((at_start.payments, at_start.tickets, at_start.refused), (1, 180, 0), "{at_start:?}");
    // Over time: the balance is topped up before it falls under the orchestrator's minimum, so the
    // simulator never removes the stream for want of payment.
    eventually("two stream payments to a", 1500, || async { (a.state.live_stats().payments >= 2).then_some(()) }).await;
    assert_eq!(a.state.live_stats().removed_unpaid, 0);
    assert_eq!(a.state.payment_stats().refused, 0, "{:?}", a.state.payment_stats());
    gw.runs_on("p1", &a).await;

    // After a swap the payments go to b, drawn on b's own fresh params (b refuses others).
    gw.add_live(&b).await;
    a.state.vanish_streams();
    gw.runs_on("p1", &b).await;
    eventually("two stream payments to b", 1500, || async { (b.state.live_stats().payments >= 2).then_some(()) }).await;
    let at_b = b.state.payment_stats();
    assert_eq!(at_b.refused, 0, "{at_b:?}");
    assert!(at_b.payments >= 3, "the start at b and its rounds: {at_b:?}");
    let r = gw.stream_report("p1").await;
    assert!(r["payments"]["sent"].as_u64() >= Some(4), "{r}");
    assert_eq!(r["payments"]["refused"], 0, "{r}");
    // The media URLs still work, paid for at b.
    let out = round_trip(&gw, &urls, 0, b"paid").await;
    assert_eq!(out.body.as_ref(), processed("b", b"paid").as_slice());
}

#[actix_web::test]
async fn a_refused_stream_payment_moves_the_stream() {
    let a = sim("a", &[(CAP, Knobs { stream_payment_status: Some(400), ..priced() })]);
    let b = sim("b", &[(CAP, priced())]);
    let gw = gateway_with(&[(&a, &[CAP])], paying).await;
    eventually("the priced pair routable", 250, || async {
        gw.find_pair(CAP, &a.url).await.filter(|p| p["routable"] == true).map(drop)
    })
    .await;
    gw.started("p2").await;
    gw.add_live(&b).await;
    let r = gw.runs_on("p2", &b).await;
    assert_eq!(r["swap_history"][0]["reason"], "payment-refused", "{r}");
    assert!(r["payments"]["refused"].as_u64() >= Some(1), "{r}");
    assert!(a.state.live_stats().payment_refusals >= 1);
}

#[actix_web::test]
async fn the_spend_cap_applies_to_streams_too() {
    let a = sim("a", &[(CAP, priced())]);
    let gw = gateway_with(&[(&a, &[CAP])], |c| {
        paying(c);
        // The start's 180 tickets (1.8e12 wei) fit; the next top-up does not.
        c.payments.max_ev_per_capability_hour = 2e12;
    })
    .await;
    eventually("the priced pair routable", 250, || async {
        gw.find_pair(CAP, &a.url).await.filter(|p| p["routable"] == true).map(drop)
    })
    .await;
    gw.started("p3").await;
    let r = eventually("the stream to end", 1500, || async {
        let r = gw.stream_report("p3").await;
        (r["state"] == "ended").then_some(r)
    })
    .await;
    assert_eq!(r["ended"]["reason"]["kind"], "payment-limit", "{r}");
    assert!(r["ended"]["message"].as_str().is_some_and(|m| m.contains("spend cap")), "{r}");
    // The orchestrator was told.
    assert!(a.state.live_streams().is_empty());
}
