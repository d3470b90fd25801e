//! Accumulates a request body from proxy-wasm body callbacks, so it is judged whole.
//!
//! The `body_size` Envoy passes to `on_http_request_body` is the size of everything buffered so
//! far (while the filter keeps pausing), not the size of the new chunk, and a callback may offer
//! no new bytes at all. [`BodyBuffer`] remembers how much it has copied and says which range of
//! the host's buffer to read next. Past the limit it only ever answers [`Step::OverLimit`]: the
//! caller must reject, never judge the prefix it holds.
//!
//! Filter usage:
//!
//! ```text
//! on_http_request_body(body_size, end_of_stream):
//!     loop:
//!         match buffer.offer(body_size):
//!             Step::Read { offset, len } => match get_http_request_body(offset, len):
//!                 Some(bytes) if !bytes.is_empty() => buffer.push(offset, &bytes)?
//!                 _ => break                      // host returned nothing: wait for more
//!             Step::Wait => break
//!             Step::OverLimit => reply 413 and stop
//!     if end_of_stream (or request trailers arrived): judge buffer.body()
//!     else: Action::Pause
//! ```

/// What to do after the host reports its cumulative body size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read `len` bytes at `offset` from the host's buffered body and [`BodyBuffer::push`] them.
    Read { offset: usize, len: usize },
    /// Nothing new to copy.
    Wait,
    /// The body is (or would be) larger than the limit. Sticky.
    OverLimit,
}

/// Why [`BodyBuffer::push`] refused bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The bytes would take the body past the limit (the buffer is now over limit).
    OverLimit,
    /// `offset` is not where the copied prefix ends (a caller bug; nothing was copied).
    WrongOffset { expected: usize, got: usize },
}

/// The whole body, once complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<'a> {
    Complete(&'a [u8]),
    OverLimit,
}

/// A size-limited accumulator for one request body.
#[derive(Debug, Clone)]
pub struct BodyBuffer {
    bytes: Vec<u8>,
    limit: usize,
    over_limit: bool,
    /// The largest cumulative size the host has reported.
    reported: usize,
}

impl BodyBuffer {
    /// A buffer that refuses bodies longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        BodyBuffer {
            bytes: Vec::new(),
            limit,
            over_limit: false,
            reported: 0,
        }
    }

    /// The size limit in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes copied so far.
    pub fn copied(&self) -> usize {
        self.bytes.len()
    }

    /// True once the body has gone past the limit.
    pub fn is_over_limit(&self) -> bool {
        self.over_limit
    }

    /// The host says it holds `cumulative` bytes of body in total. Returns the range still to be
    /// copied, [`Step::Wait`] when everything offered is already copied (the same bytes offered
    /// again, or a smaller size), or [`Step::OverLimit`].
    pub fn offer(&mut self, cumulative: usize) -> Step {
        self.reported = self.reported.max(cumulative);
        if self.over_limit || self.reported > self.limit {
            self.over_limit = true;
            self.bytes = Vec::new();
            return Step::OverLimit;
        }
        let copied = self.bytes.len();
        if self.reported > copied {
            Step::Read {
                offset: copied,
                len: self.reported - copied,
            }
        } else {
            Step::Wait
        }
    }

    /// Appends bytes read from the host at `offset` (which must equal [`Self::copied`]). The host
    /// may return fewer bytes than asked; the next [`Self::offer`] asks for the rest.
    pub fn push(&mut self, offset: usize, data: &[u8]) -> Result<(), PushError> {
        if self.over_limit {
            return Err(PushError::OverLimit);
        }
        let copied = self.bytes.len();
        if offset != copied {
            return Err(PushError::WrongOffset {
                expected: copied,
                got: offset,
            });
        }
        let total = copied.saturating_add(data.len());
        if total > self.limit {
            self.over_limit = true;
            self.bytes = Vec::new();
            return Err(PushError::OverLimit);
        }
        if self.bytes.capacity() == 0 {
            // First chunk: size the buffer for what the host already reported.
            self.bytes.reserve(self.reported.clamp(total, self.limit));
        }
        self.bytes.extend_from_slice(data);
        self.reported = self.reported.max(total);
        Ok(())
    }

    /// True when everything the host reported has been copied.
    pub fn is_caught_up(&self) -> bool {
        !self.over_limit && self.bytes.len() >= self.reported
    }

    /// The body, once the stream has ended. [`Outcome::OverLimit`] when it went past the limit;
    /// `None` when bytes the host reported have not been copied yet (read them first).
    pub fn finish(&self) -> Option<Outcome<'_>> {
        if self.over_limit {
            return Some(Outcome::OverLimit);
        }
        self.is_caught_up()
            .then_some(Outcome::Complete(&self.bytes))
    }

    /// The bytes copied so far.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the bytes out, leaving the buffer empty (and reusable for the same limit).
    pub fn take(&mut self) -> Vec<u8> {
        self.reported = 0;
        self.over_limit = false;
        core::mem::take(&mut self.bytes)
    }
}

