//! `flotilla get`, `top` and `describe`: kubectl's read verbs. Each loads the
//! cluster file, connects to the nodes it needs through
//! [`super::connect::observe`] (every node for a list, only the named one for
//! `get nodes NAME` and `describe node NAME`, so one dead host never slows a
//! question about another), and prints a rendering from [`super::nodes`].
//!
//! `get nodes --watch` keeps the sessions open and prints rows as they
//! change, until Ctrl-C ([`super::connect::watch`]).
//!
//! As kubectl, a node that is down is a row in the answer, not a failure:
//! the exit code is 0 and stderr stays empty unless the command itself could
//! not run (no cluster file, an unknown node or resource, …).
//!
//! Resources are named as kubectl names them (`nodes`, `node`, `no`; `pods`,
//! `pod`, `po`; `deployments`, `deployment`, `deploy`), so the verbs are
//! shaped for deployments too, which answer "not yet" in this build.

use std::fmt;
use std::io::Write;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{nodes, pods};
use crate::agent::protocol::messages::StatsQuery;
use crate::cluster::ClusterSnapshot;
use crate::config::cluster_file::{self, ClusterConfig};
use crate::config::paths::{Dirs, cluster_file_path};

/// How long a read verb waits for nodes to become Ready or fail.
pub const DEFAULT_TIMEOUT: &str = "10s";

/// The kinds of object the read verbs know, by kubectl's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Nodes,
    Pods,
    Deployments,
}

impl Resource {
    const NAMES: &'static [(&'static str, Resource)] = &[
        ("nodes", Resource::Nodes),
        ("node", Resource::Nodes),
        ("no", Resource::Nodes),
        ("pods", Resource::Pods),
        ("pod", Resource::Pods),
        ("po", Resource::Pods),
        ("deployments", Resource::Deployments),
        ("deployment", Resource::Deployments),
        ("deploy", Resource::Deployments),
        ("deployments.apps", Resource::Deployments),
    ];

    fn plural(self) -> &'static str {
        match self {
            Resource::Nodes => "nodes",
            Resource::Pods => "pods",
            Resource::Deployments => "deployments",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.plural())
    }
}

impl FromStr for Resource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        Resource::NAMES
            .iter()
            .find(|(name, _)| *name == lower)
            .map(|&(_, r)| r)
            .ok_or_else(|| {
                format!(
                    "the cluster doesn't have a resource type {s:?}: use nodes (node, no), pods (pod, po) or deployments (deployment, deploy)"
                )
            })
    }
}

/// `-o` formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// More columns.
    Wide,
    /// A Kubernetes-style List, stable for scripts.
    Json,
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
pub fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration: write e.g. 10s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: use the units ms, s or m (e.g. 10s)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// What to list: nodes (node, no), pods (pod, po) or deployments (deploy).
    pub resource: Resource,
    /// Only this one.
    pub name: Option<String>,
    /// Output format: wide, or json.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
    /// The namespace of pods and deployments.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Pods and deployments of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// How long to wait for nodes to answer before showing them as they are.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
    /// After listing, keep the sessions open and print a node's row again
    /// whenever it changes, until interrupted (Ctrl-C).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

