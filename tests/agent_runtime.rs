//! The runtime core against real containers, as root: a busybox image built
//! from the machine's busybox-static, pushed to a real registry
//! (docker-registry on 127.0.0.1), pulled by `flotilla-agent pull` (the pod
//! tests' template store, support::pods), and its
//! layer directory used as the containers' lower dir. Each test makes its
//! own pod sandbox and containers under a test dir and checks, after
//! `destroy`, that no mount, process or directory is left.

mod support;

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flotilla::agent::runtime::{
    BindMount, ContainerExit, ContainerSpec, InitStage, Namespace, PodSandbox, RootfsSpec,
    RuntimeError, SandboxSpec, spawn_with,
};
use support::TestDir;

/// The pulled busybox layer, shared by every test (pulled once per run),
/// and the agent binary the containers' init stage runs from.
struct Fixture {
    layer: PathBuf,
    /// `flotilla-agent`, linked: the target dir may be shared with other
    /// builds, which would replace the binary under running tests.
    agent: PathBuf,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let template = support::pods::template();
        Fixture {
            layer: template.layer.clone(),
            agent: template.agent.clone(),
        }
    })
}

/// A pod sandbox of a test's own, with the test's directory.
struct Pod {
    dir: TestDir,
    sandbox: Option<PodSandbox>,
}

impl Pod {
    fn new(label: &str, name: &str, host_network: bool) -> Pod {
        fixture();
        let dir = TestDir::new(&format!("runtime-{label}"));
        let sandbox = PodSandbox::create(
            &dir.path().join("pods"),
            &SandboxSpec::new(&format!("pod-{label}"), name, host_network),
        )
        .expect("create the pod sandbox");
        Pod {
            dir,
            sandbox: Some(sandbox),
        }
    }

    fn sandbox(&self) -> &PodSandbox {
        self.sandbox.as_ref().expect("sandbox")
    }

    /// A spec for container `id` of this pod over `lowers` (top-most first),
    /// then the busybox layer.
    fn spec(&self, id: &str, lowers: &[PathBuf], args: &[&str]) -> ContainerSpec {
        let dir = self.dir.path().join("containers").join(id);
        let mut lower_dirs = lowers.to_vec();
        lower_dirs.push(fixture().layer.clone());
        let sandbox = self.sandbox();
        let mut spec = ContainerSpec::new(
            id,
            RootfsSpec {
                lower_dirs,
                upper_dir: dir.join("upper"),
                work_dir: dir.join("work"),
                merged_dir: dir.join("merged"),
                volatile: false,
                private_layer: false,
            },
            args.iter().map(|a| a.to_string()).collect(),
        );
        spec.hostname = sandbox.name().to_string();
        spec.namespaces = sandbox.namespaces();
        spec.mounts = sandbox.etc_mounts();
        spec
    }

    /// Runs `sh -c script` to completion.
    fn sh(&self, script: &str) -> Outcome {
        self.run(self.spec("c", &[], &["/bin/sh", "-c", script]))
            .expect("the container starts")
    }

    fn run(&self, spec: ContainerSpec) -> Result<Outcome, RuntimeError> {
        start(spec)?.finish()
    }

    /// Destroys the sandbox and checks nothing of the test is left mounted.
    fn destroy(mut self) {
        let dir = self.dir.path().to_path_buf();
        self.sandbox
            .take()
            .expect("sandbox")
            .destroy()
            .expect("destroy");
        assert_nothing_mounted_under(&dir);
        assert!(
            fs::read_dir(dir.join("pods"))
                .expect("pods")
                .next()
                .is_none(),
            "destroy left something in the run dir"
        );
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(sandbox) = self.sandbox.take() {
            let _ = sandbox.destroy();
        }
    }
}

