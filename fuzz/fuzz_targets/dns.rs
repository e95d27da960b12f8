//! Any bytes as DNS queries (over UDP and TCP, on a network with a zone, one without
//! a search domain and one without DNS) and as upstream datagrams, to a resolver with
//! small zones and one upstream: nothing panics, every answer parses and fits its
//! transport, a network's answers hold none of another network's names, an upstream
//! answer is taken only for the query it answers, every query is counted once.
//! `cargo fuzz run -s none dns` (from the repo root).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    switchyard_dns::fuzz_check(data);
});
