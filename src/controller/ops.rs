//! The writes of desired state that every front end makes the same way: a
//! pod or deployment applied, a deployment scaled, a node cordoned. The
//! command line and the console both call these; the controller then
//! reconciles what they wrote.

use serde_json::json;

use futures_util::future::join_all;

use super::naming;
use super::replicated::{ReplicatedStore, StoreError};
use super::world::{KIND_DEPLOYMENT, KIND_NODE, KIND_POD, NodeFlags, PendingPod, World};
use crate::agent::protocol::client::{Client, ClientError};
use crate::agent::protocol::messages::PodRef;
use crate::api::deployment::Deployment;
use crate::api::pod::Pod;

/// When a deployment was first applied: kept across re-applies, for AGE.
pub const CREATED_ANNOTATION: &str = "flotilla.io/created";

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "pod {name:?} already runs on {node} with a different spec, and a pod cannot be changed in place; delete it first (`flotilla delete pod {name}`) or use a Deployment"
    )]
    PodChanged { name: String, node: String },
    #[error("node {node:?} not found; the cluster file has {known}")]
    UnknownNode { node: String, known: String },
    #[error("nodes {0:?} not found")]
    NodeNotListed(String),
    #[error("node {0} is not connected, so its pods cannot be evicted; see `flotilla get nodes`")]
    NodeNotConnected(String),
    #[error(
        "cannot delete pods that no deployment manages (use --force to override): {}",
        .0.join(", ")
    )]
    Unmanaged(Vec<String>),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: String,
        source: serde_json::Error,
    },
}

/// What an apply did to one object, as kubectl says it.
pub type Verdict = &'static str;

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<serde_json::Value, OpsError> {
    serde_json::to_value(value).map_err(|source| OpsError::Encode {
        what: what.to_string(),
        source,
    })
}

/// Writes a pod as pending, for the scheduler to place. Pods cannot change
/// in place (as in Kubernetes): the same spec again is `unchanged`, a
/// different one is refused.
pub async fn write_pod(
    store: &ReplicatedStore,
    world: &World,
    pod: &Pod,
) -> Result<Verdict, OpsError> {
    let (namespace, name) = (&pod.metadata.namespace, &pod.metadata.name);
    let placed = world
        .nodes
        .iter()
        .flat_map(|n| n.pods.iter().map(move |r| (n.name.as_str(), r)))
        .find(|(_, r)| &r.pod.metadata.namespace == namespace && &r.pod.metadata.name == name);
    if let Some((node, record)) = placed {
        if record.pod.spec.containers == pod.spec.containers {
            return Ok("unchanged");
        }
        return Err(OpsError::PodChanged {
            name: name.clone(),
            node: node.to_string(),
        });
    }
    let pending = PendingPod {
        pod: pod.clone(),
        status: Default::default(),
    };
    let existing = world
        .pending
        .iter()
        .find(|p| &p.pod.metadata.namespace == namespace && &p.pod.metadata.name == name);
    if existing.is_some_and(|p| p.pod == *pod) {
        return Ok("unchanged");
    }
    store
        .put(KIND_POD, namespace, name, encode("the pod", &pending)?)
        .await?;
    Ok(if existing.is_some() {
        "configured"
    } else {
        "created"
    })
}

/// Writes a deployment; its creation time stays that of the first apply.
pub async fn write_deployment(
    store: &ReplicatedStore,
    deployment: &Deployment,
) -> Result<Verdict, OpsError> {
    let (namespace, name) = (&deployment.metadata.namespace, &deployment.metadata.name);
    let current = store
        .get(KIND_DEPLOYMENT, namespace, name)
        .await?
        .and_then(|r| r.object);
    let created = current
        .as_ref()
        .and_then(|o| o["metadata"]["annotations"][CREATED_ANNOTATION].as_str())
        .map_or_else(|| chrono::Utc::now().to_rfc3339(), str::to_string);
    let mut deployment = deployment.clone();
    deployment
        .metadata
        .annotations
        .insert(CREATED_ANNOTATION.to_string(), created);
    let wanted = encode("the deployment", &deployment)?;
    let verdict = match current {
        Some(object) if object == wanted => return Ok("unchanged"),
        Some(_) => "configured",
        None => "created",
    };
    store
        .update(KIND_DEPLOYMENT, namespace, name, |_| Ok(wanted.clone()))
        .await?;
    Ok(verdict)
}

/// Sets a deployment's replicas to what `change` makes of the current
/// count; the new count.
pub async fn scale(
    store: &ReplicatedStore,
    namespace: &str,
    name: &str,
    change: impl Fn(i64) -> i64 + Send + Sync,
) -> Result<i64, OpsError> {
    let mut replicas = 0;
    store
        .update(KIND_DEPLOYMENT, namespace, name, |current| {
            let mut object = current.cloned().ok_or_else(|| {
                format!("deployments.apps {name:?} not found in namespace {namespace:?}")
            })?;
            // Kubernetes' default when the manifest leaves it out.
            let now = object["spec"]["replicas"].as_i64().unwrap_or(1);
            replicas = change(now).max(0);
            object["spec"]["replicas"] = json!(replicas);
            Ok(object)
        })
        .await?;
    Ok(replicas)
}

/// Sets a node's cordon flag; false when it already had that value.
pub async fn set_cordon(
    store: &ReplicatedStore,
    known_nodes: &[String],
    node: &str,
    unschedulable: bool,
) -> Result<bool, OpsError> {
    if !known_nodes.iter().any(|n| n == node) {
        return Err(OpsError::UnknownNode {
            node: node.to_string(),
            known: known_nodes.join(", "),
        });
    }
    let mut changed = false;
    store
        .update(KIND_NODE, "", node, |current| {
            let mut flags: NodeFlags = current
                .and_then(|v| serde_json::from_value(v.clone()).ok())
                .unwrap_or_default();
            changed = flags.unschedulable != unschedulable;
            flags.unschedulable = unschedulable;
            serde_json::to_value(&flags).map_err(|e| e.to_string())
        })
        .await?;
    Ok(changed)
}

/// The pods a drain of `node` evicts: all of them, once the node's agent
/// answered this pass; pods no deployment manages only with `force` (no one
/// would recreate them), as kubectl drain.
pub fn drain_plan(world: &World, node: &str, force: bool) -> Result<Vec<PodRef>, OpsError> {
    let state = world
        .nodes
        .iter()
        .find(|n| n.name == node)
        .ok_or_else(|| OpsError::NodeNotListed(node.to_string()))?;
    if !state.listed {
        return Err(OpsError::NodeNotConnected(node.to_string()));
    }
    let unmanaged: Vec<String> = state
        .pods
        .iter()
        .filter(|r| naming::owner(&r.pod).is_none())
        .map(|r| format!("{}/{}", r.pod.metadata.namespace, r.pod.metadata.name))
        .collect();
    if !unmanaged.is_empty() && !force {
        return Err(OpsError::Unmanaged(unmanaged));
    }
    Ok(state
        .pods
        .iter()
        .map(|r| PodRef::new(&r.pod.metadata.namespace, &r.pod.metadata.name))
        .collect())
}

/// Deletes `pods` on `client`'s node together, each with `grace` (or its
/// own period); each pod's outcome.
pub async fn evict(
    client: &Client,
    pods: Vec<PodRef>,
    grace: Option<u64>,
) -> Vec<(PodRef, Result<(), ClientError>)> {
    join_all(pods.into_iter().map(|pod| async move {
        let result = client.delete_pod(&pod, grace).await;
        (pod, result)
    }))
    .await
}
