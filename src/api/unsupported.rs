//! The field table: every field of a Pod and a Deployment that Kubernetes knows,
//! and what flotilla does with it. The pre-pass walks a document's JSON against
//! this table before any typed decoding, so that it can report *every* problem at
//! once with its path, where serde would stop at the first:
//!
//! * a supported field is checked for its JSON type (and enum values, quantities);
//! * a field flotilla does not run is an ERROR when ignoring it would change what
//!   the workload does, or a WARNING when the workload runs as written, only
//!   without that extra; either way it is removed before typed decoding;
//! * a field the table does not know is a typo, refused as Kubernetes' strict
//!   field validation refuses it (`unknown field "spec.containers[0].imagePullPolicyy"`).
//!
//! The typed structs in `pod`, `deployment`, `meta`, `node` and `affinity` accept
//! exactly the supported fields here; a test loads a manifest with all of them.

use serde_json::Value;

use super::affinity::NodeSelectorOperator;
use super::deployment::StrategyType;
use super::field::{FieldError, FieldPath, quote};
use super::meta::LabelSelectorOperator;
use super::node::{TaintEffect, TolerationOperator};
use super::pod::{Protocol, PullPolicy, RestartPolicy};
use super::quantity::{Quantity, number_text};

/// The JSON a supported field must hold.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    Object(&'static [Field]),
    List(&'static Shape),
    /// An object of string values (labels, annotations, nodeSelector).
    StringMap,
    StringList,
    Str,
    Int32,
    Int64,
    Bool,
    Enum(&'static [&'static str]),
    /// An enum where `""` also means "not set".
    EnumOrEmpty(&'static [&'static str]),
    /// An integer or a string (`maxSurge: 1`, `maxSurge: "25%"`).
    IntOrString,
    /// A `requests` or `limits` map.
    Resources(Side),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Requests,
    Limits,
}

#[derive(Clone, Copy)]
pub(crate) struct Field {
    name: &'static str,
    rule: Rule,
}

