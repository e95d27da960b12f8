//! Named network namespaces, kept the way `ip netns` keeps them (without running `ip`).
//!
//! A network namespace lives as long as something refers to it: a thread inside it,
//! an open fd to it, or a bind mount of its `/proc/.../ns/net` file. `ip netns add
//! NAME` makes the last kind: an empty file `/run/netns/NAME` with the namespace
//! bind-mounted onto it. Because this module does exactly the same, `ip netns exec`,
//! `ip netns list` and switchyard see each other's namespaces.
//!
//! Traps this module is built around:
//!
//! * `unshare(CLONE_NEWNET)` and `setns` move only the *calling thread*, not the
//!   process. So [`create`] and [`run_in`] do that on short-lived threads of their
//!   own and never move the caller. [`enter`] is the exception, for a thread the
//!   caller owns for good (e.g. a dedicated worker).
//! * A socket, netlink socket or TAP device belongs to the namespace that was current
//!   for the thread that *created* it, and stays usable from any thread afterwards.
//!   That is how one process holds TAPs of many namespaces: open each one inside
//!   [`run_in`], return the fd, use it anywhere.
//! * Paths that say "self" follow the *process*, not the thread: after `setns` on a
//!   thread, `/proc/self/ns/net` and `/proc/net/*` still show the main thread's
//!   namespace. Use `/proc/thread-self/...` (or `/proc/self/task/<tid>/...`) there.
//!   `/sys/class/net` shows whatever namespace sysfs was mounted from, so it is no
//!   help either; ask over netlink (see `super::netlink`) instead.
//! * `/run/netns` must be a *shared* mount point, or a namespace mounted there from
//!   one mount namespace would not show up in another (and could not be unmounted
//!   from there). [`create`] sets that up exactly as iproute2 does.
//! * Deleting the name does not kill the namespace while something else still holds
//!   it (an open fd, a process inside, a TAP opened in it); it only stops new users
//!   finding it.
//! * A name is no identity, and neither is the nsfs inode number: the kernel hands a
//!   freed namespace's number to the next namespace made. [`Identity`] adds the
//!   namespace cookie, never reused, and [`delete_if`] deletes a name only while it
//!   still names the namespace recorded.

use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

/// Where named namespaces are mounted (the directory `ip netns` uses).
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The longest file name Linux accepts (`NAME_MAX`).
const NAME_MAX: usize = 255;

/// A failure to create, open, enter or delete a network namespace. The message names
/// the namespace, the operation and the step that failed, with the OS error.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The name cannot be a file name in [`NETNS_RUN_DIR`].
    #[error("network namespace name {name:?} is invalid: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// `create`: the name is taken. We never take over a namespace we did not make.
    #[error("create network namespace {0}: {NETNS_RUN_DIR}/{0} already exists")]
    AlreadyExists(String),
    /// The name is not in [`NETNS_RUN_DIR`].
    #[error("{op} network namespace {name}: {NETNS_RUN_DIR}/{name} does not exist")]
    NotFound { op: &'static str, name: String },
    /// A system call failed: `op` is what was attempted, `step` the call that failed.
    #[error("{op} network namespace {name}: {step}: {source}")]
    Os {
        op: &'static str,
        name: String,
        step: String,
        #[source]
        source: io::Error,
    },
}

impl NetnsError {
    /// The OS error number behind the failure, if there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetnsError::Os { source, .. } => source.raw_os_error(),
            NetnsError::AlreadyExists(_) => Some(libc::EEXIST),
            NetnsError::NotFound { .. } => Some(libc::ENOENT),
            NetnsError::InvalidName { .. } => Some(libc::EINVAL),
        }
    }
}

fn os_err(
    op: &'static str,
    name: &str,
    step: impl Into<String>,
    source: impl Into<io::Error>,
) -> NetnsError {
    NetnsError::Os {
        op,
        name: name.to_string(),
        step: step.into(),
        source: source.into(),
    }
}

/// Checks that `name` is a plain file name and returns its path in [`NETNS_RUN_DIR`]
/// (where `ip netns` keeps it too).
pub fn path_of(name: &str) -> Result<PathBuf, NetnsError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > NAME_MAX {
        Some("longer than 255 bytes")
    } else if name.contains('/') {
        Some("contains '/'")
    } else if name.contains('\0') {
        Some("contains a NUL byte")
    } else if name == "." || name == ".." {
        Some("'.' and '..' are not namespaces")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(NetnsError::InvalidName {
            name: name.to_string(),
            reason,
        }),
        None => Ok(Path::new(NETNS_RUN_DIR).join(name)),
    }
}

