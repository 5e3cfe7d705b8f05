//! The incremental decoder: bytes in, whole messages out (RFC 6455 5 and 6.2, RFC 7692 6.2).
//!
//! Rules, in the order they are applied to each frame:
//!
//! 1. The header is parsed from the bytes at hand without consuming them
//!    ([`crate::frame::parse_header`]); the first two bytes are checked as soon as they are
//!    there (reserved bits and opcodes, control frame rules, the mask bit for the role,
//!    continuation order), the length and the size limits as soon as the length is there.
//!    Nothing of a frame is used before the whole frame has arrived.
//! 2. Frames are decoded straight from the caller's chunk. Only the tail of a chunk that
//!    holds an incomplete frame is copied (into `pending`); the next chunk first completes
//!    that frame, then decoding continues from the chunk itself.
//! 3. An unfragmented, uncompressed data frame goes to the sink in one step: unmasked into
//!    a reused scratch buffer (or used in place when unmasked), validated as UTF-8 once.
//!    Fragmented or compressed messages accumulate in `message`, text checked incrementally
//!    so an impossible byte fails on the fragment that carries it.
//! 4. Control frames may come between fragments and never touch `message`.
//! 5. After a Close frame the rest of the chunk is ignored and later input is refused; after
//!    an error every later call fails with the same error.

use crate::deflate::{InflateError, Inflater};
use crate::error::{FrameError, is_valid_close_code};
use crate::extension::DeflateParams;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, OpCode, Parsed, parse_header};
use crate::mask::{apply_mask, unmask_into};
use crate::utf8::Utf8Validator;

/// Which end of the connection this codec is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server: receives masked frames, sends unmasked ones.
    Server,
    /// The client: receives unmasked frames, sends masked ones.
    Client,
}

/// Receives decoded messages. Borrowed data is only valid during the call.
pub trait MessageSink {
    /// A complete text message.
    fn text(&mut self, text: &str);
    /// A complete binary message.
    fn binary(&mut self, data: &[u8]);
    /// A complete binary message still masked with `key` (from key position 0), for sinks
    /// that can unmask while copying; by default unmasked into a new buffer for
    /// [`MessageSink::binary`].
    fn binary_masked(&mut self, masked: &[u8], key: [u8; 4]) {
        let mut data = Vec::new();
        unmask_into(&mut data, masked, key);
        self.binary(&data);
    }
    /// A Ping frame.
    fn ping(&mut self, payload: &[u8]);
    /// A Pong frame.
    fn pong(&mut self, payload: &[u8]);
    /// A Close frame; `code` is None when the payload was empty.
    fn close(&mut self, code: Option<u16>, reason: &str);
}

/// An owned decoded message, for Rust callers and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A Ping frame.
    Ping(Vec<u8>),
    /// A Pong frame.
    Pong(Vec<u8>),
    /// A Close frame: code (None when empty) and reason.
    Close(Option<u16>, String),
}

impl MessageSink for Vec<Message> {
    fn text(&mut self, text: &str) {
        self.push(Message::Text(text.to_owned()));
    }
    fn binary(&mut self, data: &[u8]) {
        self.push(Message::Binary(data.to_vec()));
    }
    fn ping(&mut self, payload: &[u8]) {
        self.push(Message::Ping(payload.to_vec()));
    }
    fn pong(&mut self, payload: &[u8]) {
        self.push(Message::Pong(payload.to_vec()));
    }
    fn close(&mut self, code: Option<u16>, reason: &str) {
        self.push(Message::Close(code, reason.to_owned()));
    }
}

/// Buffers above this capacity are released after use instead of kept for reuse.
const KEEP_CAPACITY: usize = 64 * 1024;

/// The decoder's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Open,
    Closed,
    Failed(FrameError),
}

/// A fragmented or compressed message being assembled.
#[derive(Debug, Clone, Copy)]
struct Partial {
    text: bool,
    compressed: bool,
    /// Payload bytes received so far, as on the wire (compressed if compressed).
    wire_len: u64,
    utf8: Utf8Validator,
}

/// The receiving half of permessage-deflate.
struct Inflate {
    inflater: Inflater,
    /// No context takeover: reset the window after each message.
    reset: bool,
}

/// One step of looking at buffered bytes.
enum Step {
    /// At least this many bytes (from the start) are needed.
    Need(usize),
    /// A whole frame is present; the value is its total length.
    Frame(FrameHeader, usize),
}

/// The incremental frame decoder. See the module documentation for its rules.
pub struct Decoder {
    role: Role,
    max_frame_size: u64,
    max_message_size: usize,
    inflate: Option<Inflate>,
    /// The bytes of an incomplete frame.
    pending: Vec<u8>,
    /// Unmasked payload of the frame being decoded.
    scratch: Vec<u8>,
    /// The payload (inflated) of the message being assembled.
    message: Vec<u8>,
    partial: Option<Partial>,
    state: State,
}