#[derive(Clone, Copy)]
enum Rule {
    Known(Shape),
    /// Must be present; the typed struct has a default for it, so decoding can go on.
    Required(Shape),
    /// Must be present, and typed decoding cannot go on without it.
    Needed(Shape),
    /// An error: ignoring it would change what runs. The text says what would go wrong.
    Refuse(&'static str),
    /// An error only when the value is `true`.
    RefuseIfTrue(&'static str),
    /// Like `Refuse`, and the refusals inside it (by this shape) are reported too,
    /// so one pass shows everything to fix.
    RefuseAll(&'static str, &'static Shape),
    /// A warning: the workload runs as written, without this extra.
    NoEffect(&'static str),
    /// Decided by the value (`paused: false` is harmless, `paused: true` is not).
    Decide(fn(&Value) -> Verdict),
}

enum Verdict {
    Ignore,
    Warn(&'static str),
    Refuse(&'static str),
}

const fn known(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        rule: Rule::Known(shape),
    }
}

const fn required(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        rule: Rule::Required(shape),
    }
}

const fn needed(name: &'static str, shape: Shape) -> Field {
    Field {
        name,
        rule: Rule::Needed(shape),
    }
}

const fn refuse(name: &'static str, why: &'static str) -> Field {
    Field {
        name,
        rule: Rule::Refuse(why),
    }
}

const fn no_effect(name: &'static str, why: &'static str) -> Field {
    Field {
        name,
        rule: Rule::NoEffect(why),
    }
}

/// Refused when set to `true`; `false` is what flotilla does anyway.
const fn refuse_if_true(name: &'static str, why: &'static str) -> Field {
    Field {
        name,
        rule: Rule::RefuseIfTrue(why),
    }
}

const fn decide(name: &'static str, f: fn(&Value) -> Verdict) -> Field {
    Field {
        name,
        rule: Rule::Decide(f),
    }
}

fn is_true(v: &Value) -> bool {
    v.as_bool() == Some(true)
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(|m| m.is_empty())
}

// Fields the cluster sets. Exported manifests (`kubectl get -o yaml`) carry them;
// Kubernetes ignores them on create, and so does flotilla, saying so.
const SET_BY_CLUSTER: &str = "is set by the cluster and has no effect in a manifest";

const SERVER_META: [Field; 7] = [
    no_effect("uid", SET_BY_CLUSTER),
    no_effect("resourceVersion", SET_BY_CLUSTER),
    no_effect("generation", SET_BY_CLUSTER),
    no_effect("selfLink", SET_BY_CLUSTER),
    no_effect("managedFields", SET_BY_CLUSTER),
    no_effect("deletionTimestamp", SET_BY_CLUSTER),
    no_effect("deletionGracePeriodSeconds", SET_BY_CLUSTER),
];

const OBJECT_META: &[Field] = &[
    known("name", Shape::Str),
    known("namespace", Shape::Str),
    known("labels", Shape::StringMap),
    known("annotations", Shape::StringMap),
    refuse(
        "generateName",
        "generated names are not supported yet; give metadata.name",
    ),
    // Garbage collection and deletion hooks change when the object goes away.
    refuse(
        "ownerReferences",
        "owner references are not supported, so the object would not be deleted with its owner",
    ),
    refuse(
        "finalizers",
        "finalizers are not supported, so deletion would not wait for them",
    ),
    // `creationTimestamp: null` is in every `kubectl create --dry-run -o yaml`;
    // nulls are dropped before this table is consulted.
    no_effect("creationTimestamp", SET_BY_CLUSTER),
    SERVER_META[0],
    SERVER_META[1],
    SERVER_META[2],
    SERVER_META[3],
    SERVER_META[4],
    SERVER_META[5],
    SERVER_META[6],
];

const TEMPLATE_NAMING: &str =
    "has no effect in a pod template: the pods are named after the Deployment, in its namespace";

const TEMPLATE_META: &[Field] = &[
    known("labels", Shape::StringMap),
    known("annotations", Shape::StringMap),
    no_effect("name", TEMPLATE_NAMING),
    no_effect("namespace", TEMPLATE_NAMING),
    no_effect("generateName", TEMPLATE_NAMING),
    no_effect("creationTimestamp", SET_BY_CLUSTER),
    SERVER_META[0],
    SERVER_META[1],
    SERVER_META[2],
    SERVER_META[3],
    SERVER_META[4],
    SERVER_META[5],
    SERVER_META[6],
];

const PROBE: &str = "has no effect yet: the probe will not run";

const CONTAINER: &[Field] = &[
    known("name", Shape::Str),
    known("image", Shape::Str),
    known("command", Shape::StringList),
    known("args", Shape::StringList),
    known("workingDir", Shape::Str),
    known("ports", Shape::List(&Shape::Object(CONTAINER_PORT))),
    known("env", Shape::List(&Shape::Object(ENV_VAR))),
    known("resources", Shape::Object(RESOURCES)),
    known("imagePullPolicy", Shape::Enum(PullPolicy::NAMES)),
    refuse(
        "envFrom",
        "variables from ConfigMaps and Secrets are not supported yet, so they would be missing",
    ),
    refuse(
        "volumeMounts",
        "volumes are not mounted yet, so the container would start without its files",
    ),
    refuse(
        "volumeDevices",
        "block devices are not attached yet, so the container would start without them",
    ),
    refuse(
        "securityContext",
        "security contexts are not applied yet, so the container would run with another user or other privileges than asked",
    ),
    // Sidecar semantics: a container-level policy changes when it runs and restarts.
    refuse(
        "restartPolicy",
        "a container-level restartPolicy (sidecar containers) is not supported yet",
    ),
    refuse(
        "restartPolicyRules",
        "per-container restart rules are not supported yet, so the pod would not restart as asked",
    ),
    // A process that expects a terminal or open stdin behaves differently without.
    refuse_if_true(
        "stdin",
        "stdin is not attached yet, so the container would read end-of-file",
    ),
    refuse_if_true(
        "stdinOnce",
        "stdin is not attached yet, so the container would read end-of-file",
    ),
    refuse_if_true(
        "tty",
        "terminals are not allocated yet, so the container would run without a tty",
    ),
    no_effect("livenessProbe", PROBE),
    no_effect("readinessProbe", PROBE),
    no_effect("startupProbe", PROBE),
    no_effect(
        "lifecycle",
        "has no effect yet: the postStart and preStop hooks will not run",
    ),
    no_effect(
        "terminationMessagePath",
        "has no effect yet: termination messages are not collected",
    ),
    no_effect(
        "terminationMessagePolicy",
        "has no effect yet: termination messages are not collected",
    ),
    no_effect(
        "resizePolicy",
        "has no effect: resources are not resized in place",
    ),
];

const CONTAINER_PORT: &[Field] = &[
    known("name", Shape::Str),
    known("containerPort", Shape::Int32),
    known("hostPort", Shape::Int32),
    known("protocol", Shape::Enum(Protocol::NAMES)),
    decide("hostIP", |v| match v.as_str() {
        None | Some("") | Some("0.0.0.0") => Verdict::Ignore,
        Some(_) => Verdict::Refuse(
            "binding a host port to one address is not supported yet; it would listen on all of them",
        ),
    }),
];

const ENV_VAR: &[Field] = &[
    known("name", Shape::Str),
    known("value", Shape::Str),
    refuse(
        "valueFrom",
        "values from ConfigMaps, Secrets and fields are not supported yet (only `value`), so the variable would be missing",
    ),
];

const RESOURCES: &[Field] = &[
    known("requests", Shape::Resources(Side::Requests)),
    known("limits", Shape::Resources(Side::Limits)),
    refuse(
        "claims",
        "resource claims (dynamic resource allocation) are not supported",
    ),
];

const TOLERATION: &[Field] = &[
    known("key", Shape::Str),
    known("operator", Shape::EnumOrEmpty(TolerationOperator::NAMES)),
    known("value", Shape::Str),
    known("effect", Shape::EnumOrEmpty(TaintEffect::NAMES)),
    known("tolerationSeconds", Shape::Int64),
];

const AFFINITY: &[Field] = &[
    known("nodeAffinity", Shape::Object(NODE_AFFINITY)),
    refuse(
        "podAffinity",
        "pod affinity is not honoured by the scheduler yet, so the pod could land away from its peers",
    ),
    refuse(
        "podAntiAffinity",
        "pod anti-affinity is not honoured by the scheduler yet, so replicas could share a node",
    ),
];

const NODE_AFFINITY: &[Field] = &[
    known(
        "requiredDuringSchedulingIgnoredDuringExecution",
        Shape::Object(NODE_SELECTOR),
    ),
    known(
        "preferredDuringSchedulingIgnoredDuringExecution",
        Shape::List(&Shape::Object(PREFERRED_TERM)),
    ),
];

const NODE_SELECTOR: &[Field] = &[known(
    "nodeSelectorTerms",
    Shape::List(&Shape::Object(NODE_SELECTOR_TERM)),
)];

const NODE_SELECTOR_TERM: &[Field] = &[
    known(
        "matchExpressions",
        Shape::List(&Shape::Object(NODE_SELECTOR_REQUIREMENT)),
    ),
    known(
        "matchFields",
        Shape::List(&Shape::Object(NODE_SELECTOR_REQUIREMENT)),
    ),
];

const NODE_SELECTOR_REQUIREMENT: &[Field] = &[
    needed("key", Shape::Str),
    needed("operator", Shape::Enum(NodeSelectorOperator::NAMES)),
    known("values", Shape::StringList),
];

const PREFERRED_TERM: &[Field] = &[
    known("weight", Shape::Int32),
    needed("preference", Shape::Object(NODE_SELECTOR_TERM)),
];

const NO_PRIORITIES: &str = "has no effect yet: flotilla does not prioritise or preempt pods";
const NO_SERVICE_ACCOUNTS: &str = "has no effect: flotilla has no service accounts";

const POD_SPEC: &[Field] = &[
    known("containers", Shape::List(&Shape::Object(CONTAINER))),
    known("restartPolicy", Shape::Enum(RestartPolicy::NAMES)),
    known("terminationGracePeriodSeconds", Shape::Int64),
    known("nodeSelector", Shape::StringMap),
    known("nodeName", Shape::Str),
    known("affinity", Shape::Object(AFFINITY)),
    known("tolerations", Shape::List(&Shape::Object(TOLERATION))),
    known("hostNetwork", Shape::Bool),
    Field {
        name: "initContainers",
        rule: Rule::RefuseAll(
            "init containers do not run yet, so the app containers would start without what they prepare",
            &Shape::Object(CONTAINER),
        ),
    },
    Field {
        name: "ephemeralContainers",
        rule: Rule::RefuseAll(
            "ephemeral containers are not supported",
            &Shape::Object(CONTAINER),
        ),
    },
    refuse(
        "volumes",
        "volumes are not mounted yet, so the containers would start without their files",
    ),
    refuse(
        "securityContext",
        "security contexts are not applied yet, so the containers would run with another user or other privileges than asked",
    ),
    refuse(
        "imagePullSecrets",
        "registry credentials from Secrets are not supported yet, so the image pull would fail",
    ),
    refuse(
        "topologySpreadConstraints",
        "topology spread constraints are not honoured by the scheduler yet",
    ),
    refuse(
        "activeDeadlineSeconds",
        "deadlines are not enforced yet, so the pod would run past it",
    ),
    refuse(
        "hostname",
        "setting the pod's hostname is not supported yet",
    ),
    refuse(
        "hostAliases",
        "extra /etc/hosts entries are not written yet, so those names would not resolve",
    ),
    refuse(
        "dnsConfig",
        "custom DNS settings are not applied yet, so names would resolve differently",
    ),
    refuse(
        "runtimeClassName",
        "runtime classes are not supported: every pod runs in flotilla's runtime",
    ),
    refuse(
        "schedulingGates",
        "scheduling gates are not supported, so the pod would be scheduled at once",
    ),
    refuse(
        "resourceClaims",
        "resource claims (dynamic resource allocation) are not supported",
    ),
    refuse(
        "resources",
        "pod-level resources are not supported yet; set them per container",
    ),
    refuse(
        "hostnameOverride",
        "setting the pod's hostname is not supported yet",
    ),
    refuse_if_true(
        "hostPID",
        "sharing the node's process namespace is not supported yet",
    ),
    refuse_if_true(
        "hostIPC",
        "sharing the node's IPC namespace is not supported yet",
    ),
    refuse_if_true(
        "shareProcessNamespace",
        "a process namespace shared between containers is not supported yet",
    ),
    // hostUsers: false asks for a user namespace, which changes file ownership.
    decide("hostUsers", |v| {
        if v.as_bool() == Some(false) {
            Verdict::Refuse("user namespaces are not supported yet")
        } else {
            Verdict::Ignore
        }
    }),
    decide("schedulerName", |v| {
        if v.as_str() == Some("default-scheduler") {
            Verdict::Ignore
        } else {
            Verdict::Refuse(
                "other schedulers are not supported: flotilla's own scheduler would place the pod",
            )
        }
    }),
    decide("os", |v| {
        if v.get("name").and_then(Value::as_str) == Some("linux") {
            Verdict::Ignore
        } else {
            Verdict::Refuse("flotilla runs Linux containers only")
        }
    }),
    no_effect(
        "dnsPolicy",
        "has no effect: flotilla has no cluster DNS, so containers use their node's resolver",
    ),
    no_effect("serviceAccountName", NO_SERVICE_ACCOUNTS),
    no_effect("serviceAccount", NO_SERVICE_ACCOUNTS),
    decide("automountServiceAccountToken", |v| {
        if is_true(v) {
            Verdict::Warn("has no effect: flotilla has no service accounts, so no token is mounted")
        } else {
            Verdict::Ignore
        }
    }),
    no_effect("priorityClassName", NO_PRIORITIES),
    no_effect("priority", NO_PRIORITIES),
    no_effect("preemptionPolicy", NO_PRIORITIES),
    no_effect(
        "readinessGates",
        "has no effect yet: readiness gates are not evaluated",
    ),
    no_effect("subdomain", "has no effect: flotilla has no cluster DNS"),
    no_effect(
        "overhead",
        "has no effect: pod overhead is not accounted for",
    ),
    decide("setHostnameAsFQDN", |v| {
        if is_true(v) {
            Verdict::Warn("has no effect: flotilla has no cluster DNS")
        } else {
            Verdict::Ignore
        }
    }),
    // No Services exist, so service links would add no variables either way.
    decide("enableServiceLinks", |_| Verdict::Ignore),
];

const STATUS: fn(&Value) -> Verdict = |v| {
    if is_empty_object(v) {
        Verdict::Ignore
    } else {
        Verdict::Warn(SET_BY_CLUSTER)
    }
};

const POD: &[Field] = &[
    known("apiVersion", Shape::Str),
    known("kind", Shape::Str),
    known("metadata", Shape::Object(OBJECT_META)),
    known("spec", Shape::Object(POD_SPEC)),
    decide("status", STATUS),
];

const LABEL_SELECTOR: &[Field] = &[
    known("matchLabels", Shape::StringMap),
    known(
        "matchExpressions",
        Shape::List(&Shape::Object(LABEL_SELECTOR_REQUIREMENT)),
    ),
];

const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    needed("key", Shape::Str),
    needed("operator", Shape::Enum(LabelSelectorOperator::NAMES)),
    known("values", Shape::StringList),
];

const POD_TEMPLATE: &[Field] = &[
    known("metadata", Shape::Object(TEMPLATE_META)),
    known("spec", Shape::Object(POD_SPEC)),
];

const STRATEGY: &[Field] = &[
    known("type", Shape::Enum(StrategyType::NAMES)),
    known("rollingUpdate", Shape::Object(ROLLING_UPDATE)),
];

const ROLLING_UPDATE: &[Field] = &[
    known("maxSurge", Shape::IntOrString),
    known("maxUnavailable", Shape::IntOrString),
];

const DEPLOYMENT_SPEC: &[Field] = &[
    known("replicas", Shape::Int32),
    required("selector", Shape::Object(LABEL_SELECTOR)),
    known("template", Shape::Object(POD_TEMPLATE)),
    known("strategy", Shape::Object(STRATEGY)),
    no_effect(
        "minReadySeconds",
        "has no effect yet: rollouts do not wait for new pods to stay ready",
    ),
    no_effect(
        "revisionHistoryLimit",
        "has no effect yet: flotilla keeps no rollout history",
    ),
    no_effect(
        "progressDeadlineSeconds",
        "has no effect yet: rollouts have no deadline",
    ),
    refuse_if_true(
        "paused",
        "paused Deployments are not supported yet, so the rollout would go ahead",
    ),
];

const DEPLOYMENT: &[Field] = &[
    known("apiVersion", Shape::Str),
    known("kind", Shape::Str),
    known("metadata", Shape::Object(OBJECT_META)),
    known("spec", Shape::Object(DEPLOYMENT_SPEC)),
    decide("status", STATUS),
];

pub(crate) static POD_SHAPE: Shape = Shape::Object(POD);
pub(crate) static DEPLOYMENT_SHAPE: Shape = Shape::Object(DEPLOYMENT);

/// A warning found by the pre-pass or by validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldWarning {
    pub path: FieldPath,
    pub message: String,
}

/// What the pre-pass found in one document.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<FieldWarning>,
    /// A value had the wrong type or a needed field was missing: typed decoding
    /// would fail on it, so only these findings are reported.
    pub broken: bool,
}

