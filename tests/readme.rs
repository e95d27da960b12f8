//! The README is the front door and `docs/` holds the reference; these tests keep both
//! honest without root.
//!
//! * `docs/counters.md` documents every drop reason and event counter the pipeline has,
//!   with the same id, stage and text, so the table users read cannot drift from the code.
//! * The README stays short, opens with the two commands that build and run switchyard and
//!   test it, links every file in `docs/`, and every relative link in it or in `docs/`
//!   leads to a file that exists.

use std::path::{Path, PathBuf};
use switchyard_core::pipeline::{DropReason, Event};
use switchyard_os::port::vxlan;

/// The README's limit: past it, material belongs in `docs/`.
const README_MAX_LINES: usize = 300;

/// The README's first lines, exactly: the name, then the two commands.
const README_HEAD: [&str; 5] = [
    "# switchyard",
    "",
    "```sh",
    "cargo build --release && sudo ./target/release/switchyard up   # build, then run the built-in default topology",
    "sudo cargo test                                                # run the tests (as root: they create namespaces and TAPs)",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The targets of the inline links `[text](target)` of a Markdown text, without
/// their `#fragment`; links to other sites and to places in the same file are left out.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split('#').next().unwrap_or_default();
        if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
            links.push(target.to_string());
        }
        rest = &rest[end..];
    }
    links
}

/// The files in `docs/`, as paths from the workspace root (`docs/config.md`).
fn docs_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("read docs/").path())
        .filter(|p| p.is_file())
        .map(|p| format!("docs/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

/// Every relative link of the Markdown file `rel` (a path from the root) leads to a
/// file or directory that exists.
fn assert_links_resolve(rel: &str) {
    let dir = Path::new(rel).parent().unwrap_or(Path::new(""));
    for link in relative_links(&read(rel)) {
        let target: PathBuf = dir.join(&link);
        let normal = normalize(&target);
        assert!(
            root().join(&normal).exists(),
            "{rel} links to {link}, but {normal} does not exist"
        );
    }
}

/// `docs/../examples/x.toml` → `examples/x.toml`.
fn normalize(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::CurDir => {}
            c => parts.push(c.as_os_str().to_string_lossy().into_owned()),
        }
    }
    parts.join("/")
}

#[test]
fn counters_doc_lists_every_counter() {
    let doc = read("docs/counters.md");
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
    for (id, text) in vxlan::DROPS {
        let row = format!("| `{id}` | {} | {text} |", vxlan::STAGE);
        assert!(
            doc.contains(&row),
            "docs/counters.md is missing the tunnel port's drop row: {row}"
        );
    }
}

#[test]
fn readme_opens_with_the_two_commands() {
    let readme = read("README.md");
    let head: Vec<&str> = readme.lines().take(README_HEAD.len() + 1).collect();
    assert_eq!(
        head[..README_HEAD.len()],
        README_HEAD,
        "the README must open with the two commands, exactly"
    );
    assert_eq!(
        head.get(README_HEAD.len()),
        Some(&"```"),
        "the two commands are the whole first block"
    );
}

#[test]
fn readme_is_short() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move reference material to docs/"
    );
}

#[test]
fn readme_links_every_doc() {
    let links: Vec<String> = relative_links(&read("README.md"))
        .iter()
        .map(|l| normalize(Path::new(l)))
        .collect();
    for f in docs_files() {
        assert!(
            links.contains(&f),
            "README.md does not link {f}: add it to the documentation index"
        );
    }
}

#[test]
fn links_lead_to_files_that_exist() {
    assert_links_resolve("README.md");
    for f in docs_files().iter().filter(|f| f.ends_with(".md")) {
        assert_links_resolve(f);
    }
}

#[test]
fn link_targets_are_found() {
    let text = "see [a](docs/a.md), [b](docs/b.md#part), [c](https://x.org/c), [d](#local) \
                and [e](../examples/e.toml)";
    assert_eq!(
        relative_links(text),
        ["docs/a.md", "docs/b.md", "../examples/e.toml"]
    );
    assert_eq!(
        normalize(Path::new("docs/../examples/e.toml")),
        "examples/e.toml"
    );
}
