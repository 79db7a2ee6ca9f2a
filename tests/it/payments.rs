//! Payments end to end: a priced, on-chain-like simulated orchestrator (knob `tickets`) issues
//! ticket params with its tokens and verifies every `Livepeer-Payment` as go-livepeer's
//! orchestrator does (params echoed, signatures recovering to the sender, nonces never reused,
//! 60 s of balance after the payment).

use base64::Engine as _;
use byoc_sim::Knobs;

use crate::support::*;

/// 10^9 wei per second; each ticket the simulator issues is worth 10^10 wei.
fn priced() -> Knobs {
    Knobs { price_per_unit: 1_000_000_000, tickets: true, ..healthy() }
}

#[actix_web::test]
async fn a_gateway_with_a_key_pays_and_carries_its_balance_between_jobs() {
    let a = sim("a", &[("depth", priced())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        with_key(c);
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
    // Metrics are process-wide (other tests' gateways pay too): at least this gateway's 18.
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let sent: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("byoc_gateway_tickets_sent_total{capability=\"depth\"} "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the ticket counter");
    assert!(sent >= 18.0, "{sent}");

    // An independent check: Python decodes the Livepeer-Payment the orchestrator received with
    // its own protobuf reader, rebuilds each ticket's hash from the bytes (pm/ticket.go's
    // layout) and eth-account recovers the gateway's address from every signature.
    let payment = a.state.last().payment.expect("the simulator kept the payment");

    // Replayed or tampered tickets are refused, in go-livepeer's words.
    let direct = |p: String| {
        let job = byoc_actors::protocol::header::JobRequest {
            id: "replay".into(),
            request: "{}".into(),
            parameters: "{}".into(),
            capability: "depth".into(),
            capability_url: String::new(),
            sender: ADDRESS.into(),
            sig: String::new(),
            timeout_seconds: 10,
        };
        let url = format!("{}/process/request/depth", a.url);
        async move {
            read(
                awc::Client::default()
                    .post(url)
                    .insert_header(("Livepeer", job.encode()))
                    .insert_header(("Livepeer-Payment", p))
                    .send_body("{}")
                    .await,
            )
            .await
        }
    };
    let replayed = direct(payment.clone()).await;
    assert_eq!(replayed.status, 400);
    assert!(String::from_utf8_lossy(&replayed.body).contains("already seen"), "{:?}", replayed.body);
    let mut bytes = base64::engine::general_purpose::STANDARD.decode(&payment).expect("base64");
    let last = bytes.len() - 20;
    bytes[last] ^= 1;
    let tampered = direct(base64::engine::general_purpose::STANDARD.encode(bytes)).await;
    assert_eq!(tampered.status, 400, "{:?}", tampered.body);
    assert_eq!(a.state.payment_stats().refused, 2);

    let Some(python) = python() else { return };
    let out = run_python(&python, CHECK_TICKETS, &[&payment]).await;
    let signers: Vec<String> = serde_json::from_str(out.trim()).expect("a JSON list");
    assert_eq!(signers.len(), 18);
    assert!(signers.iter().all(|s| s == ADDRESS), "{signers:?}");
}

/// The keystore fixture's address.
const ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

/// Decodes `net.Payment` with a hand-written protobuf reader (independent of the gateway's
/// prost messages), rebuilds each ticket's 232-byte flattening and recovers its signer.
const CHECK_TICKETS: &str = r#"
import base64, json, sys
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak

def fields(buf):
    i, out = 0, []
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        else:
            raise ValueError(wt)
        out.append((num, v))
    return out

def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]; i += 1
        result |= (b & 0x7f) << shift; shift += 7
        if not b & 0x80:
            return result, i

def one(fs, num, default=b""):
    return next((v for n, v in fs if n == num), default)

payment = fields(base64.b64decode(sys.argv[1]))
params = fields(one(payment, 1))
sender = one(payment, 2)
exp = fields(one(payment, 3))
pad = lambda b: bytes(32 - len(b)) + b
round_, block = one(exp, 1, 0), one(exp, 2)
aux = pad(round_.to_bytes(32, "big")) + pad(block) if (round_ or any(block)) else b""
signers = []
for num, raw in payment:
    if num != 4:
        continue
    t = fields(raw)
    nonce, sig = one(t, 1, 0), one(t, 2)
    flat = (one(params, 1) + sender + pad(one(params, 2)) + pad(one(params, 3)) + nonce.to_bytes(32, "big")
            + one(params, 4) + aux)
    signers.append(Account.recover_message(encode_defunct(primitive=keccak(flat)), signature=sig))
print(json.dumps(signers))
"#;

#[actix_web::test]
async fn a_payment_over_the_operators_limits_is_not_made() {
    let a = sim("a", &[("depth", priced())]);
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        with_key(c);
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

#[actix_web::test]
async fn params_over_the_limits_keep_a_pair_out_and_the_hourly_cap_stops_payments() {
    let a = sim("a", &[("depth", priced())]);
    // Each ticket is worth 10^10 wei; the limit allows 10^9 per ticket.
    let gw = gateway_with(&[(&a, &["depth"])], |c| {
        with_key(c);
        c.payments.max_ticket_ev = 1e9;
    })
    .await;
    eventually("the pair out for params over the limits", 250, || async {
        gw.find_pair("depth", &a.url).await.filter(|p| p["unroutable_reason"] == "payment-over-limit")
    })
    .await;
    gw.job("depth", "j").await.error(503, "no-routable-orchestrator");
    assert_eq!(a.state.stats("depth").jobs, 0, "nothing is sent to a pair the gateway would not pay");

    // An hourly cap of 2.4 x 10^11 per capability: the first payment (1.8 x 10^11) passes, the
    // second would not.
    let b = sim("b", &[("depth", priced())]);
    let gw = gateway_with(&[(&b, &["depth"])], |c| {
        with_key(c);
        c.payments.max_ev_per_capability_hour = 2.4e11;
    })
    .await;
    eventually("the priced pair to be routable", 250, || async {
        gw.find_pair("depth", &b.url).await.filter(|p| p["routable"] == true)
    })
    .await;
    assert_eq!(gw.job("depth", "first").await.status, 200);
    // Each job debits at least 1 s of the price: after 61 jobs the balance is under 120 s and
    // the gateway would top it up (7 tickets, 7 x 10^10), passing the cap: it does not pay, and
    // the jobs run on the balance left (the orchestrator wants 60 s of it).
    for i in 0..70 {
        assert_eq!(gw.job("depth", &format!("j{i}")).await.status, 200, "job {i}");
    }
    assert_eq!(b.state.payment_stats().payments, 1, "{:?}", b.state.payment_stats());
    let pair = gw.pair("depth", &b.url).await;
    assert_eq!(pair["payment"]["tickets_sent"], 18, "no second payment: {pair}");
}

#[actix_web::test]
async fn a_connection_broken_right_after_a_payment_is_a_payment_refusal_and_fails_over() {
    let a = sim("a", &[("depth", Knobs { reset_on_payment: true, ..priced() })]);
    let b = sim("b", &[("depth", healthy())]);
    let gw = gateway_with(&[(&a, &["depth"]), (&b, &["depth"])], |c| {
        with_key(c);
    })
    .await;
    // Until selection has tried `a` (bounded): every job is served, by `b`.
    jobs_served_by(&gw, &b, || a.state.stats("depth").jobs > 0).await;
    // A refusal after a payment: the pair backs off (issue 22), whatever its next tokens say.
    let p = gw.pair("depth", &a.url).await;
    assert_eq!(p["unroutable_reason"], "payment-backoff", "{p}");
    assert!(p["last_error"]["message"].as_str().is_some_and(|m| m.contains("right after a payment")), "{p}");
}

/// A taker (issue 22): it takes the tickets and answers every job `400 Insufficient balance`,
/// while every token brings fresh ticket params (as go-livepeer's do) and a balance that changes
/// with each refresh.
fn taker() -> Knobs {
    Knobs { taker: true, balance_churn: true, ..priced() }
}

/// A gateway with a key in front of `sims`, refreshing tokens every 100 ms, so that a test sees
/// many tokens (each with new params and a new balance) in a short run.
async fn fast_refreshing_gateway(sims: &[&byoc_sim::SimHandle]) -> TestGateway {
    let list: Vec<(&byoc_sim::SimHandle, &[&str])> = sims.iter().map(|s| (*s, &["depth"][..])).collect();
    gateway_with(&list, |c| {
        with_key(c);
        c.routing.token_refresh = std::time::Duration::from_millis(100);
    })
    .await
}

/// Sends one job after each of `rounds` fresh tokens (the pair has applied at least one token
/// issued after the previous job), returning the statuses.
async fn a_job_per_fresh_token(gw: &TestGateway, s: &byoc_sim::SimHandle, rounds: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for round in 0..rounds {
        let seen = s.state.stats("depth").tokens;
        eventually("two more tokens", 500, || async { (s.state.stats("depth").tokens >= seen + 2).then_some(()) })
            .await;
        statuses.push(gw.job("depth", &format!("round-{round}")).await.status);
    }
    statuses
}

#[actix_web::test]
async fn a_taker_is_paid_once_then_backed_off_whatever_its_tokens_say() {
    let a = sim("a", &[("depth", taker())]);
    let gw = fast_refreshing_gateway(&[&a]).await;
    eventually("the priced pair to be routable", 250, || async {
        gw.find_pair("depth", &a.url).await.filter(|p| p["routable"] == true)
    })
    .await;
    let statuses = a_job_per_fresh_token(&gw, &a, 6).await;
    assert!(statuses.iter().all(|s| *s != 200), "a taker serves nothing: {statuses:?}");
    // Each token changed the params and the balance; before the fix each one cleared the
    // refusal and re-synced the ledger down, and the gateway paid again (6 payments).
    let paid = a.state.payment_stats();
    assert_eq!(paid.payments, 1, "paid once, then backed off: {paid:?}");
    assert_eq!(a.state.stats("depth").jobs, 1, "no job reached it while it was backed off");
    let p = gw.pair("depth", &a.url).await;
    assert_eq!(p["unroutable_reason"], "payment-backoff", "{p}");
    assert_eq!(p["payment_backoff"]["level"], 1, "{p}");
    assert!(p["payment_backoff"]["until_unix_ms"].as_u64().is_some(), "{p}");
}

#[actix_web::test]
async fn a_taker_whose_price_flips_each_token_is_paid_once() {
    // The price alternates between 10^9 and 5 x 10^10 wei/s with every token (the first token
    // has the low one); each token also brings fresh params. Before the fix, the change of
    // price cleared the refusal and the gateway topped the balance up again at the high price:
    // 18 tickets, then 600 (the probe of issue 22 saw 636 in 30 s).
    let flips = Knobs { taker: true, price_per_unit: 50_000_000_000, price_flip: Some(1_000_000_000), ..priced() };
    let a = sim("a", &[("depth", flips)]);
    let gw = fast_refreshing_gateway(&[&a]).await;
    for round in 0..6 {
        // A job at the low price, then one at the high price, and so on, each after a token
        // issued since the previous job.
        let want = if round % 2 == 0 { 1_000_000_000 } else { 50_000_000_000u64 };
        let seen = a.state.stats("depth").tokens;
        eventually("a fresh token at the price wanted", 500, || async {
            let p = gw.find_pair("depth", &a.url).await?;
            (a.state.stats("depth").tokens >= seen + 2 && p["price_per_unit"] == want).then_some(())
        })
        .await;
        assert_ne!(gw.job("depth", &format!("round-{round}")).await.status, 200);
    }
    let paid = a.state.payment_stats();
    assert_eq!((paid.payments, paid.tickets), (1, 18), "one payment, at the first price: {paid:?}");
    assert_eq!(gw.pair("depth", &a.url).await["unroutable_reason"], "payment-backoff");
}

#[actix_web::test]
async fn a_balance_that_churns_each_token_does_not_make_the_gateway_pay_again() {
    // An orchestrator that serves every job but reports a fresh low balance in each token:
    // the gateway's ledger knows what it paid and keeps its own figure.
    let a = sim("a", &[("depth", Knobs { balance_churn: true, ..priced() })]);
    let gw = fast_refreshing_gateway(&[&a]).await;
    eventually("the priced pair to be routable", 250, || async {
        gw.find_pair("depth", &a.url).await.filter(|p| p["routable"] == true)
    })
    .await;
    let statuses = a_job_per_fresh_token(&gw, &a, 6).await;
    assert_eq!(statuses, vec![200; 6]);
    let paid = a.state.payment_stats();
    // One payment tops the balance up to 180 s of the price (at most 18 tickets, fewer when the
    // first token's made-up balance was counted); six jobs use at most 6 s of it. Before the
    // fix, each token's lower figure replaced the ledger's and the gateway paid again (6).
    assert_eq!(paid.payments, 1, "{paid:?}");
    assert!(paid.tickets <= 18, "{paid:?}");
}

#[actix_web::test]
async fn ticket_params_a_gateway_must_not_pay_against_keep_the_pair_out_with_the_reason() {
    use byoc_sim::ParamsQuirk;
    let quirks = [
        (ParamsQuirk::EmptyRandHash, "recipient_rand_hash"),
        (ParamsQuirk::EmptyExpiration, "expiration"),
        (ParamsQuirk::NegativeRound, "creation_round"),
    ];
    let sims: Vec<byoc_sim::SimHandle> = quirks
        .iter()
        .enumerate()
        .map(|(i, (q, _))| sim(&format!("q{i}"), &[("depth", Knobs { params_quirk: *q, ..priced() })]))
        .collect();
    let list: Vec<(&byoc_sim::SimHandle, &[&str])> = sims.iter().map(|s| (s, &["depth"][..])).collect();
    let gw = gateway_with(&list, with_key).await;
    for (s, (quirk, field)) in sims.iter().zip(quirks) {
        let p = eventually("the pair out for its ticket params", 250, || async {
            gw.find_pair("depth", &s.url).await.filter(|p| p["unroutable_reason"] == "ticket-params-invalid")
        })
        .await;
        let message = p["last_error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(field), "{quirk:?}: {p}");
    }
    gw.job("depth", "j").await.error(503, "no-routable-orchestrator");
    for s in &sims {
        assert_eq!(s.state.stats("depth").jobs, 0, "no job, so no payment");
        assert!(s.state.last().payment.is_none());
    }
}