#[derive(clap::Args, Debug)]
pub struct TopArgs {
    /// What to show figures for: nodes (node, no) or pods (pod, po).
    pub resource: Resource,
    /// Only this one.
    pub name: Option<String>,
    /// The namespace of pods.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Pods of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// How long to wait for nodes to answer before showing them as they are.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// What to describe: node, pod or deployment.
    pub resource: Resource,
    /// Its name.
    pub name: String,
    /// The namespace of a pod or deployment.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// How long to wait for the node to answer before describing it as it is.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

pub(super) fn not_yet(verb: &str, resource: Resource) -> anyhow::Error {
    anyhow::anyhow!(
        "`flotilla {verb} {resource}` is not available in this build yet; `flotilla {verb} nodes` is"
    )
}

pub fn get(
    args: &GetArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    match args.resource {
        Resource::Nodes => {}
        Resource::Pods => return get_pods(args, cluster, dirs),
        Resource::Deployments => {
            let namespace = (!args.all_namespaces).then_some(args.namespace.as_str());
            return super::deployments::get(
                args.name.as_deref(),
                namespace,
                args.output,
                cluster,
                dirs,
                args.timeout,
            );
        }
    }
    if args.watch {
        return watch(args, cluster, dirs);
    }
    let snapshot = observe(cluster, dirs, args.name.as_deref(), args.timeout)?;
    let now = chrono::Utc::now();
    let text = match (args.output, &args.name) {
        (Some(OutputFormat::Json), Some(name)) => nodes::node_json(&snapshot, name, now)?,
        (Some(OutputFormat::Json), None) => nodes::nodes_json(&snapshot, now),
        (format, _) => nodes::nodes_table(&snapshot, now, format == Some(OutputFormat::Wide)),
    };
    print(&text)
}

/// `get pods [NAME]`: every node is asked, since any may run the pod. An
/// empty answer is kubectl's "No resources found" on stderr with exit 0; a
/// named pod that no node has is its NotFound error.
fn get_pods(
    args: &GetArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let namespaces = if args.all_namespaces {
        pods::Namespaces::All
    } else {
        pods::Namespaces::One(args.namespace.clone())
    };
    let config = load(cluster, dirs, None)?;
    let (snapshot, pending) =
        runtime()?.block_on(super::connect::observe_pods(&config, dirs, args.timeout))?;
    let now = chrono::Utc::now();
    let wide = args.output == Some(OutputFormat::Wide);
    let text = match (&args.name, args.output) {
        (Some(name), format) => {
            let found = if format == Some(OutputFormat::Json) {
                pods::pod_json(&snapshot, &pending, &args.namespace, name)
            } else {
                pods::pod_table(&snapshot, &pending, &args.namespace, name, now, wide)
            };
            found.ok_or_else(|| super::pod_verbs::not_found(&snapshot, &args.namespace, name))?
        }
        (None, Some(OutputFormat::Json)) => pods::pods_json(&snapshot, &pending, &namespaces),
        (None, _) => match pods::pods_table(&snapshot, &pending, &namespaces, now, wide) {
            Some(text) => text,
            None => {
                eprintln!("{}", pods::no_pods_message(&namespaces));
                return Ok(ExitCode::SUCCESS);
            }
        },
    };
    print(&text)
}

pub fn top(
    args: &TopArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    match args.resource {
        Resource::Nodes => {}
        Resource::Pods => return top_pods(args, cluster, dirs),
        Resource::Deployments => return Err(not_yet("top", args.resource)),
    }
    let snapshot = observe(cluster, dirs, args.name.as_deref(), args.timeout)?;
    print(&nodes::top_nodes(&snapshot))
}

/// `top pods`: every connected agent's pod figures.
fn top_pods(
    args: &TopArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    let namespaces = if args.all_namespaces {
        pods::Namespaces::All
    } else {
        pods::Namespaces::One(args.namespace.clone())
    };
    let stats =
        super::pod_verbs::with_fleet(cluster, dirs, args.timeout, async |fleet, snapshot| {
            let asks = snapshot
                .nodes
                .iter()
                .filter_map(|n| fleet.client(&n.name))
                .map(|client| async move { client.pod_stats(&StatsQuery::default()).await });
            let answers = futures_util::future::join_all(asks).await;
            Ok(answers
                .into_iter()
                .filter_map(Result::ok)
                .flat_map(|list| list.pods)
                .filter(|p| args.name.as_ref().is_none_or(|n| *n == p.name))
                .collect::<Vec<_>>())
        })?;
    match pods::top_pods(&stats, &namespaces) {
        Some(text) => print(&text),
        None => {
            eprintln!("{}", pods::no_pods_message(&namespaces));
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn describe(
    args: &DescribeArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    match args.resource {
        Resource::Nodes => {}
        Resource::Pods => {
            return super::describe::describe_pod(
                &args.namespace,
                &args.name,
                args.timeout,
                cluster,
                dirs,
            );
        }
        Resource::Deployments => {
            return super::describe::describe_deployment(
                &args.namespace,
                &args.name,
                args.timeout,
                cluster,
                dirs,
            );
        }
    }
    let snapshot = observe(cluster, dirs, Some(&args.name), args.timeout)?;
    print(&nodes::describe_node(
        &snapshot,
        &args.name,
        chrono::Utc::now(),
    )?)
}

/// `get nodes --watch`: the table, then rows as they change (see
/// [`nodes::NodesWatch`]) until interrupted or stdout goes away.
fn watch(
    args: &GetArgs,
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
) -> anyhow::Result<ExitCode> {
    if args.output == Some(OutputFormat::Json) {
        anyhow::bail!(
            "--watch prints tables: use it without -o json, or run `flotilla get nodes -o json` repeatedly"
        );
    }
    let wide = args.output == Some(OutputFormat::Wide);
    let config = load(cluster, dirs, args.name.as_deref())?;
    let mut watching: Option<nodes::NodesWatch> = None;
    let mut failed = None;
    runtime()?.block_on(super::connect::watch(
        &config,
        dirs,
        args.timeout,
        |snapshot| {
            let now = chrono::Utc::now();
            let text = match &mut watching {
                Some(watch) => watch.changed(snapshot, now),
                None => {
                    let (watch, text) = nodes::NodesWatch::start(snapshot, now, wide);
                    watching = Some(watch);
                    text
                }
            };
            if text.is_empty() {
                return std::ops::ControlFlow::Continue(());
            }
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => std::ops::ControlFlow::Continue(()),
                // The reader went away (`| head`): the watch is over.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                    std::ops::ControlFlow::Break(())
                }
                Err(e) => {
                    failed = Some(anyhow::Error::new(e).context("cannot write to stdout"));
                    std::ops::ControlFlow::Break(())
                }
            }
        },
    ))?;
    match failed {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// Loads the cluster file, narrows it to `only` (checked against the file
/// first, so a typo costs no connection), and observes those nodes.
fn observe(
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
    only: Option<&str>,
    wait: Duration,
) -> anyhow::Result<Arc<ClusterSnapshot>> {
    let config = load(cluster, dirs, only)?;
    runtime()?.block_on(super::connect::observe(&config, dirs, wait))
}

/// The cluster file, narrowed to `only`.
fn load(
    cluster: Option<std::path::PathBuf>,
    dirs: &Dirs,
    only: Option<&str>,
) -> anyhow::Result<ClusterConfig> {
    let path = cluster_file_path(cluster, dirs);
    let config = cluster_file::load(&path)?;
    Ok(match only {
        Some(name) => narrow(&config, name)?,
        None => config,
    })
}

/// One thread: a verb's sessions wait on the network almost all the time,
/// and a second worker only adds cross-thread wake-ups (a third of the CPU
/// of a 20-node watch).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The cluster with only node `name`, or an error naming the ones it has.
pub fn narrow(config: &ClusterConfig, name: &str) -> Result<ClusterConfig, nodes::NodeNotFound> {
    let node = config.node(name).ok_or_else(|| {
        nodes::NodeNotFound::new(name, config.nodes.iter().map(|n| n.name.as_str()))
    })?;
    Ok(ClusterConfig {
        nodes: vec![node.clone()],
        ..config.clone()
    })
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn print(text: &str) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_have_kubectls_names() {
        for name in ["nodes", "node", "no", "Nodes"] {
            assert_eq!(name.parse::<Resource>(), Ok(Resource::Nodes));
        }
        assert_eq!("po".parse::<Resource>(), Ok(Resource::Pods));
        assert_eq!("deploy".parse::<Resource>(), Ok(Resource::Deployments));
        let err = "services".parse::<Resource>().expect_err("unknown");
        assert!(
            err.contains("\"services\"") && err.contains("nodes (node, no)"),
            "{err}"
        );
        assert!(
            not_yet("get", Resource::Deployments)
                .to_string()
                .contains("`flotilla get deployments` is not available")
        );
    }

    #[test]
    fn timeouts_take_units() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_timeout("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_timeout("10h").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("-1s").is_err());
    }

    #[test]
    fn narrowing_to_an_unknown_node_names_the_known_ones() {
        let text = "[cluster]\nname = \"c\"\n[[nodes]]\nname = \"a\"\naddress = \"x\"\n[[nodes]]\nname = \"b\"\naddress = \"y\"\n";
        let config = cluster_file::parse(std::path::Path::new("c.toml"), text).expect("valid");
        assert_eq!(narrow(&config, "b").map(|c| c.nodes.len()), Ok(1));
        let err = narrow(&config, "z").expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "node \"z\" not found: the cluster has a, b; see `flotilla get nodes`"
        );
    }
}
