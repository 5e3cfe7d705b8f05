#![no_main]
//! The frame decoder without permessage-deflate, both roles, any cut of the input.
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::run(data, None));
