//! `flotilla demo up`: builds the cluster, or reports the one already running.
//! The registry and its images come up on a second thread while the nodes
//! start, and the state file is saved after each step, so whatever happens,
//! `down` knows what to remove. A failed `up` takes down what it made.

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::time::{Duration, Instant};

use tracing::info;

use super::files::{
    cluster_file_text, sshd_config_text, write_atomically, write_cluster_file_if_ours,
};
use super::node::{NodeInitArgs, Stage};
use super::process::ProcessId;
use super::registry_server::wait_for_listener;
use super::state::{DemoState, NodeState, RegistryState};
use super::status::{StatusReport, status};
use super::{
    DemoError, DemoLayout, DemoSpec, down, images, keys, net, node, preflight, registry_server,
};

/// What `up` did.
#[derive(Debug)]
pub struct UpReport {
    /// False when the cluster was already up and nothing was changed.
    pub created: bool,
    pub status: StatusReport,
    /// The operator's default cluster file, when the demo wrote it.
    pub default_cluster_file: Option<PathBuf>,
    pub elapsed: Duration,
}

const VAR_LIB_FLOTILLA: &str = "/var/lib/flotilla";

pub fn up(spec: &DemoSpec, layout: &DemoLayout) -> Result<UpReport, DemoError> {
    let started = Instant::now();
    preflight::check()?;
    if let Some(existing) = DemoState::load(&layout.state_file())? {
        let report = status(layout)?;
        if report.is_healthy() {
            if existing.nodes.len() != usize::from(spec.nodes) {
                return Err(DemoError::SizeMismatch {
                    name: spec.name.clone(),
                    running: existing.nodes.len(),
                    asked: spec.nodes,
                });
            }
            return Ok(UpReport {
                created: false,
                status: report,
                default_cluster_file: None,
                elapsed: started.elapsed(),
            });
        }
        // Half there (an interrupted `up`, a reboot, a killed node): start clean.
        info!(demo = %spec.name, "demo cluster is degraded; taking it down before bringing it up");
        down(&spec.name, layout)?;
    }
    match build(spec, layout) {
        Ok(default_cluster_file) => Ok(UpReport {
            created: true,
            status: status(layout)?,
            default_cluster_file,
            elapsed: started.elapsed(),
        }),
        Err(err) => {
            // Leave nothing half-made behind; the first error is the one to report.
            if let Err(cleanup) = down(&spec.name, layout) {
                tracing::warn!(error = %cleanup, "cleaning up after a failed demo up");
            }
            Err(err)
        }
    }
}

fn build(spec: &DemoSpec, layout: &DemoLayout) -> Result<Option<PathBuf>, DemoError> {
    for dir in [&layout.state_dir, &layout.config_dir] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| DemoError::io(dir, e))?;
    }
    let client_key = keys::load_or_create(
        &layout.client_key(),
        &format!("flotilla-demo-{}", spec.name),
    )?;
    write_atomically(
        &layout.authorized_keys(),
        format!("{}\n", keys::public_line(client_key.public_key())).as_bytes(),
        0o600,
    )?;

    let created_var_lib_flotilla = !Path::new(VAR_LIB_FLOTILLA).exists();
    if created_var_lib_flotilla {
        fs::create_dir_all(VAR_LIB_FLOTILLA)
            .map_err(|e| DemoError::io(Path::new(VAR_LIB_FLOTILLA), e))?;
    }
    let mut state = DemoState {
        name: spec.name.clone(),
        bridge: spec.bridge(),
        gateway: spec.gateway(),
        registry: RegistryState {
            address: spec.registry_address(),
            process: None,
        },
        nodes: Vec::new(),
        created_var_lib_flotilla,
        cluster_file: layout.cluster_file(),
    };
    let state_file = layout.state_file();
    state.save(&state_file)?;

    net::ip_batch(
        &[
            format!("link add {} type bridge", spec.bridge()),
            format!("addr add {}/24 dev {}", spec.gateway(), spec.bridge()),
            format!("link set {} up", spec.bridge()),
        ],
        None,
    )?;

    std::thread::scope(|scope| {
        let registry = scope.spawn(|| start_registry_with_images(spec, layout));
        let nodes = start_nodes(spec, layout, &mut state, &state_file);
        let registry = registry.join().unwrap_or_else(|_| {
            Err(DemoError::Spawn {
                what: "the registry".into(),
                reason: "its thread panicked".into(),
            })
        });
        // Record the registry even when the nodes failed, so `down` stops it.
        if let Ok(process) = &registry {
            state.registry.process = Some(*process);
            state.save(&state_file)?;
        }
        nodes?;
        registry.map(|_| ())
    })?;

    pin_host_keys(spec, layout)?;
    let text = cluster_file_text(spec, layout);
    write_atomically(&layout.cluster_file(), text.as_bytes(), 0o644)?;
    let wrote_default = write_cluster_file_if_ours(&layout.default_cluster_file, &text)?;
    Ok(wrote_default.then(|| layout.default_cluster_file.clone()))
}

