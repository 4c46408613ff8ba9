//! The loader end to end on manifest text: parsing, the pre-pass, defaults and
//! validation, and how each problem is reported.

use super::*;
use crate::api::deployment::{IntOrString, StrategyType};
use crate::api::pod::{Protocol, PullPolicy, RestartPolicy};

fn yaml(text: &str) -> FileReport {
    load_str(Path::new("test.yaml"), text, Format::Yaml)
}

fn errors(r: &FileReport) -> Vec<String> {
    r.errors.iter().map(ToString::to_string).collect()
}

fn warnings(r: &FileReport) -> Vec<String> {
    r.warnings.iter().map(ToString::to_string).collect()
}

fn assert_has(lines: &[String], needle: &str) {
    assert!(
        lines.iter().any(|l| l.contains(needle)),
        "no line contains {needle:?} in {lines:#?}"
    );
}

fn only_pod(r: &FileReport) -> &Pod {
    assert!(r.is_valid(), "{:#?}", errors(r));
    match r.objects.as_slice() {
        [
            LoadedObject {
                object: Object::Pod(p),
                ..
            },
        ] => p,
        other => panic!("expected one pod, got {other:#?}"),
    }
}

fn only_deployment(r: &FileReport) -> &Deployment {
    assert!(r.is_valid(), "{:#?}", errors(r));
    match r.objects.as_slice() {
        [
            LoadedObject {
                object: Object::Deployment(d),
                ..
            },
        ] => d,
        other => panic!("expected one deployment, got {other:#?}"),
    }
}

const MINIMAL_POD: &str = "
apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  containers:
  - name: web
    image: nginx
";

#[test]
fn kubernetes_defaults_are_applied() {
    let r = yaml(
        "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: web
    image: nginx:1.25
    ports: [{containerPort: 80}]
    resources:
      limits: {cpu: 500m, memory: 64Mi}
      requests: {cpu: 100m}
  - name: side
    image: 10.77.0.1:5000/demo/busybox
",
    );
    let pod = only_pod(&r);
    assert_eq!(pod.metadata.namespace, "default");
    assert_eq!(pod.spec.restart_policy, RestartPolicy::Always);
    assert_eq!(pod.spec.termination_grace_period_seconds, 30);
    let web = &pod.spec.containers[0];
    assert_eq!(web.image_pull_policy, Some(PullPolicy::IfNotPresent));
    assert_eq!(web.ports[0].protocol, Protocol::Tcp);
    assert_eq!(web.ports[0].host_port, 0);
    let requests = &web.resources.requests;
    assert_eq!(
        requests.cpu.as_ref().map(ToString::to_string).as_deref(),
        Some("100m")
    );
    // A limit without a request becomes the request.
    assert_eq!(
        requests.memory.as_ref().map(ToString::to_string).as_deref(),
        Some("64Mi")
    );
    assert_eq!(
        pod.spec.containers[1].image_pull_policy,
        Some(PullPolicy::Always)
    );
    assert!(r.warnings.is_empty());
}

#[test]
fn deployment_defaults() {
    let r = yaml(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      hostNetwork: true
      containers: [{name: web, image: nginx, ports: [{containerPort: 8080}]}]
",
    );
    let d = only_deployment(&r);
    assert_eq!(d.metadata.namespace, "shop");
    assert_eq!(d.spec.replicas, 1);
    assert_eq!(d.spec.strategy.strategy_type, StrategyType::RollingUpdate);
    let rolling = d.spec.strategy.rolling_update.clone().unwrap_or_default();
    assert_eq!(rolling.max_surge, Some(IntOrString::String("25%".into())));
    assert_eq!(
        rolling.max_unavailable,
        Some(IntOrString::String("25%".into()))
    );
    // hostNetwork publishes container ports on the node.
    assert_eq!(d.spec.template.spec.containers[0].ports[0].host_port, 8080);

    let r = yaml(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 0
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1}}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx}]}
",
    );
    let d = only_deployment(&r);
    assert_eq!(d.spec.replicas, 0);
    let rolling = d.spec.strategy.rolling_update.clone().unwrap_or_default();
    assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
    assert_eq!(
        rolling.max_unavailable,
        Some(IntOrString::String("25%".into()))
    );
}

