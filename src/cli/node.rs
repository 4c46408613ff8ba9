//! `flotilla node trust NAME` and `flotilla node add NAME ADDRESS …`: the two
//! ways an operator vouches for a host.
//!
//! **trust** fetches the key the node's sshd offers (as `ssh-keyscan` would,
//! without authenticating), shows its type and SHA256 fingerprint, and after
//! the operator confirms (or `--yes`) appends it to flotilla's own
//! known_hosts, never to `~/.ssh/known_hosts`, which belongs to OpenSSH. It
//! checks both files first, as a connection would: a key already recorded is
//! a no-op; a *different* key recorded for that host is refused with the
//! file and line to delete, never overwritten, since that is exactly what a
//! man in the middle looks like. Without a terminal to ask on, it refuses
//! unless `--yes` says the operator checked the fingerprint another way.
//!
//! **add** appends a `[[nodes]]` entry to the cluster file as text, so the
//! file's own layout and comments stay as the operator wrote them, after
//! checking that the whole file with the entry still parses (so a bad label
//! is refused before anything is written); then it offers to trust the new
//! node's key with the same code as `trust`.

use std::fs::OpenOptions;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use russh::keys::PublicKey;

use super::get::{DEFAULT_TIMEOUT, parse_timeout};
use crate::config::cluster_file::{self, ClusterConfig, NodeConfig};
use crate::config::paths::{Dirs, cluster_file_path, expand_tilde};
use crate::ssh::known_hosts::{
    self, DEFAULT_SSH_PORT, HostKeyDecision, append_host_key, check_host_key, fingerprint,
};

#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    #[command(subcommand)]
    pub command: NodeCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum NodeCommand {
    /// Show a node's SSH host key and record it in flotilla's known_hosts.
    Trust(TrustArgs),
    /// Add a node to the cluster file, then offer to trust its host key.
    Add(AddArgs),
    /// Drain a node and take it out of the cluster file (--purge: also stop
    /// its agent and delete flotilla's state on the host).
    Remove(super::node_remove::RemoveArgs),
}

#[derive(clap::Args, Debug)]
pub struct TrustArgs {
    /// The node's name in the cluster file.
    pub name: String,
    /// Trust without asking (you checked the fingerprint another way).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// How long to wait for the host's SSH server.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    /// The node's name: lower-case letters, digits and '-'.
    pub name: String,
    /// An IP address, a host name, or a Host alias from ~/.ssh/config.
    pub address: String,
    /// The SSH user (default: [defaults] in the cluster file, else the local user).
    #[arg(long)]
    pub user: Option<String>,
    /// The SSH port (default: [defaults] in the cluster file, else 22).
    #[arg(long)]
    pub port: Option<u16>,
    /// A label for the scheduler; repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// A taint, as kubectl writes them; repeatable.
    #[arg(long = "taint", value_name = "KEY[=VALUE]:EFFECT")]
    pub taints: Vec<String>,
    /// The private key file for this node.
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Trust the host key without asking.
    #[arg(short = 'y', long, conflicts_with = "no_trust")]
    pub yes: bool,
    /// Only write the cluster file; trust the host key later with `flotilla node trust`.
    #[arg(long)]
    pub no_trust: bool,
    /// How long to wait for the host's SSH server.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

pub fn run(args: &NodeArgs, cluster: Option<PathBuf>, dirs: &Dirs) -> anyhow::Result<()> {
    let path = cluster_file_path(cluster.clone(), dirs);
    match &args.command {
        NodeCommand::Trust(a) => {
            let config = cluster_file::load(&path)?;
            let node = config.node(&a.name).ok_or_else(|| {
                super::nodes::NodeNotFound::new(
                    &a.name,
                    config.nodes.iter().map(|n| n.name.as_str()),
                )
            })?;
            trust(node, &path, dirs, a.yes, a.timeout)
        }
        NodeCommand::Add(a) => add(a, &path, dirs),
        NodeCommand::Remove(a) => super::node_remove::remove(a, &path, cluster, dirs),
    }
}

/// `~/.ssh/known_hosts`, read (never written) as OpenSSH's record of hosts.
fn user_known_hosts() -> PathBuf {
    expand_tilde("~/.ssh/known_hosts")
}

/// Shows `node`'s host key and records it in flotilla's known_hosts once
/// the operator agrees. `cluster_file` is only named in messages.
fn trust(
    node: &NodeConfig,
    cluster_file: &Path,
    dirs: &Dirs,
    yes: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    // ~/.ssh/config is not consulted yet: the cluster file's address and port.
    let address = node.address.as_str();
    let port = node.port.unwrap_or(DEFAULT_SSH_PORT);
    let name = &node.name;
    let key = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(crate::ssh::scan_host_key(address, port, timeout))
        .with_context(|| format!("node {name}: cannot fetch its host key"))?;
    let key_type = key.algorithm().as_str().to_string();
    let offered = fingerprint(&key);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "node {name} ({address}:{port}) offers the host key\n  {key_type} {offered}"
    )?;

