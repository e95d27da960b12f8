//! docs/counters.md documents every drop reason and event counter the pipeline has, with
//! the same id, stage and text, so the table users read cannot drift from the code.

use switchyard_core::pipeline::{DropReason, Event};

#[test]
fn counters_doc_lists_every_counter() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/counters.md"))
        .expect("docs/counters.md");
    for r in DropReason::ALL {
        let row = format!("| `{}` | {} | {} |", r.id(), r.stage(), r.text());
        assert!(
            doc.contains(&row),
            "docs/counters.md is missing the drop reason row: {row}"
        );
    }
    for e in Event::ALL {
        let row = format!("| `{}` | {} | {} |", e.id(), e.stage(), e.text());
        assert!(
            doc.contains(&row),
            "docs/counters.md is missing the event row: {row}"
        );
    }
}
