//! Request counters (sharded per worker) and the StatsD pusher that reads them.

pub mod counters;
pub mod statsd;

pub use counters::{bump, Snapshot, WorkerCounters};
