//! Request counters (sharded per worker) and the StatsD pusher that reads them.

pub(crate) mod counters;
pub(crate) mod statsd;

pub use counters::Snapshot;
pub(crate) use counters::{bump, WorkerCounters};