#[test]
fn yaml_syntax_errors_give_line_and_column() {
    let r = yaml("apiVersion: v1\nkind: Pod\nspec:\n  containers: [\n    {name: a\n");
    let e = &r.errors[0];
    assert!(e.position.is_some(), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with("test.yaml: line ")
            && text.contains(", column ")
            && text.contains("YAML syntax error"),
        "{text}"
    );
    let r = yaml("a: 1\nb: [1, 2\nc: 3\n");
    assert_eq!(
        r.errors[0].position,
        Some(TextPosition { line: 3, column: 2 })
    );
    assert!(r.objects.is_empty());
}

#[test]
fn json_input() {
    let json = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
        "resources": {"requests": {"cpu": 0.5, "memory": 1e3}}}]}}"#;
    let r = load_str(Path::new("pod.json"), json, Format::Json);
    let pod = only_pod(&r);
    let requests = &pod.spec.containers[0].resources.requests;
    assert_eq!(requests.cpu.as_ref().map(|q| q.millis()), Some(500));
    assert_eq!(
        requests.memory.as_ref().map(ToString::to_string).as_deref(),
        Some("1k")
    );

    let r = load_str(
        Path::new("pod.json"),
        "{\"apiVersion\": \"v1\",\n \"kind\": }",
        Format::Json,
    );
    assert_eq!(
        r.errors[0].position,
        Some(TextPosition {
            line: 2,
            column: 10
        })
    );
    assert!(
        r.errors[0]
            .to_string()
            .starts_with("pod.json: line 2, column 10: JSON syntax error")
    );
    assert_eq!(Format::for_path(Path::new("x/a.json")), Format::Json);
    assert_eq!(Format::for_path(Path::new("x/a.yml")), Format::Yaml);
}

#[test]
fn multiple_documents_flow_style_and_empty_documents() {
    let r = yaml(&format!(
        "---\n{MINIMAL_POD}\n---\n---\n# nothing\n---\n{{apiVersion: v1, kind: Pod, metadata: {{name: two, }}, spec: {{containers: [{{name: c, image: busybox, }}]}}}}\n"
    ));
    assert!(r.is_valid(), "{:#?}", errors(&r));
    let names: Vec<(&str, usize)> = r
        .objects
        .iter()
        .map(|o| (o.object.name(), o.document))
        .collect();
    assert_eq!(names, [("web", 1), ("two", 2)]);
    let empty = yaml("# just a comment\n");
    assert!(empty.is_valid() && empty.objects.is_empty());
    assert_eq!(warnings(&empty), ["test.yaml: contains no objects"]);
}

#[test]
fn every_error_is_collected_with_file_document_path_and_value() {
    let r = yaml(
        "
apiVersion: v1
kind: Pod
metadata:
  name: Web_1
  namespace: My-NS
  labels: {app: bad value, -key: x}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: -1
  nodeName: Node_1
  nodeSelector: {disktype: ssd}
  containers:
  - name: Web
    image: ' nginx'
    env: [{name: 'A=B', value: x}, {name: ''}]
    ports:
    - {containerPort: 0}
    - {containerPort: 70000, hostPort: 8080, name: http}
    - {containerPort: 81, hostPort: 8080, name: http}
    resources:
      requests: {cpu: '2', memory: -1Mi}
      limits: {cpu: '1'}
  - name: Web
    image: ''
",
    );
    assert!(r.objects.is_empty());
    let e = errors(&r);
    let prefix = r#"test.yaml: document 1 (Pod "Web_1"): "#;
    for needle in [
        "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain",
        "metadata.namespace: Invalid value: \"My-NS\": a lowercase RFC 1123 label",
        "metadata.labels[app]: Invalid value: \"bad value\": a valid label",
        "metadata.labels: Invalid value: \"-key\": name part must consist",
        "spec.terminationGracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0",
        "spec.nodeName: Invalid value: \"Node_1\"",
        "spec.containers[0].name: Invalid value: \"Web\": a lowercase RFC 1123 label",
        "spec.containers[0].image: Invalid value: \" nginx\": must not have leading or trailing whitespace",
        "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name",
        "spec.containers[0].env[1].name: Required value",
        "spec.containers[0].ports[0].containerPort: Required value",
        "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        "spec.containers[0].ports[2].name: Duplicate value: \"http\"",
        "spec.containers[0].ports[2].hostPort: Duplicate value: \"8080/TCP\"",
        "spec.containers[0].resources.requests.memory: Invalid value: \"-1Mi\": must be greater than or equal to 0",
        "spec.containers[0].resources.requests.cpu: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        "spec.containers[1].name: Duplicate value: \"Web\"",
        "spec.containers[1].image: Required value",
    ] {
        assert_has(&e, &format!("{prefix}{needle}"));
    }
    assert_eq!(e.len(), 19, "{e:#?}");
}