    if let Some(pinned) = &node.host_key {
        if *pinned == offered {
            writeln!(
                out,
                "{} pins this key as the node's host_key: it is trusted already; nothing changed",
                cluster_file.display()
            )?;
            return Ok(());
        }
        bail!(
            "HOST KEY MISMATCH for node {name}: it offers {offered}, but {} pins {pinned}; refused, nothing written (possible man-in-the-middle). Only if the host was really reinstalled, change the node's host_key there",
            cluster_file.display()
        );
    }

    let own = dirs.known_hosts();
    let files = [user_known_hosts(), own.clone()];
    match check_host_key(&files, address, port, &key) {
        HostKeyDecision::Trusted { file, line } => {
            writeln!(
                out,
                "already trusted: {} line {line} records this key; nothing changed",
                file.display()
            )?;
            return Ok(());
        }
        HostKeyDecision::Changed { recorded, .. } => {
            let lines: Vec<String> = recorded
                .iter()
                .map(|r| {
                    format!(
                        "line {} of {} records {} {}",
                        r.line,
                        r.file.display(),
                        r.key_type,
                        r.fingerprint
                    )
                })
                .collect();
            // `ssh-keygen -R` removes every key of the host from one file.
            let mut files: Vec<String> = recorded
                .iter()
                .map(|r| r.file.display().to_string())
                .collect();
            files.dedup();
            let host = known_hosts::host_name(address, port);
            let commands: Vec<String> = files
                .iter()
                .map(|f| format!("`ssh-keygen -R '{host}' -f {f}`"))
                .collect();
            bail!(
                "HOST KEY CHANGED for node {name} ({address}:{port}): it offers {key_type} {offered}, but {}; refused, nothing written (possible man-in-the-middle). Only if the host was really reinstalled, delete {} ({}) and run `flotilla node trust {name}` again",
                lines.join(" and "),
                if recorded.len() == 1 {
                    "that line"
                } else {
                    "those lines"
                },
                commands.join(", ")
            );
        }
        HostKeyDecision::Revoked { file, line } => bail!(
            "the host key {offered} of node {name} is marked @revoked at line {line} of {}; refused: the host needs a new key before flotilla connects to it",
            file.display()
        ),
        HostKeyDecision::Unknown => {}
    }

    let line = known_hosts::host_key_line(address, port, &key)?;
    writeln!(out, "It will be added to {}:\n  {line}", own.display())?;
    if !yes {
        confirm(&mut out, name, &key)?;
    }
    append_host_key(&own, address, port, &key)?;
    // Read it back through the checker a connection uses, so "trusted" is
    // what the next connection will find, not what we meant to write.
    match check_host_key(std::slice::from_ref(&own), address, port, &key) {
        HostKeyDecision::Trusted { file, line } => writeln!(
            out,
            "trusted: line {line} of {} records it; flotilla will connect to {name}",
            file.display()
        )?,
        other => bail!(
            "wrote the key to {} but it does not read back as trusted ({other:?}); check the file",
            own.display()
        ),
    }
    Ok(())
}

