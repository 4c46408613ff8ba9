//! The pod network's cluster side, as Kubernetes' node IPAM controller and
//! a host-gw network daemon would do it: each node gets a /24 of the
//! cluster's pod CIDR, recorded in the store with the node's flags (so it is
//! the same after any restart), and each node's agent is told its subnet and
//! a route to every other node's subnet through that node's address. The
//! planning here is pure; [`super::run`] carries it out.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::agent::network::Ipv4Net;
use crate::agent::network::routes::next_hop;
use crate::agent::protocol::messages::{NetworkRoute, NetworkSettings};

/// The size of each node's share.
pub const NODE_PREFIX: u8 = 24;

/// The first /24 of `cluster` that no node has, if any is left.
pub fn allocate(cluster: Ipv4Net, taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    let count = 1u32 << (NODE_PREFIX.saturating_sub(cluster.prefix)).min(31);
    (0..count)
        .filter_map(|i| cluster.subnet(NODE_PREFIX, i))
        .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
}

/// A node's stored `podCIDR`, if it has one that parses.
///
/// One that does not (written by hand, or damaged) is logged, naming the
/// node and the value, and read as none, so [`super::run`] gives the node
/// a subnet again and stores it over the bad value. Leaving it would leave
/// the node without a pod network for good: its pods never get addresses,
/// and no command mends the store; the value is the controller's own (no
/// operator sets it), so replacing it loses no one's choice. The node keeps
/// the subnet its agent already uses where it can ([`choose`]), so its
/// pods keep their addresses.
pub fn stored_subnet(node: &str, stored: Option<&str>) -> Option<Ipv4Net> {
    let text = stored?;
    match text.parse() {
        Ok(subnet) => Some(subnet),
        Err(err) => {
            tracing::warn!(
                node,
                pod_cidr = text,
                error = %err,
                "the node's stored podCIDR does not parse: giving it a subnet again"
            );
            None
        }
    }
}

/// The subnet for a node that has none stored (or none that parses): the
/// one its agent reports using (`reported`, its `podSubnet`) when that is
/// one of `cluster`'s /24s and no other node's, so the pods it already
/// addressed keep their addresses; else the first free /24.
pub fn choose(cluster: Ipv4Net, taken: &[Ipv4Net], reported: Option<&str>) -> Option<Ipv4Net> {
    let reported = reported
        .and_then(|text| text.parse::<Ipv4Net>().ok())
        .filter(|subnet| {
            subnet.prefix == NODE_PREFIX
                && subnet.network() == *subnet
                && cluster.contains_net(subnet)
                && !taken.iter().any(|t| t.overlaps(subnet))
        });
    reported.or_else(|| allocate(cluster, taken))
}

/// What the controller knows of one node for the pod network.
#[derive(Clone, Debug, Default)]
pub struct NodeNetworkFacts {
    /// Its subnet, once allocated.
    pub subnet: Option<Ipv4Net>,
    /// Its IPv4 addresses with prefixes, as its agent last reported them.
    pub addresses: Vec<Ipv4Net>,
}

/// The settings `node` should have: its subnet, and a route to each other
/// node's subnet through the address of that node which is on one of
/// `node`'s own networks. Nodes with no such address are left out and
/// named in the second value (host-gw needs one L2 segment).
pub fn settings_for(
    node: &str,
    cluster: Ipv4Net,
    nodes: &BTreeMap<String, NodeNetworkFacts>,
) -> Option<(NetworkSettings, Vec<String>)> {
    let own = nodes.get(node)?;
    let subnet = own.subnet?;
    let mut routes = Vec::new();
    let mut unreachable = Vec::new();
    for (other, facts) in nodes {
        if other == node {
            continue;
        }
        let Some(destination) = facts.subnet else {
            continue;
        };
        let candidates: Vec<Ipv4Addr> = facts.addresses.iter().map(|a| a.addr).collect();
        match next_hop(&own.addresses, &candidates) {
            Some(via) => routes.push(NetworkRoute {
                destination: destination.to_string(),
                via: via.to_string(),
                node: other.clone(),
            }),
            // Not known yet (its agent has not reported), or not on a shared
            // network: only the second is worth saying.
            None if !facts.addresses.is_empty() && !own.addresses.is_empty() => {
                unreachable.push(other.clone())
            }
            None => {}
        }
    }
    routes.sort();
    Some((
        NetworkSettings {
            pod_subnet: subnet.to_string(),
            cluster_cidr: cluster.to_string(),
            routes,
        },
        unreachable,
    ))
}

