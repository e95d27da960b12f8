//! Any bytes as a control-socket client's requests, one per line: the request parser
//! must never panic, accepted requests survive a round trip and refusals are answered.
//! `cargo fuzz run -s none control` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_testkit::fuzz::control(data);
});
