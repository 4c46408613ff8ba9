//! cgroup v1 code paths on a fake tree described by a fake mountinfo, the
//! way detection would find it (cpu and cpuacct co-mounted).

use std::path::Path;

use super::{get, put};
use crate::agent::cgroup::{CgroupError, Controller, CpuQuota, Hierarchy, Limits, Mode};

const UNLIMITED: &str = "9223372036854771712";

/// A v1 layout under `root`: memory, cpu+cpuacct, pids, freezer.
fn fake_v1(root: &Path) -> Hierarchy {
    let r = root.display();
    let text = format!(
        "28 24 0:24 / {r}/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
         29 24 0:25 / {r}/memory rw - cgroup cgroup rw,memory\n\
         30 24 0:26 / {r}/pids rw - cgroup cgroup rw,pids\n\
         31 24 0:27 / {r}/freezer rw - cgroup cgroup rw,freezer\n"
    );
    let h = Hierarchy::from_mountinfo(&text).unwrap();
    assert_eq!(h.mode(), Mode::V1);
    h
}

/// The interface files the kernel gives a new v1 group at `rel`.
fn fake_group(root: &Path, rel: &str) {
    let mem = root.join("memory").join(rel);
    put(&mem.join("memory.limit_in_bytes"), UNLIMITED);
    put(&mem.join("memory.memsw.limit_in_bytes"), UNLIMITED);
    put(&mem.join("memory.usage_in_bytes"), "0");
    put(&mem.join("memory.stat"), "cache 0\ntotal_inactive_file 0\n");
    put(
        &mem.join("memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
    );
    let cpu = root.join("cpu,cpuacct").join(rel);
    put(&cpu.join("cpu.cfs_quota_us"), "-1");
    put(&cpu.join("cpu.cfs_period_us"), "100000");
    put(&cpu.join("cpu.shares"), "1024");
    put(
        &cpu.join("cpu.stat"),
        "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
    );
    put(&cpu.join("cpuacct.usage"), "0");
    let pids = root.join("pids").join(rel);
    put(&pids.join("pids.max"), "max");
    put(&pids.join("pids.current"), "0");
    put(
        &root.join("freezer").join(rel).join("freezer.state"),
        "THAWED",
    );
    for ctrl in ["memory", "cpu,cpuacct", "pids", "freezer"] {
        put(&root.join(ctrl).join(rel).join("cgroup.procs"), "");
    }
}

#[test]
fn one_directory_per_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let h = fake_v1(tmp.path());
    let g = h.group("flotilla/pod").unwrap();
    assert_eq!(g.dirs().len(), 4, "{:?}", g.dirs());
    assert_eq!(g.dir(Controller::Cpu), g.dir(Controller::Cpuacct));
    g.create().unwrap();
    for dir in g.dirs() {
        assert!(dir.is_dir(), "{}", dir.display());
    }
}

#[test]
fn limits_are_written_to_v1_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_group(root, "g");
    let g = fake_v1(root).group("g").unwrap();
    g.set_limits(&Limits {
        memory_max: Some(64 << 20),
        cpu_quota: Some(CpuQuota {
            quota_us: 20_000,
            period_us: 50_000,
        }),
        cpu_shares: Some(512),
        pids_max: Some(10),
    })
    .unwrap();
    let mem = root.join("memory/g");
    let cpu = root.join("cpu,cpuacct/g");
    assert_eq!(get(&mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(get(&mem.join("memory.memsw.limit_in_bytes")), "67108864");
    assert_eq!(get(&cpu.join("cpu.cfs_quota_us")), "20000");
    assert_eq!(get(&cpu.join("cpu.cfs_period_us")), "50000");
    assert_eq!(get(&cpu.join("cpu.shares")), "512");
    assert_eq!(get(&root.join("pids/g/pids.max")), "10");

    g.set_limits(&Limits::default()).unwrap();
    assert_eq!(get(&mem.join("memory.limit_in_bytes")), "-1");
    assert_eq!(get(&mem.join("memory.memsw.limit_in_bytes")), "-1");
    assert_eq!(get(&cpu.join("cpu.cfs_quota_us")), "-1");
    assert_eq!(get(&cpu.join("cpu.shares")), "1024");
    assert_eq!(get(&root.join("pids/g/pids.max")), "max");
}

#[test]
fn without_swap_accounting_only_the_limit_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_group(root, "g");
    std::fs::remove_file(root.join("memory/g/memory.memsw.limit_in_bytes")).unwrap();
    let g = fake_v1(root).group("g").unwrap();
    g.set_limits(&Limits {
        memory_max: Some(1 << 20),
        ..Limits::default()
    })
    .unwrap();
    assert_eq!(get(&root.join("memory/g/memory.limit_in_bytes")), "1048576");
    assert!(!root.join("memory/g/memory.memsw.limit_in_bytes").exists());
}

