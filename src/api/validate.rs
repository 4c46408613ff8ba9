//! Validation of defaulted Pods and Deployments, as the API server validates them
//! (`pkg/apis/core/validation`, `pkg/apis/apps/validation`): every rule runs and
//! every failure is collected, with Kubernetes' paths and wording, so that one
//! `flotilla apply --dry-run` shows everything a manifest needs fixed.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::affinity::{NODE_NAME_FIELD, NodeSelectorOperator, NodeSelectorTerm};
use super::deployment::{Deployment, IntOrString, StrategyType};
use super::field::{FieldError, FieldPath, quote};
use super::meta::{
    LabelSelector, LabelSelectorOperator, ObjectMeta, dns1123_label_errors,
    dns1123_subdomain_errors, qualified_name_errors, validate_annotations, validate_labels,
};
use super::node::{TaintEffect, TolerationOperator};
use super::pod::{Container, Pod, PodSpec, ResourceName, RestartPolicy};
use super::unsupported::FieldWarning;

/// What validation found: errors refuse the object, warnings do not.
#[derive(Debug, Default)]
pub struct Validation {
    pub errors: Vec<FieldError>,
    pub warnings: Vec<FieldWarning>,
}

impl Validation {
    fn err(&mut self, e: FieldError) {
        self.errors.push(e);
    }

    fn extend(&mut self, errs: Vec<FieldError>) {
        self.errors.extend(errs);
    }

    fn warn(&mut self, path: &FieldPath, message: String) {
        self.warnings.push(FieldWarning {
            path: path.clone(),
            message,
        });
    }
}

pub fn validate_pod(pod: &Pod) -> Validation {
    let mut v = Validation::default();
    validate_object_meta(&pod.metadata, &FieldPath::new("metadata"), &mut v);
    validate_pod_spec(&pod.spec, &FieldPath::new("spec"), &mut v);
    v
}