/// Asks on the terminal; anything but yes refuses.
fn confirm(out: &mut impl Write, name: &str, key: &PublicKey) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!(
            "not trusting the key of {name} without confirmation, and there is no terminal to ask on: check {} on the host (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub`), then run again with --yes",
            fingerprint(key)
        );
    }
    write!(
        out,
        "Check it against the host's own (`ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` there).\nTrust this key for {name}? [y/N] "
    )?;
    out.flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => bail!("host key of {name} not trusted; nothing written"),
    }
}

fn add(args: &AddArgs, path: &Path, dirs: &Dirs) -> anyhow::Result<()> {
    let original = std::fs::read_to_string(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            anyhow::Error::new(cluster_file::ClusterFileError::NotFound {
                path: path.to_path_buf(),
            })
        } else {
            anyhow::Error::new(source).context(format!("cannot read {}", path.display()))
        }
    })?;
    let before = cluster_file::parse(path, &original)
        .context("fix the cluster file before adding a node to it")?;
    if let Some(existing) = before.node(&args.name) {
        bail!(
            "node {:?} is already in {} (address {}); choose another name, or run `flotilla node trust {}` to trust its host key",
            args.name,
            path.display(),
            existing.address,
            args.name
        );
    }
    let entry = node_entry(args)?;
    let separator = if original.is_empty() || original.ends_with("\n\n") {
        ""
    } else if original.ends_with('\n') {
        "\n"
    } else {
        "\n\n"
    };
    let updated = format!("{original}{separator}{entry}");
    let after = cluster_file::parse(path, &updated)
        .context("the new node would make the cluster file invalid; nothing was written")?;
    check_added(&before, &after, &args.name)?;

    append(path, &format!("{separator}{entry}"))?;
    // Read back what is on disk now: another writer may have raced us.
    let read_back = cluster_file::load(path)
        .map_err(anyhow::Error::new)
        .and_then(|c| check_added(&before, &c, &args.name));
    if let Err(err) = read_back {
        std::fs::write(path, &original)
            .with_context(|| format!("cannot restore {}", path.display()))?;
        return Err(err.context(format!(
            "the cluster file did not read back with the new node; restored {} as it was",
            path.display()
        )));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "node {} added to {}", args.name, path.display())?;
    drop(out);
    if args.no_trust {
        return Ok(());
    }
    let node = after
        .node(&args.name)
        .context("the new node vanished from the parsed file")?;
    // The node is in the file whatever happens next: say so first, then why
    // it is not trusted, then what to run once that is fixed.
    trust(node, path, dirs, args.yes, args.timeout).map_err(|err| {
        anyhow::anyhow!(
            "node {} was added to {}, but its host key is not trusted: {}; once that is fixed, run `flotilla node trust {}`",
            args.name,
            path.display(),
            crate::report::one_line(&err),
            args.name
        )
    })
}

/// The parse of the updated file has exactly one node more, named `name`.
fn check_added(before: &ClusterConfig, after: &ClusterConfig, name: &str) -> anyhow::Result<()> {
    if after.nodes.len() != before.nodes.len() + 1 || after.node(name).is_none() {
        bail!(
            "the cluster file does not end as a [[nodes]] list would continue (is `nodes` written as an inline array?); add the node by hand"
        );
    }
    Ok(())
}

/// Appends `text` and syncs: appending in place keeps the file's mode,
/// owner and any symlink to it, which writing a new file and renaming would not.
fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new().append(true).open(path)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// The `[[nodes]]` entry for `args`, as TOML text.
fn node_entry(args: &AddArgs) -> anyhow::Result<String> {
    let mut entry = format!(
        "[[nodes]]\nname = {}\naddress = {}\n",
        toml_string(&args.name),
        toml_string(&args.address)
    );
    if let Some(port) = args.port {
        entry.push_str(&format!("port = {port}\n"));
    }
    if let Some(user) = &args.user {
        entry.push_str(&format!("user = {}\n", toml_string(user)));
    }
    if let Some(identity) = &args.identity {
        entry.push_str(&format!(
            "identity = {}\n",
            toml_string(&identity_text(identity)?)
        ));
    }
    if !args.labels.is_empty() {
        let mut pairs = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for label in &args.labels {
            let (key, value) = label.split_once('=').with_context(|| {
                format!("--label {label:?}: write KEY=VALUE, e.g. --label zone=a")
            })?;
            if !seen.insert(key) {
                bail!("--label {key:?} is given twice; give each key once");
            }
            pairs.push(format!("{} = {}", toml_string(key), toml_string(value)));
        }
        entry.push_str(&format!("labels = {{ {} }}\n", pairs.join(", ")));
    }
    if !args.taints.is_empty() {
        let taints: Vec<String> = args.taints.iter().map(|t| toml_string(t)).collect();
        entry.push_str(&format!("taints = [{}]\n", taints.join(", ")));
    }
    Ok(entry)
}