#[test]
fn scheduling_rules() {
    let r = yaml(
        "
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers: [{name: web, image: nginx}]
  tolerations:
  - {key: a, operator: Exists, value: x}
  - {operator: Equal, value: x}
  - {key: b, effect: NoSchedule, tolerationSeconds: 10}
  - {key: c, value: 'not valid'}
  - {key: d, operator: Exists, effect: NoExecute, tolerationSeconds: 10}
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: a, operator: In}
          - {key: b, operator: Exists, values: [x]}
          - {key: c, operator: Gt, values: ['1', '2']}
          - {key: d, operator: Lt, values: [ten]}
          - {key: 'bad key', operator: DoesNotExist}
          matchFields:
          - {key: metadata.labels, operator: In, values: [a]}
          - {key: metadata.name, operator: Exists}
      preferredDuringSchedulingIgnoredDuringExecution:
      - {weight: 0, preference: {matchExpressions: [{key: a, operator: In, values: [x]}]}}
      - {weight: 101, preference: {}}
",
    );
    let e = errors(&r);
    for needle in [
        "spec.tolerations[0].value: Invalid value: \"x\": value must be empty when `operator` is 'Exists'",
        "spec.tolerations[1].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty",
        "spec.tolerations[2].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
        "spec.tolerations[3].value: Invalid value: \"not valid\"",
        "nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        "nodeSelectorTerms[0].matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        "nodeSelectorTerms[0].matchExpressions[2].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
        "nodeSelectorTerms[0].matchExpressions[3].values[0]: Invalid value: \"ten\": must be an integer",
        "nodeSelectorTerms[0].matchExpressions[4].key: Invalid value: \"bad key\"",
        "nodeSelectorTerms[0].matchFields[0].key: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\"",
        "nodeSelectorTerms[0].matchFields[1].operator: Invalid value: \"Exists\": not a valid selector operator",
        "preferredDuringSchedulingIgnoredDuringExecution[0].weight: Invalid value: 0: must be in the range 1-100",
        "preferredDuringSchedulingIgnoredDuringExecution[1].weight: Invalid value: 101: must be in the range 1-100",
    ] {
        assert_has(&e, needle);
    }
    assert_eq!(e.len(), 13, "{e:#?}");
}

#[test]
fn deployment_rules() {
    let r = yaml(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: -1
  selector: {matchLabels: {app: web}, matchExpressions: [{key: tier, operator: In}]}
  strategy: {type: Recreate, rollingUpdate: {maxSurge: 1}}
  template:
    metadata: {labels: {app: other}}
    spec:
      restartPolicy: OnFailure
      containers: [{name: web, image: nginx}]
",
    );
    let e = errors(&r);
    for needle in [
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0",
        "spec.selector.matchExpressions[0].values: Required value",
        "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`",
        "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\"",
        "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'",
    ] {
        assert_has(&e, needle);
    }
    assert_eq!(e.len(), 5, "{e:#?}");

    let r = yaml(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  strategy: {rollingUpdate: {maxSurge: 0, maxUnavailable: 0%}}
  template: {spec: {containers: [{name: web, image: nginx}]}}
",
    );
    let e = errors(&r);
    assert_has(&e, "spec.selector: Required value");
    assert_has(
        &e,
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0",
    );
    assert_eq!(
        e.len(),
        2,
        "a missing selector is not also reported empty: {e:#?}"
    );

    let r = yaml(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {}
  strategy: {rollingUpdate: {maxSurge: '10', maxUnavailable: 150%}}
  template: {metadata: {labels: {app: web}}, spec: {containers: [{name: web, image: nginx}]}}
",
    );
    let e = errors(&r);
    assert_has(
        &e,
        "spec.selector: Invalid value: {}: empty selector is invalid for deployment",
    );
    assert_has(
        &e,
        "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"10\": a valid percent string",
    );
    assert_has(
        &e,
        "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
    );
    assert_eq!(e.len(), 3, "{e:#?}");
}