/// Checks `doc` against `shape`, reporting into `findings` and removing every
/// field that typed decoding must not see.
pub(crate) fn check(doc: &mut Value, shape: &Shape, findings: &mut Findings) {
    Walker {
        findings,
        refusals_only: false,
    }
    .walk(doc, shape, &FieldPath::root());
}

struct Walker<'a> {
    findings: &'a mut Findings,
    /// Inside a refused field: report only further refusals, keep nothing.
    refusals_only: bool,
}

impl Walker<'_> {
    fn error(&mut self, e: FieldError) {
        self.findings.errors.push(e);
    }

    fn type_error(&mut self, path: &FieldPath, value: &Value, expected: &str) {
        if self.refusals_only {
            return;
        }
        self.findings.broken = true;
        self.error(FieldError::invalid(path, describe(value), expected));
    }

    fn walk(&mut self, value: &mut Value, shape: &Shape, path: &FieldPath) {
        match shape {
            Shape::Object(fields) => self.object(value, fields, path),
            Shape::List(item) => match value {
                Value::Array(items) => {
                    for (i, v) in items.iter_mut().enumerate() {
                        self.walk(v, item, &path.index(i));
                    }
                }
                other => self.type_error(path, other, "must be a list"),
            },
            Shape::StringMap => match value {
                Value::Object(map) => {
                    for (k, v) in map.iter() {
                        if !v.is_string() {
                            self.type_error(&path.key(k), v, string_expected(v));
                        }
                    }
                }
                other => self.type_error(path, other, "must be an object of strings"),
            },
            Shape::StringList => match value {
                Value::Array(items) => {
                    for (i, v) in items.iter().enumerate() {
                        if !v.is_string() {
                            self.type_error(&path.index(i), v, string_expected(v));
                        }
                    }
                }
                other => self.type_error(path, other, "must be a list of strings"),
            },
            Shape::Str => {
                if !value.is_string() {
                    self.type_error(path, value, string_expected(value));
                }
            }
            Shape::Int32 => {
                if value.as_i64().and_then(|n| i32::try_from(n).ok()).is_none() {
                    self.type_error(path, value, "must be an integer (32-bit)");
                }
            }
            Shape::Int64 => {
                if value.as_i64().is_none() {
                    self.type_error(path, value, "must be an integer");
                }
            }
            Shape::Bool => {
                if !value.is_boolean() {
                    self.type_error(path, value, "must be true or false");
                }
            }
            Shape::Enum(names) | Shape::EnumOrEmpty(names) => match value.as_str() {
                Some("") if matches!(shape, Shape::EnumOrEmpty(_)) => {}
                Some(s) if names.contains(&s) => {}
                Some(s) => {
                    if !self.refusals_only {
                        self.findings.broken = true;
                        self.error(FieldError::not_supported(path, s, names));
                    }
                }
                None => self.type_error(path, value, "must be a string"),
            },
            Shape::IntOrString => {
                let fits = value.as_i64().is_some_and(|n| i32::try_from(n).is_ok());
                if !fits && !value.is_string() {
                    self.type_error(path, value, "must be an integer or a percentage string");
                }
            }
            Shape::Resources(side) => self.resources(value, *side, path),
        }
    }

    fn object(&mut self, value: &mut Value, fields: &[Field], path: &FieldPath) {
        let Value::Object(map) = value else {
            self.type_error(path, value, "must be an object");
            return;
        };
        if !self.refusals_only {
            for field in fields {
                let present = map.get(field.name).is_some_and(|v| !v.is_null());
                match &field.rule {
                    Rule::Required(_) if !present => {
                        self.error(FieldError::required(&path.child(field.name), ""));
                    }
                    Rule::Needed(_) if !present => {
                        self.findings.broken = true;
                        self.error(FieldError::required(&path.child(field.name), ""));
                    }
                    _ => {}
                }
            }
        }
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let child = path.child(&key);
            // A null is an absent field, as in Kubernetes' JSON decoding.
            if map.get(&key).is_some_and(Value::is_null) {
                map.remove(&key);
                continue;
            }
            let Some(field) = fields.iter().find(|f| f.name == key) else {
                if !self.refusals_only {
                    let suggestion = suggest(&key, fields);
                    self.error(FieldError::unknown_field(&child, suggestion));
                }
                map.remove(&key);
                continue;
            };
            let keep = match &field.rule {
                Rule::Known(shape) | Rule::Required(shape) | Rule::Needed(shape) => {
                    if let Some(v) = map.get_mut(&key) {
                        self.walk(v, shape, &child);
                    }
                    true
                }
                Rule::Refuse(why) => {
                    self.error(FieldError::unsupported(&child, *why));
                    false
                }
                Rule::RefuseAll(why, inner) => {
                    self.error(FieldError::unsupported(&child, *why));
                    if let Some(v) = map.get_mut(&key) {
                        let was = std::mem::replace(&mut self.refusals_only, true);
                        if let Value::Array(items) = v {
                            for (i, item) in items.iter_mut().enumerate() {
                                self.walk(item, inner, &child.index(i));
                            }
                        }
                        self.refusals_only = was;
                    }
                    false
                }
                Rule::NoEffect(why) => {
                    self.warn(&child, &key, why);
                    false
                }
                Rule::RefuseIfTrue(why) => {
                    if map.get(&key).is_some_and(is_true) {
                        self.error(FieldError::unsupported(&child, *why));
                    }
                    false
                }
                Rule::Decide(decide) => {
                    let verdict = map.get(&key).map_or(Verdict::Ignore, decide);
                    match verdict {
                        Verdict::Ignore => {}
                        Verdict::Warn(why) => self.warn(&child, &key, why),
                        Verdict::Refuse(why) => {
                            self.error(FieldError::unsupported(&child, why));
                        }
                    }
                    false
                }
            };
            if !keep || self.refusals_only {
                map.remove(&key);
            }
        }
    }

    fn warn(&mut self, path: &FieldPath, name: &str, why: &str) {
        if self.refusals_only {
            return;
        }
        self.findings.warnings.push(FieldWarning {
            path: path.clone(),
            message: format!("{name} {why}"),
        });
    }

    /// A `requests` or `limits` map: cpu and memory are run; anything else is
    /// reported by name, since only some of it is harmless to leave out.
    fn resources(&mut self, value: &mut Value, side: Side, path: &FieldPath) {
        let Value::Object(map) = value else {
            self.type_error(path, value, "must be an object of quantities");
            return;
        };
        let keys: Vec<String> = map.keys().cloned().collect();
        for key in keys {
            let child = resource_path(path, &key);
            let keep = match key.as_str() {
                "cpu" | "memory" => {
                    if let Some(v) = map.get(&key) {
                        self.quantity(v, &child);
                    }
                    true
                }
                // A request only steers scheduling; a limit would evict the pod.
                "ephemeral-storage" if side == Side::Requests => {
                    self.warn(
                        &child,
                        &key,
                        "request has no effect yet: local storage is not accounted for when scheduling",
                    );
                    false
                }
                "ephemeral-storage" => {
                    self.error(FieldError::unsupported(
                        &child,
                        "ephemeral-storage limits are not enforced yet, so the pod would not be evicted at the limit",
                    ));
                    false
                }
                other if other.starts_with("hugepages-") => {
                    self.error(FieldError::unsupported(
                        &child,
                        "huge pages are not supported, so the container would run without them",
                    ));
                    false
                }
                other => {
                    self.error(FieldError::unsupported(
                        &child,
                        format!(
                            "resource {} is not supported: flotilla schedules and limits cpu and memory only",
                            quote(other)
                        ),
                    ));
                    false
                }
            };
            if !keep || self.refusals_only {
                map.remove(&key);
            }
        }
    }

    fn quantity(&mut self, value: &Value, path: &FieldPath) {
        if self.refusals_only {
            return;
        }
        let text = match value {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => i.to_string(),
                (None, Some(u), _) => u.to_string(),
                (None, None, Some(f)) => number_text(f),
                _ => n.to_string(),
            },
            other => {
                self.type_error(
                    path,
                    other,
                    "must be a quantity such as \"100m\" or \"128Mi\"",
                );
                return;
            }
        };
        if let Err(e) = Quantity::parse(&text) {
            self.findings.broken = true;
            self.error(FieldError::invalid(path, describe(value), e.to_string()));
        }
    }
}

