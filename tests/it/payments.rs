//! Payments end to end: a priced, on-chain-like simulated orchestrator (knob `tickets`) issues
//! ticket params with its tokens and verifies every `Livepeer-Payment` as go-livepeer's
//! orchestrator does (params echoed, signatures recovering to the sender, nonces never reused,
//! 60 s of balance after the payment).

use std::path::PathBuf;

use byoc_sim::Knobs;

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("actors/tests/fixtures/keystore").join(name)
}

/// 10^9 wei per second; each ticket the simulator issues is worth 10^10 wei.
fn priced() -> Knobs {
    Knobs { price_per_unit: 1_000_000_000, tickets: true, ..healthy() }
}

#[actix_web::test]
async fn a_gateway_with_a_key_pays_and_carries_its_balance_between_jobs() {
    let a = sim("a", &[("depth", priced())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.signer.keystore = Some(fixture("scrypt.json"));
        c.signer.password_file = Some(fixture("password.txt"));
    })
    .await;
    let p = eventually("the priced pair to be routable", 250, || async {
        gw.find_pair("depth", &a.url).await.filter(|p| p["routable"] == true)
    })
    .await;
    assert_eq!(p["price_per_unit"], 1_000_000_000, "{p}");
    for i in 0..5 {
        let answer = gw.job("depth", &format!("j{i}")).await;
        assert_eq!(answer.status, 200, "job {i}: {}", String::from_utf8_lossy(&answer.body));
    }
    let paid = a.state.payment_stats();
    // The first job tops the balance up to 120 s + 60 s of the price (the jobs ask for 10 s):
    // 180 x 10^9 / 10^10 = 18 tickets; the next four ride on that balance.
    assert_eq!((paid.payments, paid.tickets), (1, 18), "{paid:?}");
    assert_eq!((paid.refused, paid.insufficient), (0, 0), "{paid:?}");
    // The ledger is visible per pair and in the metrics.
    let pair = gw.pair("depth", &a.url).await;
    assert_eq!(pair["payment"]["tickets_sent"], 18, "{pair}");
    assert_eq!(pair["payment"]["ev_sent_wei"].as_f64(), Some(180e9), "{pair}");
    assert!(pair["payment"]["balance_wei"].as_f64().is_some_and(|b| b > 60e9), "{pair}");
    let m = read(gw.client.get(format!("{}/metrics", gw.admin)).send().await).await;
    assert!(String::from_utf8_lossy(&m.body).contains("byoc_gateway_tickets_sent_total{capability=\"depth\"} 18"));
}

#[actix_web::test]
async fn a_payment_over_the_operators_limits_is_not_made() {
    let a = sim("a", &[("depth", priced())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        c.signer.keystore = Some(fixture("scrypt.json"));
        c.signer.password_file = Some(fixture("password.txt"));
        // 18 tickets of 10^10 wei are needed; the limit allows 10^10 per payment.
        c.payments.max_total_ev = 1e10;
    })
    .await;
    eventually("the priced pair to be routable", 250, || async {
        gw.find_pair("depth", &a.url).await.filter(|p| p["routable"] == true)
    })
    .await;
    // No payment is signed; the orchestrator refuses for want of balance, the pair leaves
    // rotation, and with no other orchestrator the client gets the orchestrator's answer.
    let err = gw.job("depth", "over").await.error(400, "orchestrator-refused");
    assert!(err["error"]["message"].as_str().is_some_and(|m| m.contains("Insufficient balance")), "{err}");
    let paid = a.state.payment_stats();
    assert_eq!((paid.payments, paid.tickets, paid.insufficient), (0, 0, 1), "{paid:?}");
    assert_eq!(gw.pair("depth", &a.url).await["unroutable_reason"], "payment-required");
}

#[actix_web::test]
async fn without_a_key_a_priced_pair_gets_no_job() {
    let a = sim("a", &[("depth", priced())]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway(&[(&a, &["depth"]), (&b, &["depth"])]).await;
    eventually("the priced pair out for want of payment", 250, || async {
        gw.find_pair("depth", &a.url).await.filter(|p| p["unroutable_reason"] == "payment-required")
    })
    .await;
    for i in 0..4 {
        assert_eq!(
            gw.job("depth", &format!("j{i}")).await.header("x-orchestrator-url").as_deref(),
            Some(b.url.as_str())
        );
    }
    assert_eq!(a.state.stats("depth").jobs, 0);
}
