//! The frame encoder for both roles (RFC 6455 5.2, 5.3; RFC 7692 6.1).
//!
//! A message is always one frame. Encoding is split in two so that the Python layer can
//! write straight into a new `bytes` object: [`Encoder::message`] and [`Encoder::control`]
//! decide header, mask and (compressed) payload and return a [`Prepared`] frame;
//! [`Prepared::write`] fills a buffer of exactly [`Prepared::len`] bytes.

use thiserror::Error;

use crate::decoder::Role;
use crate::deflate::Deflater;
use crate::error::is_valid_close_code;
use crate::extension::DeflateParams;
use crate::frame::{
    MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, OpCode, first_byte, frame_len, write_frame, write_header,
};

/// The API was misused (these are local errors, never the peer's fault).
#[derive(Debug, Error)]
pub enum EncodeError {
    /// A control frame payload over 125 bytes.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlPayloadTooLong(usize),
    /// A close code that may not be sent (RFC 6455 7.4).
    #[error("close code {0} may not be sent")]
    InvalidCloseCode(u16),
    /// A close reason without a close code.
    #[error("a close reason needs a close code")]
    ReasonWithoutCode,
    /// The operating system's random number generator failed.
    #[error("no random mask key: {0}")]
    Random(getrandom::Error),
}

/// A pool of random masking keys, refilled from the OS 64 keys at a time: RFC 6455 5.3
/// wants unpredictable keys, and one system call per frame would cost more than the frame.
struct MaskKeys {
    pool: [u8; 256],
    used: usize,
}

impl MaskKeys {
    fn new() -> Self {
        Self {
            pool: [0; 256],
            used: 256,
        }
    }

    fn next(&mut self) -> Result<[u8; 4], EncodeError> {
        if self.used + 4 > self.pool.len() {
            getrandom::fill(&mut self.pool).map_err(EncodeError::Random)?;
            self.used = 0;
        }
        let mut key = [0u8; 4];
        if let Some(bytes) = self.pool.get(self.used..self.used + 4) {
            key.copy_from_slice(bytes);
        }
        self.used += 4;
        Ok(key)
    }
}

/// A frame ready to be written: first header byte, masking key and payload.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'a> {
    b0: u8,
    mask: Option<[u8; 4]>,
    payload: &'a [u8],
}

impl<'a> Prepared<'a> {
    /// A frame from its parts.
    #[must_use]
    pub fn new(b0: u8, mask: Option<[u8; 4]>, payload: &'a [u8]) -> Self {
        Self { b0, mask, payload }
    }

    /// The frame's length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        frame_len(self.payload.len(), self.mask.is_some())
    }

    /// Never true: a frame has at least a two-byte header.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The header bytes (in a fixed array) and how many of them are used.
    #[must_use]
    pub fn header(&self) -> ([u8; MAX_HEADER_LEN], usize) {
        let mut header = [0u8; MAX_HEADER_LEN];
        let len = write_header(&mut header, self.b0, self.mask, self.payload.len());
        (header, len)
    }

    /// The payload, not yet masked.
    #[must_use]
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The masking key, if the frame is masked.
    #[must_use]
    pub fn mask(&self) -> Option<[u8; 4]> {
        self.mask
    }

    /// Write the frame into `out` of exactly [`Prepared::len`] bytes; false if the length
    /// is wrong.
    pub fn write(&self, out: &mut [u8]) -> bool {
        write_frame(out, self.b0, self.mask, self.payload)
    }

    /// The frame as a new `Vec`.
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        self.write(&mut out);
        out
    }
}

/// The sending half of permessage-deflate.
struct Compressor {
    deflater: Deflater,
    /// No context takeover: reset the window after each message.
    reset: bool,
}

/// The frame encoder.
pub struct Encoder {
    role: Role,
    compressor: Option<Compressor>,
    threshold: usize,
    /// Made on the first masked frame: servers never mask, and 256 bytes per idle server
    /// connection add up.
    keys: Option<Box<MaskKeys>>,
    compressed: Vec<u8>,
}

impl Encoder {
    /// An encoder for `role`. With `deflate`, data messages of at least `threshold` bytes
    /// are compressed at `level`: the server deflates with the server_* parameters, the
    /// client with the client_* ones.
    #[must_use]
    pub fn new(role: Role, deflate: Option<&DeflateParams>, level: u32, threshold: usize) -> Self {
        let compressor = deflate.map(|p| {
            let (bits, reset) = match role {
                Role::Server => (p.server_max_window_bits, p.server_no_context_takeover),
                Role::Client => (p.client_max_window_bits, p.client_no_context_takeover),
            };
            Compressor {
                deflater: Deflater::new(level, bits),
                reset,
            }
        });
        Self {
            role,
            compressor,
            threshold,
            keys: None,
            compressed: Vec::new(),
        }
    }

    fn mask(&mut self) -> Result<Option<[u8; 4]>, EncodeError> {
        match self.role {
            Role::Server => Ok(None),
            Role::Client => self
                .keys
                .get_or_insert_with(|| Box::new(MaskKeys::new()))
                .next()
                .map(Some),
        }
    }

    /// One whole text (`text`) or binary message, compressed if deflate was negotiated,
    /// `compress` is set and the payload reaches the threshold.
    ///
    /// # Errors
    /// Only [`EncodeError::Random`] in the client role.
    pub fn message<'a>(
        &'a mut self,
        text: bool,
        payload: &'a [u8],
        compress: bool,
    ) -> Result<Prepared<'a>, EncodeError> {
        let mask = self.mask()?;
        let opcode = if text { OpCode::Text } else { OpCode::Binary } as u8;
        if let Some(c) = self
            .compressor
            .as_mut()
            .filter(|_| compress && payload.len() >= self.threshold)
        {
            self.compressed.clear();
            if self.compressed.capacity() > 4 * payload.len() + 1024 {
                self.compressed = Vec::new();
            }
            c.deflater.compress(payload, &mut self.compressed, c.reset);
            // Without context takeover the peer's window restarts too, so a message that
            // did not shrink may go out uncompressed; with takeover both sides must see it.
            if !c.reset || self.compressed.len() < payload.len() {
                let b0 = first_byte(opcode, true, true, false, false);
                return Ok(Prepared::new(b0, mask, &self.compressed));
            }
        }
        Ok(Prepared::new(
            first_byte(opcode, true, false, false, false),
            mask,
            payload,
        ))
    }

    /// One control frame (Ping, Pong or Close with a ready payload).
    ///
    /// # Errors
    /// A payload over 125 bytes, or [`EncodeError::Random`].
    pub fn control<'a>(
        &mut self,
        opcode: OpCode,
        payload: &'a [u8],
    ) -> Result<Prepared<'a>, EncodeError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(EncodeError::ControlPayloadTooLong(payload.len()));
        }
        let mask = self.mask()?;
        Ok(Prepared::new(
            first_byte(opcode as u8, true, false, false, false),
            mask,
            payload,
        ))
    }
}

/// The payload of a Close frame: nothing for `None`, else code and reason.
///
/// # Errors
/// A code that may not be sent, a reason without a code, or a payload over 125 bytes.
pub fn close_payload(code: Option<u16>, reason: &str) -> Result<Vec<u8>, EncodeError> {
    let Some(code) = code else {
        return if reason.is_empty() {
            Ok(Vec::new())
        } else {
            Err(EncodeError::ReasonWithoutCode)
        };
    };
    if !is_valid_close_code(code) {
        return Err(EncodeError::InvalidCloseCode(code));
    }
    if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
        return Err(EncodeError::ControlPayloadTooLong(reason.len() + 2));
    }
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    Ok(payload)
}
