//! The agent pulls the demo cluster's own images: a one-node demo cluster
//! (its own name, subnet 10.81.0.0/24 and XDG directories, taken down in
//! Drop) serves `demo/busybox` and `demo/httpd` from its registry on
//! 10.81.0.1:5000, and `flotilla-agent pull --insecure` stores both, the
//! shared busybox layer once. Needs root, like every demo test.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use support::TestDir;
use support::agent::Agent;

const NAME: &str = "pulldemo";
const SUBNET: &str = "10.81.0.0/24";
const REGISTRY: &str = "10.81.0.1:5000";

/// A demo cluster of this test's own; `demo down` in Drop whatever happened.
struct Demo {
    home: TestDir,
}

impl Demo {
    fn flotilla(&self, args: &[&str]) -> Output {
        let home = self.home.path();
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("HOME", home)
            .env_remove("FLOTILLA_CLUSTER")
            .output()
            .expect("run flotilla")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.flotilla(&["demo", "down", "--name", NAME]);
    }
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn layer_dir(root: &Path, diff_id: &str) -> PathBuf {
    root.join("images/layers/sha256")
        .join(diff_id.strip_prefix("sha256:").expect("sha256 diff_id"))
}

#[test]
fn the_agent_pulls_the_demo_registrys_images() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root: run the README's test command (scripts/test) as root"
    );
    let demo = Demo {
        home: TestDir::new("demo-home"),
    };
    let up = demo.flotilla(&[
        "demo", "up", "--name", NAME, "--nodes", "1", "--subnet", SUBNET,
    ]);
    assert!(up.status.success(), "demo up failed:\n{}", text(&up));

    let store = TestDir::new("demo-store");
    let agent = Agent::new(store.path());
    let busybox = format!("{REGISTRY}/demo/busybox:latest");
    let run = agent.pull(&busybox);
    run.assert_ok();
    assert!(
        run.last_line()
            .starts_with(&format!("pulled {busybox} sha256:")),
        "{}",
        run.text()
    );
    // Untagged: stored as :latest.
    agent.pull(&format!("{REGISTRY}/demo/httpd")).assert_ok();
    agent.assert_store_consistent();

    let images = agent.images();
    let find = |reference: &str| -> Value {
        images
            .iter()
            .find(|i| i["reference"] == reference)
            .cloned()
            .unwrap_or_else(|| panic!("{reference} not listed: {images:?}"))
    };
    let busybox_entry = find(&busybox);
    let httpd_entry = find(&format!("{REGISTRY}/demo/httpd:latest"));

    let base = busybox_entry["layers"][0].as_str().expect("busybox layer");
    // httpd is busybox's layer plus a page: the first layer is shared.
    assert_eq!(httpd_entry["layers"][0], base, "{httpd_entry}");
    let base_dir = layer_dir(&agent.root, base);
    assert_eq!(
        fs::read(base_dir.join("bin/busybox")).expect("bin/busybox unpacked"),
        fs::read("/bin/busybox").expect("the host's busybox"),
        "bin/busybox differs from the busybox the demo image was built from"
    );
    // The image's absolute symlinks are kept as they are (they resolve
    // inside the container, not on the host).
    assert_eq!(
        fs::read_link(base_dir.join("bin/sh")).expect("bin/sh symlink"),
        PathBuf::from("/bin/busybox")
    );
    let www = httpd_entry["layers"][1]
        .as_str()
        .expect("httpd's www layer");
    assert!(
        layer_dir(&agent.root, www).join("www/index.html").is_file(),
        "httpd's page not unpacked"
    );
}