fn start_registry_with_images(
    spec: &DemoSpec,
    layout: &DemoLayout,
) -> Result<ProcessId, DemoError> {
    // Build the images while the registry starts: neither waits for the other.
    let (process, built) = std::thread::scope(|scope| {
        let built = scope.spawn(images::build_all);
        let process = registry_server::start(&spec.gateway(), &layout.registry_dir());
        let built = built.join().unwrap_or_else(|_| {
            Err(DemoError::Image {
                image: "demo images".into(),
                reason: "the build thread panicked".into(),
            })
        });
        (process, built)
    });
    let process = process?;
    let pushed = built.and_then(|images| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(DemoError::Runtime)?;
        let client = crate::registry::client(&[spec.registry_address()]);
        runtime.block_on(async {
            for image in images {
                let reference = format!("{}/{}:latest", spec.registry_address(), image.repository);
                crate::registry::push_image(&client, &reference, &image.layers, image.config_json)
                    .await?;
                info!(%reference, "pushed demo image");
            }
            Ok::<(), DemoError>(())
        })
    });
    match pushed {
        Ok(()) => Ok(process),
        Err(err) => {
            process.kill();
            Err(err)
        }
    }
}

/// Starts every node's namespaces, wires them to the bridge, then lets them
/// run sshd and waits until each one listens.
fn start_nodes(
    spec: &DemoSpec,
    layout: &DemoLayout,
    state: &mut DemoState,
    state_file: &Path,
) -> Result<(), DemoError> {
    let mut go_signals: Vec<ChildStdin> = Vec::new();
    let mut logs: Vec<PathBuf> = Vec::new();
    for i in 1..=spec.nodes {
        let name = spec.node_name(i);
        let address = spec.node_address(i);
        let dir = layout.node_dir(&name);
        let var_lib = dir.join("var-lib-flotilla");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&var_lib)
            .map_err(|e| DemoError::io(&var_lib, e))?;
        keys::load_or_create(&layout.host_key(&name), &format!("root@{name}"))?;
        let sshd_config = dir.join("sshd_config");
        write_atomically(
            &sshd_config,
            sshd_config_text(&address, &layout.host_key(&name)).as_bytes(),
            0o600,
        )?;
        let log = dir.join("node.log");
        let args = NodeInitArgs {
            stage: Stage::Outer,
            node: name.clone(),
            var_lib,
            sshd_config,
            authorized_keys: layout.authorized_keys(),
        };
        let (child, go) = node::spawn(&args, &log)?;
        state.nodes.push(NodeState {
            name,
            address,
            veth: spec.veth(i),
            process: ProcessId::of(child.id()),
        });
        state.save(state_file)?;
        go_signals.push(go);
        logs.push(log);
    }

    // One `ip` for the host side of every veth pair, one inside each node.
    let mut host_side = Vec::new();
    for (i, node) in (1..).zip(&state.nodes) {
        let pid = node.process.map(|p| p.pid).unwrap_or_default();
        host_side.push(format!(
            "link add {} type veth peer name eth0 netns {pid}",
            spec.veth(i)
        ));
        host_side.push(format!(
            "link set {} master {} up",
            spec.veth(i),
            spec.bridge()
        ));
    }
    net::ip_batch(&host_side, None)?;
    for node in &state.nodes {
        let pid = node.process.map(|p| p.pid).unwrap_or_default();
        net::ip_batch(
            &[
                "link set lo up".to_string(),
                format!("addr add {}/24 dev eth0", node.address),
                "link set eth0 up".to_string(),
                format!("route add default via {}", spec.gateway()),
            ],
            Some(pid),
        )?;
    }
    for (mut go, log) in go_signals.into_iter().zip(&logs) {
        go.write_all(b"g").map_err(|e| DemoError::io(log, e))?;
    }
    for (node, log) in state.nodes.iter().zip(logs) {
        let socket: SocketAddr = format!("{}:22", node.address)
            .parse()
            .map_err(|e| DemoError::BadSpec(format!("node address {}: {e}", node.address)))?;
        let process = node.process;
        let listening = wait_for_listener(socket, Duration::from_secs(10), || {
            process.is_some_and(|p| p.is_alive())
        });
        if !listening {
            return Err(DemoError::NodeDidNotStart {
                node: node.name.clone(),
                address: node.address.clone(),
                log,
            });
        }
    }
    Ok(())
}

/// Records each node's host key in flotilla's known_hosts, so the nodes are
/// trusted by what the demo itself generated, never by accepting whatever
/// key a server offers.
fn pin_host_keys(spec: &DemoSpec, layout: &DemoLayout) -> Result<(), DemoError> {
    for i in 1..=spec.nodes {
        let name = spec.node_name(i);
        let key = keys::load_or_create(&layout.host_key(&name), &format!("root@{name}"))?;
        super::files::pin_host_key(
            &layout.known_hosts,
            &spec.node_address(i),
            22,
            key.public_key(),
        )?;
    }
    Ok(())
}