impl Decoder {
    /// A decoder for `role` with limits in bytes. With `deflate` (the negotiated
    /// parameters), RSV1 frames are inflated: the server inflates with the client_*
    /// parameters, the client with the server_* ones.
    #[must_use]
    pub fn new(
        role: Role,
        max_frame_size: usize,
        max_message_size: usize,
        deflate: Option<&DeflateParams>,
    ) -> Self {
        let inflate = deflate.map(|p| {
            let (bits, reset) = match role {
                Role::Server => (p.client_max_window_bits, p.client_no_context_takeover),
                Role::Client => (p.server_max_window_bits, p.server_no_context_takeover),
            };
            Inflate {
                inflater: Inflater::new(bits),
                reset,
            }
        });
        Self {
            role,
            max_frame_size: u64::try_from(max_frame_size).unwrap_or(u64::MAX),
            max_message_size,
            inflate,
            pending: Vec::new(),
            scratch: Vec::new(),
            message: Vec::new(),
            partial: None,
            state: State::Open,
        }
    }

    /// Bytes held for an incomplete frame or message.
    #[must_use]
    pub fn buffered(&self) -> usize {
        self.pending.len().saturating_add(self.message.len())
    }

    /// How many more bytes the buffered incomplete frame needs: its whole remaining length
    /// once its header is known (already checked against the limits), else the bytes
    /// missing from the header; 0 when no frame is buffered.
    #[must_use]
    pub fn wanted(&self) -> usize {
        if self.pending.is_empty() || self.state != State::Open {
            return 0;
        }
        match self.step(&self.pending) {
            Ok(Step::Need(n)) => n.saturating_sub(self.pending.len()),
            _ => 0,
        }
    }

