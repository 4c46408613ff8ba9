//! Detection from mountinfo texts of the three layouts, and path checks.

use std::path::{Path, PathBuf};

use crate::agent::cgroup::{CgroupError, Controller, Hierarchy, Mode};

/// This machine's layout: v1 controllers, cgroup2 at /unified with none.
const HYBRID: &str = "\
23 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

/// A systemd host in unified mode (optional fields, nsdelegate).
const V2: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
25 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

/// An older v1 host: cpu and cpuacct co-mounted, a named hierarchy, an
/// escaped mount point, and a second (bind) mount of memory that must not win.
const V1: &str = "\
24 23 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,name=systemd
28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
29 24 0:25 / /sys/fs/cgroup/my\\040memory rw,nosuid shared:14 - cgroup cgroup rw,memory
30 24 0:26 / /sys/fs/cgroup/pids rw,nosuid shared:15 - cgroup cgroup rw,pids
31 24 0:27 / /sys/fs/cgroup/freezer rw,nosuid shared:16 - cgroup cgroup rw,freezer
32 24 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:17 - cgroup cgroup rw,net_cls,net_prio
90 23 0:25 /docker /mnt/memory rw,nosuid - cgroup cgroup rw,memory
";

#[test]
fn hybrid_text() {
    let h = Hierarchy::from_mountinfo(HYBRID).unwrap();
    assert_eq!(h.mode(), Mode::Hybrid);
    assert_eq!(h.unified_mount(), Some(Path::new("/sys/fs/cgroup/unified")));
    for c in Controller::ALL {
        assert_eq!(
            h.v1_mount(c),
            Some(PathBuf::from("/sys/fs/cgroup").join(c.name()).as_path()),
            "{c:?}"
        );
    }
    // Groups exist in every v1 controller hierarchy plus cgroup2.
    let g = h.under("flotilla").unwrap().group("pod-1/c").unwrap();
    assert_eq!(g.dirs().len(), 6);
    assert_eq!(
        g.dir(Controller::Memory).unwrap(),
        Path::new("/sys/fs/cgroup/memory/flotilla/pod-1/c")
    );
    assert_eq!(
        g.dirs().last().unwrap(),
        Path::new("/sys/fs/cgroup/unified/flotilla/pod-1/c")
    );
}

#[test]
fn v2_text() {
    let h = Hierarchy::from_mountinfo(V2).unwrap();
    assert_eq!(h.mode(), Mode::V2);
    assert_eq!(h.unified_mount(), Some(Path::new("/sys/fs/cgroup")));
    assert_eq!(h.v1_mount(Controller::Memory), None);
    let g = h.group("flotilla/pod-1").unwrap();
    assert_eq!(
        g.dirs(),
        vec![PathBuf::from("/sys/fs/cgroup/flotilla/pod-1")]
    );
    assert_eq!(
        g.dir(Controller::Pids),
        Some(PathBuf::from("/sys/fs/cgroup/flotilla/pod-1"))
    );
}

#[test]
fn v1_text() {
    let h = Hierarchy::from_mountinfo(V1).unwrap();
    assert_eq!(h.mode(), Mode::V1);
    assert_eq!(h.unified_mount(), None);
    let cpu = Path::new("/sys/fs/cgroup/cpu,cpuacct");
    assert_eq!(h.v1_mount(Controller::Cpu), Some(cpu));
    assert_eq!(h.v1_mount(Controller::Cpuacct), Some(cpu));
    assert_eq!(
        h.v1_mount(Controller::Memory),
        Some(Path::new("/sys/fs/cgroup/my memory"))
    );
    // Co-mounted controllers share one directory.
    let g = h.group("x").unwrap();
    assert_eq!(g.dirs().len(), 4);
}

#[test]
fn v1_without_unified_but_with_a_named_hierarchy_only_is_not_mounted() {
    let text = "25 24 0:21 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
    let err = Hierarchy::from_mountinfo(text).unwrap_err();
    assert!(matches!(err, CgroupError::NotMounted(_)), "{err}");
    assert!(err.to_string().contains("no cgroup filesystem is mounted"));
}

#[test]
fn garbage_line_is_reported_with_its_number() {
    let err = Hierarchy::from_mountinfo("1 2 3\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "mountinfo:1: cannot parse mountinfo line \"1 2 3\""
    );
}

#[test]
fn this_machine() {
    let h = crate::agent::cgroup::detect().unwrap();
    // Work out the expected layout from the file system, not mountinfo.
    let expected = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Mode::V2
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        Mode::Hybrid
    } else {
        Mode::V1
    };
    assert_eq!(h.mode(), expected);
    if expected != Mode::V2 {
        assert_eq!(
            h.v1_mount(Controller::Memory),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
    }
}

#[test]
fn paths_are_checked() {
    let h = Hierarchy::v2("/sys/fs/cgroup");
    for bad in [
        "",
        "/abs",
        "../up",
        "a/../../b",
        "a//b",
        "a/./b",
        "a/",
        "nul\0",
    ] {
        let err = h.group(bad).unwrap_err();
        assert!(matches!(err, CgroupError::BadPath { .. }), "{bad:?}: {err}");
        assert!(h.under(bad).is_err(), "{bad:?}");
    }
    let g = h
        .under("flotilla")
        .unwrap()
        .under("node1")
        .unwrap()
        .group("pod-1")
        .unwrap();
    assert_eq!(g.path(), Path::new("flotilla/node1/pod-1"));
    assert_eq!(
        g.child("c").unwrap().path(),
        Path::new("flotilla/node1/pod-1/c")
    );
    assert!(g.child("..").is_err());
}
