//! Fuzzes the JSON inside the `Livepeer` header: the input is the job JSON, base64-encoded
//! here (in the four alphabets/paddings the gateway accepts), so libFuzzer's mutations act on
//! the JSON structure rather than on base64 text. Same checks as `header_decoder`.
#![no_main]

mod common;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the alphabet/padding; the rest is the JSON.
    let Some((&engine, json)) = data.split_first() else { return };
    let header = match engine % 4 {
        0 => STANDARD.encode(json),
        1 => STANDARD_NO_PAD.encode(json),
        2 => URL_SAFE.encode(json),
        _ => URL_SAFE_NO_PAD.encode(json),
    };
    common::check_header(header.as_bytes());
});
