//! `docs/walkthrough.md` is `switchyard tour`'s output with prose between. These
//! tests run the tour as a user does (the binary) and check that
//!
//! * every output block of the walkthrough (a ```text block after a marker comment
//!   `<!-- tour:intro -->`, `<!-- tour:step N -->` or `<!-- tour:end -->`) is what the
//!   tour prints now, so the documented traces cannot drift from what switchyard
//!   does; on a mismatch the test fails with a diff of each block that differs.
//!   `SWITCHYARD_REGENERATE_WALKTHROUGH=1 cargo test --test walkthrough` rewrites the
//!   blocks from the tour's output instead;
//! * the tour runs to the end, exits 0 and leaves nothing behind: no namespace with
//!   its prefix, no run directory, no device;
//! * a tour interrupted by SIGINT while it waits for Enter (`--step`, stdin held
//!   open), or by SIGTERM in the middle of a step, also removes everything and
//!   exits 0.
//!
//! The prefix holds the tour's process id; the blocks have `syt<pid>-` in its place.
//! Needs root.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use switchyard_testkit::fixtures::{require_root, run_root};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const DOC: &str = "docs/walkthrough.md";
const REGENERATE: &str = "SWITCHYARD_REGENERATE_WALKTHROUGH";
/// What the blocks have in place of the tour's prefix.
const PREFIX_PLACEHOLDER: &str = "syt<pid>-";
/// Longest a tour may take (it takes a few seconds).
const TOUR_LIMIT: Duration = Duration::from_secs(60);

fn doc_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(DOC)
}

/// One run of `switchyard tour`, shared by the tests that only read its output.
struct TourRun {
    output: Output,
    prefix: String,
    took: Duration,
}

fn tour_once() -> &'static TourRun {
    static RUN: OnceLock<TourRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let start = Instant::now();
        let child = Command::new(BIN)
            .arg("tour")
            .env("SWITCHYARD_RUN_DIR", run_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchyard tour");
        let guard = Guard::new(child);
        let prefix = format!("syt{}-", guard.pid);
        let output = guard.wait_with_output(TOUR_LIMIT);
        TourRun {
            prefix,
            output,
            took: start.elapsed(),
        }
    })
}

/// A running tour: interrupted and cleaned up after if a test panics while it runs.
struct Guard {
    child: Option<Child>,
    pid: u32,
}

impl Guard {
    fn new(child: Child) -> Guard {
        Guard {
            pid: child.id(),
            child: Some(child),
        }
    }

    fn wait_with_output(mut self, limit: Duration) -> Output {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        while child.try_wait().expect("wait for the tour").is_none() {
            assert!(
                start.elapsed() < limit,
                "the tour ran longer than {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child
            .take()
            .expect("running")
            .wait_with_output()
            .expect("the tour's output")
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig)
            .expect("signal the tour");
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_none() {
            self.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
        }
        // What a killed tour left, `down` removes.
        let _ = Command::new(BIN)
            .args(["down", "--prefix", &format!("syt{}-", self.pid)])
            .env("SWITCHYARD_RUN_DIR", run_root())
            .output();
    }
}

/// Asserts that the tour with `prefix` left nothing: no namespace, no run directory,
/// no network device carrying the prefix.
fn assert_nothing_left(prefix: &str) {
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(prefix))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names("/run/netns"), Vec::<String>::new(), "namespaces left");
    // The TAPs live in the endpoints' namespaces; none may be found in the host's.
    assert_eq!(
        names("/sys/class/net"),
        Vec::<String>::new(),
        "devices left"
    );
    let dir = run_root().join(prefix);
    assert!(!dir.exists(), "run directory {} left", dir.display());
}

/// The tour's output cut into its sections — "intro", "step 1" ... "step 8", "end" —
/// each without leading and trailing blank lines, the prefix replaced.
fn sections(out: &str, prefix: &str) -> Vec<(String, String)> {
    let out = out.replace(prefix, PREFIX_PLACEHOLDER);
    let mut all: Vec<(String, Vec<&str>)> = vec![("intro".into(), Vec::new())];
    for line in out.lines() {
        let step = line
            .strip_prefix("step ")
            .and_then(|r| r.split_once(" of "))
            .filter(|(n, _)| n.parse::<u32>().is_ok())
            .map(|(n, _)| format!("step {n}"));
        if let Some(key) = step {
            all.push((key, Vec::new()));
        } else if line.starts_with("end of the tour") {
            all.push(("end".into(), Vec::new()));
        }
        all.last_mut().expect("a section").1.push(line);
    }
    all.into_iter()
        .map(|(k, lines)| (k, lines.join("\n").trim_matches('\n').to_string()))
        .collect()
}