/// A started container whose output is being collected.
struct Running {
    pid: i32,
    rootfs: RootfsSpec,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

struct Outcome {
    stdout: String,
    stderr: String,
    exit: ContainerExit,
}

impl Outcome {
    fn ok(&self) -> &str {
        assert_eq!(
            self.exit,
            ContainerExit::Code(0),
            "the container failed:\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

fn reader(read: std::io::PipeReader) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = { read }.read_to_string(&mut text);
        text
    })
}

fn start(mut spec: ContainerSpec) -> Result<Running, RuntimeError> {
    let rootfs = spec.rootfs.clone();
    let (out_r, out_w) = std::io::pipe().expect("pipe");
    let (err_r, err_w) = std::io::pipe().expect("pipe");
    spec.stdio = [None, Some(OwnedFd::from(out_w)), Some(OwnedFd::from(err_w))];
    let stdout = reader(out_r);
    let stderr = reader(err_r);
    let process = match spawn_with(&fixture().agent, spec) {
        Ok(p) => p,
        Err(e) => {
            rootfs.remove().expect("remove the container's dirs");
            return Err(e);
        }
    };
    Ok(Running {
        pid: process.pid,
        stdout,
        stderr,
        rootfs,
    })
}

impl Running {
    fn finish(self) -> Result<Outcome, RuntimeError> {
        let process = flotilla::agent::runtime::ContainerProcess { pid: self.pid };
        let exit = process.wait()?;
        // Reaped: the pid is gone.
        assert_eq!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), None),
            Err(nix::errno::Errno::ESRCH),
            "the container's process is still there"
        );
        // Its mounts were in its own mount namespace: nothing is left on the
        // host, and its dirs go without EBUSY.
        assert_nothing_mounted_under(&self.rootfs.merged_dir);
        self.rootfs.remove().expect("remove the container's dirs");
        for dir in [&self.rootfs.upper_dir, &self.rootfs.merged_dir] {
            assert!(!dir.exists(), "{} is left", dir.display());
        }
        Ok(Outcome {
            stdout: self.stdout.join().expect("stdout reader"),
            stderr: self.stderr.join().expect("stderr reader"),
            exit,
        })
    }
}

fn assert_nothing_mounted_under(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let dir = dir.to_string_lossy();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&*dir)).collect();
    assert!(
        left.is_empty(),
        "mounts left under {dir}:\n{}",
        left.join("\n")
    );
}

fn init_error(result: Result<Outcome, RuntimeError>) -> (String, String) {
    match result {
        Err(RuntimeError::Init { step, detail, .. }) => (step, detail),
        Err(other) => panic!("expected an init-stage error, got {other}"),
        Ok(o) => panic!(
            "expected the container to fail to start; it ran ({:?}):\n{}{}",
            o.exit, o.stdout, o.stderr
        ),
    }
}

#[test]
fn output_and_exit_codes_reach_the_caller() {
    let pod = Pod::new("exit", "exit", false);
    let hi = pod.run(pod.spec("c", &[], &["echo", "hi"])).expect("start");
    assert_eq!(hi.ok(), "hi\n");
    let three = pod.sh("echo to-stderr >&2; exit 3");
    assert_eq!(three.exit, ContainerExit::Code(3));
    assert_eq!(three.stderr, "to-stderr\n");
    // PID 1 of a PID namespace ignores signals from inside it, even
    // SIGKILL; the host's kill reaches it.
    let sleeper = start(pod.spec("s", &[], &["sleep", "60"])).expect("start");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sleeper.pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    assert_eq!(
        sleeper.finish().expect("wait").exit,
        ContainerExit::Signal(9)
    );
    pod.destroy();
}

#[test]
fn the_container_is_pid_1_and_sees_only_its_processes() {
    let pod = Pod::new("pid", "pid", false);
    let out = pod.sh("echo $$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done");
    let lines: Vec<&str> = out.ok().lines().collect();
    assert_eq!(lines[0], "1", "{out:?}", out = out.stdout);
    let pids: Vec<u32> = lines[1..].iter().map(|p| p.parse().expect("pid")).collect();
    // The shell, and at most the subshell of the loop: nothing of the host.
    assert!(
        pids.contains(&1) && pids.iter().all(|p| *p <= 3),
        "processes visible: {pids:?}"
    );
    pod.destroy();
}

