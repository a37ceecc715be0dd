//! The server: listeners, worker threads, graceful shutdown, metrics thread.

mod admin;
mod arrival;
mod chaos;
pub(crate) mod conn;
mod deadline;
pub(crate) mod delay;
mod delay_queue;
mod drive;
pub(crate) mod listener;
pub(crate) mod model;
mod output;
mod pool;
mod timer;
mod worker;

use crate::config::Config;
use crate::http::date::unix_now_coarse;
use crate::http::Templates;
use crate::log::{quote, Level};
use crate::metrics::{statsd, WorkerCounters};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use worker::{Common, Settings, Shared, Worker};

/// Raises the soft limit on open files to the hard limit, so the number of
/// connections is bounded by the administrator's setting rather than the default 1024.
fn raise_nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit no higher than the current hard limit.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        }
    }
    // rlim_t is 32 bits on some of the targets we ship.
    #[allow(clippy::unnecessary_cast)]
    Some(lim.rlim_cur as u64)
}

/// How to bind the admin listener: `[::]:PORT` is dual-stack, or `0.0.0.0:PORT` on a
/// host without IPv6 (as for the serving port), so that the image's default
/// `[::]:9901` works everywhere.
fn admin_listen(addr: std::net::SocketAddr) -> crate::config::Listen {
    match addr {
        std::net::SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            crate::config::Listen::AnyAddress(addr.port())
        }
        _ => crate::config::Listen::Exact(addr),
    }
}

