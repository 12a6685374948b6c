//! The IPC framing (protocol section 1.2): each envelope is its bytes and one line feed.
//! Lines are read with a hard cap, so a peer that never sends a line feed cannot make us
//! buffer more than the cap.

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// One read from the stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A complete line, without its line feed.
    Line(Vec<u8>),
    /// The line grew past the cap; the rest of it was not read.
    TooLong,
    /// The peer closed the stream (a partial last line is dropped).
    Eof,
}

/// Reads one line of at most `max` bytes (not counting the line feed).
pub(crate) async fn read_frame<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<Frame> {
    let mut line = Vec::new();
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            return Ok(Frame::Eof);
        }
        let (chunk, found) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (available.get(..i).unwrap_or_default(), true),
            None => (available, false),
        };
        if line.len().saturating_add(chunk.len()) > max {
            return Ok(Frame::TooLong);
        }
        line.extend_from_slice(chunk);
        let used = chunk.len().saturating_add(usize::from(found));
        r.consume(used);
        if found {
            return Ok(Frame::Line(line));
        }
    }
}

/// The frame followed by its line feed.
pub(crate) fn with_newline(mut frame: Vec<u8>) -> Vec<u8> {
    frame.push(b'\n');
    frame
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    async fn frames(input: &[u8], max: usize, buf: usize) -> Vec<Frame> {
        let mut r = BufReader::with_capacity(buf, input);
        let mut out = Vec::new();
        loop {
            let f = read_frame(&mut r, max).await.unwrap();
            let stop = f != Frame::Eof && matches!(f, Frame::TooLong);
            let eof = f == Frame::Eof;
            out.push(f);
            if stop || eof {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn lines_split_on_line_feeds_across_buffer_boundaries() {
        for buf in [1, 2, 3, 64] {
            let got = frames(b"abc\n\nde\nf", 8, buf).await;
            assert_eq!(
                got,
                vec![
                    Frame::Line(b"abc".to_vec()),
                    Frame::Line(Vec::new()),
                    Frame::Line(b"de".to_vec()),
                    Frame::Eof
                ],
                "buffer {buf}"
            );
        }
    }

    #[tokio::test]
    async fn a_line_at_the_cap_passes_and_one_byte_more_does_not() {
        assert_eq!(
            frames(b"12345678\n", 8, 4).await,
            vec![Frame::Line(b"12345678".to_vec()), Frame::Eof]
        );
        assert_eq!(frames(b"123456789\n", 8, 4).await, vec![Frame::TooLong]);
        assert_eq!(frames(b"123456789", 8, 64).await, vec![Frame::TooLong]);
    }
}
