//! Model-based fuzzing of the userlane-core state machine.
//!
//! The input is a postcard `Vec<Op>` (decoded leniently: a corrupted tail is
//! dropped). The operations are applied to the core and to the reference
//! model with tiny capacities; after every operation the harness compares
//! every result and query and checks the invariants (isolation, order,
//! limits, stats that add up). Any divergence panics with the step, the
//! operation and both results; replay a crash with
//! `cargo run -p userlane-tests --bin print-ops -- fuzz/artifacts/state_machine/crash-…`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use userlane_tests::{harness, ops};

fuzz_target!(|data: &[u8]| {
    let ops = ops::decode_lenient(data);
    if let Err(failure) = harness::run(&ops) {
        panic!("core and model diverge at {failure}");
    }
});
