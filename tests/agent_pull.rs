//! `flotilla-agent pull | images | rmi | prune` end to end, against a real
//! registry (Debian's distribution server, one per test) and a fake one that
//! misbehaves on purpose. Each test runs the agent binary with `--root` in a
//! directory of its own and checks the store's invariant afterwards: every
//! blob hashes to its name, and nothing half-written lives outside tmp/.
//!
//! The contract these tests hold the agent to is the one in issue 3 (pull by
//! tag and digest, index platform choice, gzip/zstd/plain layers, digest and
//! diff_id verification, overlayfs lower-dir whiteouts, a store that survives
//! SIGKILL and concurrent pulls, credentials from the Docker config, and
//! layers that try to write outside the store).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tar::EntryType;

use support::agent::{Agent, Node, finish, is_whiteout, tree, xattr};
use support::fake::{FakeRegistry, Serve};
use support::image::{
    ConfigSpec, Image, OCI_MANIFEST, Platform, Target, multi_arch_index, push, push_index,
};
use support::layer::{Compression, LayerBlob, TarBuilder, single_file};
use support::registry::TestRegistry;
use support::{TestDir, hex_of, random_bytes, sha256};

const MIB: usize = 1024 * 1024;

/// A fresh test directory and an agent whose store lives in it.
fn new_agent(label: &str) -> (TestDir, Agent) {
    let dir = TestDir::new(label);
    let agent = Agent::new(dir.path());
    (dir, agent)
}

fn read(path: &Path) -> Vec<u8> {
    fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn pulls_an_image_by_tag_into_a_verified_store() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("by-tag");
    let payload = random_bytes(256 * 1024);
    let base = TarBuilder::new()
        .dir("bin")
        .file_mode("bin/hello", 0o755, 0, 0, b"#!/bin/sh\necho hello\n")
        .dir("etc")
        .file("etc/os-release", b"ID=flotilla-test\n")
        .finish()
        .gzip();
    let app = TarBuilder::new()
        .dir("app")
        .file("app/data.bin", &payload)
        .finish()
        .gzip();
    let spec = ConfigSpec {
        entrypoint: vec!["/bin/hello".into()],
        cmd: vec!["--loud".into()],
        user: Some("1000:1000".into()),
        working_dir: Some("/app".into()),
        exposed_ports: vec!["8080/tcp".into()],
        stop_signal: Some("SIGQUIT".into()),
        ..ConfigSpec::default()
    };
    let image = Image::new(vec![base.clone(), app.clone()], &spec);
    push(
        &Target::anonymous(registry.host()),
        "test/tagged:v1",
        &image,
    );
    let reference = format!("{}/test/tagged:v1", registry.host());

    let run = agent.pull(&reference);
    run.assert_ok();
    assert_eq!(
        run.last_line(),
        format!("pulled {reference} {}", image.digest()),
        "{}",
        run.text()
    );
    assert!(
        run.stdout.lines().count() > image.layers.len(),
        "expected a progress line per layer before the last line:\n{}",
        run.text()
    );
    for digest in [
        image.digest(),
        image.config_digest(),
        base.digest(),
        app.digest(),
    ] {
        assert!(
            agent.blob_path(&digest).is_file(),
            "blob {digest} missing from the store"
        );
    }
    let base_dir = agent.layer_dir(&base.diff_id);
    assert_eq!(
        read(&base_dir.join("bin/hello")),
        b"#!/bin/sh\necho hello\n"
    );
    assert_eq!(mode(&base_dir.join("bin/hello")), 0o755);
    assert_eq!(
        read(&base_dir.join("etc/os-release")),
        b"ID=flotilla-test\n"
    );
    assert_eq!(
        read(&agent.layer_dir(&app.diff_id).join("app/data.bin")),
        payload
    );
    // Layers are separate lower dirs: nothing of one leaks into the other.
    assert!(!agent.layer_dir(&app.diff_id).join("bin").exists());
    agent.assert_store_consistent();
    let listed = agent
        .image(&reference)
        .unwrap_or_else(|| panic!("images does not list {reference}: {:?}", agent.images()));
    assert_eq!(listed["digest"], image.digest());
}

#[test]
fn pulls_an_image_by_digest() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("by-digest");
    let image = Image::of(vec![single_file("pinned", b"pinned by digest")]);
    let digest = push(
        &Target::anonymous(registry.host()),
        "test/pinned:v1",
        &image,
    );
    let reference = format!("{}/test/pinned@{digest}", registry.host());

    let run = agent.pull(&reference);
    run.assert_ok();
    assert_eq!(run.last_line(), format!("pulled {reference} {digest}"));
    assert_eq!(
        read(&agent.layer_dir(&image.layers[0].diff_id).join("pinned")),
        b"pinned by digest"
    );
    let listed = agent
        .image(&reference)
        .unwrap_or_else(|| panic!("images does not list {reference}: {:?}", agent.images()));
    assert_eq!(listed["digest"], digest);
    agent.assert_store_consistent();

    // A digest the registry does not have is an error, not an empty success.
    let missing = format!("{}/test/pinned@sha256:{}", registry.host(), "0".repeat(64));
    agent.pull(&missing).assert_failed();
}

/// A registry named by host name, not address: the agent that hosts run is
/// linked statically, and looks names up with what glibc has built in
/// (/etc/hosts, then DNS) rather than the host's NSS modules.
#[test]
fn pulls_from_a_registry_named_by_host_name() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("by-name");
    let image = Image::of(vec![single_file("named", b"found by name")]);
    let digest = push(&Target::anonymous(registry.host()), "test/named:v1", &image);
    let port = registry
        .host()
        .rsplit_once(':')
        .expect("host:port")
        .1
        .to_string();
    let reference = format!("localhost:{port}/test/named:v1");

    let run = agent.pull(&reference);
    run.assert_ok();
    assert_eq!(run.last_line(), format!("pulled {reference} {digest}"));
    assert_eq!(
        read(&agent.layer_dir(&image.layers[0].diff_id).join("named")),
        b"found by name"
    );
    agent.assert_store_consistent();

    // A name nobody resolves fails naming the registry, not with a crash.
    let run = agent.pull("flotilla-test.invalid/test/named:v1");
    run.assert_failed();
    assert!(
        run.stderr.contains("flotilla-test.invalid"),
        "{}",
        run.text()
    );
}

