//! Replays every saved input of the `dns` fuzz target (`fuzz/corpus/dns`) through the
//! same oracle the fuzzer uses ([`switchyard_dns::fuzz_check`]), so a normal test run
//! covers what the fuzzer found without running it.

use std::path::{Path, PathBuf};

use simple_dns::rdata::OPT;
use simple_dns::{Packet, PacketFlag, Question, CLASS, OPCODE, TYPE};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dns")
}

#[test]
fn saved_dns_inputs_never_panic_answer_well_and_stay_isolated() {
    let dir = corpus();
    let mut n = 0;
    let mut failed = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| switchyard_dns::fuzz_check(&data)).is_err() {
            failed.push(path.display().to_string());
        }
        n += 1;
    }
    assert!(failed.is_empty(), "fuzz inputs fail: {failed:#?}");
    assert!(n >= 8, "the seed corpus is there ({n} inputs)");
}

fn query(id: u16, name: &str, t: TYPE, edns: bool) -> Vec<u8> {
    let mut q = Packet::new_query(id);
    q.set_flags(PacketFlag::RECURSION_DESIRED);
    q.questions.push(Question::new(
        name.try_into().unwrap(),
        t.into(),
        CLASS::IN.into(),
        false,
    ));
    if edns {
        *q.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: 1232,
            version: 0,
        });
    }
    q.build_bytes_vec().unwrap()
}

/// Writes the seed inputs: real queries of each kind the resolver tells apart, and
/// two step scripts (see `fuzz_check`). Run it by hand when the seeds change:
/// `cargo test -p switchyard-dns --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes fuzz/corpus/dns"]
fn write_seed_corpus() {
    let mut notify = Packet::new_query(7);
    *notify.opcode_mut() = OPCODE::Notify;
    notify.questions.push(Question::new(
        "web".try_into().unwrap(),
        TYPE::SOA.into(),
        CLASS::IN.into(),
        false,
    ));
    let forwarded = query(0x0101, "example.com", TYPE::A, false);
    // Steps: forward example.com (op 0), answer it well (op 4), forward again, let it
    // time out (op 6, 30 × 0.1 s), answer it late (op 5).
    let mut script = Vec::new();
    for (op, body) in [
        (0u8, forwarded.clone()),
        (4, vec![0, 0, 0, 0, 93, 184, 216, 34]),
        (7, forwarded.clone()),
        (6, vec![30]),
        (5, forwarded.clone()),
        (1, query(0x0202, "big-name.front.internal", TYPE::A, true)),
        (2, query(0x0303, "2.0.2.10.in-addr.arpa", TYPE::PTR, false)),
    ] {
        script.push(op);
        script.push(body.len() as u8);
        script.extend(body);
    }
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("a-web", query(0x1111, "web", TYPE::A, false)),
        (
            "aaaa-web-domain",
            query(0x2222, "web.front.internal", TYPE::AAAA, false),
        ),
        ("a-alias-edns", query(0x3333, "pool", TYPE::A, true)),
        ("a-forward", forwarded),
        (
            "ptr-web",
            query(0x4444, "2.0.1.10.in-addr.arpa", TYPE::PTR, false),
        ),
        ("a-nxdomain", query(0x5555, "nosuch", TYPE::A, false)),
        (
            "mx-forward-edns",
            query(0x6666, "example.org", TYPE::MX, true),
        ),
        ("notify", notify.build_bytes_vec().unwrap()),
        ("script-forward-answer-timeout", script),
    ];
    std::fs::create_dir_all(corpus()).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(corpus().join(name), bytes).unwrap();
    }
}