#[test]
fn unknown_fields_are_typos() {
    let r = yaml(
        "
apiVersion: v1
kind: Pod
metadata: {name: web, lables: {a: b}}
spec:
  containers:
  - name: web
    image: nginx
    imagePullPolicyy: Always
",
    );
    assert_eq!(
        errors(&r),
        [
            r#"test.yaml: document 1 (Pod "web"): unknown field "metadata.lables" (did you mean "labels"?)"#,
            r#"test.yaml: document 1 (Pod "web"): unknown field "spec.containers[0].imagePullPolicyy" (did you mean "imagePullPolicy"?)"#,
        ]
    );
    assert_eq!(
        r.errors[1].path.as_deref(),
        Some("spec.containers[0].imagePullPolicyy")
    );
}

#[test]
fn other_kinds_refuse_the_whole_file() {
    let r = yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: svc}}\n---{MINIMAL_POD}"
    ));
    assert!(r.objects.is_empty(), "the Pod must not be applied alone");
    assert_eq!(
        errors(&r),
        [
            r#"test.yaml: document 1 (Service "svc"): kind Service (v1) is not supported: flotilla runs v1 Pod and apps/v1 Deployment"#
        ]
    );
    for (text, needle) in [
        (
            "apiVersion: apps/v1\nkind: Pod\n",
            "kind Pod (apps/v1) is not supported",
        ),
        (
            "apiVersion: v1\nkind: List\nitems: []\n",
            "kind List (v1) is not supported",
        ),
        ("kind: Pod\n", "apiVersion: Required value"),
        ("apiVersion: v1\n", "kind: Required value"),
        (
            "apiVersion: v1\nkind: 5\n",
            "kind: Invalid value: 5: must be a string",
        ),
        (
            "- a\n- b\n",
            "document 1: a manifest must be an object with apiVersion and kind, not a list",
        ),
    ] {
        assert_has(&errors(&yaml(text)), needle);
    }
}

#[test]
fn warnings_do_not_refuse() {
    let r = yaml(
        "
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, uid: abc}
spec:
  minReadySeconds: 5
  revisionHistoryLimit: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}, name: ignored}
    spec:
      dnsPolicy: ClusterFirst
      containers:
      - name: web
        image: nginx
        readinessProbe: {httpGet: {path: /, port: 80}}
        lifecycle: {preStop: {exec: {command: [sleep, '1']}}}
        resources: {requests: {memory: 100m}}
status: {replicas: 3}
",
    );
    let d = only_deployment(&r);
    assert_eq!(d.metadata.name, "web");
    let w = warnings(&r);
    let prefix = r#"test.yaml: document 1 (Deployment "web"): "#;
    for needle in [
        "metadata.uid: uid is set by the cluster and has no effect in a manifest",
        "spec.minReadySeconds: minReadySeconds has no effect yet",
        "spec.revisionHistoryLimit: revisionHistoryLimit has no effect yet",
        "spec.template.metadata.name: name has no effect in a pod template",
        "spec.template.spec.dnsPolicy: dnsPolicy has no effect",
        "spec.template.spec.containers[0].readinessProbe: readinessProbe has no effect yet: the probe will not run",
        "spec.template.spec.containers[0].lifecycle: lifecycle has no effect yet: the postStart and preStop hooks will not run",
        "spec.template.spec.containers[0].resources.requests.memory: fractional byte value \"100m\" is invalid, must be an integer",
        "status: status is set by the cluster",
    ] {
        assert_has(&w, &format!("{prefix}{needle}"));
    }
    assert_eq!(w.len(), 9, "{w:#?}");
}

