//! The console end to end in a real terminal: tmux runs `flotilla` on a demo
//! cluster of the test's own; keys go in with send-keys and the screen comes
//! back with capture-pane. Nodes appear Ready, a manifest is applied with
//! `a` and its pod runs, its logs appear in a pane, `k` kills it, and `q`
//! leaves the terminal as it was.

mod support;

use std::time::Duration;

use support::TestDir;
use support::demo::{Demo, stripped_agent};
use support::tmux::Tmux;

const NAME: &str = "con";
const SUBNET: &str = "10.97.0.0/24";

/// The console's row of the pod named `name`, if shown.
fn row<'a>(screen: &'a str, name: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(name))
}

#[test]
fn apply_run_log_kill_and_quit_in_a_real_terminal() {
    let demo = Demo::up(NAME, SUBNET, 3);
    let dir = TestDir::new("console-demo");
    let agent = stripped_agent(dir.path());
    let cluster_file = demo.cluster_file();
    // The first connection uploads the agent: done before the console runs.
    let nodes = demo.flotilla_with(
        &[
            "--cluster",
            cluster_file.to_str().unwrap(),
            "get",
            "nodes",
            "--timeout",
            "120s",
        ],
        &[("FLOTILLA_AGENT_BINARY", agent.as_path())],
    );
    assert!(nodes.status.success(), "{}", support::demo::text(&nodes));

    // A manifest directory with one pod that logs, on this demo's registry.
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let registry = {
        let address = &demo.cluster().nodes[0].address;
        let (net, _) = address.rsplit_once('.').unwrap();
        format!("{net}.1:5000")
    };
    std::fs::write(
        manifests.join("ticker.yaml"),
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ticker\nspec:\n  containers:\n    - name: ticker\n      image: {registry}/demo/busybox:latest\n      command: [\"sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done\"]\n"
        ),
    )
    .unwrap();

    // The manifest directory comes from a copy of the cluster file beside
    // it (`[cluster] manifests`, relative to that file), as an operator
    // sharing one cluster file would list them.
    let listing_file = dir.path().join("cluster.toml");
    let text = std::fs::read_to_string(&cluster_file).unwrap();
    assert!(text.contains("[cluster]\n"), "{text}");
    std::fs::write(
        &listing_file,
        text.replacen("[cluster]\n", "[cluster]\nmanifests = [\"manifests\"]\n", 1),
    )
    .unwrap();

    // The console, in a shell that reports how it ended and what the
    // terminal's modes are afterwards.
    let command = demo.command(&[]);
    let envs: Vec<String> = command
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}='{}'", k.to_str()?, v?.to_str()?)))
        .collect();
    let shell = format!(
        "env {} FLOTILLA_AGENT_BINARY='{}' '{}' --cluster '{}'; echo \"EXITED rc=$?\"; echo \"MODES $(stty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo)$' | tr '\\n' ' ')END\"; sleep 600",
        envs.join(" "),
        agent.display(),
        env!("CARGO_BIN_EXE_flotilla"),
        listing_file.display(),
    );
    let tmux = Tmux::start(&shell, 140, 40);

    // Nodes appear Ready.
    tmux.wait_for("three Ready nodes", Duration::from_secs(60), |s| {
        s.contains("nodes 3/3 Ready")
    });

    // `a` on the manifest: the footer says where it went.
    tmux.command("manifests");
    tmux.wait_for("the manifest listed", Duration::from_secs(10), |s| {
        row(s, "ticker.yaml").is_some_and(|r| r.contains("valid"))
    });
    tmux.keys(&["a"]);
    tmux.wait_for("the apply reported", Duration::from_secs(30), |s| {
        s.contains("pod/ticker created")
    });

    // Its pod reaches Running.
    tmux.command("pods");
    tmux.wait_for("ticker Running", Duration::from_secs(60), |s| {
        row(s, "ticker").is_some_and(|r| r.contains("Running"))
    });

    // Its logs in a pane.
    tmux.keys(&["l"]);
    tmux.wait_for("its log lines", Duration::from_secs(30), |s| {
        s.contains("tick-")
    });

    // `k` kills it (from the table: Esc leaves the pane first).
    tmux.keys(&["Escape"]);
    tmux.keys(&["k"]);
    tmux.wait_for("the kill reported", Duration::from_secs(20), |s| {
        s.contains("pod/ticker killed")
    });
    tmux.wait_for("ticker no longer running", Duration::from_secs(30), |s| {
        row(s, "ticker").is_none_or(|r| !r.contains("Running"))
    });

    // q closes the pane, then quits; the terminal is back in cooked mode.
    tmux.keys(&["q"]);
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the console exited", Duration::from_secs(20), |s| {
        s.contains("EXITED rc=") && s.contains("END")
    });
    assert!(screen.contains("EXITED rc=0"), "{screen}");
    assert!(
        screen.contains("MODES icanon echo END"),
        "the terminal is restored (canonical mode, echo on):\n{screen}"
    );
    assert!(
        !screen.contains("nodes 3/3 Ready"),
        "the alternate screen is gone:\n{screen}"
    );

    // The pod is removed so the demo goes down with nothing left running.
    let cluster = cluster_file.to_str().unwrap();
    let _ = demo.flotilla_with(
        &["--cluster", cluster, "delete", "pod", "ticker"],
        &[("FLOTILLA_AGENT_BINARY", agent.as_path())],
    );
}