/// A registry that answers `repo@sha256:D` with other bytes (another valid
/// manifest) must not get them stored or used: the manifest is content too.
#[test]
fn a_manifest_that_does_not_match_the_requested_digest_is_refused() {
    let fake = FakeRegistry::start();
    let (_dir, agent) = new_agent("manifest-digest");
    let wanted = Image::of(vec![single_file("wanted", b"the image asked for")]);
    let other = Image::of(vec![single_file("other", b"what the registry sends")]);
    for (digest, data) in other.blobs() {
        fake.add_blob(&digest, data);
    }
    fake.add_manifest(
        "test/liar",
        &wanted.digest(),
        OCI_MANIFEST,
        other.manifest.clone(),
    );
    let reference = format!("{}/test/liar@{}", fake.host(), wanted.digest());

    // The honest copy pulls: the refusal below is about the bytes.
    let honest = FakeRegistry::start();
    honest.add_image("test/liar", "v1", &wanted);
    let (_dir2, control) = new_agent("manifest-digest-control");
    control
        .pull(&format!("{}/test/liar@{}", honest.host(), wanted.digest()))
        .assert_ok();

    let run = agent.pull(&reference);
    run.assert_failed();
    assert!(
        run.stderr.contains(&wanted.digest()),
        "the error should name the digest asked for:\n{}",
        run.text()
    );
    assert!(!agent.blob_hexes().contains(hex_of(&other.digest())));
    assert!(agent.layer_hexes().is_empty(), "{:?}", agent.layer_hexes());
    assert!(agent.images().is_empty());
    agent.assert_store_consistent();
}

#[test]
fn an_index_resolves_to_the_hosts_platform() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("index");
    let index = multi_arch_index(true);
    push_index(
        &Target::anonymous(registry.host()),
        "test/multi:latest",
        &index,
    );
    let reference = format!("{}/test/multi:latest", registry.host());
    let host = index.images.last().expect("host entry");
    assert_eq!(host.platform, Platform::host());

    let run = agent.pull(&reference);
    run.assert_ok();
    let last = run.last_line();
    assert!(
        last == format!("pulled {reference} {}", index.digest())
            || last == format!("pulled {reference} {}", host.digest()),
        "last line should name the index's or the chosen manifest's digest:\n{}",
        run.text()
    );
    assert_eq!(
        fs::read_to_string(agent.layer_dir(&host.layers[0].diff_id).join("platform"))
            .unwrap_or_default(),
        Platform::host().name(),
        "the unpacked image is not the host's"
    );
    for other in &index.images[..index.images.len() - 1] {
        assert!(
            !agent.layer_dir(&other.layers[0].diff_id).exists(),
            "the {} image was unpacked too",
            other.platform.name()
        );
    }
    let listed = agent.image(&reference).expect("images lists the index");
    assert_eq!(listed["platform"], Platform::host().name());
    assert_eq!(listed["config_digest"], host.config_digest());
    assert_eq!(listed["layers"], json!(host.diff_ids()));
    agent.assert_store_consistent();
}

#[test]
fn an_index_without_the_hosts_platform_is_refused() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("index-foreign");
    let index = multi_arch_index(false);
    push_index(
        &Target::anonymous(registry.host()),
        "test/foreign:latest",
        &index,
    );
    let run = agent.pull(&format!("{}/test/foreign:latest", registry.host()));
    run.assert_failed();
    assert!(
        run.stderr.contains(&Platform::host().architecture),
        "the error should say which platform was wanted:\n{}",
        run.text()
    );
    assert!(agent.layer_hexes().is_empty(), "{:?}", agent.layer_hexes());
    assert!(agent.images().is_empty());
}

