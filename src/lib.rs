//! vrypt-server: a tiny, fast, correct HTTP/1.1 static responder for Linux.
//!
//! Every request, any method and path, gets one fixed response that is built once
//! at start. One worker thread per core owns a `SO_REUSEPORT` listener and an
//! edge-triggered epoll loop; nothing on the request path locks, allocates per
//! request or formats text. The pieces, each in a module named for it:
//!
//! - `http`: parsing request heads, skipping bodies, response bytes, dates (no I/O);
//! - `server`: listeners, the worker loop, the connection state machine, timers,
//!   buffer pool;
//! - `metrics`: per-worker counters and the StatsD pusher;
//! - `config`: command line and environment; `shutdown`: signals; `log`: log lines;
//! - `healthcheck`: the built-in HTTP probe for images without a shell;
//!   `sysctl`: the network sysctls a Kubernetes init container sets.
//!
//! Everything is internal (`pub(crate)`); the binary calls [`main`], and [`testing`]
//! holds what the integration tests and the fuzz targets need.
//!
//! `unsafe` is confined to a few libc calls (signals, clocks, resource limits,
//! `ioctl(FIONREAD)`), each with a `SAFETY` comment, which clippy enforces.
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(unreachable_pub)]

mod config;
mod healthcheck;
mod http;
mod log;
mod metrics;
mod rng;
mod server;
mod shutdown;
mod sysctl;

use config::{parse_args, usage, Command};
use log::{quote, set_level, Level};
use std::process::ExitCode;

/// The command-line entry point: parse the arguments and environment, then serve,
/// run the health check, or print help or the version. A bad flag is one line on
/// stderr and exit code 2.
pub fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let command = match parse_args(std::env::args_os().skip(1), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vrypt-server: error: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{}", usage());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("vrypt-server {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Healthcheck { url, timeout } => {
            ExitCode::from(healthcheck::run(&url, timeout).clamp(0, 255) as u8)
        }
        Command::Sysctl(settings) => ExitCode::from(sysctl::run(&settings).clamp(0, 255) as u8),
        Command::Serve(cfg) => {
            set_level(cfg.log_level);
            match server::run(*cfg) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    crate::log!(Level::Error, "fatal", "error={}", quote(&e.to_string()));
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// What the integration tests and the fuzz targets need from inside the crate.
/// Not a stable interface.
#[doc(hidden)]
pub mod testing {
    pub use crate::http::{
        parse_head, Body, ChunkedDecoder, HeadParser, ParseError, RequestHead, Status, Version,
    };
    pub use crate::metrics::Snapshot;

    /// xorshift64*: a small, fast, deterministic generator for the seeded tests.
    pub struct Rng(pub u64);

    impl Rng {
        /// The next 64 random bits.
        #[allow(clippy::should_implement_trait)]
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        /// A number below `n` (0 when `n` is 0).
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        /// One of `items`.
        pub fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
            items[self.below(items.len())]
        }
    }

    /// The first `n` uniform draws in `[0, 1)` of worker `worker`'s generator for
    /// `--seed seed`: what `--status-mix`, `--fault` and `--delay` draw from, in
    /// order (one draw for a fault, when faults are on; then one for the status,
    /// when a mix is on; then one for the delay, when a random delay is on).
    pub fn worker_draws(seed: u64, worker: usize, n: usize) -> Vec<f64> {
        let mut r = crate::rng::Rng::for_worker(seed, worker);
        (0..n).map(|_| r.unit()).collect()
    }

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
        let (out, state, held, counters) = crate::server::conn::replay(data, cuts, max_head, None);
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
