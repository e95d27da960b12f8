//! Arbitrary bytes as frames (with virtio-net headers) into two pipeline workers: it
//! must never panic, every frame must be accounted for, segmentation and coalescing
//! must give back what went in, and no frame may cross between networks that are not
//! joined. `cargo fuzz run -s none pipeline` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_testkit::fuzz::run(data);
});
