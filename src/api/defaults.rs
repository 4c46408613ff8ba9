//! Kubernetes' defaulting, the part serde's field defaults cannot express: values
//! that depend on other fields (pull policy from the image, requests from limits,
//! host ports under hostNetwork, the rolling-update parameters) and the namespace.
//! Run before validation, as the API server does, so validation sees what will run.

use super::deployment::{Deployment, RollingUpdate, StrategyType};
use super::image::default_pull_policy;
use super::meta::{DEFAULT_NAMESPACE, ObjectMeta};
use super::pod::{Pod, PodSpec, ResourceName};

pub fn default_pod(pod: &mut Pod) {
    default_namespace(&mut pod.metadata);
    default_pod_spec(&mut pod.spec);
}

pub fn default_deployment(deployment: &mut Deployment) {
    default_namespace(&mut deployment.metadata);
    default_pod_spec(&mut deployment.spec.template.spec);
    let strategy = &mut deployment.spec.strategy;
    if strategy.strategy_type == StrategyType::RollingUpdate {
        let defaults = RollingUpdate::kubernetes_default();
        let rolling = strategy
            .rolling_update
            .get_or_insert_with(RollingUpdate::default);
        if rolling.max_surge.is_none() {
            rolling.max_surge = defaults.max_surge;
        }
        if rolling.max_unavailable.is_none() {
            rolling.max_unavailable = defaults.max_unavailable;
        }
    }
}

fn default_namespace(meta: &mut ObjectMeta) {
    if meta.namespace.is_empty() {
        meta.namespace = DEFAULT_NAMESPACE.to_owned();
    }
}

pub fn default_pod_spec(spec: &mut PodSpec) {
    let host_network = spec.host_network;
    for container in &mut spec.containers {
        if container.image_pull_policy.is_none() {
            container.image_pull_policy = Some(default_pull_policy(&container.image));
        }
        // A limit without a request reserves what it allows.
        for name in ResourceName::ALL {
            let limit = container.resources.limits.get(name).cloned();
            let request = container.resources.requests.get_mut(name);
            if request.is_none() {
                *request = limit;
            }
        }
        if host_network {
            for port in &mut container.ports {
                if port.host_port == 0 {
                    port.host_port = port.container_port;
                }
            }
        }
    }
}
