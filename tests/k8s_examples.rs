//! The Kubernetes example corpus in ../shared/k8s-examples: every file must land
//! in the group SOURCES.md gives it (accept, warn, reject), rejects must name what
//! is wrong, and a file SOURCES.md does not list fails the test so that new
//! files get classified. Also: every sample manifest in assets/manifests is
//! accepted without a word.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flotilla::api::env::resolve_env;
use flotilla::api::manifest::{FileReport, Object, load_file};
use flotilla::api::pod::RestartPolicy;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/k8s-examples");
const ASSETS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/manifests");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Accept,
    Warn,
    Reject,
}

/// What each reject's errors must contain, and each warn's warnings: the field
/// path or kind, and the document where it matters.
const EXPECTED: &[(&str, &[&str])] = &[
    (
        "service/simple-service.yaml",
        &[
            "document 1 (Service \"my-service\")",
            "kind Service (v1) is not supported",
        ],
    ),
    (
        "controllers/job.yaml",
        &["kind Job (batch/v1) is not supported"],
    ),
    (
        "configmap/immutable-configmap.yaml",
        &["kind ConfigMap (v1) is not supported"],
    ),
    (
        "pods/config/example-redis-config.yaml",
        &["kind ConfigMap (v1) is not supported"],
    ),
    (
        "application/nginx-app.yaml",
        &[
            "document 1 (Service \"my-nginx-svc\")",
            "kind Service (v1) is not supported",
        ],
    ),
    (
        "pods/pod-single-configmap-env-variable.yaml",
        &["spec.containers[0].env[0].valueFrom: "],
    ),
    (
        "pods/multi-container/shared-volume.yaml",
        &[
            "spec.volumes: ",
            "spec.containers[0].volumeMounts: ",
            "spec.initContainers: ",
        ],
    ),
    (
        "pods/multi-container/localhost.yaml",
        &["spec.initContainers: "],
    ),
    (
        "pods/multi-container/resources.yaml",
        &["spec.initContainers: "],
    ),
    (
        "pods/restart-policy/restart-all-containers.yaml",
        &[
            "spec.initContainers: ",
            "spec.initContainers[1].restartPolicy: ",
            "spec.initContainers[1].restartPolicyRules: ",
        ],
    ),
    (
        "pods/pod-with-node-affinity.yaml",
        &["spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution: "],
    ),
    (
        "application/simple_deployment.yaml",
        &["spec.minReadySeconds: minReadySeconds has no effect"],
    ),
    (
        "pods/probe/exec-liveness.yaml",
        &[
            "spec.containers[0].livenessProbe: livenessProbe has no effect yet: the probe will not run",
        ],
    ),
    (
        "pods/probe/http-liveness.yaml",
        &[
            "spec.containers[0].livenessProbe: livenessProbe has no effect yet: the probe will not run",
        ],
    ),
    (
        "pods/lifecycle-events.yaml",
        &[
            "spec.containers[0].lifecycle: lifecycle has no effect yet",
            "hooks will not run",
        ],
    ),
];

/// The groups from SOURCES.md: each `| \`file\` |` row under an Accept, Accept
/// with a warning, or Reject heading.
fn groups() -> BTreeMap<String, Group> {
    let sources = Path::new(CORPUS).join("SOURCES.md");
    let text =
        std::fs::read_to_string(&sources).unwrap_or_else(|e| panic!("{}: {e}", sources.display()));
    let mut group = None;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            group = match heading.trim() {
                "Accept" => Some(Group::Accept),
                "Accept with a warning" => Some(Group::Warn),
                "Reject" => Some(Group::Reject),
                _ => None,
            };
        } else if let (Some(g), Some(rest)) = (group, line.strip_prefix("| `")) {
            let file = rest.split('`').next().unwrap_or_default();
            assert!(
                out.insert(file.to_owned(), g).is_none(),
                "{file} listed twice"
            );
        }
    }
    assert!(out.len() > 30, "SOURCES.md lists only {} files", out.len());
    out
}

fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.is_dir() {
            corpus_files(&path, out);
        } else if path.file_name().is_some_and(|n| n != "SOURCES.md") {
            out.push(path);
        }
    }
}

fn lines(diagnostics: &[flotilla::api::Diagnostic]) -> Vec<String> {
    diagnostics.iter().map(ToString::to_string).collect()
}

fn check(name: &str, group: Group, report: &FileReport) -> Result<(), String> {
    let errors = lines(&report.errors);
    let warnings = lines(&report.warnings);
    let expected = EXPECTED.iter().find(|(f, _)| *f == name).map(|(_, e)| *e);
    let require = |what: &[String], kind: &str| -> Result<(), String> {
        let needles =
            expected.ok_or(format!("{name}: add to EXPECTED what its {kind} must name"))?;
        for needle in needles {
            if !what.iter().any(|l| l.contains(needle)) {
                return Err(format!("{name}: no {kind} contains {needle:?}: {what:#?}"));
            }
        }
        Ok(())
    };
    match group {
        Group::Accept => {
            if !errors.is_empty() || !warnings.is_empty() || report.objects.is_empty() {
                return Err(format!(
                    "{name}: should be accepted silently: {errors:#?} {warnings:#?}"
                ));
            }
        }
        Group::Warn => {
            if !errors.is_empty() || report.objects.is_empty() || warnings.is_empty() {
                return Err(format!(
                    "{name}: should be accepted with a warning: {errors:#?} {warnings:#?}"
                ));
            }
            require(&warnings, "warning")?;
            if let Some(w) = warnings
                .iter()
                .find(|w| !w.contains("has no effect") && !w.contains("will not run"))
            {
                return Err(format!(
                    "{name}: warning does not say it has no effect: {w}"
                ));
            }
        }
        Group::Reject => {
            if errors.is_empty() || !report.objects.is_empty() {
                return Err(format!(
                    "{name}: should be refused whole: {errors:#?}, {} objects",
                    report.objects.len()
                ));
            }
            require(&errors, "error")?;
        }
    }
    Ok(())
}