pub fn validate_deployment(deployment: &Deployment) -> Validation {
    let mut v = Validation::default();
    validate_object_meta(&deployment.metadata, &FieldPath::new("metadata"), &mut v);
    let spec = &deployment.spec;
    let path = FieldPath::new("spec");
    if spec.replicas < 0 {
        v.err(FieldError::invalid(
            &path.child("replicas"),
            spec.replicas,
            "must be greater than or equal to 0",
        ));
    }

    let selector_path = path.child("selector");
    if spec.selector.is_empty() {
        v.err(FieldError::invalid(
            &selector_path,
            "{}",
            "empty selector is invalid for deployment",
        ));
    }
    validate_label_selector(&spec.selector, &selector_path, &mut v);

    let template = path.child("template");
    let labels_path = template.child("metadata").child("labels");
    let labels = &spec.template.metadata.labels;
    v.extend(validate_labels(labels, &labels_path));
    v.extend(validate_annotations(
        &spec.template.metadata.annotations,
        &template.child("metadata").child("annotations"),
    ));
    if !spec.selector.is_empty() && !spec.selector.matches(labels) {
        v.err(FieldError::invalid(
            &labels_path,
            render_map(labels),
            "`selector` does not match template `labels`",
        ));
    }

    let pod_spec_path = template.child("spec");
    validate_pod_spec(&spec.template.spec, &pod_spec_path, &mut v);
    // Replicas are replaced when they stop; a template that lets them stay stopped
    // would leave the Deployment short.
    if spec.template.spec.restart_policy != RestartPolicy::Always {
        v.err(FieldError::not_supported(
            &pod_spec_path.child("restartPolicy"),
            spec.template.spec.restart_policy.as_str(),
            &["Always"],
        ));
    }

    let strategy_path = path.child("strategy");
    let rolling_path = strategy_path.child("rollingUpdate");
    match (
        spec.strategy.strategy_type,
        spec.strategy.rolling_update.as_ref(),
    ) {
        (StrategyType::Recreate, Some(_)) => v.err(FieldError::forbidden(
            &rolling_path,
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        (StrategyType::RollingUpdate, Some(rolling)) => {
            let surge_path = rolling_path.child("maxSurge");
            let unavailable_path = rolling_path.child("maxUnavailable");
            if let Some(surge) = &rolling.max_surge {
                validate_int_or_percent(surge, &surge_path, &mut v);
            }
            if let Some(unavailable) = &rolling.max_unavailable {
                validate_int_or_percent(unavailable, &unavailable_path, &mut v);
                if unavailable.percent().is_some_and(|p| p > 100) {
                    v.err(FieldError::invalid_str(
                        &unavailable_path,
                        &unavailable.to_string(),
                        "must not be greater than 100%",
                    ));
                }
            }
            let is_zero = |x: &Option<IntOrString>| {
                x.as_ref()
                    .is_some_and(|x| *x == IntOrString::Int(0) || x.percent() == Some(0))
            };
            if is_zero(&rolling.max_surge) && is_zero(&rolling.max_unavailable) {
                v.err(FieldError::invalid(
                    &unavailable_path,
                    rolling
                        .max_unavailable
                        .as_ref()
                        .map_or_else(String::new, render_int_or_string),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        _ => {}
    }
    v
}

fn validate_object_meta(meta: &ObjectMeta, path: &FieldPath, v: &mut Validation) {
    let name_path = path.child("name");
    if meta.name.is_empty() {
        v.err(FieldError::required(
            &name_path,
            "name or generateName is required",
        ));
    } else {
        for msg in dns1123_subdomain_errors(&meta.name) {
            v.err(FieldError::invalid_str(&name_path, &meta.name, msg));
        }
    }
    for msg in dns1123_label_errors(&meta.namespace) {
        v.err(FieldError::invalid_str(
            &path.child("namespace"),
            &meta.namespace,
            msg,
        ));
    }
    v.extend(validate_labels(&meta.labels, &path.child("labels")));
    v.extend(validate_annotations(
        &meta.annotations,
        &path.child("annotations"),
    ));
}

fn validate_label_selector(selector: &LabelSelector, path: &FieldPath, v: &mut Validation) {
    v.extend(validate_labels(
        &selector.match_labels,
        &path.child("matchLabels"),
    ));
    for (i, req) in selector.match_expressions.iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        use LabelSelectorOperator::*;
        match req.operator {
            In | NotIn if req.values.is_empty() => v.err(FieldError::required(
                &p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Exists | DoesNotExist if !req.values.is_empty() => v.err(FieldError::forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            _ => {}
        }
        for msg in qualified_name_errors(&req.key) {
            v.err(FieldError::invalid_str(&p.child("key"), &req.key, msg));
        }
        for (j, value) in req.values.iter().enumerate() {
            for msg in super::meta::label_value_errors(value) {
                v.err(FieldError::invalid_str(
                    &p.child("values").index(j),
                    value,
                    msg,
                ));
            }
        }
    }
}

pub fn validate_pod_spec(spec: &PodSpec, path: &FieldPath, v: &mut Validation) {
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        v.err(FieldError::required(&containers_path, ""));
    }
    let mut names = HashSet::new();
    let mut host_ports = HashMap::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let p = containers_path.index(i);
        if !container.name.is_empty() && !names.insert(container.name.as_str()) {
            v.err(FieldError::duplicate(
                &p.child("name"),
                quote(&container.name),
            ));
        }
        validate_container(container, &p, spec.host_network, v);
        for (j, port) in container.ports.iter().enumerate() {
            if port.host_port == 0 {
                continue;
            }
            let key = format!("{}/{}", port.host_port, port.protocol);
            if host_ports.insert(key.clone(), ()).is_some() {
                v.err(FieldError::duplicate(
                    &p.child("ports").index(j).child("hostPort"),
                    quote(&key),
                ));
            }
        }
    }

    if spec.termination_grace_period_seconds < 0 {
        v.err(FieldError::invalid(
            &path.child("terminationGracePeriodSeconds"),
            spec.termination_grace_period_seconds,
            "must be greater than or equal to 0",
        ));
    }
    v.extend(validate_labels(
        &spec.node_selector,
        &path.child("nodeSelector"),
    ));
    if !spec.node_name.is_empty() {
        for msg in dns1123_subdomain_errors(&spec.node_name) {
            v.err(FieldError::invalid_str(
                &path.child("nodeName"),
                &spec.node_name,
                msg,
            ));
        }
    }
    if let Some(node_affinity) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
    {
        let p = path.child("affinity").child("nodeAffinity");
        if let Some(required) = &node_affinity.required_during_scheduling_ignored_during_execution {
            let rp = p.child("requiredDuringSchedulingIgnoredDuringExecution");
            let terms_path = rp.child("nodeSelectorTerms");
            if required.node_selector_terms.is_empty() {
                v.err(FieldError::required(
                    &terms_path,
                    "must have at least one node selector term",
                ));
            }
            for (i, term) in required.node_selector_terms.iter().enumerate() {
                validate_node_selector_term(term, &terms_path.index(i), v);
            }
        }
        let pp = p.child("preferredDuringSchedulingIgnoredDuringExecution");
        for (i, preferred) in node_affinity
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .enumerate()
        {
            let p = pp.index(i);
            if !(1..=100).contains(&preferred.weight) {
                v.err(FieldError::invalid(
                    &p.child("weight"),
                    preferred.weight,
                    "must be in the range 1-100",
                ));
            }
            validate_node_selector_term(&preferred.preference, &p.child("preference"), v);
        }
    }
    validate_tolerations(spec, &path.child("tolerations"), v);
}

fn validate_container(
    container: &Container,
    path: &FieldPath,
    host_network: bool,
    v: &mut Validation,
) {
    let name_path = path.child("name");
    if container.name.is_empty() {
        v.err(FieldError::required(&name_path, ""));
    } else {
        for msg in dns1123_label_errors(&container.name) {
            v.err(FieldError::invalid_str(&name_path, &container.name, msg));
        }
    }
    let image_path = path.child("image");
    if container.image.is_empty() {
        v.err(FieldError::required(&image_path, ""));
    } else if container.image.trim() != container.image {
        v.err(FieldError::invalid_str(
            &image_path,
            &container.image,
            "must not have leading or trailing whitespace",
        ));
    }

    let mut port_names = HashSet::new();
    for (j, port) in container.ports.iter().enumerate() {
        let p = path.child("ports").index(j);
        if !port.name.is_empty() {
            for msg in port_name_errors(&port.name) {
                v.err(FieldError::invalid_str(&p.child("name"), &port.name, msg));
            }
            if !port_names.insert(port.name.as_str()) {
                v.err(FieldError::duplicate(&p.child("name"), quote(&port.name)));
            }
        }
        let cp = p.child("containerPort");
        if port.container_port == 0 {
            v.err(FieldError::required(&cp, ""));
        } else if !(1..=65535).contains(&port.container_port) {
            v.err(FieldError::invalid(
                &cp,
                port.container_port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        let hp = p.child("hostPort");
        if port.host_port != 0 && !(1..=65535).contains(&port.host_port) {
            v.err(FieldError::invalid(
                &hp,
                port.host_port,
                "must be between 1 and 65535, inclusive",
            ));
        }
        if host_network && port.host_port != port.container_port {
            v.err(FieldError::invalid(
                &hp,
                port.host_port,
                "must match `containerPort` when `hostNetwork` is true",
            ));
        }
    }

    for (j, var) in container.env.iter().enumerate() {
        let p = path.child("env").index(j).child("name");
        if var.name.is_empty() {
            v.err(FieldError::required(&p, ""));
        } else if !var
            .name
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'=')
        {
            v.err(FieldError::invalid_str(
                &p,
                &var.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }

    let resources = &container.resources;
    let rp = path.child("resources");
    for (side, list) in [
        ("limits", &resources.limits),
        ("requests", &resources.requests),
    ] {
        for (name, quantity) in list.iter() {
            let p = rp.child(side).child(name.as_str());
            if quantity.is_negative() {
                v.err(FieldError::invalid_str(
                    &p,
                    &quantity.to_string(),
                    "must be greater than or equal to 0",
                ));
            }
            if name == ResourceName::Memory && !quantity.is_whole() {
                v.warn(
                    &p,
                    format!(
                        "fractional byte value {} is invalid, must be an integer",
                        quote(&quantity.to_string())
                    ),
                );
            }
        }
    }
    for name in ResourceName::ALL {
        if let (Some(request), Some(limit)) =
            (resources.requests.get(name), resources.limits.get(name))
            && request > limit
        {
            v.err(FieldError::invalid_str(
                &rp.child("requests").child(name.as_str()),
                &request.to_string(),
                format!("must be less than or equal to {name} limit of {limit}"),
            ));
        }
    }
}

fn validate_node_selector_term(term: &NodeSelectorTerm, path: &FieldPath, v: &mut Validation) {
    for (i, req) in term.match_expressions.iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = p.child("values");
        use NodeSelectorOperator::*;
        match req.operator {
            In | NotIn if req.values.is_empty() => v.err(FieldError::required(
                &values,
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            Exists | DoesNotExist if !req.values.is_empty() => v.err(FieldError::forbidden(
                &values,
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            Gt | Lt if req.values.len() != 1 => v.err(FieldError::required(
                &values,
                "must be specified single value when `operator` is 'Lt' or 'Gt'",
            )),
            Gt | Lt => {
                if let Some(value) = req.values.first()
                    && value.parse::<i64>().is_err()
                {
                    v.err(FieldError::invalid_str(
                        &values.index(0),
                        value,
                        "must be an integer when `operator` is 'Lt' or 'Gt'",
                    ));
                }
            }
            _ => {}
        }
        for msg in qualified_name_errors(&req.key) {
            v.err(FieldError::invalid_str(&p.child("key"), &req.key, msg));
        }
    }
    for (i, req) in term.match_fields.iter().enumerate() {
        let p = path.child("matchFields").index(i);
        if req.key != NODE_NAME_FIELD {
            v.err(FieldError::not_supported(
                &p.child("key"),
                &req.key,
                &[NODE_NAME_FIELD],
            ));
        }
        match req.operator {
            NodeSelectorOperator::In | NodeSelectorOperator::NotIn => {
                if req.values.len() != 1 {
                    v.err(FieldError::required(
                        &p.child("values"),
                        "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    ));
                }
            }
            other => v.err(FieldError::invalid_str(
                &p.child("operator"),
                &format!("{other:?}"),
                "not a valid selector operator",
            )),
        }
    }
}

fn validate_tolerations(spec: &PodSpec, path: &FieldPath, v: &mut Validation) {
    for (i, toleration) in spec.tolerations.iter().enumerate() {
        let p = path.index(i);
        if !toleration.key.is_empty() {
            for msg in qualified_name_errors(&toleration.key) {
                v.err(FieldError::invalid_str(
                    &p.child("key"),
                    &toleration.key,
                    msg,
                ));
            }
        }
        let operator = toleration.operator.unwrap_or(TolerationOperator::Equal);
        if toleration.key.is_empty() && operator != TolerationOperator::Exists {
            v.err(FieldError::invalid_str(
                &p.child("operator"),
                toleration.operator.map_or("", |_| "Equal"),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if toleration.toleration_seconds.is_some()
            && toleration.effect != Some(TaintEffect::NoExecute)
        {
            v.err(FieldError::invalid_str(
                &p.child("effect"),
                toleration.effect.map_or("", TaintEffect::as_str),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            TolerationOperator::Equal => {
                let errs = super::meta::label_value_errors(&toleration.value);
                if !errs.is_empty() {
                    v.err(FieldError::invalid_str(
                        &p.child("value"),
                        &toleration.value,
                        errs.join(";"),
                    ));
                }
            }
            TolerationOperator::Exists => {
                if !toleration.value.is_empty() {
                    v.err(FieldError::invalid_str(
                        &p.child("value"),
                        &toleration.value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
        }
    }
}

fn validate_int_or_percent(value: &IntOrString, path: &FieldPath, v: &mut Validation) {
    match value {
        IntOrString::Int(n) if *n < 0 => v.err(FieldError::invalid(
            path,
            n,
            "must be greater than or equal to 0",
        )),
        IntOrString::Int(_) => {}
        IntOrString::String(s) => {
            if value.percent().is_none() {
                v.err(FieldError::invalid_str(
                    path,
                    s,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                ));
            }
        }
    }
}

/// Kubernetes' `IsValidPortName` (an IANA service name).
fn port_name_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_owned(),
        );
    } else if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_owned());
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_owned());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_owned());
    }
    errs
}

fn render_map(map: &BTreeMap<String, String>) -> String {
    serde_json::to_string(map).unwrap_or_default()
}

fn render_int_or_string(x: &IntOrString) -> String {
    match x {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => quote(s),
    }
}