/// Serialises the one-time mount setup of [`NETNS_RUN_DIR`] within this process, so
/// two threads creating namespaces at once do not both stack a bind mount on it.
static RUN_DIR_SETUP: Mutex<()> = Mutex::new(());

/// Makes [`NETNS_RUN_DIR`] exist and be a shared mount point, as `ip netns add` does.
///
/// Shared propagation is what makes a namespace mounted here visible to (and
/// removable from) other mount namespaces, e.g. a shell in another container of the
/// same host. If the directory is not a mount point yet, making it shared fails with
/// EINVAL; then it is bind-mounted onto itself (making it one) and tried again.
fn prepare_run_dir(name: &str) -> Result<(), NetnsError> {
    // A poisoned lock only means another thread panicked here; the mount state is
    // still whatever the kernel says, so carry on.
    let _guard = RUN_DIR_SETUP.lock().unwrap_or_else(|e| e.into_inner());
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(NETNS_RUN_DIR)
        .map_err(|e| os_err("create", name, format!("create {NETNS_RUN_DIR}"), e))?;
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    let mut bound = false;
    loop {
        match mount(Some(""), NETNS_RUN_DIR, Some("none"), shared, None::<&str>) {
            Ok(()) => return Ok(()),
            Err(Errno::EINVAL) if !bound => {
                mount(
                    Some(NETNS_RUN_DIR),
                    NETNS_RUN_DIR,
                    Some("none"),
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(|e| {
                    os_err(
                        "create",
                        name,
                        format!("bind mount {NETNS_RUN_DIR} on itself"),
                        e,
                    )
                })?;
                bound = true;
            }
            Err(e) => {
                return Err(os_err(
                    "create",
                    name,
                    format!("make {NETNS_RUN_DIR} a shared mount"),
                    e,
                ))
            }
        }
    }
}

/// Creates the named network namespace `name`, like `ip netns add NAME`.
///
/// Fails with [`NetnsError::AlreadyExists`] if the name is taken: a namespace this
/// code did not create is never taken over. The new namespace has only a `lo`, down.
pub fn create(name: &str) -> Result<(), NetnsError> {
    let path = path_of(name)?;
    prepare_run_dir(name)?;
    make_mount_point(name, &path)?;
    let result = mount_new_namespace(name, &path);
    if result.is_err() {
        // Leave no half-made name behind. The namespace itself (if unshare worked)
        // died with the helper thread, as nothing else referred to it.
        let _ = fs::remove_file(&path);
    }
    result
}

/// Creates the empty file a namespace is mounted on. O_EXCL makes the name ours from
/// here on, or someone else's and we stop. Mode 0, as iproute2 makes it: the file is
/// only ever a mount point, never read or written itself.
fn make_mount_point(name: &str, path: &Path) -> Result<(), NetnsError> {
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(NetnsError::AlreadyExists(name.to_string()))
        }
        Err(e) => Err(os_err(
            "create",
            name,
            format!("create {}", path.display()),
            e,
        )),
    }
}

/// On a helper thread (unshare moves only the calling thread, and that thread then
/// exits): makes a new network namespace and bind-mounts it onto `path`, which keeps
/// it alive after the thread is gone.
fn mount_new_namespace(name: &str, path: &Path) -> Result<(), NetnsError> {
    std::thread::scope(|s| {
        let helper = std::thread::Builder::new()
            .name("netns-create".into())
            .spawn_scoped(s, || -> Result<(), NetnsError> {
                unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| os_err("create", name, "unshare(CLONE_NEWNET)", e))?;
                // The thread's own entry: /proc/self would name the main thread's.
                let src = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
                mount(
                    Some(src.as_str()),
                    path,
                    Some("none"),
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| {
                    os_err(
                        "create",
                        name,
                        format!("bind mount {src} on {}", path.display()),
                        e,
                    )
                })
            })
            .map_err(|e| os_err("create", name, "spawn helper thread", e))?;
        helper.join().unwrap_or_else(|_| {
            Err(os_err(
                "create",
                name,
                "helper thread",
                io::Error::other("panicked"),
            ))
        })
    })
}

