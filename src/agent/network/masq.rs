//! The node's iptables rules for its pods ([`ensure_node_rules`]): one nat
//! rule masquerading all the node's pods, in place of bridge's `ipMasq`
//! chain per pod; and accept rules for the pod network in the filter
//! table's FORWARD, so that pods still reach each other and the outside on
//! a host whose FORWARD policy is DROP (Docker sets it so; flannel adds the
//! same two rules). Also the cleanup of those per-pod chains that bridge
//! leaves behind (made by an agent from before the node rule, or by bridge
//! itself):
//!
//! bridge (containernetworking-plugins 1.1.x) learns which addresses to
//! un-masquerade by deleting the pod's `eth0` inside the pod's namespace.
//! When the namespace is already gone (the pod's sandbox was torn down
//! first, the node rebooted, CNI_NETNS is empty) it releases the lease and
//! returns success, but its `CNI-<hash>` nat chain and the POSTROUTING jump
//! to it stay behind, one pair per pod, forever. We know the pod's address
//! from the saved ADD result, so we remove them the way bridge would have.

use std::net::Ipv4Addr;
use std::process::Command;

use sha2::{Digest, Sha512};

use super::{Ipv4Net, NetworkError};

/// The chain name libcni's `utils.FormatChainName` gives a pod:
/// "CNI-" and the first 24 hex digits of SHA-512(network name + container id),
/// 28 characters in all (iptables' limit is 28).
pub(crate) fn chain_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::digest(format!("{network}{container_id}").as_bytes());
    format!("CNI-{}", &hex::encode(digest)[..24])
}

/// The comment bridge tags each rule with (`utils.FormatComment`, Go's `%q`;
/// Rust's `{:?}` quotes printable ASCII the same way, and container ids are
/// restricted to `[A-Za-z0-9_.-]`).
pub(crate) fn comment(network: &str, container_id: &str) -> String {
    format!("name: {network:?} id: {container_id:?}")
}

/// The nat chain holding the node's masquerade rule, jumped to from
/// POSTROUTING.
pub(crate) const NODE_CHAIN: &str = "FLOTILLA-MASQ";

/// The filter chain accepting the pod network's traffic, jumped to first
/// thing from FORWARD.
pub(crate) const FORWARD_CHAIN: &str = "FLOTILLA-FORWARD";

/// Makes what the node's pods (`pod_subnet`) send outside the pod network
/// (`cluster_cidr`) leave with the node's address, and nothing else: pods
/// on other nodes see a pod's own address, as Kubernetes' network model
/// asks. And lets whatever comes from or goes to the pod network through
/// FORWARD, whatever its policy or later rules. Idempotent, and a changed
/// subnet replaces the old rules: each chain is refilled whole.
pub(crate) fn ensure_node_rules(
    pod_subnet: Ipv4Net,
    cluster_cidr: Ipv4Net,
) -> Result<(), NetworkError> {
    let source = pod_subnet.network().to_string();
    let outside = cluster_cidr.network().to_string();
    let masquerade = [
        "-s",
        source.as_str(),
        "!",
        "-d",
        outside.as_str(),
        "-m",
        "comment",
        "--comment",
        "flotilla: pods' traffic leaving the pod network",
        "-j",
        "MASQUERADE",
    ];
    fill_chain(
        "nat",
        NODE_CHAIN,
        &[&masquerade],
        "POSTROUTING",
        Place::Last,
    )?;
    let accept = |direction: &'static str| {
        [
            direction,
            outside.as_str(),
            "-m",
            "comment",
            "--comment",
            "flotilla: the pod network's traffic",
            "-j",
            "ACCEPT",
        ]
    };
    // First in FORWARD: a rule appended after a DROP would never be reached.
    fill_chain(
        "filter",
        FORWARD_CHAIN,
        &[&accept("-s"), &accept("-d")],
        "FORWARD",
        Place::First,
    )
}

/// Undoes [`ensure_node_rules`] (the node leaves its cluster): the jumps
/// from POSTROUTING and FORWARD, and both chains. Idempotent.
pub(crate) fn remove_node_rules() -> Result<(), NetworkError> {
    for (table, chain, parent) in [
        ("nat", NODE_CHAIN, "POSTROUTING"),
        ("filter", FORWARD_CHAIN, "FORWARD"),
    ] {
        // Every jump, should one have been added twice.
        while iptables(table, "DEL", &["-D", parent, "-j", chain])?
            .status
            .success()
        {}
        // `-S CHAIN` fails when there is no such chain: nothing to remove.
        if iptables(table, "DEL", &["-S", chain])?.status.success() {
            delete_chain(table, chain, "iptables", |action, stderr| {
                format!(
                    "removing the node's pod network rules: iptables -t {table} {action} \
                     {chain} failed: {stderr}"
                )
            })?;
        }
    }
    Ok(())
}

