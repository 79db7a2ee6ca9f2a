//! An on-chain orchestrator's side of payments (knob `tickets`): ticket params issued with each
//! token, payments verified as go-livepeer's `pm/recipient.go` and `pm/validator.go` do (params
//! echoed as issued, signatures recovering to the sender, nonces never reused, at most 600 per
//! params set), each ticket's expected value credited to (sender, capability), the 60 s minimum
//! balance checked after the payment, and `ceil(elapsed) x price` debited after the job.

use std::collections::{HashMap, HashSet, VecDeque};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use byoc_actors::payment::ticket::{ExpirationParams, TicketParams};
use byoc_actors::payment::verify;
use num_bigint::BigUint;
use serde::Serialize;
use serde_json::json;

use crate::knobs::ParamsQuirk;

/// The simulated orchestrator's address (the tickets' recipient).
pub const RECIPIENT: [u8; 20] = [0x5a; 20];
/// Face value of the tickets it issues: 10^12 wei.
pub const FACE_VALUE: u64 = 1_000_000_000_000;
/// Their winning probability: 1 in this many (so each ticket is worth 10^10 wei).
pub const WIN_ONE_IN: u32 = 100;
/// Issued params remembered (older ones are refused as not issued).
const ISSUED_MAX: usize = 64;
/// Nonces an orchestrator accepts per params set.
const NONCES_MAX: usize = 600;

/// What the simulator received, for tests and `GET /sim/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PaymentStats {
    /// Payments accepted.
    pub payments: u64,
    /// Tickets accepted.
    pub tickets: u64,
    /// Payments refused (bad params, signature or nonce).
    pub refused: u64,
    /// Jobs refused for want of balance.
    pub insufficient: u64,
}

/// go-livepeer's `recipientRand` (`pm/recipient.go:rand`): HMAC-SHA256 under the
/// orchestrator's secret of everything the params bind, minimal big-endian bytes concatenated:
/// seed, sender, face value, win probability, expiration block, price (reduced), aux data
/// (creation round and block hash).
fn recipient_rand(secret: &[u8; 32], p: &TicketParams, sender: &[u8], price: (i64, i64)) -> [u8; 32] {
    use hmac::{KeyInit, Mac, SimpleHmac};
    let (num, den) = reduce(price.0, price.1.max(1));
    let minimal = |v: i64| BigUint::from(v.max(0) as u64).to_bytes_be();
    // HMAC takes a key of any length; a failure here would only refuse the payment.
    let Ok(mut mac) = <SimpleHmac<sha2::Sha256> as KeyInit>::new_from_slice(secret) else { return [0; 32] };
    for part in [&p.seed[..], sender, &p.face_value, &p.win_prob, &p.expiration_block, &minimal(num), &minimal(den)] {
        mac.update(part);
    }
    if let Some(e) = p.expiration_params.as_ref().filter(|e| !e.is_zero()) {
        let mut round = [0u8; 32];
        round[24..].copy_from_slice(&e.creation_round.to_be_bytes());
        mac.update(&round);
        mac.update(&e.creation_round_block_hash);
    }
    mac.finalize().into_bytes().into()
}

fn reduce(a: i64, b: i64) -> (i64, i64) {
    let (mut x, mut y) = (a.unsigned_abs(), b.unsigned_abs());
    while y != 0 {
        (x, y) = (y, x % y);
    }
    let g = x.max(1) as i64;
    (a / g, b / g)
}

/// keccak256 of the 32-byte `recipientRand`: the params' `recipient_rand_hash`.
fn rand_hash(rand: &[u8; 32]) -> Vec<u8> {
    use sha3::Digest as _;
    sha3::Keccak256::digest(rand).to_vec()
}

/// The orchestrator's payment memory.
#[derive(Debug, Default)]
pub struct Ledger {
    /// The secret of its `recipientRand` HMAC.
    secret: [u8; 32],
    issued: VecDeque<TicketParams>,
    seen: HashMap<Vec<u8>, HashSet<u32>>,
    /// Credit in wei per (sender, capability), senders in lower case.
    credit: HashMap<(String, String), f64>,
    /// What it received.
    pub stats: PaymentStats,
}

/// Expected value of one issued ticket, in wei.
pub fn ticket_ev() -> f64 {
    FACE_VALUE as f64 / f64::from(WIN_ONE_IN)
}

fn key(sender: &str, capability: &str) -> (String, String) {
    (sender.to_ascii_lowercase(), capability.to_string())
}

