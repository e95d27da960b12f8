//! `[switch]`: neighbor resolution and the fast-path settings, checked and carried over.

use super::*;

#[test]
fn neighbor_settings_are_checked_and_carried() {
    let t = parse(
        "[switch]\narp_retries = 5\narp_retry_ms = 200\narp_queue = 8\n",
        "t",
    )
    .unwrap();
    assert_eq!(t.neighbor.probes, 5);
    assert_eq!(t.neighbor.retrans_ms, 200);
    assert_eq!(t.neighbor.queue_len, 8);
    let ps = problems("[switch]\narp_retries = 0\narp_queue = 99\narp_retry_ms = 1\n");
    assert!(has(&ps, "switch.arp_retries", "from 1"), "{ps:#?}");
    assert!(has(&ps, "switch.arp_queue", "from 1"), "{ps:#?}");
    assert!(has(&ps, "switch.arp_retry_ms", "from 10"), "{ps:#?}");
}

#[test]
fn fast_path_settings_resolve_and_are_checked() {
    let t = parse(
        r#"
[switch]
workers = 3
busy_poll_us = 50
offloads = true
[[network]]
name = "a"
subnet = "10.1.0.0/24"
[[network]]
name = "b"
subnet = "10.2.0.0/24"
offloads = false
"#,
        "t",
    )
    .unwrap();
    assert_eq!((t.workers, t.busy_poll_us), (3, 50));
    assert!(t.networks[0].offloads, "a network takes [switch]'s setting");
    assert!(!t.networks[1].offloads, "and can turn it off for itself");

    // 0 workers: one per core.
    let t = parse("[switch]\nworkers = 0\n", "t").unwrap();
    assert_eq!(
        t.workers,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Defaults: busy polling off, offloads on.
    let t = default_topology();
    assert_eq!(t.busy_poll_us, 0);
    assert!(t.networks.iter().all(|n| n.offloads));

    // The kernel's flow hash and no polling unless told otherwise.
    assert_eq!((t.steering, t.adaptive_poll), (Steering::Hash, false));
    let t = parse("[switch]\nsteering = \"cpu\"\nadaptive_poll = true\n", "t").unwrap();
    assert_eq!((t.steering, t.adaptive_poll), (Steering::Cpu, true));

    let ps = problems("[switch]\nworkers = 65\nbusy_poll_us = 2000000\nsteering = \"rss\"\n");
    assert!(
        has(&ps, "switch.steering", "not one of \"cpu\", \"hash\""),
        "{ps:?}"
    );
    assert!(has(&ps, "switch.workers", "more than 64"), "{ps:?}");
    assert!(has(&ps, "switch.busy_poll_us", "at most 1000000"), "{ps:?}");
}

#[test]
fn tap_io_is_uring_or_syscalls() {
    use switchyard_os::port::uring::IoMode;
    assert_eq!(default_topology().io, IoMode::default());
    for (text, mode) in [("uring", IoMode::Uring), ("syscalls", IoMode::Syscalls)] {
        let t = parse(&format!("[switch]\nio = \"{text}\"\n"), "t").unwrap();
        assert_eq!(t.io, mode);
        // `show config` writes it back as it was given.
        assert!(t.to_toml().contains(&format!("io = \"{text}\"")), "{text}");
    }
    let ps = problems("[switch]\nio = \"epoll\"\n");
    assert!(
        has(&ps, "switch.io", "must be \"uring\" or \"syscalls\""),
        "{ps:?}"
    );
}
