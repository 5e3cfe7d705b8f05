//! Raw DEFLATE for permessage-deflate (RFC 7692 section 7.2).
//!
//! A compressed WebSocket message is a raw DEFLATE stream (no zlib header)
//! flushed with a sync flush, with the trailing empty stored block
//! `00 00 ff ff` removed by the sender and appended again by the receiver
//! (RFC 7692 7.2.1 and 7.2.2).
//!
//! # Window bits and the value 8
//!
//! RFC 7692 allows LZ77 windows of 2^8 ..= 2^15 bytes, but zlib (and so the
//! `zlib-rs` backend of flate2) only opens raw streams with 9 ..= 15 bits:
//!
//! * **Inflate**: a window larger than the sender's is always correct, since
//!   the window only bounds how far back a reference may reach. [`Inflater`]
//!   therefore opens a window of 9 bits when asked for 8. This also accepts
//!   zlib-based peers, which silently compress with 9 bits when told 8.
//!   Passing 15 is always safe, whatever was negotiated. (The `zlib-rs`
//!   backend keeps a 32 KiB window for inflate whatever it is told, so in
//!   practice every inflater accepts references up to 32 KiB back.)
//! * **Deflate**: a compressor with a 9-bit window may emit references up to
//!   512 bytes back, which a peer that asked for 8 bits cannot resolve. So a
//!   [`Deflater`] asked for 8 uses 9, and the negotiation in
//!   [`crate::extension`] never agrees to compress with 8 bits: the server
//!   declines an offer that demands `server_max_window_bits=8` (answering 9 is
//!   forbidden, RFC 7692 7.1.2.1), and the client rejects a response that
//!   demands `client_max_window_bits=8`.
//!
//! Nothing here panics on any input: window bits outside 8 ..= 15 are clamped
//! and levels above 9 are treated as 9.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// zlib's `Z_DEFAULT_COMPRESSION` (-1) stands for this level.
pub const DEFAULT_LEVEL: u32 = 6;

/// A compression level as zlib (and Node's `zlibDeflateOptions.level`) takes it: 0 (store)
/// to 9 (smallest), or -1 for zlib's default ([`DEFAULT_LEVEL`]); None for anything else.
#[must_use]
pub fn zlib_level(level: i64) -> Option<u32> {
    if level == -1 {
        return Some(DEFAULT_LEVEL);
    }
    u32::try_from(level).ok().filter(|l| *l <= 9)
}

/// The empty stored block that ends every sync flush (RFC 7692 7.2.1/7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Smallest chunk by which an output buffer grows.
const MIN_GROW: usize = 4096;

/// Why inflating a message failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message would exceed the caller's size limit
    /// (close code 1009, Message Too Big).
    TooBig,
    /// The compressed data is not a valid DEFLATE stream
    /// (close code 1007, Invalid Frame Payload Data).
    Corrupt(String),
}

impl std::fmt::Display for InflateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InflateError::TooBig => f.write_str("inflated message too big"),
            InflateError::Corrupt(m) => write!(f, "corrupt deflate stream: {m}"),
        }
    }
}

impl std::error::Error for InflateError {}

/// Maps a negotiated window size to one zlib can open (9 ..= 15).
fn zlib_window_bits(window_bits: u8) -> u8 {
    window_bits.clamp(9, 15)
}

/// Makes room for at least one more byte in `out` without letting its
/// capacity grow past `limit` (capacity that `out` already had is kept).
/// Returns false when `out` already holds `limit` bytes or more.
fn grow(out: &mut Vec<u8>, limit: usize) -> bool {
    let len = out.len();
    if len >= limit {
        return false;
    }
    if out.capacity() > len {
        return true;
    }
    // Double, but never past the limit; reserve_exact keeps Vec from
    // over-allocating on its own.
    let want = len.max(MIN_GROW).min(limit - len);
    out.reserve_exact(want);
    true
}