/// A node's addresses as the agent reports them, skipping any it cannot parse.
pub fn parse_addresses(addresses: &[String]) -> Vec<Ipv4Net> {
    addresses.iter().filter_map(|a| a.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> Ipv4Net {
        text.parse().expect("net")
    }

    #[test]
    fn allocation_takes_the_first_free_24_and_stops_when_full() {
        let cluster = net("10.88.0.0/16");
        assert_eq!(allocate(cluster, &[]), Some(net("10.88.0.0/24")));
        assert_eq!(
            allocate(cluster, &[net("10.88.0.0/24"), net("10.88.2.0/24")]),
            Some(net("10.88.1.0/24"))
        );
        let small = net("10.90.0.0/23");
        assert_eq!(
            allocate(small, &[net("10.90.0.0/24"), net("10.90.1.0/24")]),
            None
        );
    }

    #[test]
    fn routes_go_through_the_other_nodes_address_on_a_shared_network() {
        let cluster = net("10.88.0.0/16");
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "node1".to_string(),
            NodeNetworkFacts {
                subnet: Some(net("10.88.0.0/24")),
                addresses: vec![net("10.77.0.11/24")],
            },
        );
        nodes.insert(
            "node2".to_string(),
            NodeNetworkFacts {
                subnet: Some(net("10.88.1.0/24")),
                addresses: vec![net("192.168.5.2/24"), net("10.77.0.12/24")],
            },
        );
        nodes.insert(
            "far".to_string(),
            NodeNetworkFacts {
                subnet: Some(net("10.88.2.0/24")),
                addresses: vec![net("172.16.0.9/24")],
            },
        );
        nodes.insert("unplaced".to_string(), NodeNetworkFacts::default());
        let (settings, unreachable) = settings_for("node1", cluster, &nodes).expect("settings");
        assert_eq!(settings.pod_subnet, "10.88.0.0/24");
        assert_eq!(settings.cluster_cidr, "10.88.0.0/16");
        assert_eq!(settings.routes.len(), 1);
        assert_eq!(settings.routes[0].destination, "10.88.1.0/24");
        assert_eq!(settings.routes[0].via, "10.77.0.12");
        assert_eq!(unreachable, vec!["far".to_string()]);
        assert!(settings_for("unplaced", cluster, &nodes).is_none());
    }

    #[test]
    fn a_stored_pod_cidr_that_does_not_parse_is_logged_and_read_as_none() {
        use std::io::Write;
        use std::sync::{Arc, Mutex};

        /// The log, kept for the test to read.
        #[derive(Clone, Default)]
        struct Log(Arc<Mutex<Vec<u8>>>);
        impl Write for Log {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("log").extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
            type Writer = Log;
            fn make_writer(&'a self) -> Log {
                self.clone()
            }
        }

        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        let read = tracing::subscriber::with_default(subscriber, || {
            (
                stored_subnet("node1", Some("10.88.0.0/24")),
                stored_subnet("node2", None),
                stored_subnet("node3", Some("10.88.2.0/99")),
            )
        });
        assert_eq!(read, (Some(net("10.88.0.0/24")), None, None));
        let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "only the bad value is worth a line: {text}");
        for needed in ["WARN", "node3", "10.88.2.0/99"] {
            assert!(lines[0].contains(needed), "{needed} missing: {text}");
        }
    }

    #[test]
    fn a_node_given_a_subnet_again_keeps_its_agents_if_it_is_free() {
        let cluster = net("10.88.0.0/16");
        let taken = [net("10.88.0.0/24")];
        // Its agent's subnet, free: the node's pods keep their addresses.
        assert_eq!(
            choose(cluster, &taken, Some("10.88.7.0/24")),
            Some(net("10.88.7.0/24"))
        );
        // Anything else gets the first free /24: another node's, outside
        // the cluster's CIDR (the cluster file changed), not a /24, not a
        // network address, unreadable, or none reported.
        for reported in [
            Some("10.88.0.0/24"),
            Some("10.99.7.0/24"),
            Some("10.88.6.0/23"),
            Some("10.88.7.5/24"),
            Some("garbage"),
            None,
        ] {
            assert_eq!(
                choose(cluster, &taken, reported),
                Some(net("10.88.1.0/24")),
                "{reported:?}"
            );
        }
    }
}
