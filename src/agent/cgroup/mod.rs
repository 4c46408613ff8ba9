//! Control groups for the agent's pods and containers: finding the host's
//! cgroup layout (v1, v2 or hybrid), creating a group per pod and per
//! container, writing resource limits, moving processes in, freezing and
//! thawing, reading usage, noticing OOM kills, killing everything inside and
//! removing the groups again.
//!
//! The layout follows runc and kubelet: a pod's group holds its containers'
//! groups (`flotilla/pod-<uid>/<container>`); on cgroup v2 inner groups only
//! delegate controllers and only leaves hold processes.
//!
//! Mount points always come from [`detect`] (or [`Hierarchy::from_mountinfo`]
//! and the explicit constructors), never from constants, so tests point the
//! same code at fake trees in a temporary directory.
//!
//! Every call is blocking file I/O on cgroupfs (quick), except the bounded
//! waits of freeze/thaw/kill/remove; async callers use `spawn_blocking`.

mod detect;
mod files;
mod limits;
mod stats;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use detect::detect;
pub use limits::{
    CpuQuota, DEFAULT_CPU_PERIOD_US, DEFAULT_POD_PIDS_MAX, Limits, MAX_SHARES, MIN_QUOTA_US,
    MIN_SHARES, shares_to_weight,
};
pub use stats::{Ended, Stats, Termination, termination};

/// How long freeze, thaw, kill_all and remove wait for the kernel by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {}: {}", path.display(), files::os_text(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {value} to {}: {}", path.display(), files::os_text(source))]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("cannot create {}: {}", path.display(), files::os_text(source))]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot remove {}: {}", path.display(), files::os_text(source))]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot remove {}: it still holds processes {pids:?}; kill them first (Group::kill_all)",
        path.display()
    )]
    Busy { path: PathBuf, pids: Vec<i32> },
    #[error("{}: expected {what}, found {text:?}", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        text: String,
    },
    #[error("{path}:{line}: cannot parse mountinfo line {text:?}")]
    Mountinfo {
        path: String,
        line: usize,
        text: String,
    },
    #[error(
        "no cgroup filesystem is mounted (neither cgroup2 nor a v1 memory/cpu/cpuacct/pids/freezer hierarchy in {0}); mount one at /sys/fs/cgroup"
    )]
    NotMounted(String),
    #[error("bad cgroup path {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error(
        "cannot {action}: the {controller} controller is not available on this host ({where_})"
    )]
    ControllerMissing {
        controller: &'static str,
        action: &'static str,
        where_: String,
    },
    #[error("{} did not read {wanted:?} within {waited:?} (last read {last:?})", path.display())]
    Timeout {
        path: PathBuf,
        wanted: &'static str,
        waited: Duration,
        last: String,
    },
    #[error("cannot send SIGKILL to pid {pid} of {}: {}", path.display(), source.desc())]
    Signal {
        pid: i32,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("{} still holds processes {pids:?} after killing for {waited:?}", path.display())]
    KillTimeout {
        path: PathBuf,
        pids: Vec<i32>,
        waited: Duration,
    },
    #[error("refusing to move pid {0} into a cgroup: writing 0 would move the agent itself")]
    BadPid(i32),
}

/// Which cgroup layout the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 controller hierarchies.
    V1,
    /// One cgroup2 hierarchy holds every controller.
    V2,
    /// v1 controller hierarchies plus a cgroup2 mount (systemd's "hybrid",
    /// usually at /sys/fs/cgroup/unified). Resource control uses v1; the v2
    /// tree only tracks processes, which also gives us `cgroup.kill`.
    Hybrid,
}

/// The controllers the agent uses. cpuset is not needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Memory,
    Cpu,
    Cpuacct,
    Pids,
    Freezer,
}

impl Controller {
    pub const ALL: [Controller; 5] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Pids,
        Controller::Freezer,
    ];

    /// The name the kernel uses in mount options and cgroup.controllers.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
            Controller::Freezer => "freezer",
        }
    }

    pub fn from_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// Where the host's cgroup hierarchies are mounted, plus the parent path
/// under which this agent keeps its groups.
///
/// Several agents can share one host's cgroup tree (the demo cluster runs one
/// agent per network namespace on one machine): each one scopes itself with
/// [`Hierarchy::under`], e.g. `under("flotilla/node1")`, so their pods never
/// collide and one agent's clean-up never touches another's groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    mode: Mode,
    /// Mount point of each v1 controller (empty in V2 mode). Co-mounted
    /// controllers (`cpu,cpuacct`) share one path.
    v1: BTreeMap<Controller, PathBuf>,
    /// The cgroup2 mount (V2 and Hybrid).
    unified: Option<PathBuf>,
    /// Relative path every group lives under ("" = the mount roots).
    base: PathBuf,
    /// Bound on every wait for the kernel (freeze, thaw, kill, rmdir).
    wait: Duration,
}