#[test]
fn the_pod_names_the_host_and_its_containers_share_uts_ipc_and_net() {
    let pod = Pod::new("uts", "web-1", false);
    let a = pod
        .run(pod.spec(
            "a",
            &[],
            &[
                "/bin/sh",
                "-c",
                "hostname; cat /etc/hostname; echo $HOSTNAME; for n in uts ipc net mnt pid; do readlink /proc/self/ns/$n; done",
            ],
        ))
        .expect("start a");
    let b = pod
        .run(pod.spec(
            "b",
            &[],
            &[
                "/bin/sh",
                "-c",
                "for n in uts ipc net mnt pid; do readlink /proc/self/ns/$n; done",
            ],
        ))
        .expect("start b");
    let a_lines: Vec<&str> = a.ok().lines().collect();
    let b_lines: Vec<&str> = b.ok().lines().collect();
    assert_eq!(&a_lines[..3], ["web-1", "web-1", "web-1"]);
    // uts, ipc, net shared; mount and pid their own.
    assert_eq!(
        a_lines[3..6],
        b_lines[..3],
        "a: {a_lines:?}\nb: {b_lines:?}"
    );
    // They are the sandbox's, not the host's; mount and PID namespaces are
    // the containers' own. (a and b do not overlap in time, so their mount
    // and PID namespace numbers may be reused: compare with the host's.)
    for (i, ns) in ["uts", "ipc", "net", "mnt", "pid"].iter().enumerate() {
        let host = fs::read_link(format!("/proc/self/ns/{ns}")).expect("host ns");
        assert_ne!(a_lines[3 + i], host.to_string_lossy(), "{ns}");
        assert_ne!(b_lines[i], host.to_string_lossy(), "{ns}");
    }
    pod.destroy();
}

#[test]
fn containers_of_a_pod_reach_each_other_on_loopback() {
    let pod = Pod::new("lo", "lo", false);
    let server = start(pod.spec(
        "server",
        &[],
        &["/bin/sh", "-c", "echo hello | nc -l -p 8080"],
    ))
    .expect("start the server");
    let client = pod
        .run(pod.spec(
            "client",
            &[],
            &[
                "/bin/sh",
                "-c",
                "ip -o link show lo; for i in $(seq 100); do nc 127.0.0.1 8080 </dev/null && exit 0; sleep 0.05; done; exit 1",
            ],
        ))
        .expect("start the client");
    let out = client.ok();
    assert!(out.contains(",UP"), "loopback is not up: {out}");
    assert!(out.contains("hello"), "{out}");
    server.finish().expect("server").ok();
    pod.destroy();
}

#[test]
fn mounting_is_refused_and_the_kernel_is_protected() {
    let pod = Pod::new("protect", "protect", false);
    let out = pod.sh("mount -t tmpfs x /tmp && echo MOUNTED; \
         echo kcore $(cat /proc/kcore 2>/dev/null | wc -c); \
         echo timer_list $(cat /proc/timer_list 2>/dev/null | wc -c); \
         echo firmware $(ls /sys/firmware | wc -l); \
         echo x > /proc/sys/kernel/hostname && echo WROTE-PROC-SYS; \
         echo 1 > /proc/sysrq-trigger 2>/dev/null && echo WROTE-SYSRQ; \
         mkdir /sys/x && echo WROTE-SYS; \
         echo nameserver 1.1.1.1 >> /etc/resolv.conf && echo WROTE-RESOLV; \
         grep -c . /etc/hosts >/dev/null && echo hosts-readable; \
         true");
    let text = out.ok();
    for bad in [
        "MOUNTED",
        "WROTE-PROC-SYS",
        "WROTE-SYSRQ",
        "WROTE-SYS",
        "WROTE-RESOLV",
    ] {
        assert!(!text.contains(bad), "{bad}:\n{text}\n{}", out.stderr);
    }
    assert!(text.contains("kcore 0\n"), "{text}");
    assert!(text.contains("timer_list 0\n"), "{text}");
    assert!(text.contains("firmware 0\n"), "{text}");
    assert!(text.contains("hosts-readable"), "{text}");
    let stderr = out.stderr.to_lowercase();
    assert!(
        stderr.contains("operation not permitted") || stderr.contains("permission denied"),
        "mount should be refused for lack of CAP_SYS_ADMIN:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("Read-only file system"),
        "{}",
        out.stderr
    );
    pod.destroy();
}

