//! What a namespace's resolv.conf says, and how it is written and removed (in a
//! directory of the test's own, standing for /etc/netns).

use super::*;
use crate::topology::config::parse;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU32, Ordering};

const TOPO: &str = r#"
[[network]]
name = "default"
subnet = "172.17.0.0/16"
gateway = "172.17.0.1"
[[network]]
name = "app"
subnet = "10.1.0.0/24"
gateway = "10.1.0.1"
dns_domain = "app.internal"
[[network]]
name = "db"
subnet = "10.2.0.0/24"
gateway = "10.2.0.1"
dns_domain = "db.internal"
[[network]]
name = "l2"
subnet = "10.3.0.0/24"

[[endpoint]]
name = "multi"
attach = [ { network = "default", ifname = "eth2" }, { network = "db", ifname = "eth1" }, { network = "app", ifname = "eth0" } ]
[[endpoint]]
name = "plain"
network = "default"
[[endpoint]]
name = "side"
mode = "container:multi"
[[endpoint]]
name = "idle"
mode = "none"
[[endpoint]]
name = "attached"
network = "app"
netns = "/run/netns/someone-elses"
[[endpoint]]
name = "flat"
network = "l2"
"#;

fn of(t: &Topology, name: &str) -> Option<String> {
    let ep = t.endpoints.iter().find(|e| e.name == name).unwrap();
    contents(t, ep)
}

#[test]
fn the_gateways_of_the_dns_networks_eth0_first_with_their_domains() {
    let t = parse(TOPO, "t").unwrap();
    let multi = of(&t, "multi").unwrap();
    let lines: Vec<&str> = multi.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(
        lines,
        [
            "nameserver 10.1.0.1",
            "nameserver 10.2.0.1",
            "search app.internal db.internal",
            "options ndots:0"
        ]
    );
    // A second name for multi's namespace says what multi's says (but its own name).
    let side = of(&t, "side").unwrap();
    assert_eq!(
        side.lines().skip(1).collect::<Vec<_>>(),
        multi.lines().skip(1).collect::<Vec<_>>()
    );
    // No DNS network, only lo, or a namespace switchyard did not make: no file.
    for none in ["plain", "idle", "attached", "flat"] {
        assert_eq!(of(&t, none), None, "{none}");
    }
}

#[test]
fn at_most_three_nameservers() {
    let mut text = String::new();
    let mut attach = Vec::new();
    for k in 1..=5 {
        text.push_str(&format!(
            "[[network]]\nname = \"n{k}\"\nsubnet = \"10.{k}.0.0/24\"\ngateway = \"10.{k}.0.1\"\n"
        ));
        attach.push(format!("{{ network = \"n{k}\" }}"));
    }
    text.push_str(&format!(
        "[[endpoint]]\nname = \"e\"\nattach = [{}]\n",
        attach.join(", ")
    ));
    let t = parse(&text, "t").unwrap();
    let conf = of(&t, "e").unwrap();
    let servers: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("nameserver"))
        .collect();
    assert_eq!(
        servers,
        [
            "nameserver 10.1.0.1",
            "nameserver 10.2.0.1",
            "nameserver 10.3.0.1"
        ]
    );
    assert!(!conf.contains("search"), "{conf}");
}

/// A directory standing for /etc/netns, removed at the end of the test.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "switchyard-resolv-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn written_replaced_and_removed_with_the_directory_it_made() {
    let s = Scratch::new();
    let etc = EtcNetns::at(s.0.join("netns"));
    let dir = etc.make_dir("sy-a").unwrap();
    assert!(dir.is_some(), "the directory was made here");
    let mode = std::fs::metadata(s.0.join("netns"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o022, 0, "{mode:o}");
    let file = etc.create("sy-a", "nameserver 10.1.0.1\n").unwrap();
    let path = etc.path("sy-a");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "nameserver 10.1.0.1\n"
    );
    let m = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(m & 0o777, 0o644);
    // A second create would overwrite: refused.
    assert!(etc.create("sy-a", "x").is_err());
    let file2 = etc.replace("sy-a", file, "nameserver 10.2.0.1\n").unwrap();
    assert_ne!(file, file2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "nameserver 10.2.0.1\n"
    );
    // Replacing what is no longer the recorded file is refused.
    assert!(etc.replace("sy-a", file, "x").is_err());
    let rec = RecordedResolv {
        netns: "sy-a".into(),
        dir,
        file: Some(file2),
        text: Some("nameserver 10.2.0.1\n".into()),
    };
    assert_eq!(etc.remove(&rec).unwrap(), Removed::Removed);
    assert!(
        !s.0.join("netns/sy-a").exists(),
        "the directory it made goes too"
    );
    assert_eq!(etc.remove(&rec).unwrap(), Removed::Absent);
}

