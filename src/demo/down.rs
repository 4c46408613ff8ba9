//! `flotilla demo down`: removes everything `up` made — processes, links, the
//! mount point it created, the runtime state — and keeps what the operator
//! trusts (keys, cluster file, known_hosts). It works from the state file and
//! also sweeps by name, so a lost or stale state file still leaves nothing behind.

use std::fs;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::process::{command_line, is_live, namespace_inode, pids_in_namespace, wait_until};
use super::state::DemoState;
use super::{DemoError, DemoLayout, net};

/// What `down` removed.
#[derive(Debug, Default)]
pub struct DownReport {
    pub was_up: bool,
    pub processes_killed: usize,
    pub links_deleted: Vec<String>,
}

pub fn down(name: &str, layout: &DemoLayout) -> Result<DownReport, DemoError> {
    let state = DemoState::load(&layout.state_file()).unwrap_or(None);
    let mut report = DownReport {
        was_up: state.is_some(),
        ..DownReport::default()
    };

    // Every process in a node's network namespace (sshd, sessions, agents,
    // containers), found through the node's verified-live outer process.
    let mut doomed: Vec<i32> = Vec::new();
    if let Some(state) = &state {
        for node in &state.nodes {
            if let Some(process) = node.process.filter(|p| p.is_alive()) {
                if let Some(netns) = namespace_inode(process.pid, "net") {
                    doomed.extend(pids_in_namespace("net", netns));
                }
                doomed.push(process.pid);
            }
        }
        if let Some(registry) = state.registry.process.filter(|p| p.is_alive()) {
            doomed.push(registry.pid);
        }
    }
    // And anything else started for this demo: node processes and the
    // registry name the state directory on their command lines.
    // The trailing slash keeps demo "a" from matching demo "ab".
    doomed.extend(live_processes_mentioning(&format!(
        "{}/",
        layout.state_dir.display()
    )));
    doomed.sort_unstable();
    doomed.dedup();
    doomed.retain(|&pid| pid != std::process::id() as i32);
    for &pid in &doomed {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    report.processes_killed = doomed.len();
    let gone = wait_until(Duration::from_secs(10), || {
        doomed.iter().all(|&pid| !is_live(pid))
    });
    if !gone {
        tracing::warn!(?doomed, "some demo processes outlived SIGKILL for 10 s");
    }

    // The nodes' agents made cgroups in this machine's tree (one parent per
    // node); with every process of the nodes dead, they can go.
    remove_cgroup_parents(name, state.as_ref());

    // Links: the ones recorded, and any others with this demo's prefix.
    let prefix = format!("fl-{name}-");
    let bridge = format!("fl-{name}");
    let mut links: Vec<String> = fs::read_dir("/sys/class/net")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|l| {
                    l.starts_with(&prefix) && l[prefix.len()..].chars().all(|c| c.is_ascii_digit())
                })
                .collect()
        })
        .unwrap_or_default();
    links.sort();
    links.push(bridge);
    for link in links {
        if net::link_exists(&link) {
            net::delete_link(&link)?;
            report.links_deleted.push(link);
        }
    }

    // Only if still empty (never remove what another program put there) and no
    // other demo cluster's nodes have it mounted: removing a mount point detaches
    // it in every namespace.
    if state.as_ref().is_some_and(|s| s.created_var_lib_flotilla)
        && live_processes_mentioning("__demo-node").is_empty()
    {
        let _ = fs::remove_dir("/var/lib/flotilla");
    }
    if layout.state_dir.exists() {
        fs::remove_dir_all(&layout.state_dir).map_err(|e| DemoError::io(&layout.state_dir, e))?;
    }
    // The `demo` directory above it, if no other demo cluster uses it.
    if let Some(parent) = layout.state_dir.parent() {
        let _ = fs::remove_dir(parent);
    }
    Ok(report)
}

/// Removes each node's cgroup parent (`flotilla-NAME-nodeN`) from every
/// hierarchy: those of the recorded nodes and any other this demo's name
/// matches, so a lost state file still leaves none behind. Anything still
/// inside (a container that escaped the namespace kill) is killed first.
fn remove_cgroup_parents(name: &str, state: Option<&DemoState>) {
    let hierarchy = match crate::agent::cgroup::detect() {
        Ok(h) => h,
        Err(e) => {
            tracing::debug!(error = %e, "no cgroup hierarchy; no demo cgroups to remove");
            return;
        }
    };
    let mut parents: Vec<String> = state
        .map(|s| {
            s.nodes
                .iter()
                .map(|n| super::cgroup_parent(name, &n.name))
                .collect()
        })
        .unwrap_or_default();
    let mut roots: Vec<std::path::PathBuf> = crate::agent::cgroup::Controller::ALL
        .iter()
        .filter_map(|c| hierarchy.v1_mount(*c).map(|p| p.to_path_buf()))
        .collect();
    roots.extend(hierarchy.unified_mount().map(|p| p.to_path_buf()));
    let prefix = super::cgroup_parent(name, "node");
    for root in roots {
        let Ok(entries) = fs::read_dir(&root) else {
            continue;
        };
        parents.extend(
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| {
                    n.strip_prefix(&prefix)
                        .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()))
                }),
        );
    }
    parents.sort();
    parents.dedup();
    for parent in parents {
        let Ok(group) = hierarchy.group(&parent) else {
            continue;
        };
        if !group.exists() {
            continue;
        }
        if let Err(e) = group.kill_all().and_then(|()| group.remove()) {
            tracing::warn!(cgroup = %parent, error = %e, "cannot remove a demo node's cgroups");
        }
    }
}

fn live_processes_mentioning(needle: &str) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| is_live(pid) && command_line(pid).is_some_and(|cmd| cmd.contains(needle)))
        .collect()
}
