//! The resolv.conf of an endpoint namespace: which DNS servers its processes ask.
//!
//! `ip netns exec NAME cmd` bind-mounts every file of `/etc/netns/NAME/` over the one
//! of the same name in `/etc` before it runs `cmd`, so `/etc/netns/NAME/resolv.conf`
//! is the `/etc/resolv.conf` of whatever runs in namespace NAME that way. For each
//! namespace switchyard creates with an interface on a network that serves DNS, the
//! file names the gateways of those networks (eth0's first, at most three: glibc
//! reads no more), their search domains, and `options ndots:0`, as Docker writes
//! for its embedded resolver. A namespace switchyard did not create is its owner's:
//! no file is written for it.
//!
//! The file is written as root into a directory anyone could have prepared, so
//! nothing is taken on trust: `/etc/netns` and the namespace's directory are opened
//! without following symbolic links and refused unless they belong to the user
//! switchyard runs as and no one else may write in them; the file is created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` (a symlink or any file already at its path is refused,
//! never followed or overwritten) and replaced, when it changes, by a new file
//! renamed over it. The identity (device and inode) of the file, and of the directory
//! if switchyard made it, is recorded in the instance's state file with the file's
//! text; removal deletes only a file that still has that identity and that text, and
//! the directory only if it is still the one made and empty.

use super::config::{Endpoint, Topology};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Where `ip netns exec` looks for a namespace's own files.
pub const ETC_NETNS: &str = "/etc/netns";
/// The file's name in the namespace's directory.
pub const FILE: &str = "resolv.conf";
/// Most `nameserver` lines glibc's resolver reads (`MAXNS`).
pub const MAX_NAMESERVERS: usize = 3;
/// Most search domains glibc's resolver reads (`MAXDNSRCH`).
pub const MAX_SEARCH: usize = 6;
/// The temporary a changed file is written to before it is renamed over the file.
const TMP: &str = ".resolv.conf.switchyard";

/// The resolv.conf endpoint `ep` of `topo` gets, if it gets one: only a namespace
/// switchyard creates (a `container:` endpoint's is its target's), with at least one
/// interface on a network that serves DNS.
pub fn contents(topo: &Topology, ep: &Endpoint) -> Option<String> {
    if ep.foreign {
        return None;
    }
    let owner = match ep.shares {
        Some(j) => topo.endpoints.get(j)?,
        None => ep,
    };
    // eth0 first: its network is the one the default route goes through.
    let mut ifaces: Vec<_> = owner.interfaces.iter().collect();
    ifaces.sort_by_key(|i| i.ifname != "eth0");
    let mut servers = Vec::new();
    let mut search: Vec<&str> = Vec::new();
    for i in ifaces {
        let net = &topo.networks[i.network];
        let Some(gw) = net.gateway.filter(|_| net.serves_dns()) else {
            continue;
        };
        if !servers.contains(&gw.ip) {
            servers.push(gw.ip);
        }
        if let Some(d) = net.dns_domain.as_deref() {
            if !search.contains(&d) {
                search.push(d);
            }
        }
    }
    if servers.is_empty() {
        return None;
    }
    let mut text = format!(
        "# Written by switchyard for namespace {}: the DNS servers at the gateways of its networks.\n",
        ep.netns
    );
    for s in servers.iter().take(MAX_NAMESERVERS) {
        text.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        search.truncate(MAX_SEARCH);
        text.push_str(&format!("search {}\n", search.join(" ")));
    }
    text.push_str("options ndots:0\n");
    Some(text)
}

/// A file or directory as the kernel knows it, which a name may stop denoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(st: &FileStat) -> FileId {
        FileId {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// A resolv.conf an instance wrote, as its state file records it. Listed before
/// anything is made; each identity is added once what it names exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedResolv {
    /// The namespace: the file is `/etc/netns/<netns>/resolv.conf`.
    pub netns: String,
    /// The identity of `/etc/netns/<netns>` if switchyard made it (it then removes
    /// the directory too, once empty).
    #[serde(default)]
    pub dir: Option<FileId>,
    /// The file's identity, once written.
    #[serde(default)]
    pub file: Option<FileId>,
    /// What the file holds: removal also asks that the file there still says it,
    /// since a file's inode number may be handed to another once it is deleted.
    #[serde(default)]
    pub text: Option<String>,
}