impl Hierarchy {
    /// A pure cgroup v2 host with its cgroup2 mount at `root`.
    pub fn v2(root: impl Into<PathBuf>) -> Hierarchy {
        Hierarchy::new(Mode::V2, BTreeMap::new(), Some(root.into()))
    }

    /// A pure v1 host with the given controller mount points.
    pub fn v1(mounts: impl IntoIterator<Item = (Controller, PathBuf)>) -> Hierarchy {
        Hierarchy::new(Mode::V1, mounts.into_iter().collect(), None)
    }

    /// v1 controllers plus a cgroup2 mount used for process tracking.
    pub fn hybrid(
        mounts: impl IntoIterator<Item = (Controller, PathBuf)>,
        unified: impl Into<PathBuf>,
    ) -> Hierarchy {
        Hierarchy::new(
            Mode::Hybrid,
            mounts.into_iter().collect(),
            Some(unified.into()),
        )
    }

    fn new(mode: Mode, v1: BTreeMap<Controller, PathBuf>, unified: Option<PathBuf>) -> Hierarchy {
        Hierarchy {
            mode,
            v1,
            unified,
            base: PathBuf::new(),
            wait: DEFAULT_WAIT,
        }
    }

    /// Parses the text of a /proc/PID/mountinfo file (see [`detect`]).
    pub fn from_mountinfo(text: &str) -> Result<Hierarchy, CgroupError> {
        detect::parse_mountinfo(text, "mountinfo")
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The mount point of a v1 controller (None in V2 mode or when the
    /// controller is not mounted).
    pub fn v1_mount(&self, controller: Controller) -> Option<&Path> {
        self.v1.get(&controller).map(PathBuf::as_path)
    }

    /// The cgroup2 mount point (V2 and Hybrid).
    pub fn unified_mount(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// The parent path groups are created under ("" by default).
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The same hierarchy with every group placed under `prefix` (relative,
    /// like `flotilla/node1`). Nests: `under("a")?.under("b")` is `a/b`.
    pub fn under(&self, prefix: &str) -> Result<Hierarchy, CgroupError> {
        let mut h = self.clone();
        h.base = self.base.join(checked_relative(prefix)?);
        Ok(h)
    }

    /// The same hierarchy with a different bound on waits for the kernel.
    pub fn with_wait(&self, wait: Duration) -> Hierarchy {
        let mut h = self.clone();
        h.wait = wait;
        h
    }

    /// The group at `path` (relative to [`Hierarchy::base`], e.g.
    /// `pod-<uid>/<container>`). Nothing is created until [`Group::create`].
    /// The path is checked here so that no later call can be steered outside
    /// the agent's part of the tree (`..`, absolute paths).
    pub fn group(&self, path: &str) -> Result<Group, CgroupError> {
        Ok(Group {
            hier: self.clone(),
            rel: self.base.join(checked_relative(path)?),
        })
    }
}

/// One rmdir of a cgroup directory; true when it is gone (or never was).
fn rmdir_once(dir: &Path) -> bool {
    match std::fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Accepts `a/b/c` only: no empty, `.` or `..` components, not absolute, no NUL.
fn checked_relative(path: &str) -> Result<PathBuf, CgroupError> {
    let bad = |reason| CgroupError::BadPath {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return Err(bad("it is empty"));
    }
    if path.contains('\0') {
        return Err(bad("it contains a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(bad("it must be relative to the cgroup mount"));
    }
    // Checked on the raw text: Path::components would quietly drop "."
    // and empty components.
    for part in path.split('/') {
        match part {
            "" => return Err(bad("it has an empty component")),
            "." | ".." => return Err(bad("it may not contain . or .. components")),
            _ => {}
        }
    }
    Ok(PathBuf::from(path))
}

/// One cgroup (a pod or a container), present in every relevant hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    hier: Hierarchy,
    /// Path below each mount point (base included).
    rel: PathBuf,
}

impl Group {
    /// The path below each mount point, base included.
    pub fn path(&self) -> &Path {
        &self.rel
    }

    pub fn hierarchy(&self) -> &Hierarchy {
        &self.hier
    }

    /// A child group, e.g. `pod.child("nginx")` for a pod's container.
    pub fn child(&self, name: &str) -> Result<Group, CgroupError> {
        Ok(Group {
            hier: self.hier.clone(),
            rel: self.rel.join(checked_relative(name)?),
        })
    }

    /// The directory holding `controller`'s files for this group.
    pub fn dir(&self, controller: Controller) -> Option<PathBuf> {
        match self.hier.mode {
            Mode::V2 => self.unified_dir(),
            Mode::V1 | Mode::Hybrid => self.v1_dir(controller),
        }
    }

    /// Every directory this group has, one per distinct hierarchy (co-mounted
    /// v1 controllers share one), the cgroup2 one last.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        if self.hier.mode != Mode::V2 {
            for mount in self.hier.v1.values() {
                let dir = mount.join(&self.rel);
                if !out.contains(&dir) {
                    out.push(dir);
                }
            }
        }
        if let Some(dir) = self.unified_dir() {
            out.push(dir);
        }
        out
    }

    fn v1_dir(&self, controller: Controller) -> Option<PathBuf> {
        if self.hier.mode == Mode::V2 {
            return None;
        }
        self.hier.v1.get(&controller).map(|m| m.join(&self.rel))
    }

    fn unified_dir(&self) -> Option<PathBuf> {
        self.hier.unified.as_ref().map(|m| m.join(&self.rel))
    }

    fn missing(&self, controller: Controller, action: &'static str) -> CgroupError {
        let where_ = match self.hier.mode {
            Mode::V2 => "not in the cgroup2 tree".to_owned(),
            _ => format!("no v1 {} hierarchy is mounted", controller.name()),
        };
        CgroupError::ControllerMissing {
            controller: controller.name(),
            action,
            where_,
        }
    }

    /// True when the group's directory exists in any hierarchy.
    pub fn exists(&self) -> bool {
        self.dirs().iter().any(|d| d.is_dir())
    }

    /// Creates the group (mkdir -p) in every hierarchy. On cgroup v2 it also
    /// enables cpu, memory and pids in each ancestor's cgroup.subtree_control
    /// (those the parent offers), so the group gets the controllers' files;
    /// the group itself delegates nothing until a child is created in it,
    /// so a leaf can hold processes. Creating an existing group is Ok.
    pub fn create(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            std::fs::create_dir_all(&dir).map_err(|source| CgroupError::Create {
                path: dir.clone(),
                source,
            })?;
        }
        if let (Mode::V2, Some(root)) = (self.hier.mode, &self.hier.unified) {
            v2::enable_controllers(root, &self.rel)?;
        }
        Ok(())
    }

    /// Writes every limit: a `None` means "no limit" (or the default weight),
    /// so calling it again with new values resizes the group in place.
    pub fn set_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        match self.hier.mode {
            Mode::V2 => {
                let dir = self
                    .unified_dir()
                    .ok_or_else(|| self.missing(Controller::Memory, "set limits"))?;
                v2::set_limits(&dir, limits)
            }
            Mode::V1 | Mode::Hybrid => v1::set_limits(self, limits),
        }
    }

    /// Moves process `pid` (all its threads) into the group in every
    /// hierarchy. Its children inherit the group.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        if pid <= 0 {
            return Err(CgroupError::BadPid(pid));
        }
        let value = pid.to_string();
        for dir in self.dirs() {
            files::write(&dir.join("cgroup.procs"), &value)?;
        }
        Ok(())
    }

