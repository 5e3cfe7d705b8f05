//! Shared by the decoder targets: the input's first byte picks the role and how the rest is
//! cut into reads (the decoder must give the same answer however the bytes arrive).

use rust_frames::extension::DeflateParams;
use rust_frames::{Decoder, Message, Role};

const MAX_FRAME: usize = 1 << 16;
const MAX_MESSAGE: usize = 1 << 17;

/// Feed `data` (after its first byte) to a decoder in chunks; check what holds for any input:
/// no panic, the buffered bytes stay bounded, and every delivered message is within the
/// message limit.
pub fn run(data: &[u8], deflate: Option<&DeflateParams>) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let role = if control & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let chunk = 1 + usize::from(control >> 1) * 7;
    let mut decoder = Decoder::new(role, MAX_FRAME, MAX_MESSAGE, deflate);
    let mut sink: Vec<Message> = Vec::new();
    for piece in rest.chunks(chunk) {
        if decoder.feed(piece, &mut sink).is_err() {
            break;
        }
        assert!(decoder.buffered() <= MAX_FRAME + MAX_MESSAGE + 14 + chunk);
        if decoder.is_closed() {
            break;
        }
    }
}