impl Ledger {
    /// Fresh params for a token to `sender` at `price` (a new seed each time, as go-livepeer's
    /// `TicketParams`), bound to both by the `recipientRand` HMAC, with the defect `quirk` asks
    /// for.
    pub fn issue(&mut self, sender: &str, price: (i64, i64), quirk: ParamsQuirk) -> TicketParams {
        if self.secret == [0; 32] {
            self.secret = rand::random();
        }
        let seed: [u8; 8] = rand::random();
        let max = (BigUint::from(1u8) << 256u32) - 1u8;
        let params = TicketParams {
            recipient: RECIPIENT.to_vec(),
            face_value: BigUint::from(FACE_VALUE).to_bytes_be(),
            win_prob: (max / WIN_ONE_IN).to_bytes_be(),
            recipient_rand_hash: Vec::new(),
            seed: seed.to_vec(),
            expiration_block: vec![0x01, 0x40, 0x6f, 0x68],
            expiration_params: Some(ExpirationParams {
                creation_round: 3500,
                creation_round_block_hash: vec![0x41; 32],
            }),
        };
        let mut params = params;
        match quirk {
            ParamsQuirk::None | ParamsQuirk::EmptyRandHash => {}
            ParamsQuirk::EmptyExpiration => {
                params.expiration_block = Vec::new();
                params.expiration_params = None;
            }
            ParamsQuirk::NegativeRound => {
                if let Some(e) = params.expiration_params.as_mut() {
                    e.creation_round = -1;
                }
            }
        }
        let sender = hex::decode(sender.trim_start_matches("0x")).unwrap_or_default();
        params.recipient_rand_hash = rand_hash(&recipient_rand(&self.secret, &params, &sender, price));
        if quirk == ParamsQuirk::EmptyRandHash {
            params.recipient_rand_hash = Vec::new();
        }
        if self.issued.len() == ISSUED_MAX {
            if let Some(old) = self.issued.pop_front() {
                self.seen.remove(&old.recipient_rand_hash);
            }
        }
        self.issued.push_back(params.clone());
        params
    }

    /// The token JSON of `params`, as go-livepeer encodes them (bytes as standard base64).
    pub fn params_json(params: &TicketParams) -> serde_json::Value {
        let b = |v: &[u8]| STANDARD.encode(v);
        let mut json = json!({
            "recipient": b(&params.recipient), "face_value": b(&params.face_value), "win_prob": b(&params.win_prob),
            "recipient_rand_hash": b(&params.recipient_rand_hash), "seed": b(&params.seed),
            "expiration_block": b(&params.expiration_block),
        });
        if let Some(e) = &params.expiration_params {
            json["expiration_params"] = json!({"creation_round": e.creation_round,
                "creation_round_block_hash": b(&e.creation_round_block_hash)});
        }
        json
    }

    /// The balance reported to `sender` for `capability` (starting at `initial`).
    pub fn balance(&mut self, sender: &str, capability: &str, initial: i64) -> i64 {
        *self.credit.entry(key(sender, capability)).or_insert(initial as f64) as i64
    }

    /// Takes a payment from `job_sender`: verified, nonces recorded, EV credited. The error is
    /// go-livepeer's answer.
    pub fn pay(&mut self, header: &str, job_sender: &str, capability: &str, initial: i64) -> Result<(), String> {
        let refuse = |ledger: &mut Ledger, m: String| {
            ledger.stats.refused += 1;
            Err(m)
        };
        let Some(hash) = verify::recipient_rand_hash(header) else {
            return refuse(self, "Could not parse payment".into());
        };
        let Some(issued) = self.issued.iter().find(|p| p.recipient_rand_hash == hash).cloned() else {
            return refuse(self, verify::Refused::ParamsNotIssued.to_string());
        };
        let got = match verify::check(header, &issued) {
            Ok(got) => got,
            Err(e) => return refuse(self, e.to_string()),
        };
        // The recipientRand binding: the params, the sender and the price are the ones issued.
        if rand_hash(&recipient_rand(&self.secret, &got.params, &got.sender, got.price))
            != got.params.recipient_rand_hash
        {
            return refuse(self, verify::Refused::ParamsNotIssued.to_string());
        }
        let sender_hex = format!("0x{}", hex::encode(got.sender));
        if !sender_hex.eq_ignore_ascii_case(job_sender) {
            return refuse(self, "invalid ticket sender".into());
        }
        let seen = self.seen.entry(hash).or_default();
        for n in &got.nonces {
            if seen.len() >= NONCES_MAX {
                return refuse(
                    self,
                    format!("invalid ticket senderNonce: too many values sender={sender_hex} nonce={n}"),
                );
            }
            if !seen.insert(*n) {
                return refuse(self, format!("invalid ticket senderNonce: already seen sender={sender_hex} nonce={n}"));
            }
        }
        self.stats.payments += 1;
        self.stats.tickets += got.nonces.len() as u64;
        *self.credit.entry(key(job_sender, capability)).or_insert(initial as f64) +=
            got.nonces.len() as f64 * ticket_ev();
        Ok(())
    }

    /// Whether `sender` holds 60 s of `price` per second for `capability`.
    pub fn covers(&mut self, sender: &str, capability: &str, initial: i64, per_second: f64) -> bool {
        let ok = *self.credit.entry(key(sender, capability)).or_insert(initial as f64) >= 60.0 * per_second;
        if !ok {
            self.stats.insufficient += 1;
        }
        ok
    }

    /// Debits a job that ran `seconds` (rounded up) at `per_second`.
    /// Debits exactly `wei` (a live session's time, charged as it passes).
    pub fn debit_wei(&mut self, sender: &str, capability: &str, wei: f64) {
        if let Some(c) = self.credit.get_mut(&key(sender, capability)) {
            *c -= wei;
        }
    }

    pub fn debit(&mut self, sender: &str, capability: &str, seconds: f64, per_second: f64) {
        if let Some(c) = self.credit.get_mut(&key(sender, capability)) {
            *c -= seconds.ceil().max(1.0) * per_second;
        }
    }
}
