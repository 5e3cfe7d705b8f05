//! Masking (RFC 6455 5.3): XOR with a repeating 4-byte key.
//!
//! [`apply_mask`] is the fast path: it XORs 32 bytes at a time against a pre-rotated copy of
//! the key, a fixed-width loop that LLVM turns into SIMD XORs; no `unsafe`, no alignment
//! assumptions. [`apply_mask_simple`] is the plain byte loop it is tested against.

use std::mem::MaybeUninit;

/// Width of one block of the fast path.
const BLOCK: usize = 32;

/// XOR `buf` in place with `mask`, starting at key position `phase` (0..4): byte `i` of `buf`
/// is XORed with `mask[(phase + i) % 4]`. The reference implementation.
pub fn apply_mask_simple(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    for (i, byte) in buf.iter_mut().enumerate() {
        *byte ^= mask[(phase + i) & 3];
    }
}

/// XOR `buf` in place with `mask` starting at key position `phase` (0..4); the same result
/// as [`apply_mask_simple`], many bytes per instruction.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], phase: usize) {
    let mut key = [0u8; BLOCK];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[(phase + i) & 3];
    }
    let mut blocks = buf.chunks_exact_mut(BLOCK);
    for block in &mut blocks {
        // Fixed-length arrays: bounds checks vanish and the loop vectorises.
        for (b, k) in block.iter_mut().zip(key.iter()) {
            *b ^= *k;
        }
    }
    // BLOCK is a multiple of 4, so the phase at the tail is the starting phase.
    for (b, k) in blocks.into_remainder().iter_mut().zip(key.iter()) {
        *b ^= *k;
    }
}

/// Write `src` XOR `mask` (from key position 0) into `dst` in one pass; copies
/// `min(dst.len(), src.len())` bytes.
pub fn mask_copy(dst: &mut [u8], src: &[u8], mask: [u8; 4]) {
    let mut key = [0u8; BLOCK];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[i & 3];
    }
    let mut dst_blocks = dst.chunks_exact_mut(BLOCK);
    let mut src_blocks = src.chunks_exact(BLOCK);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        for ((d, s), k) in d.iter_mut().zip(s).zip(key.iter()) {
            *d = *s ^ *k;
        }
    }
    let tail = dst_blocks
        .into_remainder()
        .iter_mut()
        .zip(src_blocks.remainder());
    for ((d, s), k) in tail.zip(key.iter()) {
        *d = *s ^ *k;
    }
}

/// [`mask_copy`] into memory that may be uninitialised (a fresh Python `bytes` object):
/// writes exactly `min(dst.len(), src.len())` elements, every one of them.
pub fn mask_copy_uninit(dst: &mut [MaybeUninit<u8>], src: &[u8], mask: [u8; 4]) {
    let mut key = [0u8; BLOCK];
    for (i, k) in key.iter_mut().enumerate() {
        *k = mask[i & 3];
    }
    let mut dst_blocks = dst.chunks_exact_mut(BLOCK);
    let mut src_blocks = src.chunks_exact(BLOCK);
    for (d, s) in (&mut dst_blocks).zip(&mut src_blocks) {
        for ((d, s), k) in d.iter_mut().zip(s).zip(key.iter()) {
            d.write(*s ^ *k);
        }
    }
    let tail = dst_blocks
        .into_remainder()
        .iter_mut()
        .zip(src_blocks.remainder());
    for ((d, s), k) in tail.zip(key.iter()) {
        d.write(*s ^ *k);
    }
}

/// Copy `src` into memory that may be uninitialised; writes `min(dst.len(), src.len())`
/// elements.
pub fn copy_uninit(dst: &mut [MaybeUninit<u8>], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        d.write(*s);
    }
}

