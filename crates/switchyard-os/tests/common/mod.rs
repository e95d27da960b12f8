//! What the OS-layer tests share: the root check and namespaces that are removed even
//! when a test panics.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use switchyard_os::netns;

/// These tests create namespaces and devices: as root they run; otherwise they fail
/// with this message, unless SWITCHYARD_SKIP_ROOT_TESTS=1 skips them explicitly.
/// Returns false to skip.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("SWITCHYARD_SKIP_ROOT_TESTS").as_deref() == Ok("1") {
        eprintln!("skipped: not root and SWITCHYARD_SKIP_ROOT_TESTS=1");
        return false;
    }
    panic!(
        "this test creates network namespaces and devices and must run as root \
         (sudo -E cargo test); set SWITCHYARD_SKIP_ROOT_TESTS=1 to skip it explicitly"
    );
}

/// A namespace name unique to this process and test (`nltest<pid><tag><n>`), removed
/// on drop.
pub struct TestNs(pub String);

impl TestNs {
    /// A fresh name; nothing is created.
    pub fn name(tag: &str) -> TestNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        TestNs(format!(
            "nltest{}{tag}{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// A fresh namespace.
    pub fn create(tag: &str) -> TestNs {
        let ns = TestNs::name(tag);
        netns::create(&ns.0).unwrap();
        ns
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}
