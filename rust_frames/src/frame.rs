//! Frame headers (RFC 6455 5.2): parsing from a buffer and writing.
//!
//! Parsing never consumes anything: [`parse_header`] looks at a buffer and answers either
//! "need at least N bytes" or a complete [`FrameHeader`], and the caller advances.
//! Everything that can be checked from the bytes already present is checked at once, so a
//! bad first byte fails before the rest of the header arrives.

use crate::error::FrameError;

/// Frame opcodes (RFC 6455 5.2); the reserved ones are a [`FrameError::ReservedOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: a continuation of a fragmented message.
    Continuation = 0x0,
    /// 0x1: the first frame of a text message.
    Text = 0x1,
    /// 0x2: the first frame of a binary message.
    Binary = 0x2,
    /// 0x8: connection close.
    Close = 0x8,
    /// 0x9: ping.
    Ping = 0x9,
    /// 0xA: pong.
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for the low nibble `value`.
    ///
    /// # Errors
    /// [`FrameError::ReservedOpcode`] for 0x3-0x7 and 0xB-0xF.
    pub fn from_u8(value: u8) -> Result<Self, FrameError> {
        Ok(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(FrameError::ReservedOpcode(other)),
        })
    }

    /// Whether this is a control opcode (Close, Ping, Pong).
    #[must_use]
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Largest payload of a control frame (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest possible header: 2 + 8 length bytes + 4 mask bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: the last frame of its message.
    pub fin: bool,
    /// RSV1 (the permessage-deflate "compressed" bit on a first frame).
    pub rsv1: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, if the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Bytes of header, including the extended length and the masking key.
    pub header_len: usize,
    /// The announced payload length.
    pub payload_len: u64,
}

/// The result of looking at a buffer that may hold a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// The buffer holds fewer bytes than the header needs; the value is a total byte count
    /// (from the start of the buffer) that is sufficient to make progress.
    Need(usize),
    /// A complete, structurally valid header.
    Header(FrameHeader),
}

/// Parse a frame header from the start of `buf` without consuming anything.
///
/// Checks the role-independent rules of RFC 6455 5.2 and 5.5: reserved opcodes, RSV2 and
/// RSV3, control frames that are fragmented, compressed or longer than 125 bytes, and
/// non-minimal or over-long (MSB set) payload lengths. `rsv1_allowed` is whether
/// permessage-deflate was negotiated. Mask rules, fragmentation order and size limits
/// depend on the decoder's role and state and are the decoder's job.
///
/// # Errors
/// The first violation found.
pub fn parse_header(buf: &[u8], rsv1_allowed: bool) -> Result<Parsed, FrameError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(Parsed::Need(2)),
    };
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let rsv23 = b0 & 0x30;
    if rsv23 != 0 || (rsv1 && !rsv1_allowed) {
        return Err(FrameError::ReservedBits((b0 & 0x70) >> 4));
    }
    let opcode = OpCode::from_u8(b0 & 0x0f)?;
    let masked = b1 & 0x80 != 0;
    let len7 = b1 & 0x7f;
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::FragmentedControlFrame);
        }
        if usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(FrameError::ControlFrameTooLong(u64::from(len7)));
        }
        if rsv1 {
            return Err(FrameError::CompressedControl);
        }
    } else if rsv1 && opcode == OpCode::Continuation {
        return Err(FrameError::CompressedContinuation);
    }
    let ext_len = match len7 {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let header_len = 2 + ext_len + if masked { 4 } else { 0 };
    if buf.len() < header_len {
        return Ok(Parsed::Need(header_len));
    }
    let payload_len = match (len7, buf.get(2..2 + ext_len)) {
        (126, Some(&[a, b])) => {
            let n = u64::from(u16::from_be_bytes([a, b]));
            if n < 126 {
                return Err(FrameError::NonMinimalLength(n));
            }
            n
        }
        (127, Some(&[a, b, c, d, e, f, g, h])) => {
            let n = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
            if n >> 63 != 0 {
                return Err(FrameError::LengthMsbSet);
            }
            if n <= 0xffff {
                return Err(FrameError::NonMinimalLength(n));
            }
            n
        }
        _ => u64::from(len7),
    };
    let mask = match buf.get(2 + ext_len..header_len) {
        Some(&[a, b, c, d]) => Some([a, b, c, d]),
        _ => None,
    };
    Ok(Parsed::Header(FrameHeader {
        fin,
        rsv1,
        opcode,
        mask,
        header_len,
        payload_len,
    }))
}

/// The first header byte: FIN, RSV1-3 and the opcode nibble.
#[must_use]
pub fn first_byte(opcode: u8, fin: bool, rsv1: bool, rsv2: bool, rsv3: bool) -> u8 {
    (u8::from(fin) << 7)
        | (u8::from(rsv1) << 6)
        | (u8::from(rsv2) << 5)
        | (u8::from(rsv3) << 4)
        | (opcode & 0x0f)
}

/// Length of the header for a payload of `payload_len` bytes.
#[must_use]
pub fn header_len(payload_len: usize, masked: bool) -> usize {
    let ext = if payload_len < 126 {
        0
    } else if payload_len <= 0xffff {
        2
    } else {
        8
    };
    2 + ext + if masked { 4 } else { 0 }
}

/// Length of a whole frame with a payload of `payload_len` bytes.
#[must_use]
pub fn frame_len(payload_len: usize, masked: bool) -> usize {
    header_len(payload_len, masked).saturating_add(payload_len)
}