    /// The processes in the group (every hierarchy, sorted, no duplicates).
    /// Processes in child groups are not included; an absent group holds none.
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            pids.extend(files::read_pids(&dir.join("cgroup.procs"))?);
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Stops every process in the group (and its children groups) and waits,
    /// bounded, until the kernel reports the group frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true, self.hier.wait)
    }

    /// Resumes a frozen group and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false, self.hier.wait)
    }

    fn set_frozen(&self, frozen: bool, wait: Duration) -> Result<(), CgroupError> {
        match self.hier.mode {
            Mode::V2 => match self.unified_dir() {
                Some(dir) => v2::set_frozen(&dir, frozen, wait),
                None => Err(self.missing(Controller::Freezer, "freeze")),
            },
            // A v1 host without the freezer hierarchy can still use the
            // cgroup2 core freezer of a hybrid layout.
            Mode::V1 | Mode::Hybrid => match (self.v1_dir(Controller::Freezer), self.unified_dir())
            {
                (Some(dir), _) => v1::set_frozen(&dir, frozen, wait),
                (None, Some(dir)) => v2::set_frozen(&dir, frozen, wait),
                (None, None) => Err(self.missing(Controller::Freezer, "freeze")),
            },
        }
    }

    /// CPU time, memory and pids of the group (children included).
    pub fn stats(&self) -> Result<Stats, CgroupError> {
        match self.hier.mode {
            Mode::V2 => match self.unified_dir() {
                Some(dir) => v2::stats(&dir),
                None => Err(self.missing(Controller::Memory, "read stats")),
            },
            Mode::V1 | Mode::Hybrid => v1::stats(self),
        }
    }

    /// How many processes the kernel's OOM killer has killed in this group
    /// and its children so far. The runtime compares it before and after a
    /// container exits to report OOMKilled (see [`termination`]).
    pub fn oom_kills(&self) -> Result<u64, CgroupError> {
        match self.hier.mode {
            Mode::V2 => match self.unified_dir() {
                Some(dir) => v2::oom_kills(&dir),
                None => Err(self.missing(Controller::Memory, "count OOM kills")),
            },
            Mode::V1 | Mode::Hybrid => match self.v1_dir(Controller::Memory) {
                Some(dir) => v1::oom_kills(&dir),
                None => Err(self.missing(Controller::Memory, "count OOM kills")),
            },
        }
    }

    /// SIGKILLs every process in the group and its children groups and waits,
    /// bounded, until none is left.
    ///
    /// With cgroup2's `cgroup.kill` (Linux 5.14+; in hybrid mode our groups
    /// exist in the cgroup2 tree too) the kernel kills atomically, forks
    /// included. Otherwise, and for anything that survives that, each round
    /// freezes the group so nothing can fork, SIGKILLs every listed pid and
    /// thaws so the signals are delivered; rounds repeat until it is empty.
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        let start = Instant::now();
        let kill_file = self
            .unified_dir()
            .map(|d| d.join("cgroup.kill"))
            .filter(|f| f.exists());
        if let Some(file) = &kill_file {
            files::write(file, "1")?;
        }
        let mut delay = Duration::from_millis(2);
        loop {
            let pids = self.subtree_procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            if start.elapsed() > self.hier.wait {
                return Err(CgroupError::KillTimeout {
                    path: self.first_dir(),
                    pids,
                    waited: start.elapsed(),
                });
            }
            // Give cgroup.kill a moment before signalling ourselves: dying
            // processes stay listed until they have exited.
            if kill_file.is_none() || start.elapsed() > Duration::from_millis(100) {
                self.signal_round()?;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }

    /// One freeze / SIGKILL / thaw round over the group and its descendants.
    fn signal_round(&self) -> Result<(), CgroupError> {
        // Freezing stops fork loops from outrunning us; if it cannot freeze
        // (no freezer, a task stuck in the kernel) we still signal.
        let frozen = self
            .set_frozen(true, self.hier.wait.min(Duration::from_millis(500)))
            .is_ok();
        let pids = self.subtree_procs()?;
        for pid in pids {
            match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL)
            {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(source) => {
                    return Err(CgroupError::Signal {
                        pid,
                        path: self.first_dir(),
                        source,
                    });
                }
            }
        }
        if frozen {
            self.thaw()?;
        }
        Ok(())
    }

    /// The processes of this group and every group below it.
    fn subtree_procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.dirs() {
            for sub in files::subtree_deepest_first(&dir)? {
                pids.extend(files::read_pids(&sub.join("cgroup.procs"))?);
            }
        }
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    fn first_dir(&self) -> PathBuf {
        self.dirs()
            .into_iter()
            .next()
            .unwrap_or_else(|| self.rel.clone())
    }

    /// Removes the group and every group below it from every hierarchy,
    /// deepest first. The kernel releases an emptied cgroup asynchronously,
    /// so EBUSY is retried briefly. A group that does not exist is Ok.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            // Most groups have no child group left by now: one rmdir, and
            // the walk only when the kernel says the group is still busy.
            if rmdir_once(&dir) {
                continue;
            }
            for sub in files::subtree_deepest_first(&dir)? {
                self.rmdir(&sub)?;
            }
        }
        Ok(())
    }

    /// Removes the group if nothing is in it: one rmdir per hierarchy, no
    /// waiting. True when it is gone from every one; false when a process
    /// or child group keeps it, for [`Self::kill_all`] then [`Self::remove`].
    pub fn try_remove(&self) -> bool {
        self.dirs().iter().all(|dir| rmdir_once(dir))
    }

    fn rmdir(&self, dir: &Path) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(nix::libc::EBUSY) => {
                    if start.elapsed() > self.hier.wait.min(Duration::from_secs(2)) {
                        let pids = files::read_pids(&dir.join("cgroup.procs")).unwrap_or_default();
                        if pids.is_empty() {
                            return Err(CgroupError::Remove {
                                path: dir.to_owned(),
                                source: e,
                            });
                        }
                        return Err(CgroupError::Busy {
                            path: dir.to_owned(),
                            pids,
                        });
                    }
                }
                Err(source) => {
                    return Err(CgroupError::Remove {
                        path: dir.to_owned(),
                        source,
                    });
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(50));
        }
    }
}
