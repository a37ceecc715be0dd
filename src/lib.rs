//! vrypt-server: a tiny, fast, correct HTTP/1.1 static responder for Linux.
//!
//! Every request, any method and path, gets one fixed response that is built once
//! at start. One worker thread per core owns a `SO_REUSEPORT` listener and an
//! edge-triggered epoll loop; nothing on the request path locks, allocates per
//! request or formats text. The pieces, each in a module named for it:
//!
//! - [`http`]: parsing request heads, skipping bodies, response bytes, dates (no I/O);
//! - [`server`]: listeners, the worker loop, connection state, timers, buffer pool;
//! - [`metrics`]: per-worker counters and the StatsD pusher;
//! - [`config`]: command line and environment; [`shutdown`]: signals; [`mod@log`]: log lines;
//! - [`healthcheck`]: the built-in HTTP probe for images without a shell.
//!
//! `unsafe` is confined to a few libc calls (signals, clocks, resource limits), each
//! with a `SAFETY` comment.

pub mod config;
pub mod healthcheck;
pub mod http;
pub mod log;
pub mod metrics;
pub mod server;
pub mod shutdown;

/// What the integration tests and the fuzz targets need from inside the crate.
/// Not a stable interface.
#[doc(hidden)]
pub mod testing {
    pub use crate::metrics::Snapshot;

    /// The outcome of feeding a byte stream to one connection's state machine.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Replay {
        /// Every byte the connection wrote, in order.
        pub out: Vec<u8>,
        /// The final state, as text.
        pub state: String,
        /// Bytes of input still held (an incomplete head).
        pub held: usize,
        pub counters: Snapshot,
    }

    /// Feeds `data` to a fresh connection in reads that end at `cuts` (sorted),
    /// writing all output after each read.
    pub fn replay(data: &[u8], cuts: &[usize], max_head: usize) -> Replay {
        let (out, state, held, counters) = crate::server::conn::replay(data, cuts, max_head);
        Replay {
            out,
            state: format!("{state:?}"),
            held,
            counters,
        }
    }

    /// Runs the connection model on the scenario `bytes` describes: one connection
    /// driven through the real drive loop on a simulated socket, checked after every
    /// step. Panics on a violation.
    pub fn model(bytes: &[u8]) {
        crate::server::model::run_scenario(bytes);
    }
}
