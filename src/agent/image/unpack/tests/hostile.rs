//! The hostile corpus: every way a layer might reach outside its directory.
//! `Sandbox::apply` fails any test in which something outside changed.

use std::os::unix::fs::MetadataExt;

use tar::EntryType;

use super::*;

#[test]
fn dotdot_escape_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("ok", "fine")
        .file("../escape", "pwned")
        .finish();
    assert_refused(sb.apply(&layer), "../escape");
}

#[test]
fn inner_dotdot_climbing_out_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new().file("a/../../escape-target", "pwned").finish();
    assert_refused(sb.apply(&layer), "a/../../escape-target");

    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("a/b/../../../../sentinel", "pwned")
        .finish();
    assert_refused(sb.apply(&layer), "a/b/../../../../sentinel");
}

#[test]
fn pax_path_climbing_out_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .pax(&[("path", b"../outside/sentinel")])
        .file("innocent", "pwned")
        .finish();
    assert_refused(sb.apply(&layer), "../outside/sentinel");
}

#[test]
fn absolute_paths_land_inside() {
    // `/etc/passwd`-style: absolute paths to files that exist on the host
    // (the sandbox's, so a broken unpacker is caught, not harmful).
    let sb = Sandbox::new();
    let target = sb.sentinel();
    let top = format!("{}/sentinel", sb.top());
    let layer = Layer::new()
        .file(&target, "pwned")
        .file(&top, "pwned too")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.inside(&target)).unwrap(),
        "pwned"
    );
    assert_eq!(
        std::fs::read_to_string(sb.inside(&top)).unwrap(),
        "pwned too"
    );
}

#[test]
fn symlink_to_root_is_followed_inside_the_layer() {
    let sb = Sandbox::new();
    let target = sb.sentinel();
    let through = format!("root{target}");
    let layer = Layer::new()
        .symlink("root", "/")
        .file(&through, "pwned")
        .symlink("up", "../..")
        .file("up/outside/sentinel", "pwned too")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.inside(&target)).unwrap(),
        "pwned"
    );
    assert_eq!(sb.read("outside/sentinel"), "pwned too");
    // The links themselves are stored as written.
    assert_eq!(
        std::fs::read_link(sb.dest.join("root")).unwrap().to_str(),
        Some("/")
    );
    assert_eq!(
        std::fs::read_link(sb.dest.join("up")).unwrap().to_str(),
        Some("../..")
    );
}

#[test]
fn symlink_to_an_outside_directory_never_reaches_it() {
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    // `out` resolves to `dest/<outside>`, which the layer does not hold:
    // refused, never written through to the real directory.
    let layer = Layer::new()
        .symlink("out", &outside)
        .file("out/sentinel", "pwned")
        .finish();
    assert_refused(sb.apply(&layer), "out/sentinel");

    // Once the layer holds that path, the write lands there.
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    let layer = Layer::new()
        .file(&format!("{outside}/placeholder"), "")
        .symlink("out", &outside)
        .file("out/sentinel", "pwned")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(
        std::fs::read_to_string(sb.inside(&format!("{outside}/sentinel"))).unwrap(),
        "pwned"
    );
}

#[test]
fn symlink_chains_stay_inside() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .symlink("a", "b")
        .symlink("b", "/c")
        .symlink("c", "../../../..")
        .file("a/outside/sentinel", "pwned")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(sb.read("outside/sentinel"), "pwned");
}

#[test]
fn symlink_loop_fails_on_the_entry_written_through_it() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .symlink("l1", "l2")
        .symlink("l2", "/l1")
        .file("l1/x", "pwned")
        .finish();
    assert_fails_on(sb.apply(&layer), "l1/x");
}

#[test]
fn existing_symlink_is_replaced_not_written_through() {
    let sb = Sandbox::new();
    let target = sb.sentinel();
    let layer = Layer::new()
        .symlink("s", &target)
        .file("s", "pwned")
        .symlink("rel", "../outside/sentinel")
        .file("rel", "pwned")
        .finish();
    sb.apply(&layer).unwrap();
    assert!(sb.lstat("s").is_file());
    assert_eq!(sb.read("s"), "pwned");
    assert_eq!(sb.read("rel"), "pwned");
}

#[test]
fn hard_link_climbing_out_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new().hard_link("h", "../outside/sentinel").finish();
    assert_refused(sb.apply(&layer), "h");
}

#[test]
fn hard_link_to_host_files_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new().hard_link("h", "/etc/passwd").finish();
    assert_refused(sb.apply(&layer), "h");

    let sb = Sandbox::new();
    let target = sb.sentinel();
    let layer = Layer::new().hard_link("h", &target).finish();
    assert_refused(sb.apply(&layer), "h");
    assert!(!sb.exists("h"));
}

#[test]
fn hard_link_through_a_symlinked_directory_is_refused() {
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    let layer = Layer::new()
        .symlink("d", &outside)
        .hard_link("h", "d/sentinel")
        .finish();
    assert_refused(sb.apply(&layer), "h");

    let sb = Sandbox::new();
    let layer = Layer::new()
        .symlink("e", "../outside")
        .hard_link("h", "e/sentinel")
        .finish();
    assert_refused(sb.apply(&layer), "h");
}