/// Two layers as Docker builds them: the second deletes a file (whiteout),
/// replaces a directory's contents (opaque) and deletes a directory. Each
/// layer must become an overlayfs lower dir: whiteouts as char devices 0:0,
/// opaque dirs marked with `trusted.overlay.opaque=y`, no `.wh.` files left;
/// and the first layer keeps its modes, owners and links.
#[test]
fn whiteouts_and_opaque_dirs_become_overlay_lower_dirs() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("whiteouts");
    let lower = TarBuilder::new()
        .dir_mode("tmp", 0o1777, 0, 0)
        .dir("etc")
        .file("etc/a", b"a")
        .file("etc/b", b"b")
        .hardlink("etc/b-link", "etc/b")
        .file_mode("etc/secret", 0o640, 0, 42, b"s")
        .dir("bin")
        .file_mode("bin/setuid", 0o4755, 0, 0, b"#!/bin/true\n")
        .dir_mode("home", 0o755, 0, 0)
        .dir_mode("home/user", 0o700, 1000, 1000)
        .file_mode("home/user/notes", 0o600, 1000, 1000, b"n")
        .dir("usr")
        .dir("usr/lib")
        .symlink("lib", "usr/lib")
        .dir("opt")
        .dir("opt/app")
        .file("opt/app/old", b"old")
        .dir("gone-dir")
        .file("gone-dir/x", b"x")
        .finish()
        .gzip();
    let upper = TarBuilder::new()
        .dir("etc")
        .whiteout("etc/a")
        .dir("opt")
        .dir("opt/app")
        .opaque("opt/app")
        .file("opt/app/new", b"new")
        .whiteout("gone-dir")
        // The marker may come after the directory's own files: they stay.
        .dir("var")
        .file("var/kept", b"kept")
        .opaque("var")
        .finish()
        .gzip();
    let image = Image::of(vec![lower.clone(), upper.clone()]);
    push(&Target::anonymous(registry.host()), "test/wh:v1", &image);
    agent
        .pull(&format!("{}/test/wh:v1", registry.host()))
        .assert_ok();

    let l = agent.layer_dir(&lower.diff_id);
    assert_eq!(mode(&l.join("tmp")), 0o1777, "sticky /tmp lost");
    assert_eq!(read(&l.join("etc/a")), b"a");
    let b = fs::metadata(l.join("etc/b")).expect("etc/b");
    let b_link = fs::metadata(l.join("etc/b-link")).expect("etc/b-link");
    assert_eq!(b.ino(), b_link.ino(), "etc/b-link should be a hard link");
    let secret = fs::metadata(l.join("etc/secret")).expect("etc/secret");
    assert_eq!((secret.mode() & 0o7777, secret.gid()), (0o640, 42));
    assert_eq!(mode(&l.join("bin/setuid")), 0o4755, "setuid bit lost");
    let home = fs::metadata(l.join("home/user")).expect("home/user");
    assert_eq!(
        (home.mode() & 0o7777, home.uid(), home.gid()),
        (0o700, 1000, 1000)
    );
    let notes = fs::metadata(l.join("home/user/notes")).expect("notes");
    assert_eq!((notes.uid(), notes.gid()), (1000, 1000));
    assert_eq!(
        fs::read_link(l.join("lib")).expect("lib symlink"),
        PathBuf::from("usr/lib")
    );

    let u = agent.layer_dir(&upper.diff_id);
    assert!(
        is_whiteout(&u.join("etc/a")),
        "etc/a should be a 0:0 char device"
    );
    assert!(
        is_whiteout(&u.join("gone-dir")),
        "gone-dir should be a whiteout"
    );
    assert_eq!(
        xattr(&u.join("opt/app"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "opt/app should be opaque"
    );
    assert_eq!(read(&u.join("opt/app/new")), b"new");
    assert!(!u.join("opt/app/old").exists());
    assert_eq!(
        xattr(&u.join("var"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..]),
        "var should be opaque"
    );
    assert_eq!(
        read(&u.join("var/kept")),
        b"kept",
        "the opaque marker ate var/kept"
    );
    assert_eq!(xattr(&u.join("etc"), "trusted.overlay.opaque"), None);
    let leftovers: Vec<_> = tree(&u)
        .into_iter()
        .filter(|(p, _)| p.to_string_lossy().contains(".wh."))
        .collect();
    assert!(
        leftovers.is_empty(),
        "whiteout files left in the layer: {leftovers:?}"
    );
    agent.assert_store_consistent();
}

#[test]
fn gzip_zstd_and_plain_tar_layers_in_one_image() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("compression");
    let layers: Vec<LayerBlob> = [Compression::Gzip, Compression::Zstd, Compression::None]
        .iter()
        .map(|c| {
            TarBuilder::new()
                .file(&format!("{c:?}.txt"), format!("{c:?} layer").as_bytes())
                .finish()
                .blob(*c)
        })
        .collect();
    let image = Image::of(layers.clone());
    push(&Target::anonymous(registry.host()), "test/mixed:v1", &image);
    let reference = format!("{}/test/mixed:v1", registry.host());
    agent.pull(&reference).assert_ok();
    for (layer, c) in layers.iter().zip(["Gzip", "Zstd", "None"]) {
        assert_eq!(
            read(&agent.layer_dir(&layer.diff_id).join(format!("{c}.txt"))),
            format!("{c} layer").as_bytes(),
            "{} layer",
            layer.media_type
        );
    }
    let listed = agent.image(&reference).expect("listed");
    assert_eq!(listed["layers"], json!(image.diff_ids()));
    agent.assert_store_consistent();
}

/// Docker Hub still serves Docker schema 2 manifests with Docker media types.
#[test]
fn docker_schema2_images_pull_like_oci_ones() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("docker-v2");
    let image = Image::new_docker(
        vec![single_file("docker", b"schema 2")],
        &ConfigSpec::default(),
    );
    push(
        &Target::anonymous(registry.host()),
        "test/docker:v1",
        &image,
    );
    let reference = format!("{}/test/docker:v1", registry.host());
    let run = agent.pull(&reference);
    run.assert_ok();
    assert_eq!(
        run.last_line(),
        format!("pulled {reference} {}", image.digest())
    );
    assert_eq!(
        read(&agent.layer_dir(&image.layers[0].diff_id).join("docker")),
        b"schema 2"
    );
    agent.assert_store_consistent();
}

#[test]
fn a_wrong_diff_id_is_refused_and_nothing_is_unpacked_for_it() {
    let registry = TestRegistry::start();
    let target = Target::anonymous(registry.host());
    let (_dir, agent) = new_agent("diff-id");
    let good = single_file("good", b"good");
    let bad = single_file("bad", b"bad");
    let claimed = sha256(b"not what the layer holds");

    // The config claims another uncompressed digest for the second layer.
    let lying = Image::new(
        vec![good.clone(), bad.clone()],
        &ConfigSpec {
            diff_ids: Some(vec![good.diff_id.clone(), claimed.clone()]),
            ..ConfigSpec::default()
        },
    );
    push(&target, "test/lying:v1", &lying);
    let reference = format!("{}/test/lying:v1", registry.host());
    let run = agent.pull(&reference);
    run.assert_failed();
    for digest in [&bad.diff_id, &claimed] {
        assert!(
            !agent.layer_hexes().contains(hex_of(digest)),
            "layers/ holds {digest} after a diff_id mismatch"
        );
    }
    assert!(agent.image(&reference).is_none());
    agent.assert_store_consistent();

    // A config with fewer diff_ids than layers cannot vouch for the last one.
    let short = Image::new(
        vec![good.clone(), bad.clone()],
        &ConfigSpec {
            diff_ids: Some(vec![good.diff_id.clone()]),
            ..ConfigSpec::default()
        },
    );
    push(&target, "test/short:v1", &short);
    let reference = format!("{}/test/short:v1", registry.host());
    agent.pull(&reference).assert_failed();
    assert!(!agent.layer_hexes().contains(hex_of(&bad.diff_id)));
    assert!(agent.image(&reference).is_none());
    agent.assert_store_consistent();

    // The same layers with an honest config pull: the refusals were about
    // the diff_ids, not the layers.
    push(
        &target,
        "test/honest:v1",
        &Image::of(vec![good, bad.clone()]),
    );
    agent
        .pull(&format!("{}/test/honest:v1", registry.host()))
        .assert_ok();
    assert_eq!(read(&agent.layer_dir(&bad.diff_id).join("bad")), b"bad");
    agent.assert_store_consistent();
}

