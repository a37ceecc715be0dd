//! HTTP/1.1 without I/O: the request-head parser, the chunked-body decoder, the
//! precomputed responses and the dates they carry. Nothing here touches a socket.

pub(crate) mod chars;
pub(crate) mod chunked;
pub(crate) mod date;
pub(crate) mod parse;
pub(crate) mod response;

pub use chunked::ChunkedDecoder;
pub(crate) use parse::request_path;
pub use parse::{parse_head, Body, Error as ParseError, HeadParser, RequestHead, Status, Version};
pub(crate) use response::{Family, RespId, ResponseSpec, Templates};