#[test]
fn only_fds_0_to_2_reach_the_container() {
    // A descriptor the caller leaks (no O_CLOEXEC), as a careless shim would.
    let leaked = nix::fcntl::open(
        "/etc/hostname",
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .expect("open without O_CLOEXEC");
    let pod = Pod::new("fds", "fds", false);
    let out = pod.sh("ls /proc/self/fd");
    // 3 is ls's own directory fd.
    assert_eq!(out.ok(), "0\n1\n2\n3\n", "leaked fd {}", leaked.as_raw_fd());
    drop(leaked);
    pod.destroy();
}

#[test]
fn capabilities_are_dockers_and_no_new_privs_is_set() {
    let pod = Pod::new("caps", "caps", false);
    let out = pod.sh("grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status");
    let text = out.ok();
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t00000000a80425fb",
        "CapEff:\t00000000a80425fb",
        "CapBnd:\t00000000a80425fb",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
    pod.destroy();
}

#[test]
fn seccomp_refuses_what_docker_refuses() {
    let pod = Pod::new("seccomp", "seccomp", false);
    // A user namespace would hand the container a full set of capabilities
    // over its own namespaces; Docker's profile refuses it, and so do we.
    let out = pod.sh(
        "unshare -U true && echo USERNS; unshare -n true && echo NETNS; \
         nsenter -t 1 -n true && echo SETNS; echo done",
    );
    let text = out.ok();
    assert!(!text.contains("USERNS"), "{text}");
    assert!(!text.contains("NETNS"), "{text}");
    assert!(!text.contains("SETNS"), "{text}");
    assert!(text.contains("done"), "{text}");
    assert!(
        out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    // Without the filter the user namespace is there for the taking (when
    // the kernel allows unprivileged ones), which is what the filter is for.
    let mut spec = pod.spec(
        "d",
        &[],
        &["/bin/sh", "-c", "grep Seccomp: /proc/self/status"],
    );
    spec.process.seccomp = false;
    assert_eq!(pod.run(spec).expect("start").ok(), "Seccomp:\t0\n");
    pod.destroy();
}

#[test]
fn the_user_comes_from_the_images_passwd() {
    let pod = Pod::new("user", "user", false);
    let mut spec = pod.spec(
        "c",
        &[],
        &[
            "/bin/sh",
            "-c",
            "id -u; id -g; echo $HOME; grep -E '^Cap(Eff|Bnd)' /proc/self/status",
        ],
    );
    spec.process.user = Some("nobody".into());
    let out = pod.run(spec).expect("start");
    assert_eq!(
        out.ok(),
        "65534\n65534\n/nonexistent\nCapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n"
    );
    let mut spec = pod.spec("d", &[], &["id"]);
    spec.process.user = Some("1234:5678".into());
    assert_eq!(
        pod.run(spec).expect("start").ok(),
        "uid=1234 gid=5678 groups=5678\n"
    );
    let mut spec = pod.spec("e", &[], &["id"]);
    spec.process.user = Some("nosuch".into());
    let (step, detail) = init_error(pod.run(spec));
    assert_eq!(step, "user nosuch");
    assert!(detail.contains("no user \"nosuch\""), "{detail}");
    pod.destroy();
}

#[test]
fn cwd_and_env_are_set() {
    let pod = Pod::new("cwd", "cwd", false);
    let mut spec = pod.spec("c", &[], &["/bin/sh", "-c", "pwd; env | sort"]);
    spec.process.cwd = "/var/new/dir".into();
    spec.process.env = vec!["GREETING=hello".into()];
    let out = pod.run(spec).expect("start");
    let text = out.ok();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "/var/new/dir");
    // A deep working directory is made level by level (1000 levels).
    let deep = "/d".repeat(1000);
    let mut spec = pod.spec("deep", &[], &["pwd"]);
    spec.process.cwd = deep.clone();
    assert_eq!(pod.run(spec).expect("start").ok(), format!("{deep}\n"));
    for want in [
        "GREETING=hello",
        "HOME=/root",
        "HOSTNAME=cwd",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ] {
        assert!(lines.contains(&want), "{want} not in:\n{text}");
    }
    pod.destroy();
}

#[test]
fn an_init_stage_started_early_creates_its_container_later_or_ends_unused() {
    // A foreground `run --rm` starts the init stage before the pod exists
    // and sends the spec once it does.
    let pod = Pod::new("early", "early", false);
    let (out_r, out_w) = std::io::pipe().expect("pipe");
    let (err_r, err_w) = std::io::pipe().expect("pipe");
    let (stdout, stderr) = (reader(out_r), reader(err_r));
    let stage = InitStage::start(
        &fixture().agent,
        [None, Some(OwnedFd::from(out_w)), Some(OwnedFd::from(err_w))],
    )
    .expect("start the init stage");
    std::thread::sleep(Duration::from_millis(50));
    let spec = pod.spec("late", &[], &["sh", "-c", "echo made later; exit 3"]);
    let rootfs = spec.rootfs.clone();
    let process = stage.create(spec).expect("create the container");
    let outcome = Running {
        pid: process.pid,
        stdout,
        stderr,
        rootfs,
    }
    .finish()
    .expect("finish");
    assert_eq!(outcome.stdout, "made later\n", "{}", outcome.stderr);
    assert_eq!(outcome.exit, ContainerExit::Code(3));

    // One the caller never uses (its pod failed to be made) ends on the EOF
    // of its config pipe, and is reaped.
    let unused = InitStage::start(&fixture().agent, [None, None, None]).expect("start");
    let pid = unused.pid().expect("its pid") as i32;
    drop(unused);
    assert_eq!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH),
        "the unused init stage is still there"
    );
    pod.destroy();
}

