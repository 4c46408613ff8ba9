//! Ordinary layers: what Docker, BuildKit and GNU tar produce.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use tar::EntryType;

use super::*;

#[test]
fn files_dirs_symlinks_and_hard_links() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .dir("./")
        .dir("bin/")
        .file("bin/busybox", "ELF...")
        .symlink("bin/sh", "/bin/busybox")
        .symlink("bin/ls", "busybox")
        .hard_link("bin/busybox-hard", "bin/busybox")
        .hard_link("/bin/again", "./bin/busybox")
        .file("etc/hostname", "box\n")
        .finish();
    let stats = sb.apply(&layer).unwrap();
    assert_eq!(stats.entries, 8);
    assert_eq!(stats.bytes, 10);
    assert!(stats.skipped_devices.is_empty());
    assert_eq!(sb.read("bin/busybox"), "ELF...");
    assert_eq!(
        std::fs::read_link(sb.dest.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        std::fs::read_link(sb.dest.join("bin/ls")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(sb.lstat("bin/busybox").nlink(), 3);
    assert_eq!(sb.lstat("bin/again").ino(), sb.lstat("bin/busybox").ino());
    assert_eq!(sb.read("etc/hostname"), "box\n");
    // A parent the archive did not list is made 0755, root-owned.
    assert_eq!(sb.lstat("etc").mode() & 0o7777, 0o755);
}

#[test]
fn later_entries_replace_earlier_non_directories() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("a", "first")
        .file("a", "second")
        .file("b", "file")
        .symlink("b", "a")
        .symlink("c", "a")
        .dir("c/")
        .file("c/inside", "x")
        .dir("e/")
        .file("e", "was an empty dir")
        .file("h", "x")
        .hard_link("h2", "h")
        .hard_link("h2", "h")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(sb.read("a"), "second");
    assert!(sb.lstat("b").is_symlink());
    assert!(sb.lstat("c").is_dir());
    assert_eq!(sb.read("c/inside"), "x");
    assert_eq!(sb.read("e"), "was an empty dir");
    assert_eq!(sb.lstat("h").nlink(), 2);
}

#[test]
fn directories_merge() {
    let sb = Sandbox::new();
    let mut again = header(EntryType::Directory, "d/", "", 0, 0o700);
    again.set_uid(5);
    let layer = Layer::new()
        .dir("d/")
        .file("d/a", "a")
        .raw(again, b"")
        .file("d/b", "b")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(sb.read("d/a"), "a");
    assert_eq!(sb.read("d/b"), "b");
    assert_eq!(sb.lstat("d").mode() & 0o7777, 0o700);
    assert_eq!(sb.lstat("d").uid(), 5);
}

#[test]
fn non_empty_directory_is_never_replaced_by_a_file() {
    let sb = Sandbox::new();
    let layer = Layer::new().file("d/keep", "x").file("d", "file").finish();
    assert_refused(sb.apply(&layer), "d");
    assert_eq!(sb.read("d/keep"), "x");
}

#[test]
fn whiteouts_become_0_0_character_devices() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("etc/motd", "hello")
        .file("etc/.wh.motd", "")
        .file("etc/.wh.shadow", "")
        .file("gone/deeper/.wh.x", "")
        .file("tree/sub/deeper/f", "x")
        .file("tree/sub/g", "x")
        .symlink("tree/sub/l", "/")
        .file(".wh.tree", "")
        .finish();
    let stats = sb.apply(&layer).unwrap();
    for p in ["etc/motd", "etc/shadow", "gone/deeper/x", "tree"] {
        assert!(is_whiteout(&sb.lstat(p)), "{p}");
    }
    assert_eq!(stats.entries, 8);
}