#[test]
fn a_directory_someone_else_made_stays_and_so_does_what_else_is_in_it() {
    let s = Scratch::new();
    let etc = EtcNetns::at(s.0.join("netns"));
    std::fs::create_dir_all(s.0.join("netns/sy-b")).unwrap();
    std::fs::set_permissions(
        s.0.join("netns/sy-b"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    assert_eq!(etc.make_dir("sy-b").unwrap(), None, "it was there");
    let file = etc.create("sy-b", "nameserver 10.1.0.1\n").unwrap();
    let rec = RecordedResolv {
        netns: "sy-b".into(),
        dir: None,
        file: Some(file),
        text: Some("nameserver 10.1.0.1\n".into()),
    };
    assert_eq!(etc.remove(&rec).unwrap(), Removed::Removed);
    assert!(s.0.join("netns/sy-b").is_dir(), "not ours: stays");

    // A directory made here keeps a file someone else put in it.
    let dir = etc.make_dir("sy-c").unwrap();
    let file = etc.create("sy-c", "nameserver 10.1.0.1\n").unwrap();
    std::fs::write(s.0.join("netns/sy-c/hosts"), "").unwrap();
    let rec = RecordedResolv {
        netns: "sy-c".into(),
        dir,
        file: Some(file),
        text: Some("nameserver 10.1.0.1\n".into()),
    };
    assert_eq!(etc.remove(&rec).unwrap(), Removed::Removed);
    assert!(s.0.join("netns/sy-c/hosts").exists());
    // A file replaced by someone else is left alone.
    let file = etc.create("sy-c", "nameserver 10.1.0.1\n").unwrap();
    // (Moved aside, not deleted: a deleted file's inode could be handed out again.)
    std::fs::rename(etc.path("sy-c"), s.0.join("aside")).unwrap();
    std::fs::write(etc.path("sy-c"), "theirs").unwrap();
    let rec = RecordedResolv {
        netns: "sy-c".into(),
        dir: None,
        file: Some(file),
        text: Some("nameserver 10.1.0.1\n".into()),
    };
    assert_eq!(etc.remove(&rec).unwrap(), Removed::NotOurs);
    assert_eq!(std::fs::read_to_string(etc.path("sy-c")).unwrap(), "theirs");
    // The same file (inode) with other contents, edited in place: not what was
    // written, left alone.
    std::fs::remove_file(etc.path("sy-c")).unwrap();
    let file = etc.create("sy-c", "nameserver 10.1.0.1\n").unwrap();
    std::fs::write(etc.path("sy-c"), "nameserver 192.0.2.1\n").unwrap();
    let rec = RecordedResolv {
        netns: "sy-c".into(),
        dir: None,
        file: Some(file),
        text: Some("nameserver 10.1.0.1\n".into()),
    };
    assert_eq!(etc.remove(&rec).unwrap(), Removed::NotOurs);
    assert!(etc.path("sy-c").exists());
}

#[test]
fn a_symlink_is_never_followed_and_a_writable_directory_is_refused() {
    let s = Scratch::new();
    let etc = EtcNetns::at(s.0.join("netns"));
    etc.make_dir("sy-d").unwrap();
    let target = s.0.join("target");
    std::fs::write(&target, "precious").unwrap();
    std::os::unix::fs::symlink(&target, etc.path("sy-d")).unwrap();
    let e = etc.create("sy-d", "nameserver 10.1.0.1\n").unwrap_err();
    assert!(e.reason.contains("symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");

    // The namespace's directory a symlink: refused.
    std::os::unix::fs::symlink(s.0.join("elsewhere"), s.0.join("netns/sy-e")).unwrap();
    std::fs::create_dir(s.0.join("elsewhere")).unwrap();
    let e = etc.make_dir("sy-e").unwrap_err();
    assert!(e.reason.contains("not a directory"), "{e}");
    assert!(!s.0.join("elsewhere/resolv.conf").exists());

    // A directory others may write in: refused.
    std::fs::create_dir(s.0.join("netns/sy-f")).unwrap();
    std::fs::set_permissions(
        s.0.join("netns/sy-f"),
        std::fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let e = etc.make_dir("sy-f").unwrap_err();
    assert!(e.reason.contains("mode 0777"), "{e}");
    // And the base itself, likewise.
    std::fs::set_permissions(s.0.join("netns"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = etc.make_dir("sy-g").unwrap_err();
    assert!(e.reason.contains("mode 0777"), "{e}");
}