    /// Whether a Close frame has been decoded.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Decode every complete message in `data` (after whatever was buffered) into `sink`.
    ///
    /// # Errors
    /// The first violation; messages before it have already reached the sink. After an
    /// error, every call with non-empty input fails with the same error; after a Close
    /// frame, with [`FrameError::DataAfterClose`].
    pub fn feed<S: MessageSink>(&mut self, data: &[u8], sink: &mut S) -> Result<(), FrameError> {
        match &self.state {
            State::Open => {}
            _ if data.is_empty() => return Ok(()),
            State::Closed => return Err(FrameError::DataAfterClose),
            State::Failed(e) => return Err(e.clone()),
        }
        let result = self.feed_open(data, sink);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
            self.release();
        }
        result
    }

    /// Drop all buffers (after an error or a Close).
    fn release(&mut self) {
        self.pending = Vec::new();
        self.scratch = Vec::new();
        self.message = Vec::new();
        self.partial = None;
    }

    fn feed_open<S: MessageSink>(
        &mut self,
        mut data: &[u8],
        sink: &mut S,
    ) -> Result<(), FrameError> {
        if !self.pending.is_empty() {
            // Complete the buffered frame with as few bytes of `data` as it needs.
            let (header, total) = loop {
                match self.step(&self.pending)? {
                    Step::Need(n) => {
                        let missing = n.saturating_sub(self.pending.len());
                        // `n` is within the limits once the header is known: grow once.
                        self.pending.reserve(missing);
                        let (head, rest) = data.split_at(missing.min(data.len()));
                        self.pending.extend_from_slice(head);
                        data = rest;
                        if self.pending.len() < n {
                            return Ok(());
                        }
                    }
                    Step::Frame(h, total) => break (h, total),
                }
            };
            let pending = std::mem::take(&mut self.pending);
            let result = match pending.get(header.header_len..total) {
                Some(payload) => self.frame(&header, payload, sink),
                None => Err(FrameError::FrameTooBig {
                    size: header.payload_len,
                    max: self.max_frame_size,
                }),
            };
            self.pending = reuse(pending);
            result?;
        }
        while !data.is_empty() && self.state == State::Open {
            match self.step(data)? {
                Step::Need(n) => {
                    // `pending` is empty here; `n` (the whole frame once its header is
                    // known) has passed the size limits: reserve it once, not by doubling.
                    self.pending.reserve(n);
                    self.pending.extend_from_slice(data);
                    return Ok(());
                }
                Step::Frame(h, total) => {
                    let (frame, rest) = data.split_at(total.min(data.len()));
                    if let Some(payload) = frame.get(h.header_len..) {
                        self.frame(&h, payload, sink)?;
                    }
                    data = rest;
                }
            }
        }
        if self.state == State::Closed {
            self.release();
        }
        Ok(())
    }

    /// Look at the start of `buf`: how many bytes are needed, or the whole frame's header.
    fn step(&self, buf: &[u8]) -> Result<Step, FrameError> {
        let parsed = parse_header(buf, self.inflate.is_some())?;
        if let [b0, b1, ..] = *buf {
            self.check_start(b0, b1)?;
        }
        let h = match parsed {
            Parsed::Need(n) => return Ok(Step::Need(n)),
            Parsed::Header(h) => h,
        };
        // A compressed payload may be a little larger on the wire than the message it
        // carries (incompressible data), so compressed frames get deflate's worst-case
        // expansion on top of each limit; the inflater enforces the real message limit.
        let compressed = if h.opcode.is_control() {
            false
        } else {
            self.partial.map_or(h.rsv1, |p| p.compressed)
        };
        let allowance = |limit: u64| {
            if compressed {
                deflate_bound(limit)
            } else {
                limit
            }
        };
        if h.payload_len > allowance(self.max_frame_size) {
            return Err(FrameError::FrameTooBig {
                size: h.payload_len,
                max: self.max_frame_size,
            });
        }
        if !h.opcode.is_control() {
            let so_far = self.partial.map_or(0, |p| p.wire_len);
            let max = u64::try_from(self.max_message_size).unwrap_or(u64::MAX);
            if so_far.saturating_add(h.payload_len) > allowance(max) {
                return Err(FrameError::MessageTooBig { max });
            }
        }
        let total = usize::try_from(h.payload_len)
            .ok()
            .and_then(|n| n.checked_add(h.header_len))
            .ok_or(FrameError::FrameTooBig {
                size: h.payload_len,
                max: self.max_frame_size,
            })?;
        Ok(if buf.len() < total {
            Step::Need(total)
        } else {
            Step::Frame(h, total)
        })
    }

    /// The checks that depend on the role and on the message in progress.
    fn check_start(&self, b0: u8, b1: u8) -> Result<(), FrameError> {
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(FrameError::UnmaskedFrame),
            (Role::Client, true) => return Err(FrameError::MaskedFrame),
            _ => {}
        }
        match (b0 & 0x0f, self.partial.is_some()) {
            (0x0, false) => Err(FrameError::UnexpectedContinuation),
            (0x1 | 0x2, true) => Err(FrameError::ExpectedContinuation),
            _ => Ok(()),
        }
    }

    /// Decode one complete frame whose (still masked) payload is `payload`.
    fn frame<S: MessageSink>(
        &mut self,
        h: &FrameHeader,
        payload: &[u8],
        sink: &mut S,
    ) -> Result<(), FrameError> {
        match h.opcode {
            OpCode::Ping | OpCode::Pong | OpCode::Close => {
                let mut buf = [0u8; MAX_CONTROL_PAYLOAD];
                let Some(p) = buf.get_mut(..payload.len()) else {
                    return Err(FrameError::ControlFrameTooLong(h.payload_len));
                };
                p.copy_from_slice(payload);
                if let Some(key) = h.mask {
                    apply_mask(p, key, 0);
                }
                match h.opcode {
                    OpCode::Ping => sink.ping(p),
                    OpCode::Pong => sink.pong(p),
                    _ => {
                        let (code, reason) = parse_close(p)?;
                        sink.close(code, reason);
                        self.state = State::Closed;
                    }
                }
                Ok(())
            }
            OpCode::Text | OpCode::Binary if h.fin && !h.rsv1 => {
                let data: &[u8] = match h.mask {
                    None => payload,
                    Some(key) if h.opcode == OpCode::Binary => {
                        sink.binary_masked(payload, key);
                        return Ok(());
                    }
                    Some(key) => {
                        self.scratch.clear();
                        unmask_into(&mut self.scratch, payload, key);
                        &self.scratch
                    }
                };
                if h.opcode == OpCode::Text {
                    let text = Utf8Validator::finish(data)?;
                    sink.text(text);
                } else {
                    sink.binary(data);
                }
                if self.scratch.capacity() > KEEP_CAPACITY {
                    self.scratch = Vec::new();
                }
                Ok(())
            }
            OpCode::Text | OpCode::Binary => {
                self.message.clear();
                self.partial = Some(Partial {
                    text: h.opcode == OpCode::Text,
                    compressed: h.rsv1,
                    wire_len: 0,
                    utf8: Utf8Validator::new(),
                });
                self.fragment(h, payload, sink)
            }
            OpCode::Continuation => self.fragment(h, payload, sink),
        }
    }

    /// Add one frame of a fragmented or compressed message; deliver it on FIN.
    fn fragment<S: MessageSink>(
        &mut self,
        h: &FrameHeader,
        payload: &[u8],
        sink: &mut S,
    ) -> Result<(), FrameError> {
        let Some(mut partial) = self.partial else {
            return Err(FrameError::UnexpectedContinuation);
        };
        partial.wire_len = partial.wire_len.saturating_add(h.payload_len);
        let max = self.max_message_size;
        if partial.compressed {
            let input: &[u8] = match h.mask {
                None => payload,
                Some(key) => {
                    self.scratch.clear();
                    unmask_into(&mut self.scratch, payload, key);
                    &self.scratch
                }
            };
            let Some(inflate) = self.inflate.as_mut() else {
                return Err(FrameError::ReservedBits(4));
            };
            let mapped = |e: InflateError| match e {
                InflateError::TooBig => FrameError::MessageTooBig {
                    max: u64::try_from(max).unwrap_or(u64::MAX),
                },
                InflateError::Corrupt(why) => FrameError::CorruptDeflate(why),
            };
            inflate
                .inflater
                .inflate(input, &mut self.message, max)
                .map_err(mapped)?;
            if h.fin {
                inflate
                    .inflater
                    .finish(&mut self.message, max, inflate.reset)
                    .map_err(mapped)?;
            }
        } else {
            match h.mask {
                None => self.message.extend_from_slice(payload),
                Some(key) => unmask_into(&mut self.message, payload, key),
            }
        }
        if !h.fin {
            if partial.text {
                partial.utf8.check(&self.message)?;
            }
            self.partial = Some(partial);
            return Ok(());
        }
        self.partial = None;
        if partial.text {
            sink.text(Utf8Validator::finish(&self.message)?);
        } else {
            sink.binary(&self.message);
        }
        self.message = reuse(std::mem::take(&mut self.message));
        if self.scratch.capacity() > KEEP_CAPACITY {
            self.scratch = Vec::new();
        }
        Ok(())
    }
}

