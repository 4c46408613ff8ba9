//! Who the controller talks to: the member nodes of the cluster (a majority
//! is counted over all of them, connected or not) and, for each connected
//! one, its agent client. A [`Fleet`] is the real thing; tests give a list
//! of local agents.

use crate::agent::protocol::Client;
use crate::ssh::fleet::{Fleet, FleetHandle};

/// The cluster's agents as the controller sees them.
pub trait Agents: Send + Sync {
    /// Every member node, in cluster-file order: majorities are of these.
    fn members(&self) -> Vec<String>;
    /// The agent client of `node` while it is connected.
    fn client(&self, node: &str) -> Option<Client>;

    /// How many members make a majority.
    fn quorum(&self) -> usize {
        self.members().len() / 2 + 1
    }
}

impl Agents for Fleet {
    fn members(&self) -> Vec<String> {
        self.state()
            .snapshot()
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .collect()
    }

    fn client(&self, node: &str) -> Option<Client> {
        Fleet::client(self, node)
    }
}

impl Agents for FleetHandle {
    fn members(&self) -> Vec<String> {
        FleetHandle::members(self).to_vec()
    }

    fn client(&self, node: &str) -> Option<Client> {
        FleetHandle::client(self, node)
    }
}

/// A fixed set of agents (tests, and tools that reach agents directly).
pub struct StaticAgents {
    pub agents: Vec<(String, Option<Client>)>,
}

impl Agents for StaticAgents {
    fn members(&self) -> Vec<String> {
        self.agents.iter().map(|(name, _)| name.clone()).collect()
    }

    fn client(&self, node: &str) -> Option<Client> {
        self.agents
            .iter()
            .find(|(name, _)| name == node)
            .and_then(|(_, client)| client.clone())
    }
}
