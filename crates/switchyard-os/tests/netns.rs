//! Named network namespaces, for real: these tests create namespaces (as root) and
//! check what `ip netns` would see. Names carry the test process id and are removed
//! even when a test panics.

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use switchyard_os::netns::*;

mod common;
use common::{require_root, TestNs};

/// Identifies the network namespace of the calling thread.
fn netns_inode() -> u64 {
    fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
}

#[test]
fn create_run_in_delete() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    assert!(!exists(&ns.0));
    create(&ns.0).unwrap();
    assert!(exists(&ns.0));
    let host = netns_inode();
    let inside = run_in_named(&ns.0, netns_inode).unwrap();
    assert_ne!(inside, host, "the closure ran in another namespace");
    assert_eq!(netns_inode(), host, "the caller did not move");
    // Through an fd, and again: the same namespace each time.
    let fd = open(&ns.0).unwrap();
    assert_eq!(run_in(&fd, netns_inode).unwrap(), inside);
    assert_eq!(run_in(fd.as_fd(), netns_inode).unwrap(), inside);
    drop(fd);
    assert!(delete(&ns.0).unwrap());
    assert!(!exists(&ns.0));
    assert!(matches!(
        open(&ns.0),
        Err(NetnsError::NotFound { op: "open", .. })
    ));
}

#[test]
fn create_twice_is_refused() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    create(&ns.0).unwrap();
    let before = run_in_named(&ns.0, netns_inode).unwrap();
    let err = create(&ns.0).unwrap_err();
    assert!(matches!(err, NetnsError::AlreadyExists(_)), "{err}");
    assert!(err.to_string().contains(&ns.0), "{err}");
    // The existing namespace was left alone.
    assert_eq!(run_in_named(&ns.0, netns_inode).unwrap(), before);
}

#[test]
fn delete_missing_is_false() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    assert!(!delete(&ns.0).unwrap());
}

#[test]
fn delete_removes_a_half_made_entry() {
    if !require_root() {
        return;
    }
    // A plain file without a mount on it, as a crash mid-create would leave.
    let ns = TestNs::name("ns");
    fs::create_dir_all(NETNS_RUN_DIR).unwrap();
    fs::write(path_of(&ns.0).unwrap(), b"").unwrap();
    assert!(exists(&ns.0));
    assert!(delete(&ns.0).unwrap());
    assert!(!exists(&ns.0));
}

#[test]
fn the_namespace_outlives_its_name_while_held() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    create(&ns.0).unwrap();
    let fd = open(&ns.0).unwrap();
    let inside = run_in(&fd, netns_inode).unwrap();
    assert!(delete(&ns.0).unwrap());
    assert_eq!(run_in(&fd, netns_inode).unwrap(), inside);
}

#[test]
fn alias_names_the_same_namespace() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    let other = TestNs::name("ns");
    create(&ns.0).unwrap();
    alias(&ns.0, &other.0).unwrap();
    let inside = run_in_named(&ns.0, netns_inode).unwrap();
    assert_eq!(run_in_named(&other.0, netns_inode).unwrap(), inside);
    assert!(matches!(
        alias(&ns.0, &other.0),
        Err(NetnsError::AlreadyExists(_))
    ));
    assert!(delete(&ns.0).unwrap());
    assert_eq!(run_in_named(&other.0, netns_inode).unwrap(), inside);
    let missing = TestNs::name("ns");
    assert!(matches!(
        alias(&missing.0, &TestNs::name("ns").0),
        Err(NetnsError::NotFound { .. })
    ));
}

#[test]
fn enter_moves_only_the_calling_thread() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    create(&ns.0).unwrap();
    let fd = open(&ns.0).unwrap();
    let host = netns_inode();
    let expected = run_in(&fd, netns_inode).unwrap();
    let seen = std::thread::scope(|s| {
        s.spawn(|| {
            enter(fd.as_fd()).unwrap();
            netns_inode()
        })
        .join()
        .unwrap()
    });
    assert_eq!(seen, expected);
    assert_eq!(netns_inode(), host);
}

