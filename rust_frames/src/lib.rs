//! `rust_frames`: the sans-IO WebSocket frame codec of pyserver (RFC 6455, RFC 7692).
//!
//! Bytes in, messages out; bytes to send out of the encoder. No sockets, no clock.
//!
//! * [`decoder::Decoder`] turns received bytes into messages (`feed` returns every complete
//!   message of a chunk at once), enforcing every rule of RFC 6455 section 5 and the size
//!   limits while parsing; each violation is a [`error::FrameError`] carrying its close code.
//! * [`encoder::Encoder`] writes frames for either role (server frames unmasked, client
//!   frames masked with a random key), optionally compressed (permessage-deflate).
//! * [`mask`], [`frame`] and [`utf8`] are the building blocks; [`deflate`] and
//!   [`extension`] implement RFC 7692's compression and its negotiation.
//! * `py` (feature `python`, on by default) is the PyO3 module `pyserver._frames`.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod decoder;
pub mod deflate;
pub mod encoder;
pub mod error;
pub mod extension;
pub mod fanout;
pub mod frame;
pub mod mask;
pub mod utf8;

#[cfg(feature = "python")]
mod py;

#[cfg(test)]
mod tests;

pub use decoder::{Decoder, Message, MessageSink, Role};
pub use encoder::{EncodeError, Encoder};
pub use error::FrameError;
