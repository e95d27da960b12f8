//! Replays every saved fuzz input (`fuzz/corpus/<target>`) through the same harness the
//! fuzzer uses, so CI covers the interesting inputs the fuzzer found without running it.

use std::path::Path;

/// Runs every file of `fuzz/corpus/<dir>` through `run`; returns how many there were.
fn replay(dir: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(dir);
    let mut n = 0;
    let mut failed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            failed.push(path.display().to_string());
        }
        n += 1;
    }
    assert!(failed.is_empty(), "fuzz inputs fail: {failed:#?}");
    n
}

#[test]
fn saved_pipeline_inputs_never_panic_stay_accounted_for_and_isolated() {
    let n = replay("pipeline", switchyard_testkit::fuzz::run);
    assert!(n >= 7, "the seed corpus is there ({n} inputs)");
}

#[test]
fn saved_config_inputs_never_panic_and_refusals_name_the_file() {
    let n = replay("config", switchyard_testkit::fuzz::config);
    assert!(n >= 4, "the seed corpus is there ({n} inputs)");
}

#[test]
fn saved_control_inputs_never_panic_and_round_trip() {
    let n = replay("control", switchyard_testkit::fuzz::control);
    assert!(n >= 4, "the seed corpus is there ({n} inputs)");
}

/// Inputs with which a frame crossed between networks that are not joined, through a
/// tracked flow of another network or an ICMP error about one, while conntrack matched
/// a packet whatever network it came from (before conntrack zones). Kept as a
/// regression test: the oracle fails them if zones ever stop holding.
#[test]
fn saved_isolation_regressions_stay_isolated() {
    let n = replay("isolation-regressions", switchyard_testkit::fuzz::run);
    assert!(n >= 1, "the crossing inputs are there ({n} inputs)");
}

#[test]
fn saved_edit_inputs_keep_numbers_diffs_and_the_pipeline_consistent() {
    let n = replay("edit", switchyard_testkit::fuzz::edit);
    assert!(n >= 9, "the seed corpus is there ({n} inputs)");
}