/// The identity as the cluster file should hold it: `~/…` and absolute
/// paths as given, a relative path made absolute, since flotilla will not
/// run from this directory next time.
fn identity_text(path: &Path) -> anyhow::Result<String> {
    let text = path.to_str().with_context(|| {
        format!(
            "--identity {}: the cluster file needs a UTF-8 path",
            path.display()
        )
    })?;
    if text.starts_with('~') || path.is_absolute() {
        return Ok(text.to_string());
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let absolute = cwd.join(path);
    absolute.to_str().map(str::to_string).with_context(|| {
        format!(
            "--identity {}: the cluster file needs a UTF-8 path",
            absolute.display()
        )
    })
}

/// A TOML basic string: quoted, with `"`, `\` and control characters escaped.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, address: &str) -> AddArgs {
        AddArgs {
            name: name.into(),
            address: address.into(),
            user: None,
            port: None,
            labels: Vec::new(),
            taints: Vec::new(),
            identity: None,
            yes: false,
            no_trust: true,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn toml_strings_round_trip_through_the_parser() {
        for text in [
            "plain",
            "quo\"te",
            "back\\slash",
            "tab\tnew\nline",
            "\x1b[2J",
            "名前",
        ] {
            let doc = format!("v = {}\n", toml_string(text));
            let value: toml::Table = toml::from_str(&doc).unwrap_or_else(|e| panic!("{doc}: {e}"));
            assert_eq!(value["v"].as_str(), Some(text), "{doc}");
        }
    }

    #[test]
    fn an_entry_holds_every_flag_and_parses() {
        let mut a = args("node4", "10.77.0.14");
        a.user = Some("ops".into());
        a.port = Some(2222);
        a.labels = vec!["zone=b".into(), "example.com/tier=gold".into()];
        a.taints = vec!["dedicated=db:NoSchedule".into()];
        a.identity = Some(PathBuf::from("~/.ssh/id_node4"));
        let entry = node_entry(&a).expect("entry");
        assert_eq!(
            entry,
            "[[nodes]]\nname = \"node4\"\naddress = \"10.77.0.14\"\nport = 2222\nuser = \"ops\"\nidentity = \"~/.ssh/id_node4\"\nlabels = { \"zone\" = \"b\", \"example.com/tier\" = \"gold\" }\ntaints = [\"dedicated=db:NoSchedule\"]\n"
        );
        let text = format!("[cluster]\nname = \"c\"\n\n{entry}");
        let config = cluster_file::parse(Path::new("c.toml"), &text).expect("valid");
        let node = &config.nodes[0];
        assert_eq!(node.port, Some(2222));
        assert_eq!(node.labels["example.com/tier"], "gold");
        assert_eq!(node.taints[0].to_string(), "dedicated=db:NoSchedule");

        a.labels = vec!["novalue".into()];
        assert!(node_entry(&a).is_err());
        a.labels = vec!["k=1".into(), "k=2".into()];
        assert!(node_entry(&a).is_err());
    }

    #[test]
    fn a_relative_identity_is_made_absolute() {
        let text = identity_text(Path::new("keys/id")).expect("path");
        assert!(
            Path::new(&text).is_absolute() && text.ends_with("/keys/id"),
            "{text}"
        );
        assert_eq!(
            identity_text(Path::new("~/.ssh/id")).expect("path"),
            "~/.ssh/id"
        );
    }
}
