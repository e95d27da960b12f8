//! Any bytes as a sequence of runtime changes to a running topology: a change never
//! panics, keeps the numbers of what stays, says exactly what it adds and removes,
//! prints as a file that builds it again, and the pipeline takes up every change it
//! accepts with its frames still accounted for.
//! `cargo fuzz run -s none edit` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_testkit::fuzz::edit(data);
});
