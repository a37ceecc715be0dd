//! Configuration: what the command line and the environment ask for, validated.
//!
//! Every flag `--some-flag` can also be set by the environment variable
//! `VRYPT_SOME_FLAG`; a flag on the command line wins over the environment. The
//! port can also come from `PORT` (as platforms such as Heroku or Cloud Run set it).
//! Anything invalid is reported as one line and exit code 2 by `main`.

mod cli;
pub(crate) mod template;
pub(crate) mod values;

pub(crate) use cli::{parse_args, usage, Command};

use crate::http::ResponseSpec;
use crate::log::Level;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Default port when none is given.
pub(crate) const DEFAULT_PORT: u16 = 8080;

/// Where to listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listen {
    /// `[::]:PORT` dual-stack, or `0.0.0.0:PORT` when the host has no IPv6.
    AnyAddress(u16),
    /// Exactly this address.
    Exact(SocketAddr),
}

/// The address a local client uses to reach a server bound to `addr`: a wildcard
/// address means loopback (`127.0.0.1`, which a dual-stack `[::]` also accepts).
pub(crate) fn local_target(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

impl Listen {
    /// The port this spec listens on (0 asks the kernel for a free one).
    pub(crate) fn port(&self) -> u16 {
        match self {
            Listen::AnyAddress(p) => *p,
            Listen::Exact(a) => a.port(),
        }
    }

    /// The addresses to try, in order.
    pub(crate) fn candidates(&self) -> Vec<SocketAddr> {
        match *self {
            Listen::AnyAddress(p) => vec![
                SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), p),
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p),
            ],
            Listen::Exact(a) => vec![a],
        }
    }
}

/// Where and how to push StatsD metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StatsdSettings {
    /// `host:port`; the host may be a name, resolved at start and again later.
    pub(crate) target: String,
    pub(crate) interval: Duration,
    pub(crate) prefix: String,
    pub(crate) tags: Vec<(String, String)>,
}

/// Everything the server needs to run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) listen: Listen,
    pub(crate) workers: usize,
    pub(crate) backlog: i32,
    /// Open connections per process; 0 means no limit beyond file descriptors.
    pub(crate) max_connections: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    /// Time to receive a request's whole content, from the end of its head.
    pub(crate) body_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// After SIGTERM, time to keep serving while readiness answers 503.
    pub(crate) shutdown_delay: Duration,
    /// The admin listener (`/healthz`, `/readyz`, `/metrics`), when enabled.
    pub(crate) admin_listen: Option<SocketAddr>,
    /// A path on the serving port that answers `200 ok` (503 while shutting down).
    pub(crate) health_path: Option<String>,
    pub(crate) response: ResponseSpec,
    /// `--status-mix`: statuses and their weights (empty: only `--status`).
    pub(crate) status_mix: Vec<(u16, f64)>,
    /// `--fault`: per-request probabilities of injected faults.
    pub(crate) faults: values::FaultRates,
    /// `--delay`: how long each answer waits after its request head; `None`: none.
    pub(crate) delay: Option<crate::server::delay::DelaySpec>,
    /// `--seed`: the seed of every random choice; from the clock when `None`.
    pub(crate) seed: Option<u64>,
    /// The responses of workers 1, 2, ... when templates use `{worker}` (worker 0
    /// has `response`); empty when every worker answers alike.
    pub(crate) worker_responses: Vec<ResponseSpec>,
    /// The body uses `{worker}`: each worker holds its own.
    pub(crate) per_worker_body: bool,
    /// `None` when metrics are off.
    pub(crate) statsd: Option<StatsdSettings>,
    pub(crate) log_level: Level,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: Listen::AnyAddress(DEFAULT_PORT),
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            backlog: 65_535,
            max_connections: 0,
            max_header_bytes: 8 * 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            admin_listen: None,
            health_path: None,
            response: ResponseSpec::default(),
            status_mix: Vec::new(),
            faults: values::FaultRates::default(),
            delay: None,
            seed: None,
            worker_responses: Vec::new(),
            per_worker_body: false,
            statsd: Some(StatsdSettings {
                target: "127.0.0.1:8125".to_string(),
                interval: Duration::from_secs(1),
                prefix: "vrypt".to_string(),
                tags: Vec::new(),
            }),
            log_level: Level::Info,
        }
    }
}