/// Gives the existing namespace `target` a second name `alias` (two names, one
/// namespace: what Docker's `--network container:<name>` amounts to). Deleting
/// either name leaves the other working. Fails if `alias` is taken.
pub fn alias(target: &str, alias: &str) -> Result<(), NetnsError> {
    let path = path_of(alias)?;
    // Mount from an fd rather than the target's path: the alias then names exactly
    // the namespace that was opened, even if `target` is deleted or re-created
    // meanwhile.
    let held = open(target)?;
    let src = format!("/proc/self/fd/{}", held.as_raw_fd());
    make_mount_point(alias, &path)?;
    if let Err(e) = mount(
        Some(src.as_str()),
        &path,
        Some("none"),
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = fs::remove_file(&path);
        return Err(os_err(
            "create",
            alias,
            format!(
                "bind mount network namespace {target} ({src}) on {}",
                path.display()
            ),
            e,
        ));
    }
    Ok(())
}

/// Deletes the named namespace, like `ip netns del NAME`: detaches the mount, then
/// removes the file. Returns `Ok(false)` if there was no such name.
///
/// The namespace itself goes away once nothing else refers to it; its devices go
/// with it (veth peers elsewhere included, physical devices return to the initial
/// namespace).
pub fn delete(name: &str) -> Result<bool, NetnsError> {
    let path = path_of(name)?;
    let mut removed = false;
    match umount2(&path, MntFlags::MNT_DETACH) {
        Ok(()) => removed = true,
        Err(Errno::ENOENT) => return Ok(false),
        // Not a mount point: an entry left half-made by a crash. Remove the file.
        Err(Errno::EINVAL) => {}
        Err(e) => {
            return Err(os_err(
                "delete",
                name,
                format!("unmount {}", path.display()),
                e,
            ))
        }
    }
    match fs::remove_file(&path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(removed),
        Err(e) => Err(os_err(
            "delete",
            name,
            format!("remove {}", path.display()),
            e,
        )),
    }
}

/// True if `/run/netns/NAME` exists (false for an invalid name).
pub fn exists(name: &str) -> bool {
    path_of(name)
        .map(|p| p.symlink_metadata().is_ok())
        .unwrap_or(false)
}

/// Opens the named namespace read-only (and close-on-exec). The fd is a handle for
/// [`run_in`], [`enter`] or `link_set_netns`, and keeps the namespace alive while it
/// is open, even if the name is deleted meanwhile.
pub fn open(name: &str) -> Result<OwnedFd, NetnsError> {
    let path = path_of(name)?;
    // std opens every file with O_CLOEXEC; read(true) alone makes it O_RDONLY.
    match fs::OpenOptions::new().read(true).open(&path) {
        Ok(file) => Ok(OwnedFd::from(file)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(NetnsError::NotFound {
            op: "open",
            name: name.to_string(),
        }),
        Err(e) => Err(os_err("open", name, format!("open {}", path.display()), e)),
    }
}

/// Opens a namespace by path — one switchyard did not create, as a container runtime
/// hands it over (`/run/netns/NAME`, `/proc/PID/ns/net`) — read-only and
/// close-on-exec. Refused unless the file is a namespace file (nsfs): a path that
/// names anything else is not entered.
pub fn open_path(path: &Path) -> Result<OwnedFd, NetnsError> {
    let label = path.display().to_string();
    let file = fs::OpenOptions::new()
        .read(true)
        .open(path)
        .map_err(|e| os_err("open", &label, format!("open {label}"), e))?;
    let fs = nix::sys::statfs::fstatfs(&file).map_err(|e| os_err("open", &label, "fstatfs", e))?;
    if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
        return Err(os_err(
            "open",
            &label,
            "check it is a namespace",
            io::Error::other("not a namespace file (nsfs)"),
        ));
    }
    Ok(OwnedFd::from(file))
}

/// Moves the *calling thread* into the namespace `ns` (the rest of the process stays
/// where it is). Only for a thread the caller owns for good; otherwise use [`run_in`],
/// which cannot leave a borrowed thread in the wrong namespace.
pub fn enter(ns: BorrowedFd<'_>) -> Result<(), NetnsError> {
    setns(ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| os_err("enter", &fd_label(ns), "setns(CLONE_NEWNET)", e))
}

fn fd_label(ns: BorrowedFd<'_>) -> String {
    format!("(fd {})", ns.as_raw_fd())
}