/// Why a resolv.conf could not be written or removed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ResolvError {
    pub path: String,
    pub reason: String,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> ResolvError {
    ResolvError {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// What removing a recorded file or directory found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    /// Nothing by that name any more.
    Absent,
    /// Something else is there now (or, for a directory, it is not empty): left alone.
    NotOurs,
}

/// The directory files are written in (`/etc/netns`, or another for tests).
#[derive(Debug, Clone)]
pub struct EtcNetns {
    base: PathBuf,
}

impl Default for EtcNetns {
    fn default() -> Self {
        EtcNetns::at(ETC_NETNS)
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC
}

/// Refuses a directory someone other than switchyard's user could change.
fn check_dir(fd: &OwnedFd, path: &Path) -> Result<FileStat, ResolvError> {
    let st = fstat(fd).map_err(|e| err(path, e))?;
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(err(
            path,
            format!(
                "refused: owned by uid {}, not by uid {me} that runs switchyard",
                st.st_uid
            ),
        ));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(err(
            path,
            format!(
                "refused: mode {:04o} lets others than its owner write in it",
                st.st_mode & 0o7777
            ),
        ));
    }
    Ok(st)
}

/// Opens `name` in `parent` as a directory, never through a symbolic link.
fn open_dir_at(parent: &OwnedFd, name: &str, path: &Path) -> Result<OwnedFd, ResolvError> {
    openat(parent, name, dir_flags(), Mode::empty()).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => err(path, "refused: not a directory (a symbolic link?)"),
        e => err(path, e),
    })
}

/// Writes `text` to a new file `name` in `dir`, mode 0644; fails if anything is at
/// that name already. Returns the file's identity.
fn create_at(dir: &OwnedFd, name: &str, text: &str, path: &Path) -> Result<FileId, ResolvError> {
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| match e {
        Errno::EEXIST => {
            let what = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st)
                    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK =>
                {
                    "a symbolic link"
                }
                _ => "a file",
            };
            err(
                path,
                format!(
                    "refused: {what} is there already, which this switchyard did not write \
                     (remove it if it is a leftover)"
                ),
            )
        }
        e => err(path, e),
    })?;
    // The umask must not make it unreadable to the namespace's other users.
    fchmod(&fd, Mode::from_bits_truncate(0o644)).map_err(|e| err(path, e))?;
    let mut f = std::fs::File::from(fd);
    use std::io::Write;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| err(path, e))?;
    let st = fstat(f.as_fd()).map_err(|e| err(path, e))?;
    Ok(FileId::of(&st))
}

/// True if file `name` in `dir` holds exactly `text` (read without following a link).
fn holds(dir: &OwnedFd, name: &str, text: &str, path: &Path) -> Result<bool, ResolvError> {
    use std::io::Read;
    let fd = match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ELOOP) => return Ok(false),
        Err(e) => return Err(err(path, e)),
    };
    // One byte more than expected tells a longer file from an equal one.
    let mut got = Vec::with_capacity(text.len() + 1);
    std::fs::File::from(fd)
        .take(text.len() as u64 + 1)
        .read_to_end(&mut got)
        .map_err(|e| err(path, e))?;
    Ok(got == text.as_bytes())
}

/// Removes `name` in `dir` if it is still `id` and, for a file, still holds `text`
/// when given (`remove_dir`: as a directory, and only when empty).
fn remove_at(
    dir: &OwnedFd,
    name: &str,
    id: FileId,
    text: Option<&str>,
    remove_dir: bool,
    path: &Path,
) -> Result<Removed, ResolvError> {
    let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(Removed::Absent),
        Err(e) => return Err(err(path, e)),
    };
    if FileId::of(&st) != id {
        return Ok(Removed::NotOurs);
    }
    if let Some(text) = text {
        if !holds(dir, name, text, path)? {
            return Ok(Removed::NotOurs);
        }
    }
    let flag = if remove_dir {
        UnlinkatFlags::RemoveDir
    } else {
        UnlinkatFlags::NoRemoveDir
    };
    match unlinkat(dir, name, flag) {
        Ok(()) => Ok(Removed::Removed),
        Err(Errno::ENOENT) => Ok(Removed::Absent),
        Err(Errno::ENOTEMPTY | Errno::EEXIST) => Ok(Removed::NotOurs),
        Err(e) => Err(err(path, e)),
    }
}

impl EtcNetns {
    pub fn at(base: impl Into<PathBuf>) -> EtcNetns {
        EtcNetns { base: base.into() }
    }

