//! Any text as a config file: the parser and validator must never panic, a config they
//! accept must build a pipeline and print as a file that builds it again, and a refusal
//! names the file.
//! `cargo fuzz run -s none config` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_testkit::fuzz::config(data);
});