/// A marked output block of the walkthrough.
struct Block {
    key: String,
    /// Line numbers (0-based) of the block's content: `start..end`, between the
    /// fences.
    start: usize,
    end: usize,
    text: String,
}

/// The marked blocks of the walkthrough: `<!-- tour:KEY -->`, then (after blank
/// lines) a ```text fence, the output, and a closing fence.
fn blocks(doc: &str) -> Vec<Block> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(key) = lines[i]
            .trim()
            .strip_prefix("<!-- tour:")
            .and_then(|r| r.strip_suffix("-->"))
        else {
            i += 1;
            continue;
        };
        let key = key.trim().to_string();
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        assert!(
            lines.get(j).map(|l| l.trim()) == Some("```text"),
            "{DOC}:{}: the marker tour:{key} is not followed by a ```text block",
            i + 1
        );
        let start = j + 1;
        let end = (start..lines.len())
            .find(|&k| lines[k].trim() == "```")
            .unwrap_or_else(|| panic!("{DOC}:{}: the block of tour:{key} is not closed", j + 1));
        out.push(Block {
            key,
            start,
            end,
            text: lines[start..end].join("\n"),
        });
        i = end + 1;
    }
    out
}

/// A line diff of `want` against `got` (a longest common subsequence): lines only
/// in `want` marked "-", only in `got` "+", with two lines of context.
fn line_diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let near = |k: usize| {
        ops[k.saturating_sub(2)..(k + 3).min(ops.len())]
            .iter()
            .any(|o| o.0 != ' ')
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if near(k) {
            out.push_str(&format!("{op} {line}\n"));
            skipped = false;
        } else if !skipped {
            out.push_str("  ...\n");
            skipped = true;
        }
    }
    out
}

