//! Metadata a layer's files must keep: owners, special mode bits, times,
//! xattrs (minus the privileged namespaces), FIFOs.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use tar::EntryType;

use super::*;

fn owned(
    kind: EntryType,
    name: &str,
    link: &str,
    data: &[u8],
    mode: u32,
    uid: u64,
    gid: u64,
) -> Header {
    let mut h = header(kind, name, link, data.len() as u64, mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h
}

#[test]
fn setuid_setgid_and_sticky_bits_survive_the_chown() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .raw(
            owned(EntryType::Regular, "bin/su", "", b"#!", 0o4755, 0, 0),
            b"#!",
        )
        .raw(
            owned(EntryType::Regular, "bin/wall", "", b"#!", 0o2755, 1000, 5),
            b"#!",
        )
        .raw(
            owned(EntryType::Regular, "bin/both", "", b"", 0o6711, 33, 33),
            b"",
        )
        .raw(
            owned(EntryType::Directory, "tmp/", "", b"", 0o1777, 0, 0),
            b"",
        )
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(sb.lstat("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(sb.lstat("bin/wall").mode() & 0o7777, 0o2755);
    assert_eq!(sb.lstat("bin/both").mode() & 0o7777, 0o6711);
    assert_eq!(sb.lstat("bin/both").uid(), 33);
    assert_eq!(sb.lstat("tmp").mode() & 0o7777, 0o1777);
}

#[test]
fn ownership_is_kept_for_every_kind() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .raw(
            owned(EntryType::Directory, "home/", "", b"", 0o750, 7, 8),
            b"",
        )
        .raw(
            owned(EntryType::Regular, "home/f", "", b"x", 0o640, 1234, 5678),
            b"x",
        )
        .raw(
            owned(EntryType::Symlink, "home/l", "f", b"", 0o777, 42, 43),
            b"",
        )
        .raw(
            owned(EntryType::Fifo, "home/p", "", b"", 0o620, 99, 98),
            b"",
        )
        .finish();
    sb.apply(&layer).unwrap();
    let ids = |p: &str| {
        let md = sb.lstat(p);
        (md.uid(), md.gid())
    };
    assert_eq!(ids("home"), (7, 8));
    assert_eq!(ids("home/f"), (1234, 5678));
    assert_eq!(ids("home/l"), (42, 43));
    assert_eq!(ids("home/p"), (99, 98));
    assert_eq!(sb.lstat("home").mode() & 0o7777, 0o750);
    assert_eq!(sb.lstat("home/f").mode() & 0o7777, 0o640);
}

#[test]
fn fifos_are_created() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .raw(header(EntryType::Fifo, "run/initctl", "", 0, 0o600), b"")
        .finish();
    let stats = sb.apply(&layer).unwrap();
    let md = sb.lstat("run/initctl");
    assert!(md.file_type().is_fifo());
    assert_eq!(md.mode() & 0o7777, 0o600);
    assert_eq!(md.mtime() as u64, MTIME);
    assert_eq!(stats.entries, 1);
}

#[test]
fn user_xattrs_are_kept_and_privileged_ones_dropped() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .pax(&[
            ("SCHILY.xattr.user.mime_type", b"text/plain"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02"),
            ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
        ])
        .file("f", "data")
        .pax(&[("SCHILY.xattr.user.dir", b"yes")])
        .dir("d/")
        .pax(&[("SCHILY.xattr.user.link", b"no")])
        .symlink("l", "f")
        .finish();
    let stats = sb.apply(&layer).unwrap();
    let f = sb.dest.join("f");
    assert_eq!(
        xattr(&f, "user.mime_type").as_deref(),
        Some(&b"text/plain"[..])
    );
    assert_eq!(xattr_names(&f), ["user.mime_type"]);
    assert_eq!(
        xattr(&sb.dest.join("d"), "user.dir").as_deref(),
        Some(&b"yes"[..])
    );
    // user.* cannot be set on a symlink: recorded, not fatal.
    assert!(xattr_names(&sb.dest.join("l")).is_empty());
    let skipped = stats.skipped_xattrs.join("\n");
    for name in [
        "f: trusted.overlay.opaque",
        "f: security.capability",
        "f: user.overlay.redirect",
        "l: user.link",
    ] {
        assert!(skipped.contains(name), "{name} not in {skipped}");
    }
}

#[test]
fn mtimes_are_kept_to_the_nanosecond_and_directories_last() {
    let sb = Sandbox::new();
    let mut dir = header(EntryType::Directory, "d/", "", 0, 0o755);
    dir.set_mtime(1_111_111_111);
    let mut old = header(EntryType::Regular, "d/old", "", 0, 0o644);
    old.set_mtime(1_000_000_000);
    let mut link = header(EntryType::Symlink, "d/link", "old", 0, 0o777);
    link.set_mtime(1_222_222_222);
    let layer = Layer::new()
        .raw(dir, b"")
        .raw(old, b"")
        .pax(&[
            ("mtime", b"1234567890.123456789"),
            ("atime", b"1300000000.5"),
        ])
        .file("d/precise", "x")
        .raw(link, b"")
        // Created after d's header: d's mtime must still be the header's.
        .file("d/sub/late", "x")
        .finish();
    sb.apply(&layer).unwrap();
    let d = sb.lstat("d");
    assert_eq!((d.mtime(), d.mtime_nsec()), (1_111_111_111, 0));
    assert_eq!(sb.lstat("d/old").mtime(), 1_000_000_000);
    let p = sb.lstat("d/precise");
    assert_eq!((p.mtime(), p.mtime_nsec()), (1_234_567_890, 123_456_789));
    assert_eq!((p.atime(), p.atime_nsec()), (1_300_000_000, 500_000_000));
    assert_eq!(sb.lstat("d/link").mtime(), 1_222_222_222);
    assert_eq!(sb.lstat("d/sub/late").mtime() as u64, MTIME);
}

#[test]
fn the_root_entry_sets_the_layer_roots_metadata() {
    let sb = Sandbox::new();
    let mut root = header(EntryType::Directory, "./", "", 0, 0o751);
    root.set_mtime(1_050_000_000);
    let layer = Layer::new().raw(root, b"").file("./f", "x").finish();
    sb.apply(&layer).unwrap();
    let md = std::fs::metadata(&sb.dest).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o751);
    assert_eq!(md.mtime(), 1_050_000_000);
}