#[test]
fn hard_link_through_a_symlink_inside_the_layer_works() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .file("inner/f", "data")
        .symlink("d", "/inner")
        .hard_link("h", "d/f")
        .finish();
    sb.apply(&layer).unwrap();
    assert_eq!(sb.lstat("h").ino(), sb.lstat("inner/f").ino());
    assert_eq!(sb.lstat("h").nlink(), 2);
}

#[test]
fn hard_link_to_a_directory_is_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new().dir("d/").hard_link("h", "d").finish();
    assert_refused(sb.apply(&layer), "h");
}

#[test]
fn whiteouts_naming_dot_dotdot_or_nothing_are_refused() {
    for name in [".wh...", "a/.wh..", ".wh.", "/.wh.", "a/b/.wh..."] {
        let sb = Sandbox::new();
        let layer = Layer::new().file("a/b/keep", "x").file(name, "").finish();
        assert_refused(sb.apply(&layer), name);
    }
}

#[test]
fn whiteouts_climbing_out_are_refused() {
    for name in [
        "../.wh.escape-target",
        "../outside/.wh.sentinel",
        "a/../../.wh.outside",
        "../../../.wh.sentinel",
    ] {
        let sb = Sandbox::new();
        let layer = Layer::new().file(name, "").finish();
        assert_refused(sb.apply(&layer), name);
    }
}

#[test]
fn whiteouts_and_opaque_markers_through_symlinks_stay_inside() {
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    let layer = Layer::new()
        .file(&format!("{outside}/placeholder"), "")
        .symlink("s", "../..")
        .file("s/.wh.sentinel", "")
        .symlink("abs", &outside)
        .file("abs/.wh.sentinel", "")
        .file("abs/.wh..wh..opq", "")
        .finish();
    sb.apply(&layer).unwrap();
    // `s` resolves to the layer root, `abs` to the layer's copy of the path.
    assert!(is_whiteout(&sb.lstat("sentinel")));
    let inner = sb.inside(&outside);
    assert!(is_whiteout(
        &std::fs::symlink_metadata(inner.join("sentinel")).unwrap()
    ));
    assert_eq!(
        xattr(&inner, "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
}

#[test]
fn non_empty_directory_replaced_by_a_symlink_is_refused() {
    let sb = Sandbox::new();
    let outside = sb.outside().display().to_string();
    let layer = Layer::new()
        .dir("d/")
        .file("d/keep", "x")
        .symlink("d", &outside)
        .file("d/sentinel", "pwned")
        .finish();
    assert_refused(sb.apply(&layer), "d");
    assert_eq!(sb.read("d/keep"), "x");
}

#[test]
fn empty_directory_replaced_by_a_symlink_is_written_through_inside() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .dir("d/")
        .symlink("d", "../../..")
        .file("d/outside/sentinel", "pwned")
        .finish();
    sb.apply(&layer).unwrap();
    assert!(sb.lstat("d").is_symlink());
    assert_eq!(sb.read("outside/sentinel"), "pwned");
}

#[test]
fn devices_are_skipped_and_recorded() {
    let sb = Sandbox::new();
    let mut null = header(EntryType::Char, "dev/null", "", 0, 0o666);
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    let mut disk = header(EntryType::Block, "/dev/sda", "", 0, 0o660);
    disk.set_device_major(8).unwrap();
    disk.set_device_minor(0).unwrap();
    let zero = header(EntryType::Char, "dev/zero-zero", "", 0, 0o600);
    let layer = Layer::new()
        .raw(null, b"")
        .raw(disk, b"")
        .raw(zero, b"")
        .file("dev/.keep", "")
        .finish();
    let stats = sb.apply(&layer).unwrap();
    assert_eq!(
        stats.skipped_devices,
        ["dev/null", "dev/sda", "dev/zero-zero"]
    );
    assert_eq!(stats.entries, 1);
    assert!(!sb.exists("dev/null"));
    assert!(!sb.exists("dev/sda"));
    assert!(!sb.exists("dev/zero-zero"));
}

#[test]
fn entries_naming_the_root_must_be_directories() {
    for kind in [EntryType::Regular, EntryType::Symlink, EntryType::Fifo] {
        let sb = Sandbox::new();
        let layer = Layer::new()
            .raw(header(kind, "./", "/", 0, 0o644), b"")
            .finish();
        assert_refused(sb.apply(&layer), "./");
    }
    let sb = Sandbox::new();
    let layer = Layer::new().hard_link("h", "./").finish();
    assert_refused(sb.apply(&layer), "h");
}

#[test]
fn unknown_entry_types_are_refused() {
    let sb = Sandbox::new();
    let layer = Layer::new()
        .raw(header(EntryType::new(b'V'), "label", "", 0, 0o644), b"")
        .finish();
    assert_refused(sb.apply(&layer), "label");
}

#[test]
fn out_of_range_owners_are_refused() {
    let sb = Sandbox::new();
    let mut h = header(EntryType::Regular, "f", "", 0, 0o644);
    h.set_uid(1 << 40);
    let layer = Layer::new().raw(h, b"").finish();
    assert_refused(sb.apply(&layer), "f");

    let sb = Sandbox::new();
    let mut h = header(EntryType::Regular, "f", "", 0, 0o644);
    h.set_gid(u64::from(u32::MAX));
    let layer = Layer::new().raw(h, b"").finish();
    assert_refused(sb.apply(&layer), "f");
}