/// A blob whose bytes do not hash to its digest (a layer, then a config) is
/// refused with an error naming that digest, and leaves nothing in blobs/ or
/// layers/; once the registry serves the right bytes the same store pulls.
#[test]
fn a_corrupted_blob_is_refused_by_digest() {
    for what in ["layer", "config"] {
        let fake = FakeRegistry::start();
        let (_dir, agent) = new_agent(&format!("corrupt-{what}"));
        let layer = single_file("data", &random_bytes(64 * 1024));
        let image = Image::of(vec![layer.clone()]);
        fake.add_image("test/corrupt", "v1", &image);
        let corrupted = match what {
            "layer" => layer.digest(),
            _ => image.config_digest(),
        };
        fake.serve_blob(&corrupted, Serve::Corrupt);
        let reference = format!("{}/test/corrupt:v1", fake.host());

        let run = agent.pull(&reference);
        run.assert_failed();
        assert!(
            run.stderr.contains(&corrupted),
            "the error should name the {what}'s digest {corrupted}:\n{}",
            run.text()
        );
        assert!(
            !agent.blob_hexes().contains(hex_of(&corrupted)),
            "the corrupted {what} reached blobs/"
        );
        assert!(agent.layer_hexes().is_empty(), "{:?}", agent.layer_hexes());
        assert!(agent.images().is_empty());
        agent.assert_store_consistent();

        fake.serve_blob(&corrupted, Serve::Normal);
        agent.pull(&reference).assert_ok();
        agent.assert_store_consistent();
    }
}

/// A registry that sends more bytes than the descriptor's size: the agent
/// must stop at the size and refuse, even though the first `size` bytes are
/// the right ones.
#[test]
fn an_over_long_blob_is_refused() {
    let fake = FakeRegistry::start();
    let (_dir, agent) = new_agent("over-long");
    let layer = single_file("data", &random_bytes(64 * 1024));
    let image = Image::of(vec![layer.clone()]);
    fake.add_image("test/long", "v1", &image);
    fake.serve_blob(&layer.digest(), Serve::OverLong { extra: 8 * MIB });
    let reference = format!("{}/test/long:v1", fake.host());

    let run = agent.pull(&reference);
    run.assert_failed();
    assert!(!agent.blob_hexes().contains(hex_of(&layer.digest())));
    assert!(agent.layer_hexes().is_empty(), "{:?}", agent.layer_hexes());
    assert!(agent.images().is_empty());
    agent.assert_store_consistent();

    fake.serve_blob(&layer.digest(), Serve::Normal);
    agent.pull(&reference).assert_ok();
}

/// Pulling an image the store already has asks the registry for the manifest
/// once (is the tag still the same?) and for no blob: for a plain image and
/// for an index, whose platform manifest the store already holds.
#[test]
fn a_second_pull_makes_one_manifest_request_and_no_blob_requests() {
    let fake = FakeRegistry::start();
    let (_dir, agent) = new_agent("second-pull");
    let image = Image::of(vec![
        single_file("one", b"one"),
        single_file("two", &random_bytes(MIB)),
    ]);
    fake.add_image("test/again", "v1", &image);
    fake.add_image("test/again", "v2", &image);
    fake.add_index("test/again-multi", "v1", &multi_arch_index(true));

    for repo in ["test/again", "test/again-multi"] {
        let reference = format!("{}/{repo}:v1", fake.host());
        let first = agent.pull(&reference);
        first.assert_ok();
        fake.clear_requests();
        let second = agent.pull(&reference);
        second.assert_ok();
        assert_eq!(second.last_line(), first.last_line());
        assert_eq!(
            fake.manifest_requests().len(),
            1,
            "{repo}: manifest requests on the second pull: {:?}",
            fake.requests()
        );
        assert!(
            fake.blob_requests().is_empty(),
            "{repo}: blob requests on the second pull: {:?}",
            fake.blob_requests()
        );
    }

    // The same image under another tag: one manifest request, no blob, and
    // both tags listed; removing one keeps everything the other needs.
    fake.clear_requests();
    let v1 = format!("{}/test/again:v1", fake.host());
    let v2 = format!("{}/test/again:v2", fake.host());
    agent.pull(&v2).assert_ok();
    assert_eq!(fake.manifest_requests().len(), 1, "{:?}", fake.requests());
    assert!(
        fake.blob_requests().is_empty(),
        "{:?}",
        fake.blob_requests()
    );
    assert_eq!(
        agent.image(&v2).expect("v2 listed")["digest"],
        image.digest()
    );
    assert!(agent.image(&v1).is_some(), "pulling v2 lost v1");
    let blobs = agent.blob_hexes();
    agent.run(&["rmi", &v1]).assert_ok();
    agent.run(&["prune"]).assert_ok();
    assert!(agent.image(&v2).is_some());
    for digest in image
        .blobs()
        .iter()
        .map(|b| b.0.clone())
        .chain([image.digest()])
    {
        assert!(
            agent.blob_hexes().contains(hex_of(&digest)),
            "prune removed {digest}, which v2 still needs (had {blobs:?})"
        );
    }
    for diff_id in image.diff_ids() {
        assert!(
            agent.layer_dir(&diff_id).is_dir(),
            "prune removed v2's layer {diff_id}"
        );
    }
    agent.assert_store_consistent();
}

#[test]
fn without_insecure_the_agent_speaks_only_https() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("https-only");
    let image = Image::of(vec![single_file("x", b"x")]);
    push(&Target::anonymous(registry.host()), "test/tls:v1", &image);
    let reference = format!("{}/test/tls:v1", registry.host());
    agent.run(&["pull", &reference]).assert_failed();
    assert!(agent.layer_hexes().is_empty());
    assert!(agent.images().is_empty());
    // The same pull over plain HTTP works: the refusal above was about TLS.
    agent.pull(&reference).assert_ok();
}

