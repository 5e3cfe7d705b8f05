//! Decoder errors: one variant per RFC 6455 / RFC 7692 violation, each with its close code.
//!
//! The peer misbehaved; the connection answers with a Close frame carrying
//! [`FrameError::close_code`] and then closes (RFC 6455 section 7.1.7).

use thiserror::Error;

/// Close code 1002: the peer broke the framing protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// Close code 1007: a text payload or close reason is not UTF-8, or a deflate stream is corrupt.
pub const INVALID_PAYLOAD: u16 = 1007;
/// Close code 1009: a frame or message exceeds the configured limits.
pub const MESSAGE_TOO_BIG: u16 = 1009;

/// A violation of RFC 6455 or RFC 7692 found while decoding. Every variant maps to the close
/// code the connection should answer with ([`FrameError::close_code`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// RSV2 or RSV3 set, or RSV1 set without a negotiated extension (RFC 6455 5.2).
    #[error("reserved bits set in frame header (0x{0:x})")]
    ReservedBits(u8),
    /// RSV1 set on a continuation frame (RFC 7692 6.1: only the first frame of a message).
    #[error("RSV1 set on a continuation frame")]
    CompressedContinuation,
    /// RSV1 set on a control frame (RFC 7692 6.1: control frames are never compressed).
    #[error("RSV1 set on a control frame")]
    CompressedControl,
    /// An opcode reserved for future use (3-7, 0xB-0xF; RFC 6455 5.2).
    #[error("reserved opcode 0x{0:x}")]
    ReservedOpcode(u8),
    /// A frame from the client was not masked (RFC 6455 5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A frame from the server was masked (RFC 6455 5.1).
    #[error("server frame is masked")]
    MaskedFrame,
    /// A control frame with a payload over 125 bytes (RFC 6455 5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLong(u64),
    /// A control frame without FIN (RFC 6455 5.5).
    #[error("fragmented control frame")]
    FragmentedControlFrame,
    /// A payload length not encoded in the minimal number of bytes (RFC 6455 5.2).
    #[error("payload length {0} not minimally encoded")]
    NonMinimalLength(u64),
    /// A 64-bit payload length with the most significant bit set (RFC 6455 5.2).
    #[error("64-bit payload length has its most significant bit set")]
    LengthMsbSet,
    /// A continuation frame with no message in progress (RFC 6455 5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame while a fragmented message is in progress (RFC 6455 5.4).
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// A close frame whose payload is exactly one byte (RFC 6455 5.5.1).
    #[error("close frame payload of 1 byte")]
    CloseFrameTooShort,
    /// A close code that must not appear on the wire (RFC 6455 7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close reason that is not UTF-8 (RFC 6455 5.5.1).
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A text message that is not UTF-8 (RFC 6455 8.1).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A frame payload larger than the decoder's `max_frame_size`.
    #[error("frame payload of {size} bytes exceeds the limit of {max}")]
    FrameTooBig {
        /// The announced payload length.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A message (after decompression) larger than the decoder's `max_message_size`.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooBig {
        /// The configured limit.
        max: u64,
    },
    /// A permessage-deflate payload that does not inflate (RFC 7692 6.2).
    #[error("corrupt deflate stream: {0}")]
    CorruptDeflate(String),
    /// Input after a Close frame (RFC 6455 5.5.1: nothing may follow a Close).
    #[error("data after the close frame")]
    DataAfterClose,
}

impl FrameError {
    /// The close code to answer with: 1002, 1007 or 1009.
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidCloseReason | Self::InvalidUtf8 | Self::CorruptDeflate(_) => {
                INVALID_PAYLOAD
            }
            Self::FrameTooBig { .. } | Self::MessageTooBig { .. } => MESSAGE_TOO_BIG,
            Self::ReservedBits(_)
            | Self::CompressedContinuation
            | Self::CompressedControl
            | Self::ReservedOpcode(_)
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::ControlFrameTooLong(_)
            | Self::FragmentedControlFrame
            | Self::NonMinimalLength(_)
            | Self::LengthMsbSet
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::CloseFrameTooShort
            | Self::InvalidCloseCode(_)
            | Self::DataAfterClose => PROTOCOL_ERROR,
        }
    }
}

/// Whether `code` may appear in a Close frame on the wire (RFC 6455 7.4.1, 7.4.2 and the
/// IANA registry): 1000-1003, 1007-1014 and 3000-4999.
#[must_use]
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}