#[test]
fn a_panic_inside_reaches_the_caller() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    create(&ns.0).unwrap();
    let name = ns.0.clone();
    let caught =
        std::panic::catch_unwind(move || run_in_named(&name, || -> u32 { panic!("boom inside") }))
            .unwrap_err();
    assert_eq!(caught.downcast_ref::<&str>(), Some(&"boom inside"));
}

#[test]
fn a_non_namespace_fd_is_an_error_naming_the_step() {
    if !require_root() {
        return;
    }
    let file = fs::File::open("/proc/self/status").unwrap();
    let err = run_in(&file, || ()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("enter network namespace (fd "), "{msg}");
    assert!(msg.contains("setns(CLONE_NEWNET)"), "{msg}");
    assert_eq!(err.errno(), Some(libc::EINVAL), "{msg}");
}

#[test]
fn the_run_dir_becomes_a_shared_mount_point() {
    if !require_root() {
        return;
    }
    // On a thread with a private mount namespace and an empty tmpfs on /run, so
    // /run/netns starts out as no mount point at all (the EINVAL path) and
    // nothing done here can reach the host's mounts.
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNS).unwrap();
        let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
        mount(None::<&str>, "/", None::<&str>, private, None::<&str>).unwrap();
        mount(
            Some("tmpfs"),
            "/run",
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .unwrap();
        let ns = TestNs::name("ns");
        create(&ns.0).unwrap();
        let mountinfo = fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
        let run_dir = mountinfo
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(NETNS_RUN_DIR))
            .unwrap_or_else(|| panic!("{NETNS_RUN_DIR} is no mount point:\n{mountinfo}"));
        assert!(run_dir.contains(" shared:"), "{run_dir}");
        assert_ne!(run_in_named(&ns.0, netns_inode).unwrap(), netns_inode());
        assert!(delete(&ns.0).unwrap());
    })
    .join()
    .unwrap();
}

#[test]
fn bad_names_are_refused() {
    if !require_root() {
        return;
    }
    let long = "x".repeat(256);
    for name in ["", "a/b", ".", "..", "a\0b", long.as_str()] {
        assert!(
            matches!(create(name), Err(NetnsError::InvalidName { .. })),
            "{name:?}"
        );
        assert!(!exists(name), "{name:?}");
        assert!(delete(name).is_err(), "{name:?}");
    }
    // 255 bytes is fine as a name (it just does not exist).
    assert!(!delete(&"x".repeat(255)).unwrap());
}

#[test]
fn identity_tells_a_recreated_namespace_apart() {
    if !require_root() {
        return;
    }
    let ns = TestNs::name("ns");
    assert_eq!(identity(&ns.0).unwrap(), None);
    create(&ns.0).unwrap();
    let first = identity(&ns.0).unwrap().expect("exists");
    assert_eq!(
        first.ino,
        run_in_named(&ns.0, netns_inode).unwrap(),
        "the nsfs inode of the namespace itself"
    );
    assert!(first.cookie.is_some(), "the kernel has SO_NETNS_COOKIE");
    assert_eq!(identity(&ns.0).unwrap(), Some(first), "stable");
    // Another namespace under the same name: the cookie differs even where the
    // kernel hands out the freed inode number again.
    assert!(delete(&ns.0).unwrap());
    create(&ns.0).unwrap();
    let second = identity(&ns.0).unwrap().expect("exists");
    assert_ne!(second, first);
    assert_eq!(delete_if(&ns.0, &first).unwrap(), Deleted::NotOurs);
    assert!(exists(&ns.0), "left alone");
    assert_eq!(delete_if(&ns.0, &second).unwrap(), Deleted::Removed);
    assert!(!exists(&ns.0));
    assert_eq!(delete_if(&ns.0, &second).unwrap(), Deleted::Absent);
}
