//! What `demo up` made, written down so that `status` can check it and `down`
//! can remove exactly that: links, processes, the mount point it created.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::DemoError;
use super::process::ProcessId;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DemoState {
    pub name: String,
    pub bridge: String,
    pub gateway: String,
    pub registry: RegistryState,
    pub nodes: Vec<NodeState>,
    /// `/var/lib/flotilla` did not exist on the host and `up` created it as a
    /// mount point for the nodes; `down` removes it again if it is still empty.
    pub created_var_lib_flotilla: bool,
    pub cluster_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistryState {
    pub address: String,
    pub process: Option<ProcessId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub address: String,
    /// Host side of the node's veth pair, attached to the bridge.
    pub veth: String,
    /// The node's outer init, which holds its namespaces.
    pub process: Option<ProcessId>,
}

impl DemoState {
    pub fn load(path: &Path) -> Result<Option<DemoState>, DemoError> {
        match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| DemoError::State {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DemoError::State {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        }
    }

    /// Written after every step of `up`, so an interrupted `up` can still be taken down.
    pub fn save(&self, path: &Path) -> Result<(), DemoError> {
        let err = |reason: String| DemoError::State {
            path: path.to_path_buf(),
            reason,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("json.tmp");
        fs::write(&tmp, json).map_err(|e| err(e.to_string()))?;
        fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }
}
