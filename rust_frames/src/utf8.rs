//! Incremental UTF-8 validation of a message that arrives in pieces (RFC 6455 8.1).
//!
//! The message bytes accumulate in one buffer; [`Utf8Validator::check`] validates what was
//! added since the last call with `simdutf8`'s `compat` API, which says whether an error is a
//! genuinely invalid sequence (fail now, even mid-message) or only a code point cut off by
//! the end of the buffer (wait for the next fragment).

use crate::error::FrameError;

/// How far into a growing message buffer UTF-8 validity has been established.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// `buf[..valid_up_to]` is valid UTF-8 and ends on a code point boundary.
    valid_up_to: usize,
}

impl Utf8Validator {
    /// A validator for an empty message.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Validate the bytes of `buf` added since the last call. A code point cut off at the end
    /// of `buf` is accepted for now; an impossible sequence is an error at once.
    ///
    /// # Errors
    /// [`FrameError::InvalidUtf8`] at the first invalid byte.
    pub fn check(&mut self, buf: &[u8]) -> Result<(), FrameError> {
        let Some(new) = buf.get(self.valid_up_to..) else {
            return Err(FrameError::InvalidUtf8);
        };
        match simdutf8::compat::from_utf8(new) {
            Ok(_) => self.valid_up_to = buf.len(),
            Err(e) if e.error_len().is_none() => self.valid_up_to += e.valid_up_to(),
            Err(_) => return Err(FrameError::InvalidUtf8),
        }
        Ok(())
    }

    /// The whole message as `&str`. The message is validated in full once more (with the
    /// faster `basic` API) rather than trusting the bookkeeping with `unsafe`: incremental
    /// checks exist to fail fast, this one to hand out a `&str`.
    ///
    /// # Errors
    /// [`FrameError::InvalidUtf8`] if `buf` is not UTF-8 or ends inside a code point.
    pub fn finish(buf: &[u8]) -> Result<&str, FrameError> {
        simdutf8::basic::from_utf8(buf).map_err(|_| FrameError::InvalidUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&[u8]]) -> Result<String, FrameError> {
        let mut buf = Vec::new();
        let mut v = Utf8Validator::new();
        for p in pieces {
            buf.extend_from_slice(p);
            v.check(&buf)?;
        }
        Utf8Validator::finish(&buf).map(str::to_owned)
    }

    #[test]
    fn finish_across_split_code_points() {
        let s = "κόσμε €𝄞 ok".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(run(&[&s[..i], &s[i..j], &s[j..]]).unwrap(), "κόσμε €𝄞 ok");
            }
        }
    }

    #[test]
    fn finish_rejects_truncated_message() {
        assert_eq!(run(&[b"ok\xe2\x82"]), Err(FrameError::InvalidUtf8));
        assert_eq!(run(&[b"\xf0"]), Err(FrameError::InvalidUtf8));
    }

    #[test]
    fn impossible_prefix_fails_immediately() {
        let mut v = Utf8Validator::new();
        // Incomplete but possible: fine.
        assert!(v.check(b"a\xe2\x82").is_ok());
        let mut v = Utf8Validator::new();
        // 0xF5 can never start a code point; ED A0 would be a surrogate; C0 is overlong.
        for bad in [&b"a\xf5"[..], b"\xed\xa0", b"\xc0", b"\xf4\x90"] {
            assert_eq!(v.check(bad), Err(FrameError::InvalidUtf8), "{bad:?}");
            v = Utf8Validator::new();
        }
    }
}
