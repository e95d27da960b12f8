//! The README documents every drop reason and event counter the pipeline has, with the
//! same id, stage and text, so the table users read cannot drift from the code.

use switchyard_core::pipeline::{DropReason, Event};

#[test]
fn readme_lists_every_counter() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for r in DropReason::ALL {
        let row = format!("| `{}` | {} | {} |", r.id(), r.stage(), r.text());
        assert!(
            readme.contains(&row),
            "README is missing the drop reason row: {row}"
        );
    }
    for e in Event::ALL {
        let row = format!("| `{}` | {} | {} |", e.id(), e.stage(), e.text());
        assert!(
            readme.contains(&row),
            "README is missing the event row: {row}"
        );
    }
}