/// Write the header for a payload of `payload_len` bytes into `out`; returns its length.
pub fn write_header(
    out: &mut [u8; MAX_HEADER_LEN],
    b0: u8,
    mask: Option<[u8; 4]>,
    payload_len: usize,
) -> usize {
    out[0] = b0;
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = 2;
    if payload_len < 126 {
        // `payload_len < 126` fits in the low seven bits.
        out[1] = mask_bit | payload_len as u8;
    } else if let Ok(short) = u16::try_from(payload_len) {
        out[1] = mask_bit | 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        pos = 4;
    } else {
        out[1] = mask_bit | 127;
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        pos = 10;
    }
    if let Some(key) = mask {
        out[pos..pos + 4].copy_from_slice(&key);
        pos += 4;
    }
    pos
}

/// Write one frame into `out`, which must be exactly [`frame_len`] bytes long; the payload
/// is masked on the way if `mask` is set. Returns false, writing nothing, if `out` has the
/// wrong length.
pub fn write_frame(out: &mut [u8], b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> bool {
    let mut header = [0u8; MAX_HEADER_LEN];
    let hlen = write_header(&mut header, b0, mask, payload.len());
    if out.len() != hlen.saturating_add(payload.len()) {
        return false;
    }
    let (head, body) = out.split_at_mut(hlen);
    head.copy_from_slice(&header[..hlen]);
    match mask {
        None => body.copy_from_slice(payload),
        Some(key) => crate::mask::mask_copy(body, payload, key),
    }
    true
}

/// One whole frame as a new `Vec`.
#[must_use]
pub fn encode_frame(b0: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; frame_len(payload.len(), mask.is_some())];
    let written = write_frame(&mut out, b0, mask, payload);
    debug_assert!(written);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(buf: &[u8]) -> FrameHeader {
        match parse_header(buf, false) {
            Ok(Parsed::Header(h)) => h,
            other => panic!("expected a header, got {other:?}"),
        }
    }

    #[test]
    fn rfc6455_masked_hello() {
        let frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let h = header(&frame);
        assert!(h.fin);
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!((h.header_len, h.payload_len), (6, 5));
        let b0 = first_byte(1, true, false, false, false);
        assert_eq!(
            encode_frame(b0, Some([0x37, 0xfa, 0x21, 0x3d]), b"Hello"),
            frame
        );
    }

    #[test]
    fn rfc6455_unmasked_hello_and_ping() {
        assert_eq!(
            encode_frame(0x81, None, b"Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        assert_eq!(
            encode_frame(0x89, None, b"Hello"),
            [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        let h = header(&[0x89, 0x05]);
        assert_eq!(h.opcode, OpCode::Ping);
    }

    #[test]
    fn rfc6455_long_lengths() {
        let f = encode_frame(0x82, None, &[0u8; 256]);
        assert_eq!(&f[..4], &[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!(header(&f).payload_len, 256);
        let f = encode_frame(0x82, None, &vec![0u8; 65536]);
        assert_eq!(&f[..10], &[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!(header(&f).payload_len, 65536);
        assert_eq!(f.len(), 65546);
    }

    #[test]
    fn incomplete_headers_ask_for_more() {
        assert_eq!(parse_header(&[], false), Ok(Parsed::Need(2)));
        assert_eq!(parse_header(&[0x81], false), Ok(Parsed::Need(2)));
        assert_eq!(parse_header(&[0x81, 0x85, 1], false), Ok(Parsed::Need(6)));
        assert_eq!(parse_header(&[0x82, 0x7e, 1], false), Ok(Parsed::Need(4)));
        assert_eq!(
            parse_header(&[0x82, 0xff, 0, 0], false),
            Ok(Parsed::Need(14))
        );
    }

    #[test]
    fn structural_errors() {
        let e = |b: &[u8]| parse_header(b, false).unwrap_err();
        assert_eq!(e(&[0x83, 0]), FrameError::ReservedOpcode(3));
        assert_eq!(e(&[0x8b, 0]), FrameError::ReservedOpcode(0xb));
        assert_eq!(e(&[0xa1, 0]), FrameError::ReservedBits(2));
        assert_eq!(e(&[0x91, 0]), FrameError::ReservedBits(1));
        assert_eq!(e(&[0xc1, 0]), FrameError::ReservedBits(4));
        assert_eq!(e(&[0x09, 0]), FrameError::FragmentedControlFrame);
        assert_eq!(e(&[0x89, 126]), FrameError::ControlFrameTooLong(126));
        assert_eq!(e(&[0x82, 126, 0, 125]), FrameError::NonMinimalLength(125));
        assert_eq!(
            e(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            FrameError::NonMinimalLength(65535)
        );
        assert_eq!(
            e(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            FrameError::LengthMsbSet
        );
        let d = |b: &[u8]| parse_header(b, true).unwrap_err();
        assert_eq!(d(&[0xc9, 0]), FrameError::CompressedControl);
        assert_eq!(d(&[0x40, 0]), FrameError::CompressedContinuation);
        assert!(matches!(parse_header(&[0xc1, 0], true), Ok(Parsed::Header(h)) if h.rsv1));
        for e in [FrameError::ReservedOpcode(3), FrameError::LengthMsbSet] {
            assert_eq!(e.close_code(), 1002);
        }
    }

    #[test]
    fn write_frame_rejects_wrong_size() {
        let mut out = [0u8; 3];
        assert!(!write_frame(&mut out, 0x81, None, b"Hello"));
    }
}
