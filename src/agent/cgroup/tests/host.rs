//! The real cgroups of this machine, as root: whatever layout it runs
//! (hybrid here and in CI), plus its cgroup2 mount driven as a pure v2 tree
//! for the core files (freeze, kill) that need no controller.
//!
//! Every test works in its own group `flotilla-test-<pid>-<name>` and a
//! guard kills and removes it even when an assertion fails, so no cgroup
//! or process outlives the run.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::agent::cgroup::{
    CgroupError, Controller, CpuQuota, Ended, Group, Hierarchy, Limits, Mode, detect,
    shares_to_weight, termination,
};

/// A test's group and the processes it started; dropping it cleans up.
struct Scratch {
    group: Group,
    children: HashMap<i32, Child>,
}

impl Scratch {
    /// `None` (and the test passes vacuously) when not root: only root may
    /// create cgroups. CI runs these as root.
    fn new(hierarchy: &Hierarchy, name: &str) -> Option<Scratch> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: cgroup tests need root");
            return None;
        }
        let path = format!("flotilla-test-{}-{name}", std::process::id());
        let group = hierarchy.group(&path).unwrap();
        Some(Scratch {
            group,
            children: HashMap::new(),
        })
    }

    fn spawn(&mut self, cmd: &mut Command) -> i32 {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn test process");
        let pid = i32::try_from(child.id()).expect("pid fits i32");
        self.children.insert(pid, child);
        pid
    }

    /// A shell that runs `script` only once released, so it can be moved
    /// into the group first. If the test dies before that, stdin closes,
    /// `read` fails and the script never runs outside the group.
    fn spawn_gated(&mut self, script: &str) -> i32 {
        self.spawn(
            Command::new("sh")
                .arg("-c")
                .arg(format!("read _go || exit 1; {script}"))
                .stdin(Stdio::piped()),
        )
    }

    fn release(&mut self, pid: i32) {
        let child = self.children.get_mut(&pid).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"go\n").unwrap();
    }

    fn wait(&mut self, pid: i32, limit: Duration) -> ExitStatus {
        let child = self.children.get_mut(&pid).unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "pid {pid} still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // No panics here: this also runs while a failed test unwinds.
        if let Err(e) = self.group.kill_all() {
            eprintln!("cleanup: {e}");
        }
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.group.remove() {
            eprintln!("cleanup: {e}");
        }
    }
}

fn read(dir: Option<std::path::PathBuf>, file: &str) -> String {
    let path = dir.expect("controller directory").join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// Reads the limits back from the kernel's files for the host's layout.
fn assert_limits(g: &Group, l: &Limits) {
    let mem = l.memory_max.unwrap().to_string();
    let q = l.cpu_quota.unwrap();
    let pids = l.pids_max.unwrap().to_string();
    if g.hierarchy().mode() == Mode::V2 {
        assert_eq!(read(g.dir(Controller::Memory), "memory.max"), mem);
        assert_eq!(
            read(g.dir(Controller::Cpu), "cpu.max"),
            format!("{} {}", q.quota_us, q.period_us)
        );
        let weight = shares_to_weight(l.cpu_shares.unwrap()).to_string();
        assert_eq!(read(g.dir(Controller::Cpu), "cpu.weight"), weight);
        if g.dir(Controller::Memory)
            .unwrap()
            .join("memory.swap.max")
            .exists()
        {
            assert_eq!(read(g.dir(Controller::Memory), "memory.swap.max"), "0");
        }
    } else {
        assert_eq!(
            read(g.dir(Controller::Memory), "memory.limit_in_bytes"),
            mem
        );
        let memsw = g
            .dir(Controller::Memory)
            .unwrap()
            .join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            assert_eq!(
                read(g.dir(Controller::Memory), "memory.memsw.limit_in_bytes"),
                mem
            );
        }
        assert_eq!(
            read(g.dir(Controller::Cpu), "cpu.cfs_quota_us"),
            q.quota_us.to_string()
        );
        assert_eq!(
            read(g.dir(Controller::Cpu), "cpu.cfs_period_us"),
            q.period_us.to_string()
        );
        assert_eq!(
            read(g.dir(Controller::Cpu), "cpu.shares"),
            l.cpu_shares.unwrap().to_string()
        );
    }
    assert_eq!(read(g.dir(Controller::Pids), "pids.max"), pids);
}