/// Flushes and deletes `chain` of `table`, whose jumps are gone. A failure
/// is reported as `plugin`'s DEL, in the words of `explain(action, stderr)`.
fn delete_chain(
    table: &str,
    chain: &str,
    plugin: &str,
    explain: impl Fn(&str, &str) -> String,
) -> Result<(), NetworkError> {
    for action in ["-F", "-X"] {
        let out = iptables(table, "DEL", &[action, chain])?;
        if !out.status.success() {
            return Err(NetworkError::PluginFailed {
                plugin: plugin.into(),
                command: "DEL".into(),
                // Not a CNI error code: iptables' words say what failed.
                code: None,
                message: explain(action, String::from_utf8_lossy(&out.stderr).trim()),
            });
        }
    }
    Ok(())
}

/// Where a missing jump to a chain of ours goes in its parent chain.
enum Place {
    First,
    Last,
}

/// Makes `chain` in `table` hold exactly `rules` (each the arguments after
/// `-A CHAIN`), jumped to once from `parent` (the jump added at `place`
/// when it is missing, left where it is when it is there).
fn fill_chain(
    table: &str,
    chain: &str,
    rules: &[&[&str]],
    parent: &str,
    place: Place,
) -> Result<(), NetworkError> {
    // -N fails when the chain exists, which is as good.
    let _ = iptables(table, "ADD", &["-N", chain])?;
    node_rule_step(table, &["-F", chain])?;
    for rule in rules {
        node_rule_step(table, &[&["-A", chain][..], rule].concat())?;
    }
    if !iptables(table, "ADD", &["-C", parent, "-j", chain])?
        .status
        .success()
    {
        let at: &[&str] = match place {
            Place::First => &["-I", parent, "1"],
            Place::Last => &["-A", parent],
        };
        node_rule_step(table, &[at, &["-j", chain]].concat())?;
    }
    Ok(())
}

fn node_rule_step(table: &str, args: &[&str]) -> Result<(), NetworkError> {
    let out = iptables(table, "ADD", args)?;
    if out.status.success() {
        return Ok(());
    }
    Err(NetworkError::PluginFailed {
        plugin: "iptables".into(),
        command: "ADD".into(),
        code: out.status.code().and_then(|c| u64::try_from(c).ok()),
        message: format!(
            "setting up the node's pod network rules: iptables -t {table} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

/// Runs `iptables -w 10 -t TABLE ARGS`; `-w 10` waits up to 10 s for the
/// xtables lock instead of failing at once or hanging forever.
/// `command` (ADD, DEL) names what it was for in an error.
fn iptables(
    table: &str,
    command: &str,
    args: &[&str],
) -> Result<std::process::Output, NetworkError> {
    Command::new("iptables")
        .args(["-w", "10", "-t", table])
        .args(args)
        .output()
        .map_err(|e| NetworkError::PluginFailed {
            plugin: "iptables".into(),
            command: command.into(),
            code: None,
            message: format!("could not run iptables ({e}); install iptables"),
        })
}

/// Removes the pod's masquerade chain and the jump to it if they are still
/// there; `Ok(false)` when there was nothing to do.
pub(crate) fn remove_leftover(
    network: &str,
    container_id: &str,
    pod_ip: Ipv4Addr,
) -> Result<bool, NetworkError> {
    let chain = chain_name(network, container_id);
    // `-S CHAIN` fails when the chain does not exist: bridge cleaned up.
    if !iptables("nat", "DEL", &["-S", &chain])?.status.success() {
        return Ok(false);
    }
    let source = format!("{pod_ip}/32");
    let comment = comment(network, container_id);
    // Best effort: the jump may be gone while the chain is not (a
    // half-finished earlier cleanup); the chain cannot go while it stays.
    let _ = iptables(
        "nat",
        "DEL",
        &[
            "-D",
            "POSTROUTING",
            "-s",
            &source,
            "-m",
            "comment",
            "--comment",
            &comment,
            "-j",
            &chain,
        ],
    )?;
    delete_chain("nat", &chain, "bridge", |action, stderr| {
        format!(
            "removing the masquerade chain {chain} bridge left behind: iptables {action} \
             failed: {stderr}; remove it by hand with `iptables -t nat -F {chain}; iptables -t nat \
             -X {chain}` after deleting the POSTROUTING rule that jumps to it"
        )
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_libcni() {
        // Checked against the chain bridge 1.1.1 created for this pair.
        assert_eq!(
            chain_name("flotilla", "abc"),
            "CNI-5cffcefea77784dc845210c5"
        );
        assert_eq!(chain_name("flotilla", "abc").len(), 28);
        assert_eq!(comment("flotilla", "abc"), r#"name: "flotilla" id: "abc""#);
    }
}