/// Runs `f` on a new thread that has entered the namespace `ns`, waits for it and
/// returns its result. The calling thread never changes namespace. A panic in `f` is
/// resumed on the caller.
///
/// Sockets and TAP devices that `f` opens belong to `ns` and may be returned and used
/// from any thread. `f` may borrow from the caller: the thread is joined before this
/// returns.
pub fn run_in<T, F>(ns: impl AsFd, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let ns = ns.as_fd();
    run_labeled(ns, &fd_label(ns), f)
}

/// [`run_in`] for the namespace named `name`.
pub fn run_in_named<T, F>(name: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let fd = open(name)?;
    run_labeled(fd.as_fd(), name, f)
}

fn run_labeled<T, F>(ns: BorrowedFd<'_>, label: &str, f: F) -> Result<T, NetnsError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("netns-run".into())
            .spawn_scoped(s, move || -> Result<T, Errno> {
                setns(ns, CloneFlags::CLONE_NEWNET)?;
                Ok(f())
            })
            .map_err(|e| os_err("enter", label, "spawn thread", e))?;
        match worker.join() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(os_err("enter", label, "setns(CLONE_NEWNET)", e)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// What tells one network namespace from another for good: the device and inode of
/// its nsfs file (what `stat -L /run/netns/NAME` shows) and the namespace's cookie.
///
/// The inode alone is not enough: the kernel hands out namespace inode numbers
/// lowest-free-first, so a namespace created right after another was freed usually
/// gets the freed one's number. The cookie (`SO_NETNS_COOKIE`, Linux 5.14) is a
/// 64-bit counter never reused while the machine runs; where the kernel has none it
/// is `None` and the inode has to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<u64>,
}

/// `SO_NETNS_COOKIE` from `<asm-generic/socket.h>` (the value on every architecture
/// switchyard builds for); not every libc version exports it.
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The device and inode `/run/netns/NAME` resolves to, without the cookie (a plain
/// `stat`, cheap enough to poll). `None` if the name does not exist.
pub fn file_identity(name: &str) -> Result<Option<(u64, u64)>, NetnsError> {
    use std::os::unix::fs::MetadataExt;
    let path = path_of(name)?;
    match fs::metadata(&path) {
        Ok(m) => Ok(Some((m.dev(), m.ino()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(os_err("stat", name, format!("stat {}", path.display()), e)),
    }
}

/// The identity of the namespace named `name` now, or `None` if there is no such
/// name. A name that is a bare file (no namespace mounted on it) has the identity of
/// that file, which matches no namespace's.
pub fn identity(name: &str) -> Result<Option<Identity>, NetnsError> {
    let Some((dev, ino)) = file_identity(name)? else {
        return Ok(None);
    };
    let cookie = match open(name) {
        Ok(fd) => run_in(&fd, netns_cookie).ok().flatten(),
        Err(NetnsError::NotFound { .. }) => return Ok(None),
        Err(_) => None,
    };
    Ok(Some(Identity { dev, ino, cookie }))
}

/// The cookie of the calling thread's network namespace, read from a socket made in
/// it. `None` on kernels without `SO_NETNS_COOKIE`.
fn netns_cookie() -> Option<u64> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0")
        .or_else(|_| std::net::UdpSocket::bind("0.0.0.0:0"))
        .ok()?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the fd is a socket we own for the duration of the call; `cookie` and
    // `len` are valid for writes of the sizes passed.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    (r == 0 && len as usize == std::mem::size_of::<u64>()).then_some(cookie)
}

/// What [`delete_if`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The name named the expected namespace and is gone.
    Removed,
    /// There was no such name.
    Absent,
    /// The name now names another namespace (or a bare file): left alone.
    NotOurs,
}

/// Deletes `name` only if it still names the namespace `expected` (device, inode and,
/// when both sides know it, cookie). A name that someone else has re-created since is
/// left alone.
pub fn delete_if(name: &str, expected: &Identity) -> Result<Deleted, NetnsError> {
    let Some(now) = identity(name)? else {
        return Ok(Deleted::Absent);
    };
    let same = now.dev == expected.dev
        && now.ino == expected.ino
        && match (now.cookie, expected.cookie) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
    if !same {
        return Ok(Deleted::NotOurs);
    }
    Ok(if delete(name)? {
        Deleted::Removed
    } else {
        Deleted::Absent
    })
}
