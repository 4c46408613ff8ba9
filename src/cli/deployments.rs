//! The deployment verbs: `get deployments`, `describe deployment`, `scale`,
//! `rollout status|undo` and `delete deployment`. Deployments live in the
//! cluster's replicated store; their pods are counted from what the agents
//! report. A verb that changes one also makes sure it is reconciled (see
//! [`super::control`]).

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::json;

use super::control::{Control, reconcile_until, with_control};
use super::get::{DEFAULT_TIMEOUT, OutputFormat, parse_timeout};
use super::table::{GET_PADDING, age, align};
use crate::api::deployment::Deployment;
use crate::config::paths::Dirs;
use crate::controller::run::ControllerOptions;
use crate::controller::status::{DeploymentCounts, counts};
use crate::controller::world::{KIND_DEPLOYMENT, World};
use crate::controller::{naming, ops};

/// When a deployment was first applied (flotilla's stand-in for
/// `metadata.creationTimestamp`).
pub use crate::controller::ops::CREATED_ANNOTATION;

#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    /// `deployment` (deploy) or `deployment/NAME`.
    pub resource: String,
    pub name: Option<String>,
    #[arg(long)]
    pub replicas: i32,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct RolloutArgs {
    /// `status` or `undo`.
    pub action: RolloutAction,
    /// `deployment` (deploy) or `deployment/NAME`.
    pub resource: String,
    pub name: Option<String>,
    /// undo: the revision to go back to (default: the previous one).
    #[arg(long = "to-revision")]
    pub to_revision: Option<u64>,
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// status: how long to wait for the rollout.
    #[arg(long, default_value = "5m", value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutAction {
    Status,
    Undo,
}

/// `deployment NAME`, `deploy NAME` or `deployment/NAME`, as kubectl takes them.
pub fn deployment_name(resource: &str, name: Option<&str>) -> anyhow::Result<String> {
    let (kind, inline) = match resource.split_once('/') {
        Some((kind, name)) => (kind, Some(name)),
        None => (resource, None),
    };
    if !matches!(
        kind.to_ascii_lowercase().as_str(),
        "deployment" | "deployments" | "deploy" | "deployments.apps" | "deployment.apps"
    ) {
        bail!("the server doesn't have a resource type {kind:?} here: use deployment NAME");
    }
    match (inline, name) {
        (Some(n), None) | (None, Some(n)) if !n.is_empty() => Ok(n.to_string()),
        (Some(_), Some(_)) => bail!("give the name once: deployment/NAME or deployment NAME"),
        _ => bail!("a deployment name is required: deployment NAME"),
    }
}

/// The stored deployment, or kubectl's NotFound.
async fn stored(control: &Control, namespace: &str, name: &str) -> anyhow::Result<Deployment> {
    let record = control
        .store()
        .get(KIND_DEPLOYMENT, namespace, name)
        .await?
        .and_then(|r| r.object)
        .with_context(|| {
            format!("deployments.apps {name:?} not found in namespace {namespace:?}")
        })?;
    Ok(serde_json::from_value(record)?)
}

fn find<'a>(world: &'a World, namespace: &str, name: &str) -> Option<&'a Deployment> {
    world
        .deployments
        .iter()
        .map(|s| &s.deployment)
        .find(|d| d.metadata.namespace == namespace && d.metadata.name == name)
}

