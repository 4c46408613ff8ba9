//! How the controller names and marks what it creates, as Kubernetes does:
//! a deployment's pods are `<deployment>-<pod-template-hash>-<suffix>`, carry
//! the `pod-template-hash` label, and say which deployment owns them (an
//! annotation here, since flotilla keeps no ownerReferences).

use std::collections::BTreeMap;

use rand::Rng;

use crate::api::deployment::{Deployment, PodTemplateSpec};
use crate::api::meta::ObjectMeta;
use crate::api::pod::Pod;

/// Kubernetes' label naming a pod's template version.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// The deployment (in the pod's namespace) that owns a pod.
pub const OWNER_ANNOTATION: &str = "flotilla.io/deployment";
/// Kubernetes' annotation of a deployment's (and a replica set's) revision.
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// Kubernetes' `rand.SafeEncodeString` alphabet: no vowels (no words), no
/// look-alikes (0/O, 1/l).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The `pod-template-hash` of a template: FNV-1a (32 bits) over its
/// canonical JSON, its decimal digits mapped through the safe alphabet, as
/// Kubernetes maps its own hash. The same template always gives the same
/// hash, on every machine and release of flotilla that keeps the template's
/// JSON form.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash: u32 = 0x811c_9dc5;
    for byte in json {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

/// Five characters of the safe alphabet: the random end of a pod's name.
pub fn random_suffix(rng: &mut impl Rng) -> String {
    (0..5)
        .map(|_| char::from(SAFE_ALPHABET[rng.random_range(0..SAFE_ALPHABET.len())]))
        .collect()
}

/// The deployment that owns `pod`, if any.
pub fn owner(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .get(OWNER_ANNOTATION)
        .map(String::as_str)
}

/// The template hash a pod was made from.
pub fn pod_hash(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .get(TEMPLATE_HASH_LABEL)
        .map(String::as_str)
}

/// A new pod of `deployment` from its current template (`hash` is its
/// [`template_hash`]): the template's labels and annotations plus the hash
/// label and the owner annotation, in the deployment's namespace.
pub fn new_pod(deployment: &Deployment, hash: &str, rng: &mut impl Rng) -> Pod {
    let template = &deployment.spec.template;
    let mut labels: BTreeMap<String, String> = template.metadata.labels.clone();
    labels.insert(TEMPLATE_HASH_LABEL.to_string(), hash.to_string());
    let mut annotations = template.metadata.annotations.clone();
    annotations.insert(
        OWNER_ANNOTATION.to_string(),
        deployment.metadata.name.clone(),
    );
    let name = format!("{}-{hash}-{}", deployment.metadata.name, random_suffix(rng));
    Pod::new(
        ObjectMeta {
            name,
            namespace: deployment.metadata.namespace.clone(),
            labels,
            annotations,
        },
        template.spec.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::pod::{Container, PodSpec};

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: ObjectMeta::default(),
            spec: PodSpec {
                containers: vec![Container {
                    name: "web".into(),
                    image: image.into(),
                    ..serde_json::from_value(serde_json::json!({"name": "x", "image": "x"}))
                        .unwrap()
                }],
                ..PodSpec::default()
            },
        }
    }

    #[test]
    fn hashes_are_stable_safe_and_differ_by_template() {
        let a = template_hash(&template("nginx:1"));
        assert_eq!(a, template_hash(&template("nginx:1")));
        assert_ne!(a, template_hash(&template("nginx:2")));
        assert!(!a.is_empty() && a.len() <= 10, "{a}");
        assert!(a.bytes().all(|b| SAFE_ALPHABET.contains(&b)), "{a}");
    }

    #[test]
    fn new_pods_carry_hash_owner_and_a_kubernetes_like_name() {
        let mut deployment: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
        }))
        .unwrap();
        deployment.metadata.namespace = "shop".into();
        let hash = template_hash(&deployment.spec.template);
        let pod = new_pod(&deployment, &hash, &mut rand::rng());
        let prefix = format!("web-{hash}-");
        assert!(
            pod.metadata.name.starts_with(&prefix),
            "{}",
            pod.metadata.name
        );
        assert_eq!(pod.metadata.name.len(), prefix.len() + 5);
        assert_eq!(pod.metadata.namespace, "shop");
        assert_eq!(pod.metadata.labels["app"], "web");
        assert_eq!(pod_hash(&pod), Some(hash.as_str()));
        assert_eq!(owner(&pod), Some("web"));
    }
}
