//! Request counters (sharded per worker), the StatsD pusher that reads them, and
//! their Prometheus exposition for the admin listener.

pub(crate) mod counters;
pub(crate) mod prometheus;
pub(crate) mod statsd;

pub use counters::Snapshot;
pub(crate) use counters::{bump, WorkerCounters};
