//! The data types of the cluster: Pod, Deployment, Node, container specs and
//! statuses, resource quantities, and manifest parsing and validation (a
//! Kubernetes-compatible subset, YAML and JSON). Pure: it imports nothing of ours.