/// Decompressor for the messages of one direction of one connection.
///
/// Feed each fragment's payload to [`Inflater::inflate`] and call
/// [`Inflater::finish`] at the end of every compressed message.
pub struct Inflater {
    inner: Decompress,
    /// The sender closed the DEFLATE stream with a BFINAL block in this
    /// message; the stream must restart at the next message.
    ended: bool,
    /// Some compressed bytes of the current message have been fed.
    has_input: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// Creates an inflater for a peer that compresses with at most
    /// `window_bits` (8 ..= 15, as negotiated). 8 opens a 9-bit window
    /// (see the module docs); values outside 8 ..= 15 are clamped.
    #[must_use]
    pub fn new(window_bits: u8) -> Self {
        Inflater {
            inner: Decompress::new_with_window_bits(false, zlib_window_bits(window_bits)),
            ended: false,
            has_input: false,
        }
    }

    /// Inflate one fragment's payload, appending to `out`; error TooBig as soon as
    /// out.len() would exceed max_total (never allocate past max_total + a small
    /// constant), Corrupt on a bad stream.
    ///
    /// `max_total` bounds the whole of `out`, so a message inflated fragment by
    /// fragment into one buffer is bounded as a whole. This function grows `out`
    /// to at most `max_total + 1` bytes of capacity; capacity the caller had
    /// already allocated may be filled before the limit is checked.
    /// After an error the inflater is unusable for this connection (fail it).
    ///
    /// # Errors
    /// [`InflateError::TooBig`] past `max_total`, [`InflateError::Corrupt`] on a
    /// bad stream.
    pub fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_total: usize,
    ) -> Result<(), InflateError> {
        if !input.is_empty() {
            self.has_input = true;
        }
        self.run(input, out, max_total)
    }

    /// End of message: feeds the 00 00 ff ff tail (RFC 7692 7.2.2); if `reset`, reset
    /// the context (the sender uses no_context_takeover).
    ///
    /// A message whose payload was empty is taken as an empty message and the
    /// tail is not fed: a conforming sender sends at least `00` (RFC 7692
    /// 7.2.3.6), and feeding the tail alone would leave the stream in the
    /// middle of a stored block, corrupting every later message.
    ///
    /// A message that ended with a BFINAL block (RFC 7692 7.2.3.4) also resets
    /// the context, as the next message must start a new DEFLATE stream.
    pub fn finish(
        &mut self,
        out: &mut Vec<u8>,
        max_total: usize,
        reset: bool,
    ) -> Result<(), InflateError> {
        let result = if self.has_input {
            self.run(&TAIL, out, max_total)
        } else if out.len() > max_total {
            Err(InflateError::TooBig)
        } else {
            Ok(())
        };
        self.has_input = false;
        if reset || self.ended {
            self.inner.reset(false);
            self.ended = false;
        }
        result
    }

    /// Inflates `input` into `out`. Whatever follows a BFINAL block in the
    /// same message is ignored: RFC 7692 7.2.3.4 has the sender add a `00`
    /// byte there, and the receiver appends the tail after it.
    fn run(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_total: usize,
    ) -> Result<(), InflateError> {
        if input.is_empty() && out.len() <= max_total {
            // Nothing is pending: the last call returned with room to spare.
            return Ok(());
        }
        let limit = max_total.saturating_add(1);
        let mut pos = 0;
        loop {
            if out.len() > max_total {
                return Err(InflateError::TooBig);
            }
            if self.ended {
                return Ok(());
            }
            if !grow(out, limit) {
                return Err(InflateError::TooBig);
            }
            let rest = input.get(pos..).unwrap_or_default();
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            let status = self
                .inner
                .decompress_vec(rest, out, FlushDecompress::None)
                .map_err(|e| InflateError::Corrupt(e.to_string()))?;
            let consumed = usize::try_from(self.inner.total_in() - in_before).unwrap_or(usize::MAX);
            let produced = self.inner.total_out() - out_before;
            pos = pos.saturating_add(consumed).min(input.len());
            if out.len() > max_total {
                return Err(InflateError::TooBig);
            }
            if status == Status::StreamEnd {
                self.ended = true;
                continue;
            }
            // Done once all input is in and the output was not filled (a full
            // buffer may mean more output is pending inside the inflater).
            if pos == input.len() && out.len() < out.capacity() {
                return Ok(());
            }
            if consumed == 0 && produced == 0 && out.len() < out.capacity() {
                return Err(InflateError::Corrupt("inflater made no progress".into()));
            }
        }
    }
}

