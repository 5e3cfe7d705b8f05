#![no_main]
//! The inflate path alone: any bytes as one or two fragments of a message, then the
//! message's end; the output never grows past its bound (plus the documented byte).
use libfuzzer_sys::fuzz_target;
use rust_frames::deflate::Inflater;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Some((&p, rest)) = data.split_first() else {
        return;
    };
    let mut inflater = Inflater::new(8 + (p & 7));
    let cut = usize::from(p >> 3).min(rest.len());
    let mut out = Vec::new();
    for fragment in [&rest[..cut], &rest[cut..]] {
        if inflater.inflate(fragment, &mut out, MAX).is_err() {
            assert!(out.len() <= MAX + 1);
            return;
        }
        assert!(out.len() <= MAX);
    }
    if inflater.finish(&mut out, MAX, p & 1 != 0).is_ok() {
        assert!(out.len() <= MAX);
    }
});
