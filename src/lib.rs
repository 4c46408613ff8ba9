//! flotilla: a terminal console that runs a small cluster of Linux hosts over SSH.
//!
//! The modules follow the parts of `DESIGN.md`, and imports only point one way:
//! `api` imports nothing of ours; `scheduler` imports only `api`; the agent never
//! imports `tui`, `controller` or `scheduler`; the console reads state and sends
//! actions, it never calls SSH or the agent itself, except through `exec`
//! when it hands the whole terminal to a shell in a container.

pub mod agent;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod demo;
pub mod exec;
pub mod logging;
pub mod procfs;
pub mod registry;
pub mod report;
pub mod scheduler;
pub mod ssh;
pub mod tui;
