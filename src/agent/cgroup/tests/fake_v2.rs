//! cgroup v2 code paths on a fake tree: plain files where the kernel would
//! have interface files, so we can check exactly what our code writes.

use std::path::Path;
use std::time::Duration;

use super::{get, put};
use crate::agent::cgroup::{CgroupError, CpuQuota, Hierarchy, Limits};

/// A fake cgroup2 directory with the files the kernel gives a cgroup once
/// cpu, memory and pids are enabled above it.
fn fake_group(dir: &Path, with_swap: bool) {
    for (name, text) in [
        ("cgroup.procs", ""),
        ("cgroup.subtree_control", ""),
        ("cgroup.freeze", "0"),
        ("cgroup.events", "populated 0\nfrozen 0\n"),
        ("cgroup.kill", ""),
        ("memory.max", "max"),
        (
            "memory.events",
            "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
        ),
        ("memory.current", "0"),
        ("memory.stat", "anon 0\nfile 0\ninactive_file 0\n"),
        ("cpu.max", "max 100000"),
        ("cpu.weight", "100"),
        ("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n"),
        ("pids.max", "max"),
        ("pids.current", "0"),
    ] {
        put(&dir.join(name), text);
    }
    if with_swap {
        put(&dir.join("memory.swap.max"), "max");
    }
}

/// A fake root offering `controllers`, with `enabled` already delegated.
fn fake_root(root: &Path, controllers: &str, enabled: &str) {
    put(&root.join("cgroup.controllers"), controllers);
    put(&root.join("cgroup.subtree_control"), enabled);
    put(&root.join("cgroup.procs"), "1\n");
}

#[test]
fn create_delegates_controllers_to_ancestors_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_root(
        root,
        "cpuset cpu io memory hugetlb pids rdma misc",
        "memory",
    );
    for rel in ["flotilla", "flotilla/pod-1", "flotilla/pod-1/c1"] {
        fake_group(&root.join(rel), true);
    }
    let h = Hierarchy::v2(root).under("flotilla").unwrap();
    h.group("pod-1/c1").unwrap().create().unwrap();

    // Only what was missing is written (the fake keeps the last write).
    assert_eq!(get(&root.join("cgroup.subtree_control")), "+cpu +pids");
    assert_eq!(
        get(&root.join("flotilla/cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    assert_eq!(
        get(&root.join("flotilla/pod-1/cgroup.subtree_control")),
        "+cpu +memory +pids"
    );
    // The leaf delegates nothing: it must be able to hold processes.
    assert_eq!(
        get(&root.join("flotilla/pod-1/c1/cgroup.subtree_control")),
        ""
    );
}

#[test]
fn create_skips_controllers_the_root_does_not_offer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_root(root, "cpu memory", "");
    fake_group(&root.join("g"), true);
    let g = Hierarchy::v2(root).group("g").unwrap();
    g.create().unwrap();
    assert_eq!(get(&root.join("cgroup.subtree_control")), "+cpu +memory");
}

#[test]
fn create_makes_missing_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Everything already delegated: create only needs mkdir -p.
    fake_root(root, "cpu memory pids", "cpu memory pids");
    let g = Hierarchy::v2(root).group("a").unwrap();
    assert!(!g.exists());
    g.create().unwrap();
    assert!(g.exists());
    assert!(root.join("a").is_dir());
}

#[test]
fn limits_are_written_and_reset() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    let g = Hierarchy::v2(tmp.path()).group("g").unwrap();
    g.set_limits(&Limits {
        memory_max: Some(64 << 20),
        cpu_quota: Some(CpuQuota {
            quota_us: 20_000,
            period_us: 100_000,
        }),
        cpu_shares: Some(512),
        pids_max: Some(10),
    })
    .unwrap();
    assert_eq!(get(&dir.join("memory.max")), "67108864");
    assert_eq!(get(&dir.join("memory.swap.max")), "0");
    assert_eq!(get(&dir.join("cpu.max")), "20000 100000");
    assert_eq!(get(&dir.join("cpu.weight")), "59");
    assert_eq!(get(&dir.join("pids.max")), "10");

    // None means "no limit": a resize back to unlimited.
    g.set_limits(&Limits::default()).unwrap();
    assert_eq!(get(&dir.join("memory.max")), "max");
    assert_eq!(get(&dir.join("memory.swap.max")), "max");
    assert_eq!(get(&dir.join("cpu.max")), "max");
    assert_eq!(get(&dir.join("cpu.weight")), "100");
    assert_eq!(get(&dir.join("pids.max")), "max");

    // Kubernetes resources: 1 CPU requested is the default weight.
    g.set_limits(&Limits::from_resources(Some(1000), Some(1500), None, None))
        .unwrap();
    assert_eq!(get(&dir.join("cpu.weight")), "100");
    assert_eq!(get(&dir.join("cpu.max")), "150000 100000");
    assert_eq!(get(&dir.join("pids.max")), "4096");
}

