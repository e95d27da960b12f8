//! Named network namespaces, as `ip netns` keeps them (without running `ip`).
//!
//! A network namespace lives as long as something refers to it: a process or thread
//! inside it, an open fd to it, or a bind mount of its `/proc/.../ns/net` file. `ip
//! netns add NAME` makes that last kind: an empty file `/run/netns/NAME` with the
//! namespace bind-mounted on it, which is why `ip netns exec` and this module find
//! each other's namespaces.
//!
//! Two traps, both about threads:
//! * `unshare(CLONE_NEWNET)` and `setns` change the namespace of the *calling thread*
//!   only. This module therefore does both on short-lived threads of its own
//!   ([`run_in`]) and never moves the caller.
//! * A socket or TAP device belongs to the namespace that was current for the thread
//!   that created it — and stays usable from every thread afterwards. That is how
//!   switchyard holds TAPs of many namespaces in one process.

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where named namespaces are mounted.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A failure to create, open, enter or delete a named namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace name {0:?} is invalid (1 to 255 bytes, no '/', not '.' or '..')")]
    BadName(String),
    #[error("network namespace {0} already exists")]
    AlreadyExists(String),
    #[error("network namespace {0} does not exist")]
    NotFound(String),
    #[error("{op} network namespace {name}: {detail}: {source}")]
    Os {
        op: &'static str,
        name: String,
        detail: String,
        #[source]
        source: io::Error,
    },
    #[error("thread for network namespace {name}: {source}")]
    Thread {
        name: String,
        #[source]
        source: io::Error,
    },
}

fn os(
    op: &'static str,
    name: &str,
    detail: impl Into<String>,
    source: impl Into<io::Error>,
) -> NetnsError {
    NetnsError::Os {
        op,
        name: name.to_string(),
        detail: detail.into(),
        source: source.into(),
    }
}

fn check_name(name: &str) -> Result<PathBuf, NetnsError> {
    if name.is_empty()
        || name.len() > 255
        || name.contains('/')
        || name == "."
        || name == ".."
        || name.contains('\0')
    {
        return Err(NetnsError::BadName(name.to_string()));
    }
    Ok(Path::new(NETNS_RUN_DIR).join(name))
}

/// Makes /run/netns a shared mount point, as iproute2 does, so that namespaces
/// mounted there later show up in other mount namespaces too.
fn prepare_run_dir() -> Result<(), NetnsError> {
    let dir = Path::new(NETNS_RUN_DIR);
    fs::create_dir_all(dir).map_err(|e| os("create", "", format!("mkdir {NETNS_RUN_DIR}"), e))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    match mount(None::<&str>, dir, Some("none"), shared, None::<&str>) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            // Not a mount point yet: bind it onto itself, then share it.
            mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| {
                os(
                    "create",
                    "",
                    format!("bind mount {NETNS_RUN_DIR} on itself"),
                    e,
                )
            })?;
            mount(None::<&str>, dir, Some("none"), shared, None::<&str>)
                .map_err(|e| os("create", "", format!("make {NETNS_RUN_DIR} shared"), e))
        }
        Err(e) => Err(os("create", "", format!("make {NETNS_RUN_DIR} shared"), e)),
    }
}

/// Creates the named namespace `name` (like `ip netns add`). Fails if it exists:
/// a namespace switchyard did not create is never taken over.
pub fn create(name: &str) -> Result<(), NetnsError> {
    let path = check_name(name)?;
    prepare_run_dir()?;
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(NetnsError::AlreadyExists(name.to_string()))
        }
        Err(e) => return Err(os("create", name, format!("create {}", path.display()), e)),
    }
    let target = path.clone();
    let owned = name.to_string();
    let result = std::thread::Builder::new()
        .name("netns-create".into())
        .spawn(move || -> Result<(), NetnsError> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| os("create", &owned, "unshare(CLONE_NEWNET)", e))?;
            let tid = nix::unistd::gettid();
            let src = format!("/proc/self/task/{tid}/ns/net");
            mount(
                Some(src.as_str()),
                &target,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                os(
                    "create",
                    &owned,
                    format!("bind mount {src} on {}", target.display()),
                    e,
                )
            })
        })
        .map_err(|source| NetnsError::Thread {
            name: name.to_string(),
            source,
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(NetnsError::Thread {
                name: name.to_string(),
                source: io::Error::other("panicked"),
            })
        });
    if result.is_err() {
        let _ = fs::remove_file(&path);
    }
    result
}

/// Gives the existing namespace `target` a second name, `alias` (what Docker's
/// `--network container:<name>` amounts to: two endpoints, one network namespace).
/// Deleting either name leaves the other working.
pub fn alias(target: &str, alias: &str) -> Result<(), NetnsError> {
    let from = check_name(target)?;
    let path = check_name(alias)?;
    if !from.exists() {
        return Err(NetnsError::NotFound(target.to_string()));
    }
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(NetnsError::AlreadyExists(alias.to_string()))
        }
        Err(e) => return Err(os("create", alias, format!("create {}", path.display()), e)),
    }
    if let Err(e) = mount(
        Some(&from),
        &path,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = fs::remove_file(&path);
        return Err(os(
            "create",
            alias,
            format!("bind mount {} on {}", from.display(), path.display()),
            e,
        ));
    }
    Ok(())
}