/// Append `src` XOR `mask` (from key position 0) to `dst`, writing each new byte once
/// (no zero fill before the masking pass).
#[allow(unsafe_code)]
pub fn unmask_into(dst: &mut Vec<u8>, src: &[u8], mask: [u8; 4]) {
    let start = dst.len();
    dst.reserve(src.len());
    if let Some(out) = dst.spare_capacity_mut().get_mut(..src.len()) {
        mask_copy_uninit(out, src, mask);
        // SAFETY: `out` is the first `src.len()` elements of the spare capacity, i.e. the
        // elements at `start..start + src.len()` (so that length fits the capacity), and
        // `mask_copy_uninit` writes `min(out.len(), src.len())` == `src.len()` of them,
        // every one, so every element up to the new length is initialised. Exercised by
        // `unmask_into_equals_simple` (every length, with and without spare capacity).
        unsafe { dst.set_len(start + src.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_equals_simple_for_every_length_offset_and_phase() {
        let source: Vec<u8> = (0..320u32).map(|i| (i * 7 + 3) as u8).collect();
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..=300 {
            for offset in 0..8 {
                for phase in 0..4 {
                    let mut a = source.clone();
                    let mut b = source.clone();
                    apply_mask(&mut a[offset..offset + len], mask, phase);
                    apply_mask_simple(&mut b[offset..offset + len], mask, phase);
                    assert_eq!(a, b, "len {len} offset {offset} phase {phase}");
                }
            }
        }
    }

    #[test]
    fn mask_copy_equals_simple() {
        let source: Vec<u8> = (0..320u32).map(|i| (i * 13 + 1) as u8).collect();
        let mask = [0xde, 0xad, 0xbe, 0xef];
        for len in 0..=300 {
            for offset in 0..8 {
                let src = &source[offset..offset + len];
                let mut expected = src.to_vec();
                apply_mask_simple(&mut expected, mask, 0);
                let mut dst = vec![0u8; len + 8];
                mask_copy(&mut dst[offset..offset + len], src, mask);
                assert_eq!(
                    &dst[offset..offset + len],
                    &expected[..],
                    "len {len} offset {offset}"
                );
            }
        }
    }

    #[test]
    fn uninit_variants_equal_simple() {
        let source: Vec<u8> = (0..320u32).map(|i| (i * 5 + 11) as u8).collect();
        let mask = [0x01, 0x80, 0xff, 0x7e];
        for len in 0..=300 {
            for offset in 0..8 {
                let src = &source[offset..offset + len];
                let mut expected = src.to_vec();
                apply_mask_simple(&mut expected, mask, 0);
                // Initialised with a sentinel so reading back is plain safe code.
                let mut dst = vec![MaybeUninit::new(0xAAu8); len + 8];
                mask_copy_uninit(&mut dst[offset..offset + len], src, mask);
                let got: Vec<u8> = dst.iter().map(|b| read_init(*b)).collect();
                assert_eq!(
                    &got[offset..offset + len],
                    &expected[..],
                    "len {len} offset {offset}"
                );
                assert!(
                    got[..offset]
                        .iter()
                        .chain(&got[offset + len..])
                        .all(|b| *b == 0xAA)
                );
                copy_uninit(&mut dst[offset..offset + len], src);
                let got: Vec<u8> = dst.iter().map(|b| read_init(*b)).collect();
                assert_eq!(&got[offset..offset + len], src);
            }
        }
    }

    #[allow(unsafe_code)]
    fn read_init(v: MaybeUninit<u8>) -> u8 {
        // SAFETY: every element read here was created with `MaybeUninit::new` (and maybe
        // overwritten by the function under test), so it is initialised.
        unsafe { v.assume_init() }
    }

    #[test]
    fn masking_twice_is_identity() {
        let data: Vec<u8> = (0..=255).collect();
        let mut buf = data.clone();
        apply_mask(&mut buf, [1, 2, 3, 4], 0);
        assert_ne!(buf, data);
        apply_mask(&mut buf, [1, 2, 3, 4], 0);
        assert_eq!(buf, data);
    }

    #[test]
    fn unmask_into_equals_simple() {
        let source: Vec<u8> = (0..320u32).map(|i| (i * 11 + 5) as u8).collect();
        let mask = [0x5a, 0x01, 0xc3, 0x99];
        for len in 0..=300 {
            for prefix in [0usize, 1, 3, 7] {
                for spare in [0usize, 5, 400] {
                    let src = &source[..len];
                    let mut expected: Vec<u8> = (0..prefix as u8).collect();
                    let mut masked = src.to_vec();
                    apply_mask_simple(&mut masked, mask, 0);
                    expected.extend_from_slice(&masked);
                    let mut out = Vec::with_capacity(prefix + spare);
                    out.extend(0..prefix as u8);
                    unmask_into(&mut out, src, mask);
                    assert_eq!(out, expected, "len {len} prefix {prefix} spare {spare}");
                }
            }
        }
    }

    #[test]
    fn unmask_into_appends() {
        let mut out = b"ab".to_vec();
        unmask_into(
            &mut out,
            &[0x7f, 0x9f, 0x4d, 0x51, 0x58],
            [0x37, 0xfa, 0x21, 0x3d],
        );
        assert_eq!(out, b"abHello");
    }
}
