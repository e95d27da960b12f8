//! Arbitrary bytes as frames into the pipeline: it must never panic, and every frame
//! must be accounted for. `cargo fuzz run -s none pipeline` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_testkit::fuzz::run(data);
});
