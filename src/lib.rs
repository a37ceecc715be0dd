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