/// `get deployments [NAME] [-n NS|-A] [-o wide|json]`.
pub fn get(
    name: Option<&str>,
    namespace: Option<&str>,
    output: Option<OutputFormat>,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    with_control(
        cluster,
        dirs,
        timeout,
        ControllerOptions::default(),
        async |control| {
            let world = control.controller.read_world().await?;
            let mut rows: Vec<(&Deployment, DeploymentCounts)> = world
                .deployments
                .iter()
                .map(|s| &s.deployment)
                .filter(|d| namespace.is_none_or(|ns| d.metadata.namespace == ns))
                .filter(|d| name.is_none_or(|n| d.metadata.name == n))
                .map(|d| (d, counts(&world, d)))
                .collect();
            rows.sort_by(|a, b| {
                (&a.0.metadata.namespace, &a.0.metadata.name)
                    .cmp(&(&b.0.metadata.namespace, &b.0.metadata.name))
            });
            if rows.is_empty() {
                if let Some(name) = name {
                    bail!(
                        "deployments.apps {name:?} not found in namespace {:?}",
                        namespace.unwrap_or("default")
                    );
                }
                match namespace {
                    Some(ns) => eprintln!("No resources found in {ns} namespace."),
                    None => eprintln!("No resources found"),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let text = match output {
                Some(OutputFormat::Json) => deployments_json(&rows, name.is_some()),
                format => deployments_table(
                    &rows,
                    namespace.is_none(),
                    format == Some(OutputFormat::Wide),
                ),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        },
    )
}

fn deployments_table(
    rows: &[(&Deployment, DeploymentCounts)],
    all_namespaces: bool,
    wide: bool,
) -> String {
    let now = Utc::now();
    let mut text = String::new();
    if all_namespaces {
        text.push_str("NAMESPACE\t");
    }
    text.push_str("NAME\tREADY\tUP-TO-DATE\tAVAILABLE\tAGE\t");
    if wide {
        text.push_str("CONTAINERS\tIMAGES\tSELECTOR\t");
    }
    text.push('\n');
    for (d, c) in rows {
        if all_namespaces {
            let _ = write!(text, "{}\t", d.metadata.namespace);
        }
        let created = d
            .metadata
            .annotations
            .get(CREATED_ANNOTATION)
            .and_then(|t| t.parse().ok());
        let _ = write!(
            text,
            "{}\t{}/{}\t{}\t{}\t{}\t",
            d.metadata.name,
            c.ready,
            c.replicas,
            c.updated,
            c.available,
            age(created, now)
        );
        if wide {
            let containers = &d.spec.template.spec.containers;
            let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
            let images: Vec<&str> = containers.iter().map(|c| c.image.as_str()).collect();
            let selector: Vec<String> = d
                .spec
                .selector
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = write!(
                text,
                "{}\t{}\t{}\t",
                names.join(","),
                images.join(","),
                selector.join(",")
            );
        }
        text.push('\n');
    }
    align(&text.replace("\t\n", "\n"), GET_PADDING)
}

/// Kubernetes' shape: the object with a `status` of replica counts.
fn deployments_json(rows: &[(&Deployment, DeploymentCounts)], single: bool) -> String {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|(d, c)| {
            let mut value = serde_json::to_value(d).unwrap_or_default();
            value["status"] = json!({
                "replicas": c.current,
                "updatedReplicas": c.updated,
                "readyReplicas": c.ready,
                "availableReplicas": c.available,
                "unavailableReplicas": c.current.saturating_sub(c.available),
            });
            value
        })
        .collect();
    let out = if single && items.len() == 1 {
        items[0].clone()
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": items})
    };
    let mut text = serde_json::to_string_pretty(&out).unwrap_or_default();
    text.push('\n');
    text
}

/// `scale deployment NAME --replicas N`.
pub fn scale(
    args: &ScaleArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let name = deployment_name(&args.resource, args.name.as_deref())?;
    if args.replicas < 0 {
        bail!("--replicas must be 0 or more, not {}", args.replicas);
    }
    let namespace = args.namespace.clone();
    with_control(
        cluster,
        dirs,
        args.timeout,
        ControllerOptions::default(),
        async |control| {
            let replicas = i64::from(args.replicas);
            ops::scale(control.store(), &namespace, &name, |_| replicas).await?;
            println!("deployment.apps/{name} scaled");
            let outcome =
                reconcile_until(control, Duration::from_secs(30), true, |_| false).await?;
            for error in &outcome.errors {
                eprintln!("warning: {error}");
            }
            control
                .controller
                .deletions_sent(Duration::from_secs(2))
                .await;
            Ok(ExitCode::SUCCESS)
        },
    )
}

/// `rollout status|undo deployment NAME`.
pub fn rollout(
    args: &RolloutArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let name = deployment_name(&args.resource, args.name.as_deref())?;
    let namespace = args.namespace.clone();
    let connect = parse_timeout(DEFAULT_TIMEOUT).unwrap_or(Duration::from_secs(10));
    with_control(
        cluster,
        dirs,
        connect,
        ControllerOptions::default(),
        async |control| match args.action {
            RolloutAction::Status => rollout_status(control, &namespace, &name, args.timeout).await,
            RolloutAction::Undo => rollout_undo(control, &namespace, &name, args.to_revision).await,
        },
    )
}

async fn rollout_status(
    control: &mut Control,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    stored(control, namespace, name).await?;
    let mut last = String::new();
    let outcome = reconcile_until(control, timeout, false, |world| {
        let Some(d) = find(world, namespace, name) else {
            return false;
        };
        let c = counts(world, d);
        let line = if c.rolled_out() {
            return true;
        } else if c.updated < c.replicas {
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} out of {} new replicas have been updated...",
                c.updated, c.replicas
            )
        } else if c.current > c.updated {
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
                c.current - c.updated
            )
        } else {
            format!(
                "Waiting for deployment {name:?} rollout to finish: {} of {} updated replicas are available...",
                c.updated_available, c.replicas
            )
        };
        if line != last {
            println!("{line}");
            last = line;
        }
        false
    })
    .await?;
    if !outcome.done {
        bail!("timed out after {timeout:?} waiting for deployment {name:?} to roll out");
    }
    println!("deployment {name:?} successfully rolled out");
    Ok(ExitCode::SUCCESS)
}