#[test]
fn every_example_lands_in_its_group() {
    let groups = groups();
    let mut files = Vec::new();
    corpus_files(Path::new(CORPUS), &mut files);
    files.sort();
    let mut failures = Vec::new();
    let mut seen = Vec::new();
    for path in &files {
        let name = path
            .strip_prefix(CORPUS)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned();
        seen.push(name.clone());
        let Some(&group) = groups.get(&name) else {
            failures.push(format!(
                "{name} is not listed in SOURCES.md: classify it as accept, warn or reject"
            ));
            continue;
        };
        if let Err(e) = check(&name, group, &load_file(path)) {
            failures.push(e);
        }
    }
    for listed in groups.keys() {
        if !seen.contains(listed) {
            failures.push(format!("{listed} is listed in SOURCES.md but missing"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn objects(name: &str) -> Vec<Object> {
    let report = load_file(&Path::new(CORPUS).join(name));
    assert!(report.is_valid(), "{name}: {:#?}", lines(&report.errors));
    report.objects.into_iter().map(|o| o.object).collect()
}

fn pod(name: &str) -> flotilla::api::Pod {
    match objects(name).as_slice() {
        [Object::Pod(p)] => p.clone(),
        other => panic!("{name}: expected one Pod, got {other:#?}"),
    }
}

fn deployment(name: &str) -> flotilla::api::Deployment {
    match objects(name).as_slice() {
        [Object::Deployment(d)] => d.clone(),
        other => panic!("{name}: expected one Deployment, got {other:#?}"),
    }
}

#[test]
fn accepted_examples_mean_what_kubernetes_means() {
    let p = pod("pods/commands.yaml");
    assert_eq!(p.spec.restart_policy, RestartPolicy::OnFailure);
    assert_eq!(p.spec.containers[0].command, ["printenv"]);
    assert_eq!(p.spec.containers[0].args, ["HOSTNAME", "KUBERNETES_PORT"]);

    let env = resolve_env(&pod("pods/inject/dependent-envars.yaml").spec.containers[0].env);
    let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(
        get("UNCHANGED_REFERENCE").as_deref(),
        Some("$(PROTOCOL)://172.17.0.1:80")
    );
    assert_eq!(
        get("SERVICE_ADDRESS").as_deref(),
        Some("https://172.17.0.1:80")
    );

    let p = pod("pods/resource/cpu-request-limit.yaml");
    assert_eq!(p.metadata.namespace, "cpu-example");
    let r = &p.spec.containers[0].resources;
    assert_eq!(r.requests.cpu.as_ref().map(|q| q.millis()), Some(500));
    assert_eq!(r.limits.cpu.as_ref().map(|q| q.millis()), Some(1000));

    let p = pod("pods/qos/qos-pod.yaml");
    let r = &p.spec.containers[0].resources;
    assert_eq!(r.requests, r.limits);

    let pods = objects("pods/pod-rs.yaml");
    let names: Vec<&str> = pods.iter().map(Object::name).collect();
    assert_eq!(names, ["pod1", "pod2"]);

    assert_eq!(
        pod("pods/pod-nginx-specific-node.yaml").spec.node_name,
        "foo-node"
    );
    let p = pod("pods/pod-nginx.yaml");
    assert_eq!(
        p.spec.node_selector.get("disktype").map(String::as_str),
        Some("ssd")
    );
    let p = pod("pods/pod-with-toleration.yaml");
    assert_eq!(p.spec.tolerations.len(), 1);
    let p = pod("pods/pod-nginx-required-affinity.yaml");
    let required = p
        .spec
        .affinity
        .and_then(|a| a.node_affinity)
        .and_then(|n| n.required_during_scheduling_ignored_during_execution);
    assert_eq!(required.map(|r| r.node_selector_terms.len()), Some(1));

    assert_eq!(
        deployment("application/update_deployment.yaml")
            .spec
            .replicas,
        1
    );
    assert_eq!(
        deployment("application/deployment-scale.yaml")
            .spec
            .replicas,
        4
    );
    assert_eq!(
        deployment("controllers/nginx-deployment.yaml")
            .spec
            .replicas,
        3
    );
    let mongo = deployment("application/mongodb/mongo-deployment.yaml");
    assert_eq!(
        mongo
            .metadata
            .labels
            .get("app.kubernetes.io/name")
            .map(String::as_str),
        Some("mongo")
    );
    assert_eq!(
        mongo.spec.template.spec.containers[0].args,
        ["--bind_ip", "0.0.0.0"]
    );
}

#[test]
fn sample_manifests_are_accepted_silently() {
    let mut files = Vec::new();
    corpus_files(Path::new(ASSETS), &mut files);
    assert!(!files.is_empty(), "no files in {ASSETS}");
    for path in files {
        let report = load_file(&path);
        assert!(
            report.is_valid() && report.warnings.is_empty() && !report.objects.is_empty(),
            "{}: {:#?} {:#?}",
            path.display(),
            lines(&report.errors),
            lines(&report.warnings)
        );
    }
}