/// Test and fuzz helper: replays `body` into a [`BodyBuffer`] the way Envoy would, in chunks of
/// the given sizes (cycled), offering each cumulative size twice and letting the "host" return at
/// most `max_read` bytes per read. Returns the finished outcome as an owned body.
pub fn replay_chunked(
    body: &[u8],
    chunk_sizes: &[usize],
    max_read: usize,
    limit: usize,
) -> Result<Vec<u8>, Step> {
    let mut buffer = BodyBuffer::new(limit);
    let mut host_len = 0usize;
    let mut sizes = chunk_sizes.iter().copied().filter(|&s| s > 0).cycle();
    while host_len < body.len() {
        let chunk = sizes.next().unwrap_or(body.len());
        host_len = (host_len + chunk).min(body.len());
        for _ in 0..2 {
            loop {
                match buffer.offer(host_len) {
                    Step::Read { offset, len } => {
                        let end = offset.saturating_add(len.min(max_read.max(1)));
                        let data = body.get(offset..end).unwrap_or_default();
                        if buffer.push(offset, data).is_err() {
                            return Err(Step::OverLimit);
                        }
                    }
                    Step::Wait => break,
                    Step::OverLimit => return Err(Step::OverLimit),
                }
            }
        }
    }
    match buffer.finish() {
        Some(Outcome::Complete(bytes)) => Ok(bytes.to_vec()),
        Some(Outcome::OverLimit) => Err(Step::OverLimit),
        None => Err(Step::Wait),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_sizes_and_repeats() {
        let body = b"0123456789";
        let mut b = BodyBuffer::new(100);
        assert_eq!(b.offer(0), Step::Wait);
        assert_eq!(b.offer(4), Step::Read { offset: 0, len: 4 });
        b.push(0, &body[..4]).unwrap();
        assert_eq!(b.offer(4), Step::Wait, "same bytes offered again");
        assert_eq!(b.offer(3), Step::Wait, "smaller size is not a rewind");
        assert_eq!(b.offer(10), Step::Read { offset: 4, len: 6 });
        // The host returned less than asked.
        b.push(4, &body[4..7]).unwrap();
        assert_eq!(b.finish(), None);
        assert_eq!(b.offer(10), Step::Read { offset: 7, len: 3 });
        assert_eq!(
            b.push(4, &body[4..7]),
            Err(PushError::WrongOffset {
                expected: 7,
                got: 4
            })
        );
        b.push(7, &body[7..]).unwrap();
        assert_eq!(b.finish(), Some(Outcome::Complete(&body[..])));
    }

    #[test]
    fn over_limit_is_sticky_and_never_yields_a_prefix() {
        let mut b = BodyBuffer::new(5);
        assert_eq!(b.offer(5), Step::Read { offset: 0, len: 5 });
        b.push(0, b"01234").unwrap();
        assert_eq!(b.finish(), Some(Outcome::Complete(b"01234")));
        assert_eq!(b.offer(6), Step::OverLimit);
        assert_eq!(b.offer(5), Step::OverLimit);
        assert_eq!(b.finish(), Some(Outcome::OverLimit));
        assert_eq!(b.push(5, b"5"), Err(PushError::OverLimit));

        let mut b = BodyBuffer::new(5);
        assert_eq!(b.offer(3), Step::Read { offset: 0, len: 3 });
        assert_eq!(b.push(0, b"012345"), Err(PushError::OverLimit));
        assert_eq!(b.finish(), Some(Outcome::OverLimit));
        assert!(b.bytes().is_empty());
    }

    #[test]
    fn empty_body_and_take() {
        let mut b = BodyBuffer::new(5);
        assert_eq!(b.finish(), Some(Outcome::Complete(b"")));
        b.offer(2);
        b.push(0, b"ab").unwrap();
        assert_eq!(b.take(), b"ab");
        assert_eq!(b.finish(), Some(Outcome::Complete(b"")));
    }

    #[test]
    fn replay_reassembles_every_chunking() {
        let body: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for chunk in 1..=7 {
            for max_read in [1, 3, usize::MAX] {
                assert_eq!(
                    replay_chunked(&body, &[chunk], max_read, 1000).unwrap(),
                    body
                );
            }
        }
        assert_eq!(replay_chunked(&body, &[7], 5, 999), Err(Step::OverLimit));
        assert_eq!(replay_chunked(b"", &[1], 1, 0).unwrap(), b"");
    }
}