#[test]
fn the_walkthrough_shows_what_the_tour_prints() {
    if !require_root() {
        return;
    }
    let run = tour_once();
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        run.output.status.success(),
        "the tour failed: {}\n{stdout}\n{}",
        run.output.status,
        String::from_utf8_lossy(&run.output.stderr)
    );
    let got = sections(&stdout, &run.prefix);
    let doc = std::fs::read_to_string(doc_path()).expect("read the walkthrough");
    let marked = blocks(&doc);
    let keys: Vec<&str> = marked.iter().map(|b| b.key.as_str()).collect();
    for k in ["step 1", "step 2", "step 3", "step 4"] {
        assert!(keys.contains(&k), "{DOC} has no block tour:{k}");
    }

    if std::env::var(REGENERATE).as_deref() == Ok("1") {
        let mut lines: Vec<String> = doc.lines().map(String::from).collect();
        // From the last block up, so the line numbers of the others stay true.
        for b in marked.iter().rev() {
            let (_, text) = got
                .iter()
                .find(|(k, _)| *k == b.key)
                .unwrap_or_else(|| panic!("the tour prints no section {:?}", b.key));
            lines.splice(b.start..b.end, text.lines().map(String::from));
        }
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(doc_path(), text).expect("rewrite the walkthrough");
        eprintln!("{DOC}: {} block(s) rewritten from the tour", marked.len());
        return;
    }

    let mut failures = Vec::new();
    for b in &marked {
        match got.iter().find(|(k, _)| *k == b.key) {
            None => failures.push(format!(
                "{DOC}:{}: the tour prints no section tour:{} (it prints: {})",
                b.start + 1,
                b.key,
                got.iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Some((_, text)) if *text != b.text => failures.push(format!(
                "{DOC}:{}: block tour:{} differs from what the tour prints now \
                 (- documented, + printed):\n{}",
                b.start + 1,
                b.key,
                line_diff(&b.text, text)
            )),
            Some(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf switchyard's behaviour changed on purpose, rewrite the blocks with\n  \
         {REGENERATE}=1 cargo test --test walkthrough\nand check that the prose around \
         them still tells the truth.",
        failures.join("\n\n")
    );
}

#[test]
fn a_tour_runs_to_the_end_and_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let run = tour_once();
    let stdout = String::from_utf8_lossy(&run.output.stdout);
    assert!(
        run.output.status.success(),
        "the tour failed: {}\n{stdout}\n{}",
        run.output.status,
        String::from_utf8_lossy(&run.output.stderr)
    );
    for n in 1..=8 {
        assert!(
            stdout.contains(&format!("\nstep {n} of 8: ")),
            "step {n} missing:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("end of the tour: removing what it created")
            && stdout.contains(&format!("removed 4 namespace(s): {}", run.prefix)),
        "{stdout}"
    );
    assert_nothing_left(&run.prefix);
    // CI runs the tour; it is meant to take seconds, not minutes.
    assert!(
        run.took < Duration::from_secs(20),
        "the tour took {:?}",
        run.took
    );
}

#[test]
fn an_interrupted_tour_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let child = Command::new(BIN)
        .args(["tour", "--step"])
        .env("SWITCHYARD_RUN_DIR", run_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard tour --step");
    let mut guard = Guard::new(child);
    let prefix = format!("syt{}-", guard.pid);
    let child = guard.child.as_mut().expect("running");
    // Held open: the tour waits for Enter, as with a person at the keyboard.
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut seen = Vec::new();
    let mut wait_for = |what: &str| {
        let start = Instant::now();
        loop {
            let left = Duration::from_secs(30).saturating_sub(start.elapsed());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(what);
                    seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!("the tour never printed {what:?}:\n{}", seen.join("\n")),
            }
        }
    };
    wait_for("press Enter for step 1 of 8");
    stdin.write_all(b"\n").expect("press Enter");
    // Step 1 has run; the switch is up, with its tables filled, and the tour waits.
    wait_for("press Enter for step 2 of 8");
    guard.signal(nix::sys::signal::Signal::SIGINT);
    wait_for("interrupted: removing what the tour created");
    let child = guard.child.as_mut().expect("running");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the tour") {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the tour did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    assert!(status.success(), "the tour exited {status}");
    assert_nothing_left(&prefix);
}

#[test]
fn a_tour_stopped_in_the_middle_of_a_step_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let child = Command::new(BIN)
        .arg("tour")
        .env("SWITCHYARD_RUN_DIR", run_root())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start switchyard tour");
    let mut guard = Guard::new(child);
    let prefix = format!("syt{}-", guard.pid);
    let stdout = guard
        .child
        .as_mut()
        .expect("running")
        .stdout
        .take()
        .expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    // Step 3's heading is printed before its traffic: SIGTERM lands in a step (or,
    // on a fast machine, in a later one), while a trace runs or traffic waits.
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("read the tour's output");
        let found = line.starts_with("step 3 of 8");
        seen.push(line);
        if found {
            break;
        }
    }
    assert!(
        seen.last().is_some_and(|l| l.starts_with("step 3 of 8")),
        "{}",
        seen.join("\n")
    );
    guard.signal(nix::sys::signal::Signal::SIGTERM);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = guard
        .child
        .take()
        .expect("running")
        .wait()
        .expect("wait for the tour");
    let rest = rest.join("\n");
    assert!(status.success(), "the tour exited {status}:\n{rest}");
    assert!(
        rest.contains("interrupted: removing what the tour created")
            || rest.contains("end of the tour: removing what it created"),
        "{rest}"
    );
    assert_nothing_left(&prefix);
}

#[test]
fn sections_and_blocks_are_found_and_compared() {
    let out = "switchyard tour\n\nsyt12- here\n\nstep 1 of 8: one\n\n  a\n\nstep 2 of 8: two\n  b\n\nend of the tour: x\nremoved 1 namespace(s): syt12-web\n";
    let s = sections(out, "syt12-");
    let keys: Vec<&str> = s.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["intro", "step 1", "step 2", "end"]);
    assert_eq!(s[0].1, "switchyard tour\n\nsyt<pid>- here");
    assert_eq!(s[1].1, "step 1 of 8: one\n\n  a");
    assert_eq!(
        s[3].1,
        "end of the tour: x\nremoved 1 namespace(s): syt<pid>-web"
    );

    let doc = "# t\n\n<!-- tour:step 1 -->\n\n```text\nstep 1 of 8: one\n\n  a\n```\n\nprose\n";
    let b = blocks(doc);
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].key, "step 1");
    assert_eq!(b[0].text, s[1].1);
    assert_eq!((b[0].start, b[0].end), (5, 8));

    let d = line_diff("a\nb\nc", "a\nB\nc");
    assert_eq!(d, "  a\n- b\n+ B\n  c\n");
}
