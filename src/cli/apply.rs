//! `flotilla apply -f FILE|DIR [--dry-run]`.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A manifest file or a directory of them (YAML or JSON); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Parse and validate only; print what would be created.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(_args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("apply: being written")
}
