//! `flotilla apply --dry-run -f` as a user runs it with no cluster yet: the
//! real binary, its exit status, and what it prints where. (Applying to the
//! demo cluster is tested in tests/controller_demo.rs.)

use std::path::Path;
use std::process::{Command, Output};

const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/manifests");

/// Runs the binary with a throwaway home, so its log file lands nowhere real.
fn flotilla(args: &[&str]) -> (Output, tempfile::TempDir) {
    let home = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let output = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("HOME", home.path())
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .output()
        .unwrap_or_else(|e| panic!("running flotilla: {e}"));
    (output, home)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_good_file_is_reported_as_created() {
    let file = Path::new(ASSETS).join("httpd-deployment.yaml");
    let (out, _home) = flotilla(&["apply", "--dry-run", "-f", &file.to_string_lossy()]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert_eq!(
        stdout.trim(),
        "deployment.apps/httpd created (dry run): namespace default, 2 replicas, image 10.77.0.1:5000/demo/httpd:latest"
    );
    assert_eq!(text(&out.stderr), NO_CLUSTER_NOTE);
}

const NO_CLUSTER_NOTE: &str =
    "note: no cluster file, so no placement is shown; `flotilla demo up` makes one\n";

#[test]
fn a_bad_file_names_file_and_paths_and_fails() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: web\n    image: nginx\n    imagePullPolicyy: Always\n    resources: {limits: {memory: lots}}\n  volumes: []\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (out, _home) = flotilla(&["apply", "--dry-run", "-f", &file.to_string_lossy()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stdout),
        "",
        "nothing from a refused file is created"
    );
    let prefix = format!("error: {}: document 1 (Pod \"web\"): ", file.display());
    for needle in [
        format!("{prefix}unknown field \"spec.containers[0].imagePullPolicyy\""),
        format!("{prefix}spec.containers[0].resources.limits.memory: Invalid value: \"lots\""),
        format!("{prefix}spec.volumes: "),
        "error: 1 file refused (3 errors)".to_owned(),
    ] {
        assert!(stderr.contains(&needle), "{needle:?} not in:\n{stderr}");
    }
}

#[test]
fn a_directory_is_read_whole_and_warnings_go_to_stderr() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for name in ["busybox-pod.yaml", "httpd-hostport-pod.yaml"] {
        std::fs::copy(Path::new(ASSETS).join(name), dir.path().join(name))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::create_dir(dir.path().join("more")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("more/probe.json"),
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probed"},
            "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
            "livenessProbe": {"exec": {"command": ["true"]}}}]}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (out, _home) = flotilla(&["apply", "--dry-run", "-f", &dir.path().to_string_lossy()]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let created: Vec<&str> = stdout
        .lines()
        .map(|l| l.split(" created (dry run)").next().unwrap_or_default())
        .collect();
    assert_eq!(created, ["pod/busybox", "pod/httpd-hostport", "pod/probed"]);
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    assert!(stderr.ends_with(NO_CLUSTER_NOTE), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "Warning: {}: document 1 (Pod \"probed\"): spec.containers[0].livenessProbe: livenessProbe has no effect yet: the probe will not run",
            dir.path().join("more/probe.json").display()
        )),
        "{stderr}"
    );
}

#[test]
fn without_a_cluster_file_it_says_what_to_do() {
    let file = Path::new(ASSETS).join("busybox-pod.yaml");
    let (out, _home) = flotilla(&["apply", "-f", &file.to_string_lossy()]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cluster.toml"), "{stderr}");
}

#[test]
fn a_missing_path_fails() {
    let (out, _home) = flotilla(&["apply", "--dry-run", "-f", "/nonexistent/manifest.yaml"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("error: /nonexistent/manifest.yaml: the path does not exist")
    );
}
