//! `flotilla apply -f FILE|DIR [--wait] [--dry-run]`: loads and validates
//! manifests, writes them to the cluster's replicated store (deployments as
//! they are; pods as pending until the scheduler places them) and makes sure
//! they are reconciled: by the lease holder if one runs, else by this
//! command, which takes the lease while it runs. `--dry-run` writes nothing
//! and shows where the scheduler would place each pod, and why. `--wait`
//! returns once every pod applied runs (deployments rolled out).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use super::control::{Control, reconcile_until, with_control};
use super::get::{DEFAULT_TIMEOUT, parse_timeout};
use crate::api::manifest::{LoadReport, LoadedObject, Object, load_paths};
use crate::config::paths::{Dirs, cluster_file_path};
use crate::controller::plan::{Action, PlanOptions, SCHEDULING_ANNOTATION, available, plan};
use crate::controller::run::ControllerOptions;
use crate::controller::status::counts;
use crate::controller::world::{DeploymentState, PendingPod, World};
use crate::controller::{naming, ops};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A manifest file or a directory of them (YAML or JSON); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Write nothing: validate, and show where each pod would be placed and why.
    #[arg(long)]
    pub dry_run: bool,
    /// Return once every pod applied is running (deployments rolled out).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// How long to wait for nodes to answer.
    #[arg(long = "connect-timeout", default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub connect_timeout: Duration,
}

pub fn run(args: &ApplyArgs, cluster: Option<PathBuf>, dirs: &Dirs) -> anyhow::Result<ExitCode> {
    let report = load_paths(&args.files);
    let mut err = std::io::stderr().lock();
    print_problems(&report, &mut err)?;
    let code = exit_code(&report, &mut err)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    drop(err);
    let objects: Vec<Object> = report.objects().map(|o| o.object.clone()).collect();
    if args.dry_run && !cluster_file_path(cluster.clone(), dirs).exists() {
        // Nothing to place on: validate only, as `kubectl apply --dry-run=client`.
        for loaded in report.objects() {
            println!("{}", describe(loaded));
        }
        eprintln!("note: no cluster file, so no placement is shown; `flotilla demo up` makes one");
        return Ok(ExitCode::SUCCESS);
    }
    with_control(
        cluster,
        dirs,
        args.connect_timeout,
        ControllerOptions::default(),
        async |control| {
            if args.dry_run {
                dry_run(control, &objects).await
            } else {
                apply(control, &objects, args).await
            }
        },
    )
}