/// One hostile layer: its name, its layers, and what an error must mention if
/// the agent refuses it.
struct Hostile {
    name: &'static str,
    layers: Vec<LayerBlob>,
    hints: Vec<String>,
    /// The contract says device nodes are skipped: such layers must pull.
    must_pull: bool,
}

/// Layers that try to reach outside their directory, each pushed as an image
/// of its own. Each must be refused (naming the entry) or contained; the
/// directory beside the store (`outside`, whose files the layers aim at) must
/// not change, no host file may gain a hard link, and the store must still
/// take a good image afterwards.
#[test]
fn hostile_layers_are_refused_or_contained() {
    let registry = TestRegistry::start();
    let target = Target::anonymous(registry.host());
    let (dir, agent) = new_agent("hostile");
    let outside = dir.subdir("outside");
    let victim = outside.join("victim");
    fs::write(&victim, b"original").expect("write victim");
    let outside_str = outside.to_str().expect("utf-8 test path").to_string();
    let outside_rel = outside_str.trim_start_matches('/').to_string();
    // Enough `..` to reach / from any depth the store might unpack at.
    let up = "../".repeat(40);
    let hints = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let file = |tb: &mut TarBuilder, name: &str| {
        tb.raw(
            EntryType::Regular,
            name.as_bytes(),
            b"",
            0o644,
            0,
            0,
            None,
            b"pwned",
        );
    };

    let mut cases = Vec::new();
    {
        let mut t = TarBuilder::new();
        file(&mut t, &format!("{up}{outside_rel}/dotdot-file"));
        cases.push(Hostile {
            name: "dotdot",
            layers: vec![t.finish().gzip()],
            hints: hints(&["dotdot-file"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        t.dir("a");
        file(&mut t, "a/../../../escape-mid");
        file(&mut t, &format!("a/../{up}{outside_rel}/escape-mid"));
        cases.push(Hostile {
            name: "dotdot-mid",
            layers: vec![t.finish().gzip()],
            hints: hints(&["escape-mid"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        file(&mut t, &format!("{outside_str}/absolute-file"));
        cases.push(Hostile {
            name: "absolute",
            layers: vec![t.finish().gzip()],
            hints: hints(&["absolute-file"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        t.symlink("escape", &outside_str);
        file(&mut t, "escape/through-abs-symlink");
        cases.push(Hostile {
            name: "symlink-abs-dir",
            layers: vec![t.finish().gzip()],
            hints: hints(&["escape", "through-abs-symlink"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        t.symlink("rel-escape", &format!("{up}{outside_rel}"));
        file(&mut t, "rel-escape/through-rel-symlink");
        cases.push(Hostile {
            name: "symlink-rel-dir",
            layers: vec![t.finish().gzip()],
            hints: hints(&["rel-escape", "through-rel-symlink"]),
            must_pull: false,
        });
    }
    {
        // A symlink to a host file, then a regular file of the same name:
        // replacing the link is fine, writing through it is not.
        let mut t = TarBuilder::new();
        t.symlink("victim-link", victim.to_str().unwrap());
        file(&mut t, "victim-link");
        cases.push(Hostile {
            name: "symlink-file-overwrite",
            layers: vec![t.finish().gzip()],
            hints: hints(&["victim-link"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        t.hardlink("hl", &format!("{up}{outside_rel}/victim"));
        file(&mut t, "hl");
        cases.push(Hostile {
            name: "hardlink-rel",
            layers: vec![t.finish().gzip()],
            hints: hints(&["hl", "victim"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        t.hardlink("hl-abs", victim.to_str().unwrap());
        file(&mut t, "hl-abs");
        cases.push(Hostile {
            name: "hardlink-abs",
            layers: vec![t.finish().gzip()],
            hints: hints(&["hl-abs", "victim"]),
            must_pull: false,
        });
    }
    {
        // The link target looks inside the layer but goes through a symlink.
        let mut t = TarBuilder::new();
        t.symlink("sl", &outside_str);
        t.hardlink("hl-sl", "sl/victim");
        file(&mut t, "hl-sl");
        cases.push(Hostile {
            name: "hardlink-through-symlink",
            layers: vec![t.finish().gzip()],
            hints: hints(&["hl-sl", "sl"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        t.dir("wdir");
        file(&mut t, "wdir/.wh...");
        cases.push(Hostile {
            name: "whiteout-dotdot",
            layers: vec![t.finish().gzip()],
            hints: hints(&[".wh..", "wdir"]),
            must_pull: false,
        });
    }
    {
        let mut t = TarBuilder::new();
        file(&mut t, &format!("{up}{outside_rel}/.wh.victim"));
        cases.push(Hostile {
            name: "whiteout-escape",
            layers: vec![t.finish().gzip()],
            hints: hints(&[".wh.victim"]),
            must_pull: false,
        });
    }
    {
        // A symlink out in one layer, a write through it in the next.
        let first = TarBuilder::new()
            .symlink("up", &outside_str)
            .finish()
            .gzip();
        let mut t = TarBuilder::new();
        file(&mut t, "up/cross-layer");
        cases.push(Hostile {
            name: "symlink-cross-layer",
            layers: vec![first, t.finish().gzip()],
            hints: hints(&["up", "cross-layer"]),
            must_pull: false,
        });
    }
    {
        let t = TarBuilder::new()
            .dir("dev")
            .char_device("dev/mem-like", 1, 1)
            .block_device("dev/disk-like", 8, 0)
            .file("dev/ok", b"ok")
            .finish()
            .gzip();
        cases.push(Hostile {
            name: "devices",
            layers: vec![t],
            hints: vec![],
            must_pull: true,
        });
    }

    for case in &cases {
        let before = tree(&outside);
        let image = Image::of(case.layers.clone());
        let repo_tag = format!("test/hostile-{}:v1", case.name);
        push(&target, &repo_tag, &image);
        let reference = format!("{}/{repo_tag}", registry.host());
        let run = agent.pull(&reference);
        eprintln!(
            "{}: {}",
            case.name,
            if run.status.success() {
                "contained".to_string()
            } else {
                run.stderr.trim().to_string()
            }
        );

        assert_eq!(
            tree(&outside),
            before,
            "{}: the layer changed files outside the store:\n{}",
            case.name,
            run.text()
        );
        assert_eq!(
            fs::metadata(&victim).expect("victim").nlink(),
            1,
            "{}: a host file gained a hard link from the store",
            case.name
        );
        let siblings: Vec<String> = fs::read_dir(dir.path())
            .expect("test dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for s in &siblings {
            assert!(
                ["outside", "root", "home", "docker-config"].contains(&s.as_str()),
                "{}: {s} appeared beside the store",
                case.name
            );
        }
        if case.must_pull || run.status.success() {
            run.assert_ok();
            let last = image.layers.last().unwrap();
            let layer = agent.layer_dir(&last.diff_id);
            assert!(layer.is_dir(), "{}: layer not unpacked", case.name);
            for (path, node) in tree(&layer) {
                if let Node::Device(kind, rdev) = node {
                    assert!(
                        kind == 'c' && rdev == 0,
                        "{}: device node {} ({kind} {rdev}) in the layer",
                        case.name,
                        path.display()
                    );
                }
            }
            if case.name == "devices" {
                assert_eq!(read(&layer.join("dev/ok")), b"ok");
            }
        } else {
            run.assert_failed();
            assert!(
                case.hints.iter().any(|h| run.stderr.contains(h.as_str())),
                "{}: the refusal should name the entry (one of {:?}):\n{}",
                case.name,
                case.hints,
                run.text()
            );
            assert!(
                agent.image(&reference).is_none(),
                "{}: refused but listed",
                case.name
            );
        }
        agent.assert_store_consistent();
    }

    // The store still works after all that.
    let good = Image::of(vec![single_file("fine", b"fine")]);
    push(&target, "test/after-hostile:v1", &good);
    agent
        .pull(&format!("{}/test/after-hostile:v1", registry.host()))
        .assert_ok();
    assert_eq!(
        read(&agent.layer_dir(&good.layers[0].diff_id).join("fine")),
        b"fine"
    );
    agent.assert_store_consistent();
}

/// What each layer of `layers` must unpack to: one file, `name`, with `data`.
fn expect_single_files(
    layers: &[(LayerBlob, String, Vec<u8>)],
) -> BTreeMap<String, (String, Vec<u8>)> {
    layers
        .iter()
        .map(|(l, name, data)| (hex_of(&l.diff_id).to_string(), (name.clone(), data.clone())))
        .collect()
}

/// Every layer dir present holds exactly what its layer says (no layer dir
/// is half-unpacked, none is unknown).
fn assert_layers_complete(agent: &Agent, expected: &BTreeMap<String, (String, Vec<u8>)>) {
    for hex in agent.layer_hexes() {
        let (name, data) = expected
            .get(&hex)
            .unwrap_or_else(|| panic!("layers/ holds an unknown layer {hex}"));
        let dir = agent.images_dir().join("layers/sha256").join(&hex);
        let got = tree(&dir);
        assert!(
            got == vec![(PathBuf::from(name), Node::File(data.clone()))],
            "layer {hex} is not complete: {:?}",
            got.iter()
                .map(|(p, n)| match n {
                    Node::File(d) => format!("{} ({} bytes)", p.display(), d.len()),
                    other => format!("{} {other:?}", p.display()),
                })
                .collect::<Vec<_>>()
        );
    }
}

fn big_layers(count: usize, size: usize) -> Vec<(LayerBlob, String, Vec<u8>)> {
    (0..count)
        .map(|i| {
            let name = format!("big{i}");
            let data = random_bytes(size);
            let blob = TarBuilder::new().file(&name, &data).finish().gzip();
            (blob, name, data)
        })
        .collect()
}

/// A pull killed with SIGKILL half-way through a 90 MiB image leaves a store
/// that holds only verified blobs and whole layers, does not list the image,
/// and takes the image on the next pull.
#[test]
fn a_pull_killed_half_way_leaves_a_consistent_store() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("killed");
    let layers = big_layers(3, 30 * MIB);
    let image = Image::of(layers.iter().map(|l| l.0.clone()).collect());
    push(&Target::anonymous(registry.host()), "test/big:v1", &image);
    let reference = format!("{}/test/big:v1", registry.host());

    let mut child = agent.spawn(&["pull", "--insecure", &reference]);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    // Kill once the first layer line shows, or after a short while.
    let first_line = rx.recv_timeout(Duration::from_millis(400)).ok();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the agent");
    let status = child.wait().expect("wait");
    let _ = reader.join();
    assert_eq!(
        status.signal(),
        Some(9),
        "the pull finished before it was killed ({status}; first line {first_line:?}): make the image bigger"
    );

    let expected = expect_single_files(&layers);
    agent.assert_store_consistent();
    assert_layers_complete(&agent, &expected);
    assert!(
        agent.image(&reference).is_none(),
        "a killed pull is listed: {:?}",
        agent.images()
    );

    agent.pull(&reference).assert_ok();
    assert_eq!(agent.layer_hexes().len(), 3);
    assert_layers_complete(&agent, &expected);
    agent.assert_store_consistent();
    assert!(agent.image(&reference).is_some());
}

/// The same, deterministically: the registry stops sending half-way through
/// the second layer and the agent is killed while it waits, with a partial
/// blob on its disk.
#[test]
fn a_pull_killed_mid_blob_leaves_nothing_half_written() {
    let fake = FakeRegistry::start();
    let (_dir, agent) = new_agent("killed-mid-blob");
    let layers = big_layers(2, 2 * MIB);
    let image = Image::of(layers.iter().map(|l| l.0.clone()).collect());
    fake.add_image("test/stall", "v1", &image);
    let stalled = layers[1].0.digest();
    fake.serve_blob(
        &stalled,
        Serve::Stall {
            after: layers[1].0.data.len() / 2,
        },
    );
    let reference = format!("{}/test/stall:v1", fake.host());

    let mut child = agent.spawn(&["pull", "--insecure", &reference]);
    let started = std::time::Instant::now();
    let stalled_in_time = loop {
        if fake.wait_for_stall(Duration::from_millis(100)) {
            break true;
        }
        if child.try_wait().expect("wait").is_some() || started.elapsed().as_secs() > 120 {
            break false;
        }
    };
    // Let the agent write what it received.
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let run = finish(child, &["pull", "--insecure", &reference]);
    assert!(
        stalled_in_time,
        "the agent never reached the stalling blob:\n{}",
        run.text()
    );
    assert_eq!(run.status.signal(), Some(9), "{}", run.text());

    agent.assert_store_consistent();
    assert!(!agent.blob_hexes().contains(hex_of(&stalled)));
    assert!(!agent.layer_hexes().contains(hex_of(&layers[1].0.diff_id)));
    assert_layers_complete(&agent, &expect_single_files(&layers));
    assert!(agent.image(&reference).is_none());

    // prune clears what the killed pull left in tmp/.
    agent.run(&["prune"]).assert_ok();
    let tmp = agent.images_dir().join("tmp");
    let leftovers: Vec<_> = fs::read_dir(&tmp)
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "prune left {leftovers:?} in tmp/");
    agent.assert_store_consistent();

    fake.serve_blob(&stalled, Serve::Normal);
    agent.pull(&reference).assert_ok();
    assert_layers_complete(&agent, &expect_single_files(&layers));
    agent.assert_store_consistent();
}

/// `prune` while a pull is half-way through a blob must neither delete the
/// pull's work in progress nor the layers it has already unpacked.
#[test]
fn prune_during_a_pull_leaves_the_pull_whole() {
    let fake = FakeRegistry::start();
    let (_dir, agent) = new_agent("prune-during-pull");
    let layers = big_layers(2, 2 * MIB);
    let image = Image::of(layers.iter().map(|l| l.0.clone()).collect());
    fake.add_image("test/slow", "v1", &image);
    let slow = &layers[1].0;
    fake.serve_blob(
        &slow.digest(),
        Serve::Pause {
            after: slow.data.len() / 2,
            millis: 1500,
        },
    );
    let reference = format!("{}/test/slow:v1", fake.host());
    let args = ["pull", "--insecure", reference.as_str()];
    let pull = agent.spawn(&args);
    assert!(
        fake.wait_for_stall(Duration::from_secs(120)),
        "the pull never reached the slow blob"
    );
    agent.run(&["prune"]).assert_ok();
    finish(pull, &args).assert_ok();
    assert!(agent.image(&reference).is_some());
    assert_layers_complete(&agent, &expect_single_files(&layers));
    agent.assert_store_consistent();
}

#[test]
fn two_concurrent_pulls_of_the_same_image_both_succeed() {
    let registry = TestRegistry::start();
    let (_dir, agent) = new_agent("concurrent");
    let layers = big_layers(3, 8 * MIB);
    let image = Image::of(layers.iter().map(|l| l.0.clone()).collect());
    push(&Target::anonymous(registry.host()), "test/both:v1", &image);
    let reference = format!("{}/test/both:v1", registry.host());
    let args = ["pull", "--insecure", reference.as_str()];

    let first = agent.spawn(&args);
    let second = agent.spawn(&args);
    let first = finish(first, &args);
    let second = finish(second, &args);
    first.assert_ok();
    second.assert_ok();
    assert_eq!(first.last_line(), second.last_line());
    let listed: Vec<Value> = agent
        .images()
        .into_iter()
        .filter(|i| i["reference"] == reference.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "listed {} times", listed.len());
    assert_layers_complete(&agent, &expect_single_files(&layers));
    agent.assert_store_consistent();
}

#[test]
fn rmi_and_prune_keep_shared_layers() {
    let registry = TestRegistry::start();
    let target = Target::anonymous(registry.host());
    let (_dir, agent) = new_agent("rmi-prune");
    let base = TarBuilder::new()
        .dir("base")
        .file("base/shared", b"shared by a and b")
        .finish()
        .gzip();
    let a_only = single_file("a", b"only a");
    let b_only = single_file("b", b"only b");
    let a = Image::of(vec![base.clone(), a_only.clone()]);
    let b = Image::of(vec![base.clone(), b_only.clone()]);
    push(&target, "test/a:latest", &a);
    push(&target, "test/b:latest", &b);
    let host = registry.host();
    // Pulled without a tag: listed (and removable) as :latest.
    agent.pull(&format!("{host}/test/a")).assert_ok();
    agent.pull(&format!("{host}/test/b:latest")).assert_ok();
    let (a_ref, b_ref) = (
        format!("{host}/test/a:latest"),
        format!("{host}/test/b:latest"),
    );
    assert!(agent.image(&a_ref).is_some(), "{:?}", agent.images());
    assert!(agent.image(&b_ref).is_some(), "{:?}", agent.images());

    agent
        .run(&["rmi", &format!("{host}/test/nope:latest")])
        .assert_failed();
    agent.run(&["rmi", &format!("{host}/test/a")]).assert_ok();
    assert!(agent.image(&a_ref).is_none(), "a still listed after rmi");
    assert!(agent.image(&b_ref).is_some(), "b lost with a's rmi");
    assert!(
        agent.layer_dir(&base.diff_id).is_dir(),
        "rmi a removed the shared layer"
    );
    assert!(agent.layer_dir(&b_only.diff_id).is_dir());
    agent.assert_store_consistent();

    let tmp = agent.images_dir().join("tmp");
    fs::create_dir_all(tmp.join("leftover-dir")).expect("tmp leftover");
    fs::write(tmp.join("leftover-file"), b"half").expect("tmp leftover");
    agent.run(&["prune"]).assert_ok();
    for gone in [a.digest(), a.config_digest(), a_only.digest()] {
        assert!(
            !agent.blob_path(&gone).exists(),
            "prune kept a's blob {gone}"
        );
    }
    assert!(
        !agent.layer_dir(&a_only.diff_id).exists(),
        "prune kept a's layer"
    );
    for kept in [
        b.digest(),
        b.config_digest(),
        b_only.digest(),
        base.digest(),
    ] {
        assert!(
            agent.blob_path(&kept).is_file(),
            "prune removed b's blob {kept}"
        );
    }
    assert!(agent.layer_dir(&base.diff_id).is_dir());
    assert!(agent.layer_dir(&b_only.diff_id).is_dir());
    assert!(
        !tmp.join("leftover-file").exists(),
        "prune kept tmp leftovers"
    );
    assert!(
        !tmp.join("leftover-dir").exists(),
        "prune kept tmp leftovers"
    );
    agent.assert_store_consistent();

    agent.run(&["rmi", &b_ref]).assert_ok();
    agent.run(&["prune"]).assert_ok();
    assert!(agent.images().is_empty());
    assert!(agent.layer_hexes().is_empty(), "{:?}", agent.layer_hexes());
    assert!(agent.blob_hexes().is_empty(), "{:?}", agent.blob_hexes());
}

#[test]
fn images_json_describes_each_image() {
    let registry = TestRegistry::start();
    let target = Target::anonymous(registry.host());
    let (_dir, agent) = new_agent("images-json");
    let dated = Image::new(
        vec![single_file("one", b"1"), single_file("two", b"22")],
        &ConfigSpec {
            created: Some("2026-02-03T04:05:06Z".into()),
            ..ConfigSpec::default()
        },
    );
    let undated = Image::new(
        vec![single_file("three", b"333")],
        &ConfigSpec {
            created: None,
            ..ConfigSpec::default()
        },
    );
    push(&target, "test/dated:v2", &dated);
    push(&target, "test/undated:latest", &undated);
    let host = registry.host();
    agent.pull(&format!("{host}/test/dated:v2")).assert_ok();
    agent.pull(&format!("{host}/test/undated")).assert_ok();

    let images = agent.images();
    assert_eq!(images.len(), 2, "{images:?}");
    for (reference, image, created) in [
        (
            format!("{host}/test/dated:v2"),
            &dated,
            json!("2026-02-03T04:05:06Z"),
        ),
        (format!("{host}/test/undated:latest"), &undated, Value::Null),
    ] {
        let entry = images
            .iter()
            .find(|i| i["reference"] == reference.as_str())
            .unwrap_or_else(|| panic!("{reference} not listed: {images:?}"));
        assert_eq!(entry["digest"], image.digest(), "{entry}");
        assert_eq!(entry["config_digest"], image.config_digest(), "{entry}");
        assert_eq!(entry["layers"], json!(image.diff_ids()), "{entry}");
        assert_eq!(entry["platform"], Platform::host().name(), "{entry}");
        assert_eq!(entry["created"], created, "{entry}");
        assert!(
            entry["size"].as_u64().is_some_and(|s| s > 0),
            "size should be a positive byte count: {entry}"
        );
    }
}

/// Credentials come from `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`; without them a registry that wants them refuses.
#[test]
fn credentials_come_from_the_docker_config() {
    let (user, password) = ("flotilla", "s3cret-pass");
    let registry = TestRegistry::start_with_htpasswd(user, password);
    let host = registry.host();
    let image = Image::of(vec![single_file("private", b"private")]);
    push(
        &Target::basic(&host, user, password),
        "test/private:v1",
        &image,
    );
    let reference = format!("{host}/test/private:v1");
    let config_json = |u: &str, p: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        serde_json::to_vec_pretty(&json!({ "auths": { host.as_str(): { "auth": auth } } })).unwrap()
    };

    let (_dir, agent) = new_agent("credentials");
    let run = agent.pull(&reference);
    run.assert_failed();
    let lower = run.stderr.to_lowercase();
    assert!(
        ["401", "unauthorized", "auth", "credential"]
            .iter()
            .any(|w| lower.contains(w)),
        "an anonymous pull from a private registry should say it was not authorised:\n{}",
        run.text()
    );

    fs::write(
        agent.docker_config.join("config.json"),
        config_json(user, "wrong"),
    )
    .unwrap();
    agent.pull(&reference).assert_failed();
    assert!(agent.images().is_empty());

    fs::write(
        agent.docker_config.join("config.json"),
        config_json(user, password),
    )
    .unwrap();
    agent.pull(&reference).assert_ok();
    assert!(agent.image(&reference).is_some());

    // No DOCKER_CONFIG: ~/.docker/config.json.
    let (_dir2, agent2) = new_agent("credentials-home");
    fs::create_dir_all(agent2.home.join(".docker")).unwrap();
    fs::write(
        agent2.home.join(".docker/config.json"),
        config_json(user, password),
    )
    .unwrap();
    let args = ["pull", "--insecure", reference.as_str()];
    let mut command = agent2.command(&args);
    command.env_remove("DOCKER_CONFIG");
    let run = finish(command.spawn().expect("start agent"), &args);
    run.assert_ok();
}

/// A registry that answers a manifest request with 128 MiB must not make the
/// agent hold 128 MiB: manifests are small (distribution refuses to store one
/// over 4 MiB), so the agent should stop reading well before this.
#[test]
fn a_huge_manifest_does_not_take_the_agents_memory() {
    let fake = FakeRegistry::start();
    let (_dir, agent) = new_agent("huge-manifest");
    let mut bytes = b"{\"schemaVersion\":2,\"layers\":[".to_vec();
    bytes.resize(128 * MIB, b' ');
    fake.add_manifest("test/huge", "v1", OCI_MANIFEST, bytes);
    let reference = format!("{}/test/huge:v1", fake.host());
    let mut command = agent.command(&["pull", "--insecure", &reference]);
    command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // The peak is read from the agent's own VmHWM while it runs: wait4's
    // ru_maxrss would count this test process's memory (the 128 MiB body it
    // serves), which the child inherits at fork.
    let mut child = command.spawn().expect("start agent");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib: u64 = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(hwm);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    assert!(
        !status.success(),
        "a 128 MiB manifest should be refused ({status})"
    );
    let peak_mib = peak_kib / 1024;

    assert!(
        peak_mib < 64,
        "the agent held {peak_mib} MiB for a 128 MiB manifest"
    );
}
