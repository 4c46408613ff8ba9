//! The console: ratatui views over a snapshot of cluster state. It reads state
//! and sends actions; it never calls SSH or the agent itself: the backend
//! does, off the draw loop.

pub mod app;
pub mod backend;
pub mod config;
pub mod draw;
#[doc(hidden)]
pub mod fixture;
pub mod keymap;
pub mod logpane;
pub mod manifests;
pub mod model;
pub mod run;
pub mod theme;

#[cfg(test)]
mod tests;