fn assert_frozen(g: &Group, frozen: bool) {
    let h = g.hierarchy();
    if h.mode() != Mode::V2 && h.v1_mount(Controller::Freezer).is_some() {
        let want = if frozen { "FROZEN" } else { "THAWED" };
        assert_eq!(read(g.dir(Controller::Freezer), "freezer.state"), want);
    } else {
        let dir = g.dirs().pop();
        let want = if frozen { "frozen 1" } else { "frozen 0" };
        assert!(read(dir, "cgroup.events").contains(want));
    }
}

#[test]
fn lifecycle_limits_freeze_kill_remove() {
    let h = detect().unwrap();
    let Some(mut s) = Scratch::new(&h, "lifecycle") else {
        return;
    };
    let pod = s.group.clone();
    let ctr = pod.child("c").unwrap();
    ctr.create().unwrap();
    for dir in pod.dirs().into_iter().chain(ctr.dirs()) {
        assert!(dir.is_dir(), "{} was not created", dir.display());
    }
    // Creating again is fine (the runtime may retry after a crash).
    ctr.create().unwrap();

    pod.set_limits(&Limits::from_resources(
        Some(500),
        Some(1000),
        Some(256 << 20),
        None,
    ))
    .unwrap();
    let limits = Limits {
        memory_max: Some(64 << 20),
        cpu_quota: Some(CpuQuota {
            quota_us: 50_000,
            period_us: 100_000,
        }),
        cpu_shares: Some(512),
        pids_max: Some(100),
    };
    ctr.set_limits(&limits).unwrap();
    assert_limits(&ctr, &limits);
    // Lowering and raising: on v1 the kernel refuses memsw below the limit,
    // so this checks the write order both ways.
    for mib in [32u64, 128, 64] {
        let l = Limits {
            memory_max: Some(mib << 20),
            ..limits
        };
        ctr.set_limits(&l).unwrap();
        assert_limits(&ctr, &l);
    }

    // Gated, so that sleep's memory is allocated (and charged) inside the
    // group: v1 does not move a process's existing charges with it.
    let pid = s.spawn_gated("exec sleep 30");
    ctr.add_process(pid).unwrap();
    s.release(pid);
    assert_eq!(ctr.procs().unwrap(), vec![pid]);
    assert!(
        pod.procs().unwrap().is_empty(),
        "the pod group holds only groups"
    );
    // Wait for the exec to finish so the sleep has charged its memory.
    let start = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .starts_with("sleep")
    {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "sleep did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let st = ctr.stats().unwrap();
    assert!(st.pids_current >= 1, "{st:?}");
    assert!(st.memory_usage_bytes > 0, "{st:?}");
    assert!(
        st.memory_working_set_bytes <= st.memory_usage_bytes,
        "{st:?}"
    );
    // The pod's figures include its containers.
    assert!(pod.stats().unwrap().pids_current >= 1);

    // Pausing the pod stops its containers.
    pod.freeze().unwrap();
    assert_frozen(&ctr, true);
    assert_frozen(&pod, true);
    pod.thaw().unwrap();
    assert_frozen(&ctr, false);
    assert!(ctr.procs().unwrap().contains(&pid));

    pod.kill_all().unwrap();
    assert!(ctr.procs().unwrap().is_empty());
    let status = s.wait(pid, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(9), "{status:?}");

    pod.remove().unwrap();
    for dir in pod.dirs().into_iter().chain(ctr.dirs()) {
        assert!(!dir.exists(), "{} is left behind", dir.display());
    }
    assert!(!pod.exists());
    // Removing what is gone is fine.
    pod.remove().unwrap();
}

#[test]
fn remove_refuses_a_group_with_processes() {
    let h = detect().unwrap().with_wait(Duration::from_millis(300));
    let Some(mut s) = Scratch::new(&h, "busy") else {
        return;
    };
    let g = s.group.clone();
    g.create().unwrap();
    let pid = s.spawn(Command::new("sleep").arg("30"));
    g.add_process(pid).unwrap();
    let err = g.remove().unwrap_err();
    assert!(
        matches!(err, CgroupError::Busy { ref pids, .. } if pids == &[pid]),
        "{err}"
    );
    assert!(err.to_string().contains("kill them first"), "{err}");
}

#[test]
fn oom_kill_is_counted() {
    let h = detect().unwrap();
    let Some(mut s) = Scratch::new(&h, "oom") else {
        return;
    };
    let g = s.group.clone();
    g.create().unwrap();
    g.set_limits(&Limits {
        memory_max: Some(32 << 20),
        ..Limits::default()
    })
    .unwrap();
    let before = g.oom_kills().unwrap();
    // dd allocates its 64 MiB block and fills it: twice the limit.
    let pid = s.spawn_gated("exec dd if=/dev/zero of=/dev/null bs=64M count=1");
    g.add_process(pid).unwrap();
    s.release(pid);
    let status = s.wait(pid, Duration::from_secs(20));
    assert_eq!(
        status.signal(),
        Some(9),
        "dd was not OOM-killed: {status:?}"
    );
    let after = g.oom_kills().unwrap();
    assert!(after > before, "oom_kills {before} → {after}");
    let t = termination(Ended::Signaled(9), after > before);
    assert_eq!((t.exit_code, t.reason), (137, "OOMKilled"));
}

#[test]
fn pids_limit_stops_forks() {
    let h = detect().unwrap();
    let Some(mut s) = Scratch::new(&h, "pids") else {
        return;
    };
    let g = s.group.clone();
    g.create().unwrap();
    g.set_limits(&Limits {
        pids_max: Some(10),
        ..Limits::default()
    })
    .unwrap();
    let pid = s.spawn_gated("for i in $(seq 50); do sleep 5 & done; wait");
    g.add_process(pid).unwrap();
    s.release(pid);
    let mut peak = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        peak = peak.max(g.stats().unwrap().pids_current);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(peak <= 10, "pids.current reached {peak}");
    assert!(g.procs().unwrap().len() <= 10);
    // The kernel counts refused forks in pids.events.
    let events = read(g.dir(Controller::Pids), "pids.events");
    let refused: u64 = events
        .lines()
        .find_map(|l| l.strip_prefix("max "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        refused >= 1,
        "no fork was refused: {events:?} (peak {peak})"
    );
}

#[test]
fn cpu_quota_throttles() {
    let h = detect().unwrap();
    let Some(mut s) = Scratch::new(&h, "cpu") else {
        return;
    };
    let g = s.group.clone();
    g.create().unwrap();
    // 0.2 CPU, as limits.cpu: 200m.
    let limits = Limits::from_resources(None, Some(200), None, None);
    assert_eq!(limits.cpu_quota.map(|q| q.quota_us), Some(20_000));
    g.set_limits(&limits).unwrap();
    // Two busy loops, so the group wants far more than 0.2 CPU even when
    // other work on this machine takes a share of the cores.
    let pid = s.spawn_gated("while :; do :; done & while :; do :; done");
    g.add_process(pid).unwrap();
    let before = g.stats().unwrap();
    let start = Instant::now();
    s.release(pid);
    // About a second; longer only if a loaded machine has not let the loops
    // use up a period's quota yet.
    let mut after;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        after = g.stats().unwrap();
        let throttled = after.cpu_throttled_periods > before.cpu_throttled_periods;
        if (throttled && start.elapsed() >= Duration::from_secs(1))
            || start.elapsed() > Duration::from_secs(5)
        {
            break;
        }
    }
    let elapsed = start.elapsed().as_nanos() as f64;
    assert!(
        after.cpu_throttled_periods > before.cpu_throttled_periods,
        "not throttled: {before:?} → {after:?}"
    );
    let share = (after.cpu_usage_ns - before.cpu_usage_ns) as f64 / elapsed;
    // About 0.2; the bounds leave room for a loaded machine, not for a
    // missing quota (which would be close to 1.0).
    assert!(
        share < 0.35 && share > 0.02,
        "busy loop used {share:.2} CPU"
    );
}

/// On a hybrid host the cgroup2 mount has no controllers, but its core
/// files work: this drives the v2 code (cgroup.freeze, cgroup.events,
/// cgroup.kill, rmdir) against the real kernel.
#[test]
fn cgroup2_core_files_on_the_real_kernel() {
    let host = detect().unwrap();
    let Some(unified) = host.unified_mount() else {
        return;
    };
    let h = Hierarchy::v2(unified);
    let Some(mut s) = Scratch::new(&h, "v2core") else {
        return;
    };
    let g = s.group.child("c").unwrap();
    g.create().unwrap();
    let pid = s.spawn(Command::new("sleep").arg("30"));
    g.add_process(pid).unwrap();
    assert_eq!(g.procs().unwrap(), vec![pid]);

    s.group.freeze().unwrap();
    assert_frozen(&g, true);
    s.group.thaw().unwrap();
    assert_frozen(&g, false);

    if host.mode() == Mode::Hybrid {
        // No controllers here: a limit that needs one is refused by name.
        let err = g
            .set_limits(&Limits {
                pids_max: Some(5),
                ..Limits::default()
            })
            .unwrap_err();
        assert!(
            matches!(err, CgroupError::ControllerMissing { .. }),
            "{err}"
        );
    }

    let kill = g.dirs()[0].join("cgroup.kill");
    assert!(Path::new(&kill).exists(), "kernel without cgroup.kill");
    s.group.kill_all().unwrap();
    let status = s.wait(pid, Duration::from_secs(5));
    assert_eq!(status.signal(), Some(9));
    s.group.remove().unwrap();
    assert!(!g.exists() && !s.group.exists());
}

/// Without cgroup.kill (pure v1 hosts, Linux < 5.14) kill_all freezes,
/// signals and thaws in rounds. A shell that forks as fast as it can must
/// still end up empty: frozen, it cannot fork between our read of
/// cgroup.procs and the signals.
#[test]
fn kill_without_cgroup_kill_stops_a_fork_loop() {
    let host = detect().unwrap();
    if host.mode() == Mode::V2 {
        return; // covered by the lifecycle test there
    }
    let mounts: Vec<_> = Controller::ALL
        .into_iter()
        .filter_map(|c| host.v1_mount(c).map(|m| (c, m.to_path_buf())))
        .collect();
    let h = Hierarchy::v1(mounts);
    let Some(mut s) = Scratch::new(&h, "forkloop") else {
        return;
    };
    let g = s.group.child("c").unwrap();
    g.create().unwrap();
    g.set_limits(&Limits {
        pids_max: Some(64),
        ..Limits::default()
    })
    .unwrap();
    let pid = s.spawn_gated("while :; do sleep 30 & done");
    g.add_process(pid).unwrap();
    s.release(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert!(g.procs().unwrap().len() > 1, "the loop did not fork");
    // Killing the pod kills its containers' processes.
    s.group.kill_all().unwrap();
    assert!(g.procs().unwrap().is_empty());
    // The shell may have ended itself when the pids limit refused a fork
    // (dash exits on "Cannot fork"); its sleeps are what matter here.
    s.wait(pid, Duration::from_secs(5));
    assert_frozen(&g, false);
    s.group.remove().unwrap();
    assert!(!s.group.exists());
}
