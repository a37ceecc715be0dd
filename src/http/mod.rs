//! HTTP/1.1 without I/O: the request-head parser, the chunked-body decoder, the
//! precomputed responses and the dates they carry. Nothing here touches a socket.

pub mod chars;
pub mod chunked;
pub mod date;
pub mod parse;
pub mod response;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use parse::{parse_head, Body, Error as ParseError, HeadParser, RequestHead, Status, Version};
pub use response::{Persistence, ResponseSpec, Templates};
