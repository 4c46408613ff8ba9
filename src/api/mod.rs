//! The data types of the cluster: Pod, Deployment, Node, container specs and
//! statuses, resource quantities, and manifest parsing and validation (a
//! Kubernetes-compatible subset, YAML and JSON). Pure: it imports nothing of ours.
//!
//! Entry points: [`manifest::load_paths`] turns files and directories into a
//! [`manifest::LoadReport`] of accepted [`manifest::Object`]s, warnings and errors;
//! [`quantity::Quantity`] is an exact resource amount; [`node::Taint`] and
//! [`node::Toleration`] match as Kubernetes matches them; [`env`] expands
//! `$(VAR)` references; [`meta`] holds the name and label rules.

pub mod affinity;
pub mod defaults;
pub mod deployment;
pub mod env;
pub mod field;
pub mod image;
pub mod manifest;
pub mod meta;
pub mod node;
pub mod pod;
pub mod quantity;
pub mod status;
pub mod unsupported;
pub mod validate;

pub use affinity::{
    Affinity, NodeAffinity, NodeSelector, NodeSelectorOperator, NodeSelectorRequirement,
    NodeSelectorTerm, PreferredSchedulingTerm,
};
pub use deployment::{
    Deployment, DeploymentSpec, DeploymentStrategy, IntOrString, PodTemplateSpec, RollingUpdate,
    StrategyType,
};
pub use field::{FieldError, FieldPath};
pub use manifest::{
    Diagnostic, FileReport, LoadReport, LoadedObject, Object, Severity, load_file, load_paths,
};
pub use meta::{LabelSelector, ObjectMeta};
pub use node::{Taint, TaintEffect, Toleration, TolerationOperator};
pub use pod::{
    Container, ContainerPort, EnvVar, Pod, PodSpec, Protocol, PullPolicy, ResourceList,
    ResourceName, ResourceRequirements, RestartPolicy,
};
pub use quantity::{Quantity, QuantityError, QuantityFormat};