    /// `<base>/<netns>/resolv.conf`.
    pub fn path(&self, netns: &str) -> PathBuf {
        self.base.join(netns).join(FILE)
    }

    /// Opens the base directory, making it (0755) if `create` and it is missing.
    fn open_base(&self, create: bool) -> Result<Option<OwnedFd>, ResolvError> {
        if create {
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().mode(0o755).create(&self.base) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(err(&self.base, e)),
            }
        }
        let fd = match nix::fcntl::open(&self.base, dir_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if !create => return Ok(None),
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(err(
                    &self.base,
                    "refused: not a directory (a symbolic link?)",
                ))
            }
            Err(e) => return Err(err(&self.base, e)),
        };
        check_dir(&fd, &self.base)?;
        Ok(Some(fd))
    }

    /// Makes `<base>/<netns>` if it is missing. Returns the directory's identity if
    /// this call made it, None if it was there (and passes the checks).
    pub fn make_dir(&self, netns: &str) -> Result<Option<FileId>, ResolvError> {
        let base = self.open_base(true)?.expect("created");
        let path = self.base.join(netns);
        let made = match mkdirat(&base, netns, Mode::from_bits_truncate(0o755)) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(err(&path, e)),
        };
        let dir = open_dir_at(&base, netns, &path)?;
        let st = check_dir(&dir, &path)?;
        Ok(made.then(|| FileId::of(&st)))
    }

    /// Writes a new resolv.conf for `netns` (its directory must exist: [`make_dir`]);
    /// refuses if anything is at its path already.
    ///
    /// [`make_dir`]: EtcNetns::make_dir
    pub fn create(&self, netns: &str, text: &str) -> Result<FileId, ResolvError> {
        let base = self
            .open_base(false)?
            .ok_or_else(|| err(&self.base, "missing"))?;
        let dir_path = self.base.join(netns);
        let dir = open_dir_at(&base, netns, &dir_path)?;
        check_dir(&dir, &dir_path)?;
        create_at(&dir, FILE, text, &self.path(netns))
    }

    /// Replaces the resolv.conf switchyard wrote for `netns` (identity `old`) with
    /// `text`: a new file renamed over it. Refused if the file there is not `old`.
    pub fn replace(&self, netns: &str, old: FileId, text: &str) -> Result<FileId, ResolvError> {
        let path = self.path(netns);
        let base = self
            .open_base(false)?
            .ok_or_else(|| err(&self.base, "missing"))?;
        let dir_path = self.base.join(netns);
        let dir = open_dir_at(&base, netns, &dir_path)?;
        check_dir(&dir, &dir_path)?;
        match fstatat(&dir, FILE, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) if FileId::of(&st) == old => {}
            Ok(_) => {
                return Err(err(
                    &path,
                    "refused: it was replaced by something this switchyard did not write",
                ))
            }
            Err(e) => return Err(err(&path, e)),
        }
        // A leftover temporary (a crash between writing and renaming) is ours to drop.
        match unlinkat(&dir, TMP, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(err(&dir_path.join(TMP), e)),
        }
        let id = create_at(&dir, TMP, text, &dir_path.join(TMP))?;
        renameat(&dir, TMP, &dir, FILE).map_err(|e| err(&path, e))?;
        Ok(id)
    }

    /// Removes what `rec` records: the file if it is still the one written, then the
    /// directory if switchyard made it, it is still that directory and it is empty.
    /// Returns what happened to the file.
    pub fn remove(&self, rec: &RecordedResolv) -> Result<Removed, ResolvError> {
        let Some(base) = self.open_base(false)? else {
            return Ok(Removed::Absent);
        };
        let dir_path = self.base.join(&rec.netns);
        let mut removed = Removed::Absent;
        if let Some(id) = rec.file {
            match open_dir_at(&base, &rec.netns, &dir_path) {
                Ok(dir) => {
                    check_dir(&dir, &dir_path)?;
                    removed = remove_at(
                        &dir,
                        FILE,
                        id,
                        rec.text.as_deref(),
                        false,
                        &self.path(&rec.netns),
                    )?;
                }
                Err(_)
                    if matches!(
                        fstatat(&base, rec.netns.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW),
                        Err(Errno::ENOENT)
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(id) = rec.dir {
            remove_at(&base, &rec.netns, id, None, true, &dir_path)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests;