#[test]
fn failures_name_the_step() {
    let pod = Pod::new("fail", "fail", false);
    let (step, detail) = init_error(pod.run(pod.spec("a", &[], &["/bin/nosuch"])));
    assert_eq!(
        (step.as_str(), detail.as_str()),
        ("exec /bin/nosuch", "No such file or directory")
    );
    let (step, detail) = init_error(pod.run(pod.spec("b", &[], &["nosuch"])));
    assert_eq!(
        (step.as_str(), detail.as_str()),
        ("exec nosuch", "executable file not found in $PATH")
    );
    let mut spec = pod.spec("c", &[], &["true"]);
    spec.process.cwd = "/etc/passwd".into();
    let (step, detail) = init_error(pod.run(spec));
    assert_eq!(
        (step.as_str(), detail.as_str()),
        ("chdir /etc/passwd", "Not a directory")
    );
    // CVE-2024-21626: a cwd through a descriptor's magic link is refused.
    let mut spec = pod.spec("d", &[], &["true"]);
    spec.process.cwd = "/proc/self/fd/1".into();
    let (step, detail) = init_error(pod.run(spec));
    assert_eq!(step, "chdir /proc/self/fd/1");
    assert_eq!(detail, "Too many levels of symbolic links");
    // The error text carries the container id too.
    let mut spec = pod.spec("e", &[], &["true"]);
    spec.rootfs.lower_dirs = vec![pod.dir.path().join("no-such-layer")];
    let err = pod.run(spec).err().expect("a missing layer fails");
    assert_eq!(
        err.step().map(|s| s.starts_with("mount overlay on ")),
        Some(true),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("container e: mount overlay on "),
        "{err}"
    );
    pod.destroy();
}

/// A lower dir made on the host: the top-most layer of a hostile image.
fn layer_dir(pod: &Pod, name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let dir = pod.dir.path().join("layers").join(name);
    fs::create_dir_all(&dir).expect("layer dir");
    build(&dir);
    dir
}

