//! A streaming decoder for `Transfer-Encoding: chunked` content (RFC 9112 §7.1) that
//! only finds where the content ends: the data itself is discarded, so it needs no
//! buffer and accepts the content split across any number of reads.
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-name = token
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! field-line   = field-name ":" OWS field-value OWS
//! ```
//!
//! Extensions and trailer fields are checked against this grammar and then ignored.
//!
//! Framing lines must end in CRLF: a bare LF inside chunked framing is refused, since
//! disagreement about it between servers is a known request-smuggling vector.

use super::chars::{FIELD_VALUE, QDTEXT, TOKEN};
use std::fmt;

/// Longest chunk extension accepted on one chunk line.
const MAX_EXT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size; `digits` seen so far (saturating).
    Size { digits: u8 },
    /// After the size, in a chunk extension: `len` bytes of it so far.
    Ext { at: Ext, len: u16 },
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
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value (after the colon).
    TrailerValue,
    /// CR seen at the end of a trailer field line.
    TrailerLf,
    /// CR seen on the final empty line.
    EndLf,
    /// The whole chunked content has been consumed.
    Done,
}

/// Where in `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`
/// a chunk-size line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ext {
    /// BWS after the size or a value: only more of it or `";"` may follow.
    Semicolon,
    /// After `";"`: BWS, then a `chunk-ext-name`.
    NameStart,
    /// In a `chunk-ext-name` (a token).
    Name,
    /// BWS after a name: `"="` or `";"` must follow.
    AfterName,
    /// After `"="`: BWS, then a token or a quoted-string.
    ValueStart,
    /// In a token value.
    Token,
    /// In a quoted-string value.
    Quoted,
    /// After the backslash of a `quoted-pair`.
    QuotedPair,
    /// After the closing `DQUOTE`.
    AfterQuote,
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
    /// use vrypt_server::testing::ChunkedDecoder;
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
                        self.state = match b {
                            b'\r' => State::SizeLf,
                            b';' => State::Ext {
                                at: Ext::NameStart,
                                len: 1,
                            },
                            // BWS before ";"
                            b' ' | b'\t' => State::Ext {
                                at: Ext::Semicolon,
                                len: 1,
                            },
                            b'\n' => return Err(ChunkError::LineEnding),
                            _ => return Err(ChunkError::Size),
                        };
                    }
                    i += 1;
                }
                State::Ext { at, len } => {
                    self.state = match ext(at, b)? {
                        None => State::SizeLf,
                        Some(_) if usize::from(len) >= MAX_EXT => {
                            return Err(ChunkError::Extension)
                        }
                        Some(at) => State::Ext { at, len: len + 1 },
                    };
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
                    // A line starting with whitespace (obs-fold) or ":" is refused too.
                    self.state = match b {
                        b'\r' => State::EndLf,
                        _ if TOKEN[b as usize] => State::TrailerName,
                        _ => return Err(ChunkError::Trailer),
                    };
                }
                // field-name = token, then ":"
                State::TrailerName => {
                    i += 1;
                    self.count_trailer()?;
                    if b == b':' {
                        self.state = State::TrailerValue;
                    } else if !TOKEN[b as usize] {
                        return Err(ChunkError::Trailer);
                    }
                }
                // OWS field-value OWS: all of it field-vchar, SP or HTAB.
                State::TrailerValue => {
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
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::EndLf
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

/// One byte of a chunk extension at `at`: the next place in the grammar, or `None` for
/// the CR that ends the chunk-size line (after a name or a value only).
fn ext(at: Ext, b: u8) -> Result<Option<Ext>, ChunkError> {
    let ws = b == b' ' || b == b'\t';
    let next = match at {
        Ext::Semicolon => match b {
            b';' => Ext::NameStart,
            _ if ws => Ext::Semicolon,
            _ => return refuse(b),
        },
        Ext::NameStart => match b {
            _ if ws => Ext::NameStart,
            _ if TOKEN[b as usize] => Ext::Name,
            _ => return refuse(b),
        },
        Ext::Name => match b {
            b'\r' => return Ok(None),
            b';' => Ext::NameStart,
            b'=' => Ext::ValueStart,
            _ if ws => Ext::AfterName,
            _ if TOKEN[b as usize] => Ext::Name,
            _ => return refuse(b),
        },
        Ext::AfterName => match b {
            b';' => Ext::NameStart,
            b'=' => Ext::ValueStart,
            _ if ws => Ext::AfterName,
            _ => return refuse(b),
        },
        Ext::ValueStart => match b {
            b'"' => Ext::Quoted,
            _ if ws => Ext::ValueStart,
            _ if TOKEN[b as usize] => Ext::Token,
            _ => return refuse(b),
        },
        Ext::Token => match b {
            b'\r' => return Ok(None),
            b';' => Ext::NameStart,
            _ if ws => Ext::Semicolon,
            _ if TOKEN[b as usize] => Ext::Token,
            _ => return refuse(b),
        },
        // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
        Ext::Quoted => match b {
            b'"' => Ext::AfterQuote,
            b'\\' => Ext::QuotedPair,
            _ if QDTEXT[b as usize] => Ext::Quoted,
            _ => return refuse(b),
        },
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        Ext::QuotedPair if FIELD_VALUE[b as usize] => Ext::Quoted,
        Ext::QuotedPair => return refuse(b),
        Ext::AfterQuote => match b {
            b'\r' => return Ok(None),
            b';' => Ext::NameStart,
            _ if ws => Ext::Semicolon,
            _ => return refuse(b),
        },
    };
    Ok(Some(next))
}

/// A byte with no place in a chunk extension: a bare LF, or anything else.
fn refuse(b: u8) -> Result<Option<Ext>, ChunkError> {
    Err(if b == b'\n' {
        ChunkError::LineEnding
    } else {
        ChunkError::Extension
    })
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
    fn chunk_extensions() {
        let ok = |line: &[u8]| {
            let mut body = line.to_vec();
            body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            for step in 1..=body.len() {
                assert_eq!(
                    decode(&body, step),
                    Ok(Some(body.len())),
                    "{:?} step {step}",
                    String::from_utf8_lossy(line)
                );
            }
        };
        for line in [
            &b"5"[..],
            b"5;a",
            b"5;a=b",
            b"5 ;a=b",
            b"5\t; a = b ;c",
            b"5;a;b=c;d=\"\"",
            b"5;a=\"q \\\" x\"",
            b"5;a=\"\\\\\";b",
            b"5;a=\"\xff\t;=\" ; b",
            b"5;!#$%&'*+-.^_`|~=!#$%&'*+-.^_`|~",
        ] {
            ok(line);
        }
        for (line, e) in [
            (&b"5 xyz"[..], ChunkError::Extension),
            (b"5\txyz", ChunkError::Extension),
            (b"5 ", ChunkError::Extension),
            (b"5;", ChunkError::Extension),
            (b"5;a ", ChunkError::Extension),
            (b"5;a=", ChunkError::Extension),
            (b"5;a=b ", ChunkError::Extension),
            (b"5;=b", ChunkError::Extension),
            (b"5;a b", ChunkError::Extension),
            (b"5;a=b c", ChunkError::Extension),
            (b"5;a=\"b", ChunkError::Extension),
            (b"5;a=\"b\"c", ChunkError::Extension),
            (b"5;a=\"b\x01\"", ChunkError::Extension),
            (b"5;a=\"\\\x7f\"", ChunkError::Extension),
            (b"5;a=b\"c\"", ChunkError::Extension),
            (b"5;a=(b)", ChunkError::Extension),
            (b"5;a\n", ChunkError::LineEnding),
            (b"5;a=b\n", ChunkError::LineEnding),
            (b"5;a=\"b\"\n", ChunkError::LineEnding),
        ] {
            let mut body = line.to_vec();
            body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
            for step in 1..=body.len() {
                assert_eq!(
                    decode(&body, step),
                    Err(e),
                    "{:?} step {step}",
                    String::from_utf8_lossy(line)
                );
            }
        }
        // The length cap still holds: MAX_EXT bytes after the size.
        let mut long = b"5;a=".to_vec();
        long.resize(1 + MAX_EXT, b'b');
        ok(&long);
        long.push(b'b');
        let mut body = long;
        body.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert_eq!(decode(&body, 7), Err(ChunkError::Extension));
    }

    #[test]
    fn trailer_fields() {
        let run = |trailer: &[u8]| {
            let mut body = b"0\r\n".to_vec();
            body.extend_from_slice(trailer);
            body.extend_from_slice(b"\r\n");
            decode(&body, 3).map(|done| done == Some(body.len()))
        };
        for t in [
            &b"T: v\r\n"[..],
            b"T:v\r\nU:  \t\r\n",
            b"X-Checksum:\t a b \xff \r\n",
            b"!#$%&'*+-.^_`|~09AZaz:x\r\n",
        ] {
            assert_eq!(run(t), Ok(true), "{:?}", String::from_utf8_lossy(t));
        }
        for t in [
            &b"no colon here\r\n"[..],
            b"nocolon\r\n",
            b" T: v\r\n",
            b"\tT: v\r\n",
            b": v\r\n",
            b"T : v\r\n",
            b"T(: v\r\n",
            b"T: a\0b\r\n",
            b"T: v\nU: w\r\n",
            b"\n",
        ] {
            assert_eq!(
                run(t),
                Err(ChunkError::Trailer),
                "{:?}",
                String::from_utf8_lossy(t)
            );
        }
        // The trailer section is bounded.
        let mut d = ChunkedDecoder::new(16);
        assert_eq!(d.feed(b"0\r\nT: 0123456789abc"), Ok(19));
        assert_eq!(d.feed(b"d"), Err(ChunkError::Trailer));
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
