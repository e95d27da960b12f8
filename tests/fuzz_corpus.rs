//! Replays every saved fuzz input (fuzz/corpus/*) through the same harness the fuzzer
//! uses, so CI covers the interesting frames the fuzzer found without running it.

use std::path::Path;

#[test]
fn saved_fuzz_inputs_never_panic_and_stay_accounted_for() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/pipeline");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/pipeline exists") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| switchyard_testkit::fuzz::run(&data));
        assert!(r.is_ok(), "fuzz input {} fails", path.display());
        n += 1;
    }
    assert!(n >= 7, "the seed corpus is there ({n} inputs)");
}