/// An emptied buffer, or a fresh one if it grew past [`KEEP_CAPACITY`].
fn reuse(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > KEEP_CAPACITY {
        Vec::new()
    } else {
        buf.clear();
        buf
    }
}

/// Split a Close payload into code and reason (RFC 6455 5.5.1, 7.4).
///
/// # Errors
/// A one-byte payload, a code that may not be sent, or a reason that is not UTF-8.
pub fn parse_close(payload: &[u8]) -> Result<(Option<u16>, &str), FrameError> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(FrameError::CloseFrameTooShort),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !is_valid_close_code(code) {
                return Err(FrameError::InvalidCloseCode(code));
            }
            let reason =
                simdutf8::basic::from_utf8(reason).map_err(|_| FrameError::InvalidCloseReason)?;
            Ok((Some(code), reason))
        }
    }
}

/// The most bytes any deflate encoder needs for `n` bytes of input: stored blocks cost
/// 5 bytes per 65,535, fixed-Huffman literals at most 9 bits per byte; `n / 8 + 64`
/// covers both with room to spare.
fn deflate_bound(n: u64) -> u64 {
    n.saturating_add(n / 8).saturating_add(64)
}

#[cfg(test)]
mod wanted_tests {
    use super::*;

    /// A masked binary frame of `len` bytes, every payload byte 0x42 once unmasked.
    fn masked_binary(len: usize) -> Vec<u8> {
        let key = [1, 2, 3, 4];
        let mut frame = vec![0x82, 0xff];
        frame.extend_from_slice(&(len as u64).to_be_bytes());
        frame.extend_from_slice(&key);
        let mut payload = vec![0x42; len];
        apply_mask(&mut payload, key, 0);
        frame.extend_from_slice(&payload);
        frame
    }

    #[test]
    fn wanted_counts_the_rest_of_a_partial_frame() {
        let frame = masked_binary(70_000);
        let mut d = Decoder::new(Role::Server, 1 << 20, 1 << 20, None);
        let mut out: Vec<Message> = Vec::new();
        assert_eq!(d.wanted(), 0);
        d.feed(&frame[..1], &mut out).unwrap();
        assert_eq!(d.wanted(), 1, "the second header byte");
        d.feed(&frame[1..5], &mut out).unwrap();
        assert_eq!(d.wanted(), 14 - 5, "the rest of the 14-byte header");
        d.feed(&frame[5..1000], &mut out).unwrap();
        assert_eq!(d.wanted(), frame.len() - 1000);
        assert!(d.pending.capacity() >= frame.len(), "reserved once");
        d.feed(&frame[1000..], &mut out).unwrap();
        assert_eq!(d.wanted(), 0);
        assert_eq!(out, vec![Message::Binary(vec![0x42; 70_000])]);
        // A frame over the limit is refused from its header, not buffered.
        let mut small = Decoder::new(Role::Server, 1000, 1000, None);
        assert!(small.feed(&frame[..20], &mut out).is_err());
        assert_eq!(small.wanted(), 0);
    }
}