/// Deletes the named namespace (like `ip netns del`). Returns false if it did not
/// exist. The namespace itself disappears once nothing else refers to it.
pub fn delete(name: &str) -> Result<bool, NetnsError> {
    let path = check_name(name)?;
    if !path.exists() {
        return Ok(false);
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-created entry); remove the file anyway.
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(os("delete", name, format!("unmount {}", path.display()), e)),
    }
    fs::remove_file(&path)
        .map_err(|e| os("delete", name, format!("remove {}", path.display()), e))?;
    Ok(true)
}

/// True if `/run/netns/NAME` exists.
pub fn exists(name: &str) -> bool {
    check_name(name).map(|p| p.exists()).unwrap_or(false)
}

/// Opens the named namespace (a handle that also keeps it alive while open).
pub fn open(name: &str) -> Result<OwnedFd, NetnsError> {
    let path = check_name(name)?;
    match fs::File::open(&path) {
        Ok(f) => Ok(OwnedFd::from(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(NetnsError::NotFound(name.to_string()))
        }
        Err(e) => Err(os("open", name, format!("open {}", path.display()), e)),
    }
}

/// Moves the *calling thread* into the namespace `ns`. Only for threads that belong
/// to the caller for good; prefer [`run_in`].
pub fn enter(ns: BorrowedFd<'_>) -> Result<(), NetnsError> {
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| os("enter", "(fd)", "setns", e))
}

/// Runs `f` on a new thread inside namespace `ns` and returns its result. A panic in
/// `f` is resumed on the caller.
pub fn run_in<T: Send + 'static>(
    ns: BorrowedFd<'_>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let fd = ns
        .try_clone_to_owned()
        .map_err(|e| os("enter", "(fd)", "dup", e))?;
    let handle = std::thread::Builder::new()
        .name("netns-run".into())
        .spawn(move || -> Result<T, NetnsError> {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| os("enter", "(fd)", "setns", e))?;
            drop(fd);
            Ok(f())
        })
        .map_err(|source| NetnsError::Thread {
            name: "(fd)".into(),
            source,
        })?;
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// [`run_in`] by namespace name.
pub fn run_in_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetnsError> {
    let fd = open(name)?;
    run_in(fd.as_fd(), f).map_err(|e| match e {
        NetnsError::Os {
            op, detail, source, ..
        } => NetnsError::Os {
            op,
            name: name.to_string(),
            detail,
            source,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicU32, Ordering};

    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = delete(&self.0);
        }
    }

    fn unique() -> Guard {
        static N: AtomicU32 = AtomicU32::new(0);
        Guard(format!(
            "nstest{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    fn netns_inode() -> u64 {
        fs::metadata("/proc/thread-self/ns/net").unwrap().ino()
    }

    #[test]
    fn create_enter_delete() {
        let g = unique();
        create(&g.0).unwrap();
        assert!(exists(&g.0));
        assert!(matches!(create(&g.0), Err(NetnsError::AlreadyExists(_))));
        let host = netns_inode();
        let inside = run_in_named(&g.0, netns_inode).unwrap();
        assert_ne!(host, inside, "the thread ran in another namespace");
        assert_eq!(netns_inode(), host, "the caller did not move");
        // The same namespace every time.
        assert_eq!(run_in_named(&g.0, netns_inode).unwrap(), inside);
        assert!(delete(&g.0).unwrap());
        assert!(!exists(&g.0));
        assert!(!delete(&g.0).unwrap());
        assert!(matches!(open(&g.0), Err(NetnsError::NotFound(_))));
    }

    #[test]
    fn an_alias_is_the_same_namespace() {
        let g = unique();
        let a = unique();
        create(&g.0).unwrap();
        alias(&g.0, &a.0).unwrap();
        let one = run_in_named(&g.0, netns_inode).unwrap();
        assert_eq!(run_in_named(&a.0, netns_inode).unwrap(), one);
        assert!(delete(&g.0).unwrap());
        assert_eq!(
            run_in_named(&a.0, netns_inode).unwrap(),
            one,
            "still alive under its other name"
        );
        assert!(matches!(
            alias("nstest-missing", "nstest-x"),
            Err(NetnsError::NotFound(_))
        ));
    }

    #[test]
    fn bad_names_are_refused() {
        for n in ["", "a/b", ".", ".."] {
            assert!(matches!(create(n), Err(NetnsError::BadName(_))), "{n:?}");
        }
    }

    #[test]
    fn panics_propagate() {
        let g = unique();
        create(&g.0).unwrap();
        let r = std::panic::catch_unwind(|| run_in_named(&g.0, || panic!("inside")));
        assert!(r.is_err());
    }
}
