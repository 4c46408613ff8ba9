//! `flotilla exec` and the console's `s` on a demo cluster of the test's
//! own: a command's output and exit code; stdin; an interactive shell in a
//! real terminal (tmux) that answers, follows the window's size and leaves
//! the terminal restored; an exec'd process that sees only its container
//! and is as confined as the container; a shell from the console that gives
//! the console back as it was; and an exec that ends with its container.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::TestDir;
use support::demo::{Demo, stripped_agent, text};
use support::tmux::Tmux;

const NAME: &str = "exec";
const SUBNET: &str = "10.105.0.0/24";
const POD: &str = "shellpod";

/// `flotilla --cluster FILE ARGS` with the stripped agent.
struct Cli<'a> {
    demo: &'a Demo,
    agent: &'a Path,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let cluster = self.demo.cluster_file();
        let mut full = vec!["--cluster", cluster.to_str().unwrap()];
        full.extend_from_slice(args);
        let mut command = self.demo.command(&full);
        command.env("FLOTILLA_AGENT_BINARY", self.agent);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run flotilla")
    }

    /// `exec POD -- ARGS`, stdin closed.
    fn exec(&self, args: &[&str]) -> Output {
        let mut full = vec!["exec", POD, "--"];
        full.extend_from_slice(args);
        self.command(&full)
            .stdin(Stdio::null())
            .output()
            .expect("run flotilla exec")
    }

    /// The shell line that runs `flotilla ARGS` in tmux with this demo's
    /// environment, then reports how it ended and the terminal's modes.
    fn in_terminal(&self, args: &[&str]) -> String {
        let command = self.command(args);
        let envs: Vec<String> = command
            .get_envs()
            .filter_map(|(k, v)| Some(format!("{}='{}'", k.to_str()?, v?.to_str()?)))
            .collect();
        let args: Vec<String> = command
            .get_args()
            .map(|a| format!("'{}'", a.to_str().unwrap()))
            .collect();
        format!(
            "env {} '{}' {}; echo \"EXITED rc=$?\"; echo \"MODES $(stty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo)$' | tr '\\n' ' ')END\"; sleep 600",
            envs.join(" "),
            env!("CARGO_BIN_EXE_flotilla"),
            args.join(" "),
        )
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn exec_and_shell_on_a_demo_cluster() {
    let demo = Demo::up(NAME, SUBNET, 2);
    let dir = TestDir::new("exec-demo");
    let agent = stripped_agent(dir.path());
    let cli = Cli {
        demo: &demo,
        agent: &agent,
    };
    let registry = {
        let address = &demo.cluster().nodes[0].address;
        let (net, _) = address.rsplit_once('.').unwrap();
        format!("{net}.1:5000")
    };
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\nspec:\n  containers:\n    - name: main\n      image: {registry}/demo/busybox:latest\n      command: [\"sh\", \"-c\", \"echo started; exec sleep 3600\"]\n      env:\n        - name: GREETING\n          value: hello-from-the-pod\n      workingDir: /tmp\n"
        ),
    )
    .unwrap();
    let applied = cli.run(&[
        "apply",
        "-f",
        manifest.to_str().unwrap(),
        "--wait",
        "--timeout",
        "120s",
    ]);
    assert!(applied.status.success(), "{}", text(&applied));

    // Output on both streams, kept apart, and the exit code passed through.
    let out = cli.exec(&["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(stdout(&out), "to-stdout\n", "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("to-stderr"),
        "{}",
        text(&out)
    );

    // The container's hostname, environment and working directory.
    let out = cli.exec(&["sh", "-c", "hostname; echo $GREETING; pwd"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), format!("{POD}\nhello-from-the-pod\n/tmp\n"));

    // Only the container's processes: its PID 1 is the pod's command.
    let out = cli.exec(&[
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = stdout(&out);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines[0].trim(), "sleep 3600", "{}", text(&out));
    // sleep, this sh, its ls and grep: a handful, not the host's hundreds.
    let count: usize = lines[1].trim().parse().expect("a count");
    assert!(count <= 6, "the container's processes only: {}", text(&out));

    // Only the container's filesystem: the image's busybox, none of the
    // host's (or the node's) agent state.
    let out = cli.exec(&[
        "sh",
        "-c",
        "test -e /var/lib/flotilla && echo host-visible; test -x /bin/busybox && echo image",
    ]);
    assert_eq!(stdout(&out), "image\n", "{}", text(&out));

    // As confined as the container: the same capabilities, no_new_privs,
    // seccomp filtering; mounting fails.
    let out = cli.exec(&[
        "sh",
        "-c",
        "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let status = stdout(&out);
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(status.contains(line), "{line:?} in:\n{status}");
    }
    let out = cli.exec(&["mount", "-t", "tmpfs", "none", "/mnt"]);
    assert!(!out.status.success(), "mount must fail: {}", text(&out));
    // No descriptor of the agent's: only 0, 1, 2 (and ls's own).
    let out = cli.exec(&["ls", "/proc/self/fd"]);
    let fds: Vec<String> = stdout(&out).split_whitespace().map(str::to_owned).collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{}", text(&out));

    // Stdin with -i.
    let mut child = cli
        .command(&["exec", "-i", POD, "--", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"piped in\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out), "PIPED IN\n");

    // Errors that say what is wrong.
    let out = cli.exec(&["nosuchprogram"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nosuchprogram"),
        "{}",
        text(&out)
    );
    let out = cli.run(&["exec", "nosuchpod", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"nosuchpod\" not found"),
        "{}",
        text(&out)
    );
    let out = cli.run(&["exec", POD, "-c", "nosuch", "--", "true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no container \"nosuch\""),
        "{}",
        text(&out)
    );

    // The SSH channel (for agents without `exec.start`) does the same.
    let out = cli.run(&[
        "exec",
        "--via",
        "ssh",
        POD,
        "--",
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    assert_eq!(stdout(&out), "to-stdout\n", "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("to-stderr"));

    interactive_shell(&cli, &[]);
    interactive_shell(&cli, &["--via", "ssh"]);
    console_shell(&cli);
    exec_ends_with_its_container(&cli);

    let _ = cli.run(&["delete", "pod", POD, "--grace-period", "0"]);
    demo.down();
}

/// Busybox's prompt in the pod's working directory (capture-pane drops
/// the space after it).
fn prompt(screen: &str) -> bool {
    screen.lines().any(|l| l.trim_end() == "/tmp #")
}

/// `exec -it` in a real terminal: a command and its answer, the window's
/// size followed, ^C reaching the shell's command, the exit code, and the
/// terminal restored.
fn interactive_shell(cli: &Cli, via: &[&str]) {
    let mut args = vec!["exec", "-it"];
    args.extend_from_slice(via);
    args.extend_from_slice(&[POD, "--", "sh"]);
    let tmux = Tmux::start(&cli.in_terminal(&args), 120, 40);
    tmux.wait_for("the shell's prompt", Duration::from_secs(60), prompt);
    tmux.type_line("echo answer-$((6 * 7))");
    tmux.wait_for("its answer", Duration::from_secs(20), |s| {
        s.contains("answer-42")
    });
    tmux.type_line("stty size");
    tmux.wait_for("the first size", Duration::from_secs(20), |s| {
        s.lines().any(|l| l.trim() == "40 120")
    });
    if via.is_empty() {
        // Through the agent, the terminal is one of the container's own.
        tmux.type_line("tty; ls /dev/pts");
        tmux.wait_for("the container's terminal", Duration::from_secs(20), |s| {
            s.lines().any(|l| l.trim() == "/dev/pts/0")
        });
    }
    tmux.resize(100, 30);
    tmux.type_line("stty size");
    tmux.wait_for("the new size", Duration::from_secs(20), |s| {
        s.lines().any(|l| l.trim() == "30 100")
    });
    // ^C goes through the terminal to the command in the foreground.
    tmux.type_line("sleep 600");
    std::thread::sleep(Duration::from_millis(500));
    tmux.keys(&["C-c"]);
    tmux.type_line("echo after-$?");
    tmux.wait_for("the sleep interrupted", Duration::from_secs(20), |s| {
        s.contains("after-130")
    });
    tmux.type_line("exit 3");
    let screen = tmux.wait_for("the exec ended", Duration::from_secs(20), |s| {
        s.contains("EXITED rc=") && s.contains("END")
    });
    assert!(screen.contains("EXITED rc=3"), "{screen}");
    assert!(
        screen.contains("MODES icanon echo END"),
        "the terminal is restored (canonical mode, echo on):\n{screen}"
    );
}

/// `s` on the pod in the console: the shell takes the terminal, and exit
/// brings the console back.
fn console_shell(cli: &Cli) {
    let tmux = Tmux::start(&cli.in_terminal(&[]), 140, 40);
    tmux.wait_for("two Ready nodes", Duration::from_secs(60), |s| {
        s.contains("nodes 2/2 Ready")
    });
    tmux.command("pods");
    tmux.wait_for("the pod Running", Duration::from_secs(30), |s| {
        s.lines().any(|l| l.contains(POD) && l.contains("Running"))
    });
    tmux.keys(&["s"]);
    tmux.wait_for("the shell", Duration::from_secs(30), |s| {
        s.contains("flotilla: shell in pod default/shellpod") && prompt(s)
    });
    tmux.type_line("echo in-the-container-$(hostname)");
    tmux.wait_for("the shell's answer", Duration::from_secs(20), |s| {
        s.contains(&format!("in-the-container-{POD}"))
    });
    tmux.type_line("exit");
    let screen = tmux.wait_for("the console back", Duration::from_secs(20), |s| {
        s.contains("nodes 2/2 Ready") && s.contains("shell in pod/shellpod ended")
    });
    assert!(
        !screen.contains("in-the-container-"),
        "the console is redrawn whole:\n{screen}"
    );
    // Still the pods view, the pod still selected.
    assert!(
        screen
            .lines()
            .any(|l| l.contains(POD) && l.contains("Running")),
        "{screen}"
    );
    tmux.keys(&["q"]);
    let screen = tmux.wait_for("the console exited", Duration::from_secs(20), |s| {
        s.contains("EXITED rc=") && s.contains("END")
    });
    assert!(screen.contains("EXITED rc=0"), "{screen}");
    assert!(screen.contains("MODES icanon echo END"), "{screen}");
}

/// An exec running when its container is killed ends too.
fn exec_ends_with_its_container(cli: &Cli) {
    let mut exec = cli
        .command(&["exec", POD, "--", "sleep", "3000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Until the sleep runs in the container.
    let started = Instant::now();
    loop {
        let out = cli.exec(&["sh", "-c", "ps | grep -c '[s]leep 3000'"]);
        if stdout(&out).trim() == "1" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            text(&out)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed = cli.run(&["kill", POD]);
    assert!(killed.status.success(), "{}", text(&killed));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = exec.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = exec.kill();
            panic!("the exec outlived its container");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        status.code(),
        Some(137),
        "killed with the container (SIGKILL)"
    );
    // Nothing of it is left on the host.
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    assert!(
        !stdout(&ps)
            .lines()
            .any(|l| l.contains("sleep 3000") || l.contains("__exec")),
        "{}",
        stdout(&ps)
    );
}