/// `limits.memory`, but `limits[nvidia.com/gpu]` where a dot would mislead.
fn resource_path(path: &FieldPath, key: &str) -> FieldPath {
    if key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        path.child(key)
    } else {
        path.key(key)
    }
}

/// YAML reads `80`, `1.0` and `yes` as numbers and booleans; Kubernetes refuses
/// them where a string belongs, and so does flotilla, saying how to fix it.
fn string_expected(value: &Value) -> &'static str {
    if value.is_number() || value.is_boolean() {
        "must be a string (put the value in quotes)"
    } else {
        "must be a string"
    }
}

/// A value as a report shows it: scalars as JSON, collections by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        Value::String(s) => quote(s),
        other => other.to_string(),
    }
}

/// The known field nearest to a misspelt one, if it is near enough to be a typo.
fn suggest(key: &str, fields: &[Field]) -> Option<&'static str> {
    let lower = key.to_ascii_lowercase();
    fields
        .iter()
        .map(|f| {
            let d = if f.name.to_ascii_lowercase() == lower {
                0
            } else {
                edit_distance(&lower, &f.name.to_ascii_lowercase())
            };
            (d, f.name)
        })
        .filter(|(d, name)| *d <= 2 && *d < name.len() / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(shape: &Shape, mut doc: Value) -> (Findings, Value) {
        let mut findings = Findings::default();
        check(&mut doc, shape, &mut findings);
        (findings, doc)
    }

    fn error_lines(f: &Findings) -> Vec<String> {
        f.errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn refused_and_warned_fields_are_reported_by_path_and_removed() {
        let (f, doc) = run(
            &POD_SHAPE,
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
                "spec": {
                    "volumes": [{"name": "v"}],
                    "containers": [{
                        "name": "c", "image": "i",
                        "env": [{"name": "A", "valueFrom": {"fieldRef": {}}}],
                        "volumeMounts": [],
                        "livenessProbe": {"exec": {}},
                        "imagePullPolicyy": "Always",
                        "resources": {"requests": {"ephemeral-storage": "1Gi", "cpu": "1"},
                                      "limits": {"nvidia.com/gpu": 1}}
                    }]
                }
            }),
        );
        let errors = error_lines(&f);
        let has = |needle: &str| errors.iter().any(|e| e.starts_with(needle));
        assert!(
            has("spec.volumes: volumes are not mounted yet"),
            "{errors:#?}"
        );
        assert!(
            has("spec.containers[0].env[0].valueFrom: values from ConfigMaps"),
            "{errors:#?}"
        );
        assert!(
            has("spec.containers[0].volumeMounts: volumes are not mounted"),
            "{errors:#?}"
        );
        assert!(
            has(
                r#"unknown field "spec.containers[0].imagePullPolicyy" (did you mean "imagePullPolicy"?)"#
            ),
            "{errors:#?}"
        );
        assert!(
            has(
                "spec.containers[0].resources.limits[nvidia.com/gpu]: resource \"nvidia.com/gpu\" is not supported"
            ),
            "{errors:#?}"
        );
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(!f.broken);
        let warnings: Vec<String> = f
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.path, w.message))
            .collect();
        assert_eq!(
            warnings,
            [
                "spec.containers[0].livenessProbe: livenessProbe has no effect yet: the probe will not run",
                "spec.containers[0].resources.requests.ephemeral-storage: ephemeral-storage request has no effect yet: local storage is not accounted for when scheduling",
            ]
        );
        let c = &doc["spec"]["containers"][0];
        assert!(doc["spec"].get("volumes").is_none());
        assert!(c.get("livenessProbe").is_none() && c.get("imagePullPolicyy").is_none());
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "1"}, "limits": {}})
        );
        assert_eq!(c["env"], json!([{"name": "A"}]));
    }

    #[test]
    fn wrong_types_break_the_document_and_every_one_is_reported() {
        let (f, _) = run(
            &POD_SHAPE,
            json!({
                "spec": {
                    "affinity": {"nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": [{"weight": 5}]
                    }},
                    "restartPolicy": "Sometimes",
                    "containers": [{"name": "c", "image": 7,
                        "ports": [{"containerPort": 80.5}],
                        "resources": {"limits": {"memory": "1K"}}}]
                }
            }),
        );
        assert!(f.broken);
        // Fields come in key order (serde_json's map), not file order.
        assert_eq!(
            error_lines(&f),
            [
                "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution: Invalid value: a list: must be an object",
                "spec.containers[0].image: Invalid value: 7: must be a string (put the value in quotes)",
                "spec.containers[0].ports[0].containerPort: Invalid value: 80.5: must be an integer (32-bit)",
                r#"spec.containers[0].resources.limits.memory: Invalid value: "1K": unable to parse quantity's suffix"#,
                r#"spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never""#,
            ]
        );
    }

    #[test]
    fn refusals_inside_a_refused_field_are_reported_too() {
        let (f, doc) = run(
            &POD_SHAPE,
            json!({"spec": {"initContainers": [
                {"name": "a", "image": "i", "bogus": 1},
                {"name": "b", "image": "i", "restartPolicy": "Always",
                 "restartPolicyRules": [], "livenessProbe": {}}
            ]}}),
        );
        let errors = error_lines(&f);
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("spec.initContainers: init containers do not run yet"));
        assert!(
            errors[1].starts_with(
                "spec.initContainers[1].restartPolicy: a container-level restartPolicy"
            )
        );
        assert!(
            errors[2].starts_with(
                "spec.initContainers[1].restartPolicyRules: per-container restart rules"
            )
        );
        assert!(f.warnings.is_empty());
        assert!(doc["spec"].get("initContainers").is_none());
    }

    #[test]
    fn value_dependent_fields() {
        let (f, doc) = run(
            &DEPLOYMENT_SHAPE,
            json!({"metadata": {"name": "d", "creationTimestamp": null},
                   "spec": {"selector": {}, "paused": false, "template": {"spec": {
                "schedulerName": "default-scheduler", "hostPID": false, "os": {"name": "linux"},
                "enableServiceLinks": true, "containers": [{"tty": false, "stdin": true}]
            }}}, "status": {}}),
        );
        let errors = error_lines(&f);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("spec.template.spec.containers[0].stdin: stdin is not attached")
        );
        assert!(f.warnings.is_empty());
        assert_eq!(
            doc,
            json!({"metadata": {"name": "d"}, "spec": {"selector": {}, "template": {"spec": {"containers": [{}]}}}})
        );
    }

    #[test]
    fn missing_required_fields() {
        let (f, _) = run(&DEPLOYMENT_SHAPE, json!({"spec": {}}));
        assert_eq!(error_lines(&f), ["spec.selector: Required value"]);
        assert!(!f.broken);
        let (f, _) = run(
            &DEPLOYMENT_SHAPE,
            json!({"spec": {"selector": {"matchExpressions": [{"key": "a"}]}}}),
        );
        assert_eq!(
            error_lines(&f),
            ["spec.selector.matchExpressions[0].operator: Required value"]
        );
        assert!(f.broken);
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        assert_eq!(
            suggest("imagePullPolicyy", CONTAINER),
            Some("imagePullPolicy")
        );
        assert_eq!(suggest("Image", CONTAINER), Some("image"));
        assert_eq!(suggest("comand", CONTAINER), Some("command"));
        assert_eq!(suggest("replica", DEPLOYMENT_SPEC), Some("replicas"));
        assert_eq!(suggest("zzz", CONTAINER), None);
        assert_eq!(suggest("ab", CONTAINER), None);
    }
}
