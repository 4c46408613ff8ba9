//! Which cluster file flotilla reads (`--cluster`, then `FLOTILLA_CLUSTER`,
//! then the config directory's `cluster.toml`) and what it says when that
//! file is missing or wrong.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn flotilla(home: &Path, args: &[&str], env_cluster: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    command
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env_remove("FLOTILLA_CLUSTER");
    if let Some(path) = env_cluster {
        command.env("FLOTILLA_CLUSTER", path);
    }
    command.output().expect("run flotilla")
}

fn cluster(name: &str) -> String {
    format!("[cluster]\nname = \"{name}\"\n[[nodes]]\nname = \"n1\"\naddress = \"10.0.0.1\"\n")
}

#[test]
fn the_flag_wins_over_the_environment_which_wins_over_the_default() {
    let home = tempfile::tempdir().expect("tempdir");
    let config = home.path().join("config").join("flotilla");
    fs::create_dir_all(&config).expect("config dir");
    fs::write(config.join("cluster.toml"), cluster("fromdefault")).expect("write");
    let env_file = home.path().join("env.toml");
    fs::write(&env_file, cluster("fromenv")).expect("write");
    let flag_file = home.path().join("flag.toml");
    fs::write(&flag_file, cluster("fromflag")).expect("write");

    let out = flotilla(home.path(), &[], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"fromdefault\""));
    let out = flotilla(home.path(), &[], Some(&env_file));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"fromenv\""));
    let flag = flag_file.display().to_string();
    let out = flotilla(home.path(), &["--cluster", &flag], Some(&env_file));
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"fromflag\""));
}

#[test]
fn a_missing_cluster_file_says_how_to_get_one() {
    let home = tempfile::tempdir().expect("tempdir");
    let out = flotilla(home.path(), &[], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no cluster file at"), "{stderr}");
    assert!(stderr.contains("flotilla demo up"), "{stderr}");
}

#[test]
fn a_wrong_cluster_file_names_the_file_the_node_and_the_field() {
    let home = tempfile::tempdir().expect("tempdir");
    let file = home.path().join("bad.toml");
    fs::write(
        &file,
        "[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\ntaints = [\"k=v:Never\"]\n[[nodes]]\nname = \"a\"\naddress = \"y\"\n",
    )
    .expect("write");
    let out = flotilla(
        home.path(),
        &["--cluster", &file.display().to_string()],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("nodes[0] (a).taints[0]"), "{stderr}");
    assert!(stderr.contains("duplicate node name \"a\""), "{stderr}");
}