async fn apply(
    control: &mut Control,
    objects: &[Object],
    args: &ApplyArgs,
) -> anyhow::Result<ExitCode> {
    let world = control.controller.read_world().await?;
    for object in objects {
        let verdict = match object {
            Object::Pod(pod) => ops::write_pod(control.store(), &world, pod).await?,
            Object::Deployment(d) => ops::write_deployment(control.store(), d).await?,
        };
        println!("{}/{} {verdict}", resource(object), object.name());
    }
    let outcome = reconcile_until(control, args.timeout, !args.wait, |world| {
        objects.iter().all(|o| settled(world, o))
    })
    .await?;
    for line in placements(objects, &outcome.actions) {
        println!("{line}");
    }
    if let Some(holder) = &outcome.other_holder {
        tracing::info!("reconciled by the lease holder {holder}");
    }
    for error in &outcome.errors {
        eprintln!("warning: {error}");
    }
    if args.wait && !outcome.done {
        let world = control.controller.read_world().await?;
        let waiting: Vec<String> = objects
            .iter()
            .filter(|o| !settled(&world, o))
            .map(|o| format!("{}/{}", resource(o), o.name()))
            .collect();
        bail!(
            "timed out after {:?} waiting for {} to run; see `flotilla describe` for why",
            args.timeout,
            waiting.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn resource(object: &Object) -> &'static str {
    match object {
        Object::Pod(_) => "pod",
        Object::Deployment(_) => "deployment.apps",
    }
}

/// A pod is settled once it runs ready (or has completed); a deployment
/// once rolled out.
fn settled(world: &World, object: &Object) -> bool {
    match object {
        Object::Pod(pod) => world
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter())
            .find(|r| {
                r.pod.metadata.namespace == pod.metadata.namespace
                    && r.pod.metadata.name == pod.metadata.name
            })
            .is_some_and(|r| {
                available(&r.status) || r.status.phase == crate::api::status::PodPhase::Succeeded
            }),
        Object::Deployment(d) => counts(world, d).rolled_out(),
    }
}

/// What happened to the pods of `objects`, from the passes' actions.
fn placements(objects: &[Object], actions: &[Action]) -> Vec<String> {
    let mut lines = Vec::new();
    for action in actions {
        let (pod, text) = match action {
            Action::Bind { pod, node, .. } => (pod, format!("scheduled to {node}")),
            Action::Pend { pod, message } => (pod, format!("Pending: {message}")),
            _ => continue,
        };
        let ours = objects.iter().any(|o| match o {
            Object::Pod(p) => {
                p.metadata.namespace == pod.metadata.namespace
                    && p.metadata.name == pod.metadata.name
            }
            Object::Deployment(d) => {
                d.metadata.namespace == pod.metadata.namespace
                    && naming::owner(pod) == Some(d.metadata.name.as_str())
            }
        });
        if ours {
            lines.push(format!("pod/{} {text}", pod.metadata.name));
        }
    }
    lines
}

/// Plans as if the objects were applied, and shows each decision in full.
async fn dry_run(control: &mut Control, objects: &[Object]) -> anyhow::Result<ExitCode> {
    let mut world = control.controller.read_world().await?;
    for object in objects {
        match object {
            Object::Pod(pod) => world.pending.push(PendingPod {
                pod: pod.clone(),
                status: Default::default(),
            }),
            Object::Deployment(d) => {
                world.deployments.retain(|s| {
                    !(s.deployment.metadata.namespace == d.metadata.namespace
                        && s.deployment.metadata.name == d.metadata.name)
                });
                world.deployments.push(DeploymentState {
                    deployment: d.clone(),
                    generation: 0,
                });
            }
        }
        println!(
            "{}/{} configured (dry run)",
            resource(object),
            object.name()
        );
    }
    let actions = plan(
        &world,
        &Default::default(),
        &PlanOptions::default(),
        &mut rand::rng(),
    );
    for action in &actions {
        match action {
            Action::Bind { pod, .. }
                if placements(objects, std::slice::from_ref(action)).len() == 1 =>
            {
                let why = pod
                    .metadata
                    .annotations
                    .get(SCHEDULING_ANNOTATION)
                    .map_or("", String::as_str);
                println!("\npod/{} (dry run): {why}", pod.metadata.name);
            }
            Action::Pend { pod, message }
                if placements(objects, std::slice::from_ref(action)).len() == 1 =>
            {
                println!("\npod/{} (dry run): Pending: {message}", pod.metadata.name);
            }
            _ => {}
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_problems(report: &LoadReport, err: &mut impl Write) -> std::io::Result<()> {
    for file in &report.files {
        for warning in &file.warnings {
            writeln!(err, "Warning: {warning}")?;
        }
        for error in &file.errors {
            writeln!(err, "error: {error}")?;
        }
    }
    Ok(())
}

fn exit_code(report: &LoadReport, err: &mut impl Write) -> std::io::Result<ExitCode> {
    let refused: Vec<_> = report.files.iter().filter(|f| !f.is_valid()).collect();
    if !refused.is_empty() {
        let errors: usize = refused.iter().map(|f| f.errors.len()).sum();
        writeln!(
            err,
            "error: {} refused ({errors} error{}): nothing in {} would be applied",
            plural(refused.len(), "file"),
            if errors == 1 { "" } else { "s" },
            if refused.len() == 1 { "it" } else { "them" },
        )?;
        return Ok(ExitCode::FAILURE);
    }
    if report.objects().next().is_none() {
        writeln!(err, "error: no objects passed to apply")?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deployment.apps/web created (dry run): namespace default, 3 replicas, image nginx:1.25`
fn describe(loaded: &LoadedObject) -> String {
    let (resource, replicas, spec) = match &loaded.object {
        Object::Pod(p) => ("pod", None, &p.spec),
        Object::Deployment(d) => (
            "deployment.apps",
            Some(d.spec.replicas),
            &d.spec.template.spec,
        ),
    };
    let mut detail = vec![format!("namespace {}", loaded.object.namespace())];
    if let Some(n) = replicas {
        detail.push(plural(usize::try_from(n).unwrap_or(0), "replica"));
    }
    let images: Vec<&str> = spec.containers.iter().map(|c| c.image.as_str()).collect();
    detail.push(format!(
        "{} {}",
        if images.len() == 1 { "image" } else { "images" },
        images.join(", ")
    ));
    format!(
        "{resource}/{} created (dry run): {}",
        loaded.object.name(),
        detail.join(", ")
    )
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
