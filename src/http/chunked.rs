//! A streaming decoder for `Transfer-Encoding: chunked` content (RFC 9112 §7.1) that
//! only finds where the content ends: the data itself is discarded, so it needs no
//! buffer and accepts the content split across any number of reads.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! ```
//!
//! Framing lines must end in CRLF: a bare LF inside chunked framing is refused, since
//! disagreement about it between servers is a known request-smuggling vector.

use super::chars::FIELD_VALUE;
use std::fmt;

/// Longest chunk extension accepted on one chunk line.
const MAX_EXT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` seen so far (saturating).
    Size { digits: u8 },
    /// After the size: skipping a chunk extension of `len` bytes.
    Ext { len: usize },
    /// CR seen at the end of a chunk-size line.
    SizeLf,
    /// Inside chunk data.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine,
    /// CR seen at the end of a trailer field line.
    TrailerLf,
    /// CR seen on the final empty line.
    EndLf,
    /// The whole chunked content has been consumed.
    Done,
}

/// Why chunked framing was refused (answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// A chunk size with no digits, a non-hex digit, or a value over 64 bits.
    Size,
    /// A malformed or over-long chunk extension.
    Extension,
    /// A framing line that does not end in CRLF.
    LineEnding,
    /// A trailer section that is malformed or over the head limit.
    Trailer,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::Size => "invalid chunk size",
            ChunkError::Extension => "invalid chunk extension",
            ChunkError::LineEnding => "chunk line not ended by CRLF",
            ChunkError::Trailer => "invalid trailer section",
        })
    }
}

impl std::error::Error for ChunkError {}

/// Tracks position within chunked content. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of chunk data still to skip (state `Data`), or the size being read.
    remaining: u64,
    /// Bytes of trailer section seen so far.
    trailer_len: usize,
    /// Limit for the trailer section.
    max_trailer: usize,
}

impl ChunkedDecoder {
    /// A decoder at the start of chunked content; the trailer section may be at most
    /// `max_trailer` bytes.
    pub fn new(max_trailer: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size { digits: 0 },
            remaining: 0,
            trailer_len: 0,
            max_trailer,
        }
    }

    /// Whether the final CRLF after the trailer section has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes from `buf` and returns how many belong to the chunked content.
    /// When [`is_done`](Self::is_done) afterwards, the rest of `buf` is the next request.
    ///
    /// ```
    /// use vrypt_server::http::ChunkedDecoder;
    ///
    /// let mut d = ChunkedDecoder::new(8192);
    /// assert_eq!(d.feed(b"5\r\nhel"), Ok(6));
    /// assert!(!d.is_done());
    /// assert_eq!(d.feed(b"lo\r\n0\r\n\r\nGET / HTTP/1.1"), Ok(9));
    /// assert!(d.is_done());
    /// ```
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                State::Size { digits } => {
                    if let Some(d) = hex(b) {
                        // Leading zeros are not significant and do not count toward the limit.
                        let significant = self.remaining != 0 || d != 0;
                        if significant && self.remaining >> 60 != 0 {
                            return Err(ChunkError::Size);
                        }
                        self.remaining = (self.remaining << 4) | u64::from(d);
                        self.state = State::Size {
                            digits: digits.saturating_add(1),
                        };
                    } else if digits == 0 {
                        return Err(ChunkError::Size);
                    } else {
                        match b {
                            b'\r' => self.state = State::SizeLf,
                            b';' | b' ' | b'\t' => self.state = State::Ext { len: 1 },
                            b'\n' => return Err(ChunkError::LineEnding),
                            _ => return Err(ChunkError::Size),
                        }
                    }
                    i += 1;
                }
                State::Ext { len } => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    } else if !FIELD_VALUE[b as usize] || len >= MAX_EXT {
                        return Err(ChunkError::Extension);
                    } else {
                        self.state = State::Ext { len: len + 1 };
                    }
                    i += 1;
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    i += 1;
                    self.state = if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    let take =
                        (buf.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::LineEnding);
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    i += 1;
                    self.state = State::Size { digits: 0 };
                }
                State::TrailerStart => {
                    i += 1;
                    self.count_trailer()?;
                    self.state = match b {
                        b'\r' => State::EndLf,
                        b' ' | b'\t' | b':' => return Err(ChunkError::Trailer),
                        _ if FIELD_VALUE[b as usize] => State::TrailerLine,
                        _ => return Err(ChunkError::Trailer),
                    };
                }
                State::TrailerLine => {
                    i += 1;
                    self.count_trailer()?;
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    } else if !FIELD_VALUE[b as usize] {
                        return Err(ChunkError::Trailer);
                    }
                }
                State::TrailerLf | State::EndLf => {
                    if b != b'\n' {
                        return Err(ChunkError::LineEnding);
                    }
                    i += 1;
                    self.count_trailer()?;
                    if self.state == State::EndLf {
                        self.state = State::Done;
                        return Ok(i);
                    }
                    self.state = State::TrailerStart;
                }
                State::Done => return Ok(i),
            }
        }
        Ok(i)
    }

    /// Whether the last chunk has been read and the trailer section is being read.
    pub fn in_trailer(&self) -> bool {
        matches!(
            self.state,
            State::TrailerStart | State::TrailerLine | State::TrailerLf | State::EndLf
        )
    }

    fn count_trailer(&mut self) -> Result<(), ChunkError> {
        self.trailer_len += 1;
        if self.trailer_len > self.max_trailer {
            return Err(ChunkError::Trailer);
        }
        Ok(())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; returns bytes consumed when done.
    fn decode(body: &[u8], step: usize) -> Result<Option<usize>, ChunkError> {
        let mut d = ChunkedDecoder::new(8192);
        let mut used = 0;
        for piece in body.chunks(step) {
            let n = d.feed(piece)?;
            used += n;
            if d.is_done() {
                return Ok(Some(used));
            }
            assert_eq!(n, piece.len());
        }
        Ok(None)
    }

    #[test]
    fn whole_and_split_agree() {
        let body = b"4;ext=1\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: y\r\n\r\nGET";
        let end = body.len() - 3;
        for step in 1..body.len() {
            assert_eq!(decode(body, step), Ok(Some(end)), "step {step}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(decode(b"x\r\n", 64), Err(ChunkError::Size));
        assert_eq!(decode(b"\r\n", 64), Err(ChunkError::Size));
        assert_eq!(decode(b"1\nA\r\n", 64), Err(ChunkError::LineEnding));
        assert_eq!(decode(b"1\r\nAB\r\n", 64), Err(ChunkError::LineEnding));
        assert_eq!(decode(b"11111111111111111\r\n", 64), Err(ChunkError::Size));
        assert_eq!(decode(b"0\r\n bad\r\n\r\n", 64), Err(ChunkError::Trailer));
        assert_eq!(decode(b"1;a\0\r\n", 64), Err(ChunkError::Extension));
    }

    #[test]
    fn leading_zeros_and_partial() {
        assert_eq!(
            decode(b"00000000000000000001\r\na\r\n0\r\n\r\n", 3),
            Ok(Some(30))
        );
        assert_eq!(decode(b"5\r\nab", 64), Ok(None));
    }
}