async fn rollout_undo(
    control: &mut Control,
    namespace: &str,
    name: &str,
    to_revision: Option<u64>,
) -> anyhow::Result<ExitCode> {
    let world = control.controller.read_world().await?;
    let deployment = find(&world, namespace, name).with_context(|| {
        format!("deployments.apps {name:?} not found in namespace {namespace:?}")
    })?;
    let current = naming::template_hash(&deployment.spec.template);
    let mut history: Vec<_> = world
        .revisions
        .iter()
        .filter(|r| r.namespace == namespace && r.deployment == name)
        .collect();
    history.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let target = match to_revision {
        Some(n) => history.iter().find(|r| r.revision == n).with_context(|| {
            format!("unable to find the specified revision {n} of deployment {name:?}")
        })?,
        None => history
            .iter()
            .find(|r| r.hash != current)
            .with_context(|| {
                format!("no rollout history found for deployment {name:?}: nothing to go back to")
            })?,
    };
    if target.hash == current {
        println!(
            "deployment.apps/{name} skipped rollback (current template already matches revision {})",
            target.revision
        );
        return Ok(ExitCode::SUCCESS);
    }
    let template = serde_json::to_value(&target.template)?;
    control
        .store()
        .update(KIND_DEPLOYMENT, namespace, name, |current| {
            let mut object = current
                .cloned()
                .ok_or_else(|| format!("deployments.apps {name:?} was deleted meanwhile"))?;
            object["spec"]["template"] = template.clone();
            Ok(object)
        })
        .await?;
    println!("deployment.apps/{name} rolled back");
    let outcome = reconcile_until(control, Duration::from_secs(30), true, |_| false).await?;
    for error in &outcome.errors {
        eprintln!("warning: {error}");
    }
    control
        .controller
        .deletions_sent(Duration::from_secs(2))
        .await;
    Ok(ExitCode::SUCCESS)
}

/// `delete deployment NAME`: the deployment goes from the store, then its
/// pods (this process reconciles until they are gone when no controller runs).
pub fn delete(
    namespace: &str,
    name: &str,
    timeout: Duration,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    with_control(
        cluster,
        dirs,
        timeout,
        ControllerOptions::default(),
        async |control| {
            if !control
                .store()
                .delete(KIND_DEPLOYMENT, namespace, name)
                .await?
            {
                bail!("deployments.apps {name:?} not found in namespace {namespace:?}");
            }
            println!("deployment.apps {name:?} deleted");
            let outcome = reconcile_until(control, Duration::from_secs(120), false, |world| {
                !world.nodes.iter().flat_map(|n| n.pods.iter()).any(|r| {
                    r.pod.metadata.namespace == namespace && naming::owner(&r.pod) == Some(name)
                })
            })
            .await?;
            for error in &outcome.errors {
                eprintln!("warning: {error}");
            }
            if !outcome.done {
                eprintln!(
                    "warning: some of its pods are still stopping; `flotilla get pods` shows them"
                );
            }
            Ok(ExitCode::SUCCESS)
        },
    )
}