/// Compressor for the messages of one direction of one connection.
pub struct Deflater {
    inner: Compress,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater").finish_non_exhaustive()
    }
}

impl Deflater {
    /// Creates a compressor with zlib `level` (0 ..= 9; larger means 9) and a
    /// window of `window_bits`. zlib cannot compress raw DEFLATE with an 8-bit
    /// window, so 8 gives 9: never use a `Deflater` where the peer required 8
    /// (the negotiation in [`crate::extension`] never agrees to that). Values
    /// outside 8 ..= 15 are clamped.
    #[must_use]
    pub fn new(level: u32, window_bits: u8) -> Self {
        Deflater {
            inner: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                zlib_window_bits(window_bits),
            ),
        }
    }

    /// Compress one whole message, appending to `out` with the trailing 00 00 ff ff
    /// removed (sync flush). If `reset_after`, reset the context afterwards (no context
    /// takeover).
    ///
    /// An empty message gives the single byte `00` (RFC 7692 7.2.3.6).
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>, reset_after: bool) {
        let start = out.len();
        if !self.sync_flush(input, out) {
            // Cannot happen with a valid stream state; recover without a
            // panic: send the message as stored blocks, which any inflater
            // accepts, and restart our context (a fresh context is always
            // allowed, it only never references older data).
            out.truncate(start);
            self.inner.reset();
            stored_blocks(input, out);
            return;
        }
        if out.get(start..).is_some_and(|m| m.ends_with(&TAIL)) {
            out.truncate(out.len() - TAIL.len());
        }
        if reset_after {
            self.inner.reset();
        }
    }

    /// Compresses all of `input` and sync-flushes, appending to `out`.
    /// Returns false if the compressor failed or stalled.
    ///
    /// The input goes in without a flush first, then an empty sync flush
    /// follows: zlib skips a sync flush that directly follows another one
    /// with no input, which would leave an empty message without its
    /// empty stored block.
    fn sync_flush(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let mut pos = 0;
        while pos < input.len() {
            out.reserve((input.len() - pos) / 4 + 64);
            let rest = input.get(pos..).unwrap_or_default();
            let (in_before, out_before) = (self.inner.total_in(), self.inner.total_out());
            if self
                .inner
                .compress_vec(rest, out, FlushCompress::None)
                .is_err()
            {
                return false;
            }
            let consumed = usize::try_from(self.inner.total_in() - in_before).unwrap_or(usize::MAX);
            if consumed == 0 && self.inner.total_out() == out_before && out.len() < out.capacity() {
                return false;
            }
            pos = pos.saturating_add(consumed).min(input.len());
        }
        if input.is_empty() {
            // Make sure the flush below is not skipped (see above); zlib only
            // records the flush mode when there is room for output.
            out.reserve(256);
            if self
                .inner
                .compress_vec(&[], out, FlushCompress::None)
                .is_err()
            {
                return false;
            }
        }
        loop {
            out.reserve(256);
            let Ok(status) = self.inner.compress_vec(&[], out, FlushCompress::Sync) else {
                return false;
            };
            // zlib: the flush is complete once a call leaves room in the
            // output buffer (or reports that nothing more can be done).
            if out.len() < out.capacity() || status == Status::BufError {
                return true;
            }
        }
    }
}

