//! Whether a token's ticket params are fit to pay against at all, before any limit is looked
//! at: the fields a ticket hash and the orchestrator's checks need, in the sizes go-livepeer
//! issues them. A params set that is not (an empty `recipient_rand_hash`, no expiry, a negative
//! round) is refused with the field named; the pair is then out of rotation
//! (`ticket-params-invalid`) until a token brings sound params.

use super::ticket::TicketParams;

/// What is wrong with a token's ticket params.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsFault {
    /// The recipient is not a 20-byte address.
    #[error("recipient is {0} bytes (an address is 20)")]
    Recipient(usize),
    /// The `recipient_rand_hash` is not 32 bytes.
    #[error(
        "recipient_rand_hash is {0} bytes (go-livepeer's is 32): it names the nonce set and binds the orchestrator's secret"
    )]
    RandHash(usize),
    /// The face value is zero or wider than a uint256.
    #[error("face_value is {0} bytes (a non-zero uint256 is 1 to 32)")]
    FaceValue(usize),
    /// The winning probability is zero or wider than a uint256.
    #[error("win_prob is {0} bytes (a non-zero uint256 is 1 to 32)")]
    WinProb(usize),
    /// No `expiration_block`: params that never say when they expire.
    #[error("expiration_block is empty: the params carry no expiry")]
    NoExpirationBlock,
    /// No `expiration_params` (go-livepeer's orchestrator cannot process a payment without).
    #[error("expiration_params are absent (go-livepeer's orchestrator cannot process a payment without them)")]
    NoExpirationParams,
    /// A negative creation round.
    #[error("expiration_params.creation_round is {0}: a round is never negative")]
    NegativeRound(i64),
    /// A creation round block hash that is neither absent nor 32 bytes.
    #[error("expiration_params.creation_round_block_hash is {0} bytes (a block hash is 32)")]
    BlockHash(usize),
}

/// Checks `p` field by field; the first fault found.
pub(crate) fn validate(p: &TicketParams) -> Result<(), ParamsFault> {
    if p.recipient.len() != 20 {
        return Err(ParamsFault::Recipient(p.recipient.len()));
    }
    if p.recipient_rand_hash.len() != 32 {
        return Err(ParamsFault::RandHash(p.recipient_rand_hash.len()));
    }
    let uint = |v: &[u8]| (1..=32).contains(&v.len()) && v.iter().any(|b| *b != 0);
    if !uint(&p.face_value) {
        return Err(ParamsFault::FaceValue(p.face_value.len()));
    }
    if !uint(&p.win_prob) {
        return Err(ParamsFault::WinProb(p.win_prob.len()));
    }
    if p.expiration_block.is_empty() || p.expiration_block.iter().all(|b| *b == 0) {
        return Err(ParamsFault::NoExpirationBlock);
    }
    let e = p.expiration_params.as_ref().ok_or(ParamsFault::NoExpirationParams)?;
    if e.creation_round < 0 {
        return Err(ParamsFault::NegativeRound(e.creation_round));
    }
    if !matches!(e.creation_round_block_hash.len(), 0 | 32) {
        return Err(ParamsFault::BlockHash(e.creation_round_block_hash.len()));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::payment::ticket::ExpirationParams;

    /// Params as go-livepeer issues them.
    pub(crate) fn sound() -> TicketParams {
        TicketParams {
            recipient: vec![0x11; 20],
            face_value: vec![0x03, 0x8d, 0x7e, 0xa4, 0xc6, 0x80, 0x00],
            win_prob: vec![0x41; 31],
            recipient_rand_hash: vec![7; 32],
            seed: vec![1, 2, 3],
            expiration_block: vec![0x01, 0x40, 0x6f, 0x68],
            expiration_params: Some(ExpirationParams { creation_round: 3500, creation_round_block_hash: vec![9; 32] }),
        }
    }

    /// A change that spoils sound params.
    type Spoil = Box<dyn Fn(&mut TicketParams)>;

    #[test]
    fn sound_params_pass_and_each_defect_is_named() {
        assert_eq!(validate(&sound()), Ok(()));
        let cases: Vec<(Spoil, ParamsFault)> = vec![
            (Box::new(|p| p.recipient.clear()), ParamsFault::Recipient(0)),
            (Box::new(|p| p.recipient_rand_hash.clear()), ParamsFault::RandHash(0)),
            (Box::new(|p| p.recipient_rand_hash.push(0)), ParamsFault::RandHash(33)),
            (Box::new(|p| p.face_value = vec![0, 0]), ParamsFault::FaceValue(2)),
            (Box::new(|p| p.win_prob = vec![1; 33]), ParamsFault::WinProb(33)),
            (Box::new(|p| p.expiration_block.clear()), ParamsFault::NoExpirationBlock),
            (Box::new(|p| p.expiration_params = None), ParamsFault::NoExpirationParams),
            (
                Box::new(|p| p.expiration_params.iter_mut().for_each(|e| e.creation_round = -1)),
                ParamsFault::NegativeRound(-1),
            ),
            (
                Box::new(|p| p.expiration_params.iter_mut().for_each(|e| e.creation_round_block_hash = vec![1; 5])),
                ParamsFault::BlockHash(5),
            ),
        ];
        for (spoil, fault) in cases {
            let mut p = sound();
            spoil(&mut p);
            assert_eq!(validate(&p), Err(fault.clone()), "{fault}");
        }
        // A round of 0 with no block hash is the zero params (left out of the hash): sound.
        let mut zero = sound();
        zero.expiration_params = Some(ExpirationParams::default());
        assert_eq!(validate(&zero), Ok(()));
    }
}