#[test]
fn no_swap_file_means_no_swap_write() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, false);
    let g = Hierarchy::v2(tmp.path()).group("g").unwrap();
    g.set_limits(&Limits {
        memory_max: Some(1 << 20),
        ..Limits::default()
    })
    .unwrap();
    assert_eq!(get(&dir.join("memory.max")), "1048576");
    assert!(!dir.join("memory.swap.max").exists());
}

#[test]
fn a_limit_without_its_controller_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    std::fs::remove_file(dir.join("pids.max")).unwrap();
    let g = Hierarchy::v2(tmp.path()).group("g").unwrap();
    // Without a pids limit the missing file does not matter…
    g.set_limits(&Limits::default()).unwrap();
    // …with one it does, and the error says which controller.
    let err = g
        .set_limits(&Limits {
            pids_max: Some(5),
            ..Limits::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            CgroupError::ControllerMissing {
                controller: "pids",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("the pids controller is not available"),
        "{err}"
    );
}

#[test]
fn write_errors_name_file_and_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    // A directory where a file should be makes the write fail.
    std::fs::remove_file(dir.join("cpu.max")).unwrap();
    std::fs::create_dir(dir.join("cpu.max")).unwrap();
    let g = Hierarchy::v2(tmp.path()).group("g").unwrap();
    let err = g.set_limits(&Limits::default()).unwrap_err();
    let want = format!(
        "cannot write max to {}: Is a directory",
        dir.join("cpu.max").display()
    );
    assert_eq!(err.to_string(), want);
}

#[test]
fn kill_uses_cgroup_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    let g = Hierarchy::v2(tmp.path()).group("g").unwrap();
    g.kill_all().unwrap();
    assert_eq!(get(&dir.join("cgroup.kill")), "1");
}

#[test]
fn kill_times_out_with_the_pids_it_could_not_kill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    // A fake file that keeps listing a pid no process has (above pid_max,
    // so SIGKILL finds nothing) and a freezer that never reports frozen.
    put(&dir.join("cgroup.procs"), "2147483000\n");
    let g = Hierarchy::v2(tmp.path())
        .with_wait(Duration::from_millis(300))
        .group("g")
        .unwrap();
    let err = g.kill_all().unwrap_err();
    assert!(
        matches!(err, CgroupError::KillTimeout { ref pids, .. } if pids == &[2147483000]),
        "{err}"
    );
}

#[test]
fn freeze_waits_for_cgroup_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    let g = Hierarchy::v2(tmp.path())
        .with_wait(Duration::from_millis(100))
        .group("g")
        .unwrap();

    // The kernel never reports frozen: a bounded wait, a clear error, and
    // the freeze is undone.
    let err = g.freeze().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("cgroup.events did not read \"frozen 1\""),
        "{text}"
    );
    assert!(text.contains("populated 0, frozen 0"), "{text}");
    assert_eq!(get(&dir.join("cgroup.freeze")), "0");

    put(&dir.join("cgroup.events"), "populated 1\nfrozen 1\n");
    g.freeze().unwrap();
    assert_eq!(get(&dir.join("cgroup.freeze")), "1");
    put(&dir.join("cgroup.events"), "populated 1\nfrozen 0\n");
    g.thaw().unwrap();
    assert_eq!(get(&dir.join("cgroup.freeze")), "0");
}

#[test]
fn stats_and_oom_kills() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    put(
        &dir.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 300\n",
    );
    put(&dir.join("memory.current"), "1000000\n");
    put(
        &dir.join("memory.stat"),
        "anon 500000\nactive_file 100\ninactive_file 250000\n",
    );
    put(&dir.join("pids.current"), "3\n");
    put(
        &dir.join("memory.events"),
        "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n",
    );
    let g = Hierarchy::v2(tmp.path()).group("g").unwrap();
    let s = g.stats().unwrap();
    assert_eq!(s.cpu_usage_ns, 1_500_000);
    assert_eq!(s.cpu_periods, 10);
    assert_eq!(s.cpu_throttled_periods, 4);
    assert_eq!(s.cpu_throttled_ns, 300_000);
    assert_eq!(s.memory_usage_bytes, 1_000_000);
    assert_eq!(s.memory_working_set_bytes, 750_000);
    assert_eq!(s.pids_current, 3);
    assert_eq!(g.oom_kills().unwrap(), 2);
}

#[test]
fn processes_go_to_cgroup_procs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("g");
    fake_group(&dir, true);
    let g = Hierarchy::v2(tmp.path()).group("g").unwrap();
    g.add_process(1234).unwrap();
    assert_eq!(get(&dir.join("cgroup.procs")), "1234");
    assert_eq!(g.procs().unwrap(), vec![1234]);
    // 0 would mean "the writer": the agent itself.
    assert!(matches!(g.add_process(0), Err(CgroupError::BadPid(0))));
    assert!(g.add_process(-5).is_err());
}

#[test]
fn an_absent_group_holds_nothing_and_removes_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let g = Hierarchy::v2(tmp.path()).group("never/made").unwrap();
    assert_eq!(g.procs().unwrap(), Vec::<i32>::new());
    g.remove().unwrap();
    g.kill_all().unwrap();
}
