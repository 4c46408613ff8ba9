//! Node facts: what a host is, read once when asked (`node.facts`). The numbers
//! that change every second are in [`super::metrics`].

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::procfs::{parse_meminfo, parse_os_release, parse_stat};
use super::{NodeError, read_text};

/// A host as the console's node view shows it. Field names are camelCase like
/// the rest of the protocol; a reader ignores fields it does not know.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFacts {
    pub hostname: String,
    /// `PRETTY_NAME` from os-release, e.g. `Debian GNU/Linux 12 (bookworm)`.
    pub os: String,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// OCI architecture name: `amd64`, `arm64`, `arm`, `386`, `riscv64`, …
    pub architecture: String,
    /// CPUs online.
    pub cpus: u32,
    pub memory_bytes: u64,
    /// The file system holding the agent's root (`/var/lib/flotilla`), where
    /// images and container layers live.
    pub disk: DiskUsage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_time: Option<DateTime<Utc>>,
    /// The node's pod network as last configured (`None` before), so a
    /// controller that connects can tell whether it needs setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_network: Option<crate::agent::protocol::messages::NetworkSettings>,
    /// The node's IPv4 addresses with prefix lengths (`10.77.0.11/24`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskUsage {
    pub path: String,
    pub total_bytes: u64,
    /// Free to unprivileged users (`df`'s Avail): the root-reserved blocks are
    /// not room the agent should plan to fill.
    pub free_bytes: u64,
}

/// The total and free space of the file system holding `path`.
pub fn disk_usage(path: &Path) -> Result<DiskUsage, NodeError> {
    let stat = nix::sys::statvfs::statvfs(path).map_err(|source| NodeError::Statvfs {
        path: path.display().to_string(),
        source,
    })?;
    let fragment = stat.fragment_size() as u64;
    Ok(DiskUsage {
        path: path.display().to_string(),
        total_bytes: (stat.blocks() as u64).saturating_mul(fragment),
        free_bytes: (stat.blocks_available() as u64).saturating_mul(fragment),
    })
}

/// Where the facts are read from; tests point it at a fixture tree.
#[derive(Clone, Debug)]
pub struct FactSources {
    pub proc_dir: PathBuf,
    pub os_release: Vec<PathBuf>,
}

impl Default for FactSources {
    fn default() -> Self {
        Self {
            proc_dir: PathBuf::from("/proc"),
            // os-release(5): /etc first, then the vendor copy.
            os_release: vec!["/etc/os-release".into(), "/usr/lib/os-release".into()],
        }
    }
}

/// Reads the facts of this host, with `root` the agent's state directory.
pub fn read_facts(root: &Path) -> Result<NodeFacts, NodeError> {
    read_facts_from(root, &FactSources::default())
}

pub fn read_facts_from(root: &Path, sources: &FactSources) -> Result<NodeFacts, NodeError> {
    let hostname = nix::unistd::gethostname()
        .map_err(NodeError::Hostname)?
        .to_string_lossy()
        .into_owned();
    let os = sources
        .os_release
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| parse_os_release(&text))
        .unwrap_or_else(|| "Linux".to_string());
    let kernel = read_text(&sources.proc_dir.join("sys/kernel/osrelease"))?
        .trim()
        .to_string();
    let stat = parse_stat(&read_text(&sources.proc_dir.join("stat"))?)?;
    let mem = parse_meminfo(&read_text(&sources.proc_dir.join("meminfo"))?)?;
    Ok(NodeFacts {
        hostname,
        os,
        kernel,
        // The agent is built for the host it runs on, so its own architecture is
        // the host's, already in OCI's words.
        architecture: crate::registry::oci_architecture().to_string(),
        cpus: stat.cpus,
        memory_bytes: mem.total_bytes,
        disk: disk_usage(root)?,
        boot_time: stat
            .boot_time
            .and_then(|secs| DateTime::from_timestamp(secs, 0)),
        pod_network: None,
        addresses: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_from_a_fixture_tree() {
        let dir = tempfile::tempdir().unwrap();
        let proc_dir = dir.path().join("proc");
        std::fs::create_dir_all(proc_dir.join("sys/kernel")).unwrap();
        std::fs::write(proc_dir.join("sys/kernel/osrelease"), "6.1.0-28-amd64\n").unwrap();
        std::fs::write(
            proc_dir.join("stat"),
            "cpu 1 2 3 4 5 6 7 8 0 0\ncpu0 1 2 3 4\ncpu1 1 2 3 4\ncpu2 1 2 3 4\nbtime 1795753031\n",
        )
        .unwrap();
        std::fs::write(
            proc_dir.join("meminfo"),
            "MemTotal: 2048 kB\nMemAvailable: 1024 kB\n",
        )
        .unwrap();
        let os_release = dir.path().join("os-release");
        std::fs::write(&os_release, "PRETTY_NAME=\"Test OS 1\"\n").unwrap();
        let sources = FactSources {
            proc_dir,
            os_release: vec![dir.path().join("missing"), os_release],
        };
        let facts = read_facts_from(dir.path(), &sources).unwrap();
        assert_eq!(facts.os, "Test OS 1");
        assert_eq!(facts.kernel, "6.1.0-28-amd64");
        assert_eq!(facts.cpus, 3);
        assert_eq!(facts.memory_bytes, 2048 * 1024);
        assert!(facts.disk.total_bytes > 0 && facts.disk.free_bytes <= facts.disk.total_bytes);
        assert_eq!(facts.boot_time.unwrap().timestamp(), 1_795_753_031);
        assert!(!facts.hostname.is_empty());
        assert!(!facts.architecture.is_empty());
        let back: NodeFacts =
            serde_json::from_str(&serde_json::to_string(&facts).unwrap()).unwrap();
        assert_eq!(back, facts);
    }

    #[test]
    fn this_host_reads() {
        let facts = read_facts(Path::new("/")).unwrap();
        assert!(facts.cpus >= 1);
        assert!(facts.memory_bytes > 0);
    }

    #[test]
    fn a_missing_root_is_an_error_not_a_panic() {
        let err = disk_usage(Path::new("/nonexistent/flotilla")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/flotilla"), "{err}");
    }
}