/// Every supported field at once: accepted without a word, so the field table
/// and the typed structs agree; and the object serializes back as Kubernetes JSON.
#[test]
fn every_supported_field_round_trips() {
    let r = yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  annotations: {example.com/note: hello}
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
    matchExpressions: [{key: tier, operator: NotIn, values: [db]}]
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 10%}}
  template:
    metadata: {labels: {app: web}, annotations: {a: b}}
    spec:
      restartPolicy: Always
      terminationGracePeriodSeconds: 10
      nodeSelector: {disktype: ssd}
      nodeName: node1
      hostNetwork: false
      tolerations:
      - {key: dedicated, operator: Equal, value: web, effect: NoExecute, tolerationSeconds: 60}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions: [{key: cores, operator: Gt, values: ['2']}]
              matchFields: [{key: metadata.name, operator: In, values: [node1]}]
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 50
            preference: {matchExpressions: [{key: zone, operator: In, values: [a]}]}
      containers:
      - name: web
        image: nginx:1.25
        command: [nginx]
        args: [-g, daemon off;]
        workingDir: /srv
        imagePullPolicy: Never
        env: [{name: GREETING, value: hi}]
        ports: [{name: http, containerPort: 80, hostPort: 8080, protocol: UDP}]
        resources:
          requests: {cpu: 100m, memory: 64Mi}
          limits: {cpu: 1, memory: 128Mi}
"#,
    );
    assert!(
        r.is_valid() && r.warnings.is_empty(),
        "{:#?} {:#?}",
        errors(&r),
        warnings(&r)
    );
    let object = &r.objects[0].object;
    let json = serde_json::to_value(object).unwrap_or_default();
    let container = &json["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["imagePullPolicy"], "Never");
    assert_eq!(container["workingDir"], "/srv");
    assert_eq!(container["ports"][0]["containerPort"], 80);
    assert_eq!(container["resources"]["limits"]["cpu"], "1");
    assert_eq!(container["resources"]["requests"]["memory"], "64Mi");
    assert_eq!(json["apiVersion"], "apps/v1");
    assert_eq!(json["kind"], "Deployment");
    assert_eq!(
        json["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        "10%"
    );
    assert_eq!(
        json["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["key"],
        "metadata.name"
    );
    let back: Result<Object, _> = serde_json::from_value(json.clone());
    assert_eq!(back.ok().as_ref(), Some(object));
    // The serialized form is itself a valid manifest that loads to the same object.
    let again = load_str(Path::new("again.json"), &json.to_string(), Format::Json);
    assert!(
        again.is_valid() && again.warnings.is_empty(),
        "{:#?}",
        errors(&again)
    );
    assert_eq!(again.objects.first().map(|o| &o.object), Some(object));
}

#[test]
fn status_lines_and_duplicates() {
    let dir = tempfile::tempdir().ok();
    let Some(dir) = dir else {
        panic!("no temp dir")
    };
    let sub = dir.path().join("sub");
    let write = |p: &Path, text: &str| {
        if let Err(e) = std::fs::write(p, text) {
            panic!("{}: {e}", p.display());
        }
    };
    if let Err(e) = std::fs::create_dir(&sub) {
        panic!("{e}");
    }
    write(&dir.path().join("b.yaml"), MINIMAL_POD);
    write(&sub.join("a.yml"), MINIMAL_POD);
    write(&dir.path().join("c.json"), "{\"kind\": \"Pod\"}");
    write(&dir.path().join("notes.txt"), "not a manifest");
    let report = load_paths(&[dir.path().to_owned()]);
    let files: Vec<String> = report
        .files
        .iter()
        .map(|f| {
            f.file
                .strip_prefix(dir.path())
                .unwrap_or(&f.file)
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(files, ["b.yaml", "c.json", "sub/a.yml"]);
    assert!(
        report.files[0]
            .status_line()
            .ends_with("b.yaml: valid, 1 object")
    );
    assert!(
        report.files[1]
            .status_line()
            .contains("apiVersion: Required value")
    );
    assert!(report.has_errors());
    let dup = &report.files[2].warnings;
    assert_eq!(dup.len(), 1);
    assert!(dup[0].to_string().contains("also defined in"), "{}", dup[0]);
    assert_eq!(report.objects().count(), 2);

    let missing = load_paths(&[dir.path().join("nope.yaml")]);
    assert!(
        missing.files[0].errors[0]
            .to_string()
            .ends_with("nope.yaml: the path does not exist")
    );
    let empty_dir = dir.path().join("empty");
    if let Err(e) = std::fs::create_dir(&empty_dir) {
        panic!("{e}");
    }
    assert!(load_paths(&[empty_dir]).has_errors());
}