/// Runs the server until a graceful shutdown completes.
pub(crate) fn run(mut cfg: Config) -> io::Result<()> {
    crate::shutdown::block_signals()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot block signals: {e}")))?;
    let nofile = raise_nofile_limit();
    let start_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let bound = listener::bind(&cfg.listen, cfg.workers, cfg.backlog)?;
    let admin = match cfg.admin_listen {
        Some(addr) => Some(
            listener::bind(&admin_listen(addr), cfg.workers, 1024)
                .map_err(|e| io::Error::new(e.kind(), format!("admin listener: {e}")))?,
        ),
        None => None,
    };
    let somaxconn = listener::somaxconn();
    let effective_backlog = somaxconn.map_or(cfg.backlog, |s| s.min(cfg.backlog));

    let counters: Arc<[WorkerCounters]> = (0..cfg.workers)
        .map(|_| WorkerCounters::default())
        .collect();
    let shared = Arc::new(Shared {
        shutdown: AtomicBool::new(false),
        ready: AtomicBool::new(true),
        open: AtomicUsize::new(0),
        max_connections: cfg.max_connections,
    });
    let settings = Settings {
        max_head: cfg.max_header_bytes,
        header_timeout: cfg.header_timeout,
        idle_timeout: cfg.idle_timeout,
        body_timeout: cfg.body_timeout,
        write_timeout: cfg.write_timeout,
        shutdown_timeout: cfg.shutdown_timeout,
    };
    // A long or sized body is built once per process and shared by every worker and
    // every response variant (unless it names the worker).
    let shared_body = if cfg.per_worker_body {
        None
    } else {
        crate::http::response::shared_body(&cfg.response)
    };
    let body_bytes = shared_body
        .as_ref()
        .map_or(cfg.response.body.len(), |b| b.len());
    for spec in std::iter::once(&mut cfg.response).chain(cfg.worker_responses.iter_mut()) {
        if shared_body.is_some() {
            spec.body = Vec::new();
        }
        spec.shared_body = shared_body.clone();
    }
    drop(shared_body);
    let now = unix_now_coarse();
    let templates = Templates::new(&cfg.response, now);
    let worker_templates: Vec<Templates> = cfg
        .worker_responses
        .iter()
        .map(|spec| Templates::new(spec, now))
        .collect();
    // The templates hold the bodies now: free these copies.
    cfg.response.body = Vec::new();
    cfg.worker_responses = Vec::new();
    let signal_fd = crate::shutdown::signal_fd()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create a signalfd: {e}")))?;
    let signal_raw = std::os::fd::AsRawFd::as_raw_fd(&signal_fd);

    let seed = cfg.seed.unwrap_or_else(crate::rng::clock_seed);
    let chaos = chaos::Chaos::new(&cfg.status_mix, cfg.faults);
    let common = Common {
        templates,
        counters: counters.clone(),
        shared: shared.clone(),
        health_path: cfg.health_path.as_ref().map(|p| p.as_bytes().into()),
        start_time,
        chaos,
        seed,
        delay: cfg.delay.clone(),
    };
    let admin_addr = admin.as_ref().map(|a| a.addr);
    let mut admin_listeners = admin.map(|a| a.listeners.into_iter());
    let mut workers = Vec::with_capacity(cfg.workers);
    let mut wakers = Vec::with_capacity(cfg.workers);
    for (id, l) in bound.listeners.into_iter().enumerate() {
        let admin_l = admin_listeners.as_mut().and_then(Iterator::next);
        let mut common = common.clone();
        if let Some(t) = id.checked_sub(1).and_then(|i| worker_templates.get(i)) {
            common.templates = t.clone();
        }
        let (w, waker) = Worker::new(id, l, admin_l, common, settings, signal_raw)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create worker {id}: {e}")))?;
        workers.push(w);
        wakers.push(waker);
    }

    crate::log!(
        Level::Info,
        "start",
        "version={} workers={} backlog={} somaxconn={} max_connections={} max_header_bytes={} nofile={} \
         header_timeout_ms={} idle_timeout_ms={} body_timeout_ms={} write_timeout_ms={} shutdown_timeout_ms={} \
         shutdown_delay_ms={} status={} body_bytes={} health_path={} status_mix={} faults={} delay={} seed={} statsd={}",
        env!("CARGO_PKG_VERSION"),
        cfg.workers,
        effective_backlog,
        somaxconn.map_or("unknown".to_string(), |s| s.to_string()),
        if cfg.max_connections == 0 { "unlimited".to_string() } else { cfg.max_connections.to_string() },
        cfg.max_header_bytes,
        nofile.map_or("unknown".to_string(), |n| n.to_string()),
        cfg.header_timeout.as_millis(),
        cfg.idle_timeout.as_millis(),
        cfg.body_timeout.as_millis(),
        cfg.write_timeout.as_millis(),
        cfg.shutdown_timeout.as_millis(),
        cfg.shutdown_delay.as_millis(),
        cfg.response.status,
        body_bytes,
        cfg.health_path.as_deref().map_or("off".to_string(), quote),
        if cfg.status_mix.is_empty() {
            "off".to_string()
        } else {
            cfg.status_mix
                .iter()
                .map(|(s, w)| format!("{s}={w}"))
                .collect::<Vec<_>>()
                .join(",")
        },
        if cfg.faults.any() {
            format!(
                "reset={},close={},stall={}",
                cfg.faults.reset, cfg.faults.close, cfg.faults.stall
            )
        } else {
            "off".to_string()
        },
        cfg.delay
            .as_ref()
            .map_or("off".to_string(), |d| quote(&format!("{d:?}"))),
        seed,
        cfg.statsd.as_ref().map_or("off".to_string(), |s| quote(&s.target)),
    );
    if let Some(addr) = admin_addr {
        crate::log!(Level::Info, "admin_listening", "addr={addr}");
    }
    crate::log!(
        Level::Info,
        "listening",
        "addr={} dual_stack={}",
        bound.addr,
        bound.dual_stack
    );

    let stop_metrics = Arc::new(AtomicBool::new(false));
    let metrics = match &cfg.statsd {
        Some(s) => {
            let sc = statsd::StatsdConfig {
                mix_statuses: cfg.status_mix.iter().map(|&(s, _)| s).collect(),
                faults: cfg.faults.any(),
                delay: cfg.delay.is_some(),
                target: s.target.clone(),
                interval: s.interval,
                prefix: s.prefix.clone(),
                tags: s.tags.clone(),
            };
            Some(
                statsd::spawn(sc, counters.clone(), stop_metrics.clone()).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot start the metrics thread: {e}"))
                })?,
            )
        }
        None => None,
    };

    let mut handles = Vec::with_capacity(workers.len());
    for (id, w) in workers.into_iter().enumerate() {
        let h = std::thread::Builder::new()
            .name(format!("vrypt-worker-{id}"))
            .spawn(move || w.run())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot spawn worker {id}: {e}")))?;
        handles.push(h);
    }

    // The wakers must outlive the wake-up: closing a waker's eventfd before the worker
    // has collected its event removes the event from the epoll ready list.
    let wakers = Arc::new(wakers);
    let signal_shared = shared.clone();
    let signal_wakers = wakers.clone();
    let delay = cfg.shutdown_delay;
    crate::shutdown::spawn_signal_thread(signal_fd, delay, move |phase| {
        // `shutdown` before `ready`: a worker that sees `ready` cleared without a
        // delay also sees `shutdown` set.
        if phase == crate::shutdown::Phase::Drain {
            signal_shared.shutdown.store(true, Ordering::SeqCst);
        }
        signal_shared.ready.store(false, Ordering::SeqCst);
        for w in signal_wakers.iter() {
            let _ = w.wake();
        }
    })?;

    let mut result = Ok(());
    for (id, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                crate::log!(
                    Level::Error,
                    "worker_failed",
                    "worker={id} error={}",
                    quote(&e.to_string())
                );
                result = Err(e);
            }
            Err(_) => result = Err(io::Error::other(format!("worker {id} panicked"))),
        }
    }
    drop(wakers);
    stop_metrics.store(true, Ordering::SeqCst);
    if let Some(m) = metrics {
        let _ = m.join();
    }
    crate::log!(Level::Info, "shutdown_complete");
    result
}