#[test]
fn image_symlinks_cannot_redirect_mounts_out_of_the_root() {
    // CVE-2021-30465's shape: mount targets that are symlinks pointing out.
    let pod = Pod::new("symlinks", "symlinks", false);
    let marker = pod.dir.path().join("host-marker");
    let escape = layer_dir(&pod, "escape", |d| {
        fs::create_dir_all(d.join("etc")).expect("etc");
        // /etc/hostname → far above the root, at a host path the test owns.
        let up = "../".repeat(32);
        std::os::unix::fs::symlink(
            format!(
                "{up}{}",
                marker.display().to_string().trim_start_matches('/')
            ),
            d.join("etc/hostname"),
        )
        .expect("symlink");
    });
    let out = pod
        .run(pod.spec(
            "c",
            std::slice::from_ref(&escape),
            &["cat", "/etc/hostname"],
        ))
        .expect("start");
    assert_eq!(out.ok(), "symlinks\n");
    assert!(!marker.exists(), "a bind target was created on the host");
    // The target was created inside the container's root instead.
    let out = pod
        .run(pod.spec(
            "c2",
            std::slice::from_ref(&escape),
            &[
                "/bin/sh",
                "-c",
                &format!("test -f {} && echo inside", marker.display()),
            ],
        ))
        .expect("start");
    assert_eq!(out.ok(), "inside\n");

    let proc_link = layer_dir(&pod, "proc-link", |d| {
        std::os::unix::fs::symlink("/", d.join("proc")).expect("symlink");
    });
    let (step, detail) = init_error(pod.run(pod.spec("d", &[proc_link], &["true"])));
    assert!(step.starts_with("mount /proc on "), "{step}");
    assert!(detail.contains("symlink"), "{detail}");
    pod.destroy();
}

/// The machine's dynamic loader and the libraries `binary` needs, as a
/// layer, so the agent binary can run inside a container.
fn libraries_layer(pod: &Pod, binary: &str) -> PathBuf {
    let ldd = Command::new("ldd").arg(binary).output().expect("ldd");
    let text = String::from_utf8_lossy(&ldd.stdout).into_owned();
    layer_dir(pod, "libs", |d| {
        for word in text.split_whitespace().filter(|w| w.starts_with('/')) {
            let target = d.join(word.trim_start_matches('/'));
            fs::create_dir_all(target.parent().expect("parent")).expect("lib dir");
            fs::copy(word, &target).expect("copy a library");
        }
    })
}

#[test]
fn the_container_cannot_write_the_agent_binary() {
    // CVE-2019-5736: the container's program is /proc/self/exe, so the
    // kernel execs the agent binary inside the container. Whoever gets hold
    // of that /proc/N/exe must not be able to open it for writing.
    let pod = Pod::new("exe", "exe", false);
    let agent = fixture().agent.clone();
    let libs = libraries_layer(&pod, &agent.to_string_lossy());
    let state = pod.dir.subdir("state");
    fs::create_dir_all(state.join("images")).expect("state");
    let lock = fs::File::create(state.join("images/gc.lock")).expect("lock file");
    // `prune` waits for this lock: the agent binary stays running inside.
    lock.lock().expect("flock");
    let mut spec = pod.spec(
        "c",
        &[libs],
        &["/proc/self/exe", "--root", "/state", "prune"],
    );
    spec.mounts.push(BindMount {
        source: state.clone(),
        destination: "/state".into(),
        read_only: false,
    });
    let running = start(spec).expect("start");
    let exe_path = format!("/proc/{}/exe", running.pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    // The same inode as the agent binary: the container runs the agent.
    // (Its /proc/N/exe reads "/": the read-only bind mount it was exec'd
    // through exists in no namespace the test can see.)
    let agent_id = {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(&agent).expect("stat the agent");
        (m.dev(), m.ino())
    };
    let running_agent = || {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&exe_path).is_ok_and(|m| (m.dev(), m.ino()) == agent_id)
    };
    while !running_agent() {
        assert!(
            Instant::now() < deadline,
            "the agent never ran in the container: {exe_path} is {:?}",
            fs::read_link(&exe_path)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let exe = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_PATH)
        .open(&exe_path)
        .expect("open /proc/N/exe");
    let reopen = format!("/proc/self/fd/{}", exe.as_raw_fd());
    let write = || fs::OpenOptions::new().write(true).open(&reopen);
    let busy = write().expect_err("the running agent binary opened for writing");
    assert!(
        matches!(
            busy.raw_os_error(),
            Some(nix::libc::ETXTBSY) | Some(nix::libc::EROFS)
        ),
        "{busy}"
    );
    lock.unlock().expect("unlock");
    let out = running.finish().expect("finish");
    assert!(out.ok().contains("reclaimed"), "{}", out.stdout);
    // The process is gone. Whether the file is still "busy" depends on other
    // tests running the agent binary; what must hold is that the mount it
    // was exec'd through is read-only, so a write gets EROFS once it is not.
    let flags = nix::sys::statvfs::fstatvfs(&exe).expect("fstatvfs").flags();
    assert!(
        flags.contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the agent binary was exec'd through a writable mount ({flags:?})"
    );
    let err = write().expect_err("the agent binary opened for writing after the exit");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(nix::libc::EROFS) | Some(nix::libc::ETXTBSY)
        ),
        "{err}"
    );
    pod.destroy();
}