#[test]
fn opaque_marker_sets_the_overlay_xattr() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .dir("etc/")
        .file("etc/.wh..wh..opq", "")
        .file("etc/fresh", "x")
        .file("var/cache/.wh..wh..opq", "")
        .finish();
    sb.apply(&layer).unwrap();
    for d in ["etc", "var/cache"] {
        assert_eq!(
            xattr(&sb.dest.join(d), "trusted.overlay.opaque").as_deref(),
            Some(&b"y"[..]),
            "{d}"
        );
    }
    assert_eq!(sb.read("etc/fresh"), "x");
    assert!(!sb.exists("etc/.wh..wh..opq"));
}

#[test]
fn aufs_bookkeeping_is_skipped() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .dir(".wh..wh.plnk/")
        .file(".wh..wh.plnk/1234.5678", "x")
        .file(".wh..wh.aufs", "")
        .file("a/.wh..wh.orph", "")
        .file("kept", "x")
        .finish();
    let stats = sb.apply(&layer).unwrap();
    assert_eq!(stats.entries, 1);
    assert!(!sb.exists(".wh..wh.plnk"));
    assert!(!sb.exists(".wh..wh.aufs"));
    assert!(!sb.exists("a"));
}

#[test]
fn long_names_via_gnu_and_pax_records() {
    let sb = Sandbox::new();
    let gnu_path = format!("{}/file", "g".repeat(150));
    let pax_path = format!("{}/{}/file", "p".repeat(200), "q".repeat(200));
    // Relative, so reading through it from the host stays in the layer.
    let long_target = gnu_path.clone();
    let mut layer = Layer::new();
    let mut h = header(EntryType::Regular, "", "", 3, 0o644);
    layer
        .builder()
        .append_data(&mut h, &gnu_path, &b"gnu"[..])
        .unwrap();
    let mut link = header(EntryType::Symlink, "", "", 0, 0o777);
    layer
        .builder()
        .append_link(&mut link, "long-link", &long_target)
        .unwrap();
    let layer = layer
        .pax(&[("path", pax_path.as_bytes())])
        .file("placeholder-name", "pax")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(sb.read(&gnu_path), "gnu");
    assert_eq!(sb.read(&pax_path), "pax");
    assert!(!sb.exists("placeholder-name"));
    assert_eq!(
        std::fs::read_link(sb.dest.join("long-link")).unwrap(),
        Path::new(&long_target)
    );
    assert_eq!(sb.read("long-link"), "gnu");
}

#[test]
fn gnu_sparse_files_keep_their_holes() {
    let sb = Sandbox::new();
    let hole = 8u64 << 20;
    let mut h = header(EntryType::GNUSparse, "sparse", "", 1024, 0o644);
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.sparse[0].set_offset(0);
        gnu.sparse[0].set_length(512);
        gnu.sparse[1].set_offset(hole);
        gnu.sparse[1].set_length(512);
        gnu.set_real_size(hole + 512);
    }
    let mut data = vec![b'A'; 512];
    data.extend(vec![b'B'; 512]);
    let layer = Layer::new().raw(h, &data).file("after", "x").finish();
    let stats = sb.apply(&layer).unwrap();
    let bytes = std::fs::read(sb.dest.join("sparse")).unwrap();
    assert_eq!(bytes.len() as u64, hole + 512);
    assert!(bytes[..512].iter().all(|b| *b == b'A'));
    assert!(bytes[512..hole as usize].iter().all(|b| *b == 0));
    assert!(bytes[hole as usize..].iter().all(|b| *b == b'B'));
    // Far fewer blocks than the 8 MiB it spans.
    assert!(sb.lstat("sparse").blocks() * 512 < hole / 4);
    assert_eq!(sb.read("after"), "x");
    assert_eq!(stats.bytes, hole + 512 + 1);
}

#[test]
fn v7_directories_are_regular_entries_with_a_trailing_slash() {
    let sb = Sandbox::new();
    let mut h = header(EntryType::Regular, "v7dir/", "", 0, 0o755);
    h.as_old_mut().linkflag = [0];
    let layer = Layer::new().raw(h, b"").file("v7dir/f", "x").finish();
    sb.apply(&layer).unwrap();
    assert!(sb.lstat("v7dir").is_dir());
    assert_eq!(sb.read("v7dir/f"), "x");
}
