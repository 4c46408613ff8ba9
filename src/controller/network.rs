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
}