/// A cgroup of the test's own on this machine's hierarchy (v2, or v1's pids
/// controller), removed on drop.
struct TestCgroup(PathBuf);

impl TestCgroup {
    fn new(name: &str) -> Option<TestCgroup> {
        let base = ["/sys/fs/cgroup", "/sys/fs/cgroup/pids"]
            .iter()
            .map(PathBuf::from)
            .find(|b| b.join("cgroup.procs").is_file())?;
        let dir = base.join(format!("{name}-{}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        Some(TestCgroup(dir))
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

#[test]
fn the_container_is_born_in_its_cgroup() {
    let Some(cgroup) = TestCgroup::new("flotilla-runtime-test") else {
        eprintln!("no writable cgroup hierarchy here: skipped");
        return;
    };
    let pod = Pod::new("cgroup", "cgroup", false);
    let mut spec = pod.spec("c", &[], &["cat", "/proc/self/cgroup"]);
    spec.cgroup_procs = vec![cgroup.0.join("cgroup.procs")];
    let out = pod.run(spec).expect("start");
    let name = cgroup
        .0
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    assert!(
        out.ok().lines().any(|l| l.ends_with(&format!("/{name}"))),
        "not in {name}:\n{}",
        out.stdout
    );
    pod.destroy();
}

#[test]
fn host_network_pods_keep_the_nodes_network_but_their_own_hostname() {
    let pod = Pod::new("hostnet", "hostnet", true);
    assert_eq!(pod.sandbox().namespaces().net, Namespace::Host);
    let out = pod.sh("hostname; readlink /proc/self/ns/net");
    let host_net = fs::read_link("/proc/self/ns/net").expect("host net");
    assert_eq!(
        out.ok(),
        format!("hostnet\n{}\n", host_net.display()),
        "{}",
        out.stderr
    );
    pod.destroy();
}

#[test]
fn a_sandbox_reopens_and_destroy_leaves_nothing() {
    let dir = TestDir::new("runtime-reopen");
    let run_dir = dir.path().join("pods");
    let spec = SandboxSpec::new("pod-a", "reopen", false);
    let sandbox = PodSandbox::create(&run_dir, &spec).expect("create");
    assert!(matches!(
        PodSandbox::create(&run_dir, &spec),
        Err(RuntimeError::SandboxExists(_))
    ));
    let ns_mounts = |dir: &Path| {
        fs::read_to_string("/proc/self/mountinfo")
            .expect("mountinfo")
            .lines()
            .filter(|l| l.contains(&*dir.to_string_lossy()) && l.contains(" nsfs "))
            .count()
    };
    assert_eq!(ns_mounts(dir.path()), 3);
    drop(sandbox);
    let reopened = PodSandbox::open(&run_dir, "pod-a").expect("open");
    assert_eq!(reopened.name(), "reopen");
    reopened.destroy().expect("destroy");
    assert_eq!(ns_mounts(dir.path()), 0);
    assert_nothing_mounted_under(dir.path());
    assert!(fs::read_dir(&run_dir).expect("run dir").next().is_none());
    assert!(PodSandbox::open(&run_dir, "pod-a").is_err());
    assert!(PodSandbox::create(&run_dir, &SandboxSpec::new("../x", "a", false)).is_err());
    assert!(PodSandbox::create(&run_dir, &SandboxSpec::new("x", "Not_A_Name", false)).is_err());
}