#[test]
fn missing_controller_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let r = tmp.path().display();
    let h = Hierarchy::from_mountinfo(&format!(
        "29 24 0:25 / {r}/memory rw - cgroup cgroup rw,memory\n"
    ))
    .unwrap();
    put(
        &tmp.path().join("memory/g/memory.limit_in_bytes"),
        UNLIMITED,
    );
    let g = h.group("g").unwrap();
    let err = g
        .set_limits(&Limits {
            pids_max: Some(3),
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
        err.to_string().contains("no v1 pids hierarchy is mounted"),
        "{err}"
    );
    let err = g.freeze().unwrap_err();
    assert!(err.to_string().contains("freezer"), "{err}");
}

#[test]
fn freezer_state_is_written_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_group(root, "g");
    let g = fake_v1(root).group("g").unwrap();
    g.freeze().unwrap();
    assert_eq!(get(&root.join("freezer/g/freezer.state")), "FROZEN");
    g.thaw().unwrap();
    assert_eq!(get(&root.join("freezer/g/freezer.state")), "THAWED");
}

#[test]
fn stats_come_from_v1_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_group(root, "g");
    put(&root.join("cpu,cpuacct/g/cpuacct.usage"), "123456789\n");
    put(
        &root.join("cpu,cpuacct/g/cpu.stat"),
        "nr_periods 20\nnr_throttled 5\nthrottled_time 777\n",
    );
    put(&root.join("memory/g/memory.usage_in_bytes"), "4096000\n");
    put(
        &root.join("memory/g/memory.stat"),
        "cache 10\ninactive_file 1\ntotal_cache 10\ntotal_inactive_file 96000\n",
    );
    put(&root.join("pids/g/pids.current"), "7\n");
    let s = fake_v1(root).group("g").unwrap().stats().unwrap();
    assert_eq!(s.cpu_usage_ns, 123_456_789);
    assert_eq!(
        (s.cpu_periods, s.cpu_throttled_periods, s.cpu_throttled_ns),
        (20, 5, 777)
    );
    assert_eq!(s.memory_usage_bytes, 4_096_000);
    assert_eq!(s.memory_working_set_bytes, 4_000_000);
    assert_eq!(s.pids_current, 7);
}

#[test]
fn oom_kills_count_child_groups_too() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_group(root, "pod");
    fake_group(root, "pod/c1");
    fake_group(root, "pod/c2");
    put(
        &root.join("memory/pod/c1/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
    );
    put(
        &root.join("memory/pod/c2/memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    );
    let pod = fake_v1(root).group("pod").unwrap();
    assert_eq!(pod.oom_kills().unwrap(), 3);
    assert_eq!(pod.child("c1").unwrap().oom_kills().unwrap(), 1);
}

#[test]
fn procs_are_the_union_of_every_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    fake_group(root, "g");
    put(&root.join("memory/g/cgroup.procs"), "10\n12\n");
    put(&root.join("pids/g/cgroup.procs"), "12\n11\n");
    let g = fake_v1(root).group("g").unwrap();
    assert_eq!(g.procs().unwrap(), vec![10, 11, 12]);
    put(&root.join("pids/g/cgroup.procs"), "x\n");
    let err = g.procs().unwrap_err();
    assert!(
        err.to_string()
            .ends_with("cgroup.procs: expected a pid, found \"x\""),
        "{err}"
    );
}
