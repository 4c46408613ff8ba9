//! The console: ratatui views over a snapshot of cluster state. It reads state
//! and sends actions; it never calls SSH or the agent itself.

pub mod keymap;
pub mod logpane;
pub mod theme;
