//! `flotilla demo up | down | status`.

use std::process::ExitCode;

use crate::config::paths::Dirs;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {}

#[derive(clap::Args, Debug)]
pub struct DemoNodeArgs {}

pub fn run(_args: DemoArgs, _dirs: &Dirs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("demo: being written")
}

pub fn node_init_main(_args: &DemoNodeArgs) -> ExitCode {
    ExitCode::FAILURE
}
