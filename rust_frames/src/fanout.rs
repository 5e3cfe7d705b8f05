//! The fan-out: already encoded frames written to many sockets, one non-blocking
//! `write(2)` each, in one call from Python (the per-recipient cost of a room broadcast, or
//! of the writes a reactor step leaves queued, is then the kernel's, not the interpreter's).
//!
//! Sans-IO everywhere else in this crate; this is the one function that does I/O, on
//! descriptors the caller owns and keeps open for the duration of the call (the Python
//! shell: single-threaded, holding the GIL).

use std::fs::File;
use std::io::{ErrorKind, Write};
use std::mem::ManuallyDrop;
#[cfg(unix)]
use std::os::fd::{FromRawFd, RawFd};

/// Write `data` to each descriptor of `fds` with one `write(2)` (retried only on `EINTR`).
/// Returns `(index, written)` for every descriptor that did not take all of `data`:
/// `written` bytes went out (0 for none: no room, or any error, which the caller's own
/// writer meets again on its next write). An empty result: every write was complete.
#[cfg(unix)]
#[must_use]
pub fn write_all_once(fds: &[RawFd], data: &[u8]) -> Vec<(usize, usize)> {
    let mut short = Vec::new();
    for (index, &fd) in fds.iter().enumerate() {
        let written = if fd < 0 { 0 } else { write_once(fd, data) };
        if written != data.len() {
            short.push((index, written));
        }
    }
    short
}

/// Write `datas[i]` to `fds[i]` with one `write(2)` each (retried only on `EINTR`), for
/// the pairs of the two slices (the shorter one sets the count). Returns `(index,
/// written)` for every descriptor that did not take all of its data, as `write_all_once`.
#[cfg(unix)]
#[must_use]
pub fn write_each<D: AsRef<[u8]>>(fds: &[RawFd], datas: &[D]) -> Vec<(usize, usize)> {
    let mut short = Vec::new();
    for (index, (&fd, data)) in fds.iter().zip(datas).enumerate() {
        let data = data.as_ref();
        let written = if fd < 0 { 0 } else { write_once(fd, data) };
        if written != data.len() {
            short.push((index, written));
        }
    }
    short
}

#[cfg(unix)]
fn write_once(fd: RawFd, data: &[u8]) -> usize {
    // SAFETY (I/O safety): the caller owns `fd` and keeps it open during the call; the
    // `File` is never dropped, so the descriptor is never closed here. A wrong descriptor
    // is a logic error with no memory unsafety (write(2) only reads `data`).
    #[allow(unsafe_code)]
    let mut file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    loop {
        match file.write(data) {
            Ok(n) => return n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return 0,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn complete_writes_report_nothing() {
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        assert!(write_all_once(&[a.as_raw_fd(), b.as_raw_fd()], b"frame").is_empty());
        let mut got = [0u8; 5];
        a_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"frame");
        b_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"frame");
    }

    #[test]
    fn full_closed_and_invalid_descriptors_are_reported_with_what_went_out() {
        let (full, _full_peer) = UnixStream::pair().unwrap();
        full.set_nonblocking(true).unwrap();
        let chunk = vec![7u8; 1 << 16];
        while write_once(full.as_raw_fd(), &chunk) > 0 {} // fill the buffer
        let (ok, _ok_peer) = UnixStream::pair().unwrap();
        let (gone, gone_peer) = UnixStream::pair().unwrap();
        drop(gone_peer); // EPIPE (SIGPIPE is ignored by Python, and by the test harness)
        let short = write_all_once(
            &[full.as_raw_fd(), ok.as_raw_fd(), gone.as_raw_fd(), -1],
            b"x",
        );
        assert_eq!(short, vec![(0, 0), (2, 0), (3, 0)]);
    }

    #[test]
    fn each_descriptor_gets_its_own_data() {
        let (a, mut a_peer) = UnixStream::pair().unwrap();
        let (b, mut b_peer) = UnixStream::pair().unwrap();
        let (gone, gone_peer) = UnixStream::pair().unwrap();
        drop(gone_peer);
        let datas: [&[u8]; 3] = [b"first", b"second!", b"lost"];
        let short = write_each(&[a.as_raw_fd(), b.as_raw_fd(), gone.as_raw_fd()], &datas);
        assert_eq!(short, vec![(2, 0)]);
        let mut got = [0u8; 5];
        a_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"first");
        let mut got = [0u8; 7];
        b_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"second!");
        // a partial write is reported with its length, an empty data is complete
        let (full, _full_peer) = UnixStream::pair().unwrap();
        full.set_nonblocking(true).unwrap();
        let big = vec![1u8; 1 << 22];
        let short = write_each(&[full.as_raw_fd(), a.as_raw_fd()], &[&big[..], b""]);
        assert_eq!(short.len(), 1);
        assert!(short[0].0 == 0 && short[0].1 > 0 && short[0].1 < big.len());
    }

    #[test]
    fn a_partial_write_reports_its_length() {
        let (sock, _peer) = UnixStream::pair().unwrap();
        sock.set_nonblocking(true).unwrap();
        let big = vec![1u8; 1 << 22]; // more than the socket buffer takes at once
        let short = write_all_once(&[sock.as_raw_fd()], &big);
        assert_eq!(short.len(), 1);
        assert!(short[0].1 > 0 && short[0].1 < big.len());
    }
}