/// Appends `data` as non-final stored DEFLATE blocks (RFC 1951 3.2.4),
/// byte-aligned, so it is a valid permessage-deflate payload on its own.
fn stored_blocks(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        out.push(0x00);
        return;
    }
    for chunk in data.chunks(usize::from(u16::MAX)) {
        // Chunks are at most u16::MAX long by construction.
        let len = u16::try_from(chunk.len()).unwrap_or(u16::MAX);
        out.push(0x00); // BFINAL = 0, BTYPE = 00, padding
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
}

/// Compresses one message with a fresh context: the payload of a frame
/// with RSV1 set, without the `00 00 ff ff` tail. Such a payload is valid
/// for every receiver that negotiated a window of at least `window_bits`
/// (clamped to 9 ..= 15), whatever its context takeover, which is what a
/// broadcast shared by many connections needs.
#[must_use]
pub fn deflate_raw(data: &[u8], level: u32, window_bits: u8) -> Vec<u8> {
    let mut out = Vec::new();
    Deflater::new(level, window_bits).compress(data, &mut out, true);
    out
}

/// Inflates one whole message payload (without the tail) with a fresh
/// context.
///
/// # Errors
/// [`InflateError::TooBig`] past `max_size` bytes, [`InflateError::Corrupt`] on
/// a bad stream.
pub fn inflate_raw(data: &[u8], max_size: usize, window_bits: u8) -> Result<Vec<u8>, InflateError> {
    let mut inflater = Inflater::new(window_bits);
    let mut out = Vec::new();
    inflater.inflate(data, &mut out, max_size)?;
    inflater.finish(&mut out, max_size, true)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MB: usize = 1 << 20;

    fn corpus(n: usize, seed: u32) -> Vec<u8> {
        // Compressible but not trivial: words from a small vocabulary chosen by an LCG.
        let words: [&[u8]; 8] = [
            b"alpha ",
            b"beta ",
            b"gamma ",
            b"{\"id\":",
            b"42,",
            b"\"x\"}",
            b"\n",
            b"zeta ",
        ];
        let mut s = seed;
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let w = words[((s >> 16) & 7) as usize];
            v.extend_from_slice(w);
            if (s >> 8) & 31 == 0 {
                v.push((s >> 3) as u8);
            }
        }
        v.truncate(n);
        v
    }

    fn inflate_msg(
        inf: &mut Inflater,
        payload: &[u8],
        reset: bool,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        inf.inflate(payload, &mut out, 64 * MB)?;
        inf.finish(&mut out, 64 * MB, reset)?;
        Ok(out)
    }

    #[test]
    fn rfc_hello_compresses_to_vector() {
        assert_eq!(
            deflate_raw(b"Hello", 6, 15),
            [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]
        );
    }

    #[test]
    fn rfc_hello_inflates() {
        assert_eq!(
            inflate_raw(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, 15).unwrap(),
            b"Hello"
        );
    }

    #[test]
    fn rfc_second_hello_with_context_takeover() {
        let mut d = Deflater::new(6, 15);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.compress(b"Hello", &mut a, false);
        d.compress(b"Hello", &mut b, false);
        assert_eq!(a, [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        assert_eq!(b, [0xf2, 0x00, 0x11, 0x00, 0x00]);
        let mut inf = Inflater::new(15);
        assert_eq!(inflate_msg(&mut inf, &a, false).unwrap(), b"Hello");
        assert_eq!(inflate_msg(&mut inf, &b, false).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_second_hello_needs_the_context() {
        // Without the context the back-reference reaches before the stream start.
        assert!(matches!(
            inflate_raw(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100, 15),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn rfc_no_context_takeover_repeats_first_form() {
        let mut d = Deflater::new(6, 15);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.compress(b"Hello", &mut a, true);
        d.compress(b"Hello", &mut b, true);
        assert_eq!(a, b);
    }

    #[test]
    fn rfc_stored_block_form() {
        let data = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        assert_eq!(inflate_raw(&data, 100, 15).unwrap(), b"Hello");
    }

    #[test]
    fn rfc_split_across_fragments() {
        let mut inf = Inflater::new(15);
        let mut out = Vec::new();
        inf.inflate(&[0xf2, 0x48, 0xcd], &mut out, 100).unwrap();
        inf.inflate(&[0xc9, 0xc9, 0x07, 0x00], &mut out, 100)
            .unwrap();
        inf.finish(&mut out, 100, false).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn rfc_bfinal_block_form() {
        // RFC 7692 7.2.3.4: "Hello" in a final fixed block, then a 00 octet that
        // lets the receiver append the tail as usual.
        let data = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut inf = Inflater::new(15);
        assert_eq!(inflate_msg(&mut inf, &data, false).unwrap(), b"Hello");
        // The next message starts a new stream even with context takeover.
        assert_eq!(inflate_msg(&mut inf, &data, false).unwrap(), b"Hello");
        assert_eq!(
            inflate_msg(&mut inf, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], false).unwrap(),
            b"Hello"
        );
        // Split across fragments, with the final block ending in the first.
        let mut out = Vec::new();
        inf.inflate(&data[..7], &mut out, 100).unwrap();
        inf.inflate(&data[7..], &mut out, 100).unwrap();
        inf.finish(&mut out, 100, false).unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn data_after_final_block_is_ignored() {
        // Without the 00 octet, and with junk after it: the stream ended.
        for data in [
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x12, 0xff],
        ] {
            assert_eq!(inflate_raw(data, 100, 15).unwrap(), b"Hello");
        }
    }

    #[test]
    fn empty_message_is_single_zero_byte() {
        assert_eq!(deflate_raw(b"", 6, 15), [0x00]);
        assert_eq!(inflate_raw(&[0x00], 10, 15).unwrap(), b"");
        // An empty payload is also accepted (the tail alone is a valid block).
        assert_eq!(inflate_raw(&[], 10, 15).unwrap(), b"");
    }

    #[test]
    fn round_trip_every_window_with_and_without_takeover() {
        // Sizes include an empty message after others (the sync flush must not
        // be skipped) and one larger than the biggest window.
        let msgs: Vec<Vec<u8>> = (0..8u32)
            .map(|i| corpus([0, 1, 7, 300, 5000, 40_000][i as usize % 6], i))
            .collect();
        for wb in 8..=15u8 {
            for takeover in [true, false] {
                for level in [0, 1, 9] {
                    let mut d = Deflater::new(level, wb);
                    let mut inf = Inflater::new(wb);
                    for m in &msgs {
                        let mut c = Vec::new();
                        d.compress(m, &mut c, !takeover);
                        let got = inflate_msg(&mut inf, &c, !takeover).unwrap();
                        assert_eq!(&got, m, "wb={wb} takeover={takeover} level={level}");
                        if !takeover {
                            // Each message also inflates alone with a fresh context.
                            assert_eq!(&inflate_raw(&c, 64 * MB, wb).unwrap(), m);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn window_9_stream_fits_an_inflater_told_8() {
        // A zlib peer told 8 compresses with 9; the inflater for 8 accepts it.
        let m = corpus(20_000, 3);
        let c = deflate_raw(&m, 9, 9);
        assert_eq!(inflate_raw(&c, MB, 8).unwrap(), m);
    }

    #[test]
    fn references_across_messages_reach_back_through_the_window() {
        // A 600 byte message, then the same again with context takeover: the
        // second is a single reference 600 bytes back, into the first.
        let block: Vec<u8> = (0u32..600)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut d = Deflater::new(9, 15);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.compress(&block, &mut a, false);
        d.compress(&block, &mut b, false);
        assert!(
            b.len() < 20,
            "expected a back-reference, got {} bytes",
            b.len()
        );
        let mut inf = Inflater::new(15);
        assert_eq!(inflate_msg(&mut inf, &a, false).unwrap(), block);
        assert_eq!(inflate_msg(&mut inf, &b, false).unwrap(), block);
        // After a reset the reference has nothing to point at.
        let mut inf = Inflater::new(15);
        assert_eq!(inflate_msg(&mut inf, &a, true).unwrap(), block);
        assert!(matches!(
            inflate_msg(&mut inf, &b, true),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn empty_messages_inside_a_takeover_stream() {
        let mut d = Deflater::new(6, 15);
        let mut inf = Inflater::new(15);
        for m in [&b"abc"[..], b"", b"", b"abcabc", b""] {
            let mut c = Vec::new();
            d.compress(m, &mut c, false);
            assert!(!c.is_empty(), "an empty message still needs its 00 byte");
            assert_eq!(inflate_msg(&mut inf, &c, false).unwrap(), m);
            // A sender that sends an empty payload instead of 00 is tolerated.
            assert_eq!(inflate_msg(&mut inf, &[], false).unwrap(), b"");
        }
    }

    #[test]
    fn fragments_of_every_size_inflate_the_same() {
        let m = corpus(30_000, 9);
        let c = deflate_raw(&m, 6, 15);
        for step in [1, 2, 3, 7, 64, 1000, c.len()] {
            let mut inf = Inflater::new(15);
            let mut out = Vec::new();
            for part in c.chunks(step) {
                inf.inflate(part, &mut out, MB).unwrap();
            }
            inf.finish(&mut out, MB, true).unwrap();
            assert_eq!(out, m, "step {step}");
        }
    }

    #[test]
    fn max_total_is_exact() {
        let m = corpus(10_000, 1);
        let c = deflate_raw(&m, 6, 15);
        assert_eq!(inflate_raw(&c, m.len(), 15).unwrap(), m);
        assert_eq!(inflate_raw(&c, m.len() - 1, 15), Err(InflateError::TooBig));
        assert_eq!(inflate_raw(&c, 0, 15), Err(InflateError::TooBig));
        assert_eq!(inflate_raw(&[0x00], 0, 15).unwrap(), b"");
    }

    /// A stream chunk that inflates to `n` zeros and can be repeated: it only
    /// references zeros within the window, and keeps its sync-flush tail.
    fn zero_chunks(n: usize) -> (Vec<u8>, Vec<u8>) {
        let zeros = vec![0u8; n];
        let mut d = Deflater::new(9, 15);
        let (mut first, mut next) = (Vec::new(), Vec::new());
        d.compress(&zeros, &mut first, false);
        first.extend_from_slice(&TAIL);
        d.compress(&zeros, &mut next, false);
        next.extend_from_slice(&TAIL);
        (first, next)
    }

    #[test]
    fn inflation_bomb_fails_fast_with_bounded_memory() {
        let (first, next) = zero_chunks(4 * MB);
        // Sanity: the chunks really are a bomb (about 1000:1).
        assert!(next.len() < 8 * 1024, "chunk is {} bytes", next.len());
        let mut inf = Inflater::new(15);
        assert_eq!(
            inflate_msg(&mut inf, &[first.as_slice(), &next, &next].concat(), false)
                .unwrap()
                .len(),
            12 * MB
        );

        // Fragment by fragment: 1024 fragments would inflate to 4 GiB. "Fails fast" is held
        // as work, not time: it stops after the few fragments whose output passes the
        // limit, and inflates no more than the limit (and the one byte that tells).
        let limit = 16 * MB;
        let mut inf = Inflater::new(15);
        let mut out = Vec::new();
        let mut result = inf.inflate(&first, &mut out, limit);
        let mut fed = first.len();
        for _ in 0..1024 {
            if result.is_err() {
                break;
            }
            result = inf.inflate(&next, &mut out, limit);
            fed += next.len();
        }
        assert_eq!(result, Err(InflateError::TooBig));
        assert!(fed < 64 * 1024, "fed {fed} bytes");
        assert!(out.capacity() <= limit + 1, "capacity {}", out.capacity());
        let produced = inf.inner.total_out();
        assert!(produced <= (limit + 1) as u64, "inflated {produced} bytes");

        // One fragment holding ~1 GiB of zeros (about 1 MiB compressed): the inflater reads
        // only the input that makes the first MiB and a byte, not the whole fragment.
        let mut bomb = first.clone();
        for _ in 0..255 {
            bomb.extend_from_slice(&next);
        }
        let mut out = Vec::new();
        let mut inf = Inflater::new(15);
        assert_eq!(inf.inflate(&bomb, &mut out, MB), Err(InflateError::TooBig));
        assert!(out.capacity() <= MB + 1, "capacity {}", out.capacity());
        let (read, produced) = (inf.inner.total_in(), inf.inner.total_out());
        assert!(produced <= (MB + 1) as u64, "inflated {produced} bytes");
        assert!(read < 64 * 1024, "read {read} of {} bytes", bomb.len());
        assert_eq!(inflate_raw(&bomb, MB, 15), Err(InflateError::TooBig));
    }

    #[test]
    fn corrupt_streams_are_corrupt_not_panics() {
        let cases: [&[u8]; 6] = [
            &[0xff, 0xff, 0xff, 0xff],             // reserved block type 11
            &[0x06],                               // BTYPE 11 again
            &[0x00, 0x05, 0x00, 0x00, 0x00],       // stored block with bad NLEN
            &[0xf2, 0x00, 0x11, 0x00, 0x00],       // reference before the stream start
            &[0x00, 0x05, 0x00, 0xfa, 0xfe, 0x41], // stored block with NLEN off by one bit
            &[0xfc, 0xff, 0xff, 0xff, 0xff, 0xff],
        ];
        for c in cases {
            let r = inflate_raw(c, MB, 15);
            assert!(
                matches!(r, Err(InflateError::Corrupt(_))),
                "{c:02x?} -> {r:?}"
            );
        }
    }

    #[test]
    fn stored_block_fallback_is_valid() {
        for n in [0usize, 1, 65_535, 65_536, 200_000] {
            let m = corpus(n, 5);
            let mut out = Vec::new();
            stored_blocks(&m, &mut out);
            assert_eq!(inflate_raw(&out, MB, 15).unwrap(), m);
        }
    }

    #[test]
    fn odd_arguments_do_not_panic() {
        for wb in [0u8, 1, 7, 8, 16, 255] {
            let c = deflate_raw(b"abcabcabc", 100, wb);
            assert_eq!(inflate_raw(&c, 100, wb).unwrap(), b"abcabcabc");
        }
        let mut out = vec![0u8; 10];
        assert_eq!(
            Inflater::new(15).inflate(&[0x00], &mut out, 5),
            Err(InflateError::TooBig)
        );
        assert_eq!(
            inflate_raw(&deflate_raw(b"x", 6, 15), usize::MAX, 15).unwrap(),
            b"x"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            frags in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..5),
            max in 0usize..5000,
            wb in 0u8..20,
            reset in any::<bool>(),
        ) {
            let mut inf = Inflater::new(wb);
            let mut out = Vec::new();
            let mut ok = true;
            for f in &frags {
                if inf.inflate(f, &mut out, max).is_err() { ok = false; break; }
            }
            if ok {
                let _ = inf.finish(&mut out, max, reset);
            }
            prop_assert!(out.capacity() <= max + 1);
        }

        #[test]
        fn arbitrary_messages_round_trip(
            msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..5),
            wb in 8u8..=15,
            takeover in any::<bool>(),
        ) {
            let mut d = Deflater::new(6, wb);
            let mut inf = Inflater::new(wb);
            for m in &msgs {
                let mut c = Vec::new();
                d.compress(m, &mut c, !takeover);
                prop_assert_eq!(&inflate_msg(&mut inf, &c, !takeover).unwrap(), m);
            }
        }
    }
}
