//! The connection model on fuzzer-chosen scenarios: one connection driven through the
//! real drive loop on a simulated socket (arrivals, write capacity, timers, EOF,
//! resets, shutdown), checked after every step for order, exactly-once, bounded
//! memory, nothing after close, and liveness. See `src/server/model.rs` for how the
//! bytes describe a scenario.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    vrypt_server::testing::model(input);
});
