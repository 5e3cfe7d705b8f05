#![no_main]
//! The frame decoder with permessage-deflate negotiated (the second byte picks the window
//! bits and context takeover), both roles, any cut of the input.
use libfuzzer_sys::fuzz_target;
use rust_frames::extension::DeflateParams;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&p, rest)) = data.split_first() else {
        return;
    };
    let bits = 8 + (p & 7);
    let params = DeflateParams {
        server_no_context_takeover: p & 8 != 0,
        client_no_context_takeover: p & 16 != 0,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    };
    common::run(rest, Some(&params));
});
