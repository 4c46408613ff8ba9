//! `flotilla apply -f FILE|DIR [--dry-run]`: loads and validates manifests and,
//! with `--dry-run`, says what would be created, kubectl-style. Applying to a
//! cluster needs the controller, which a later build brings.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::manifest::{LoadReport, LoadedObject, Object, load_paths};

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// A manifest file or a directory of them (YAML or JSON); repeatable.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Parse and validate only; print what would be created.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    if !args.dry_run {
        anyhow::bail!(
            "applying to a cluster is not available in this build yet; use --dry-run to parse and validate the manifests"
        );
    }
    let report = load_paths(&args.files);
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    print_report(&report, &mut out, &mut err)?;
    Ok(exit_code(&report, &mut err)?)
}

fn print_report(
    report: &LoadReport,
    out: &mut impl Write,
    err: &mut impl Write,
) -> std::io::Result<()> {
    for file in &report.files {
        for warning in &file.warnings {
            writeln!(err, "Warning: {warning}")?;
        }
        for loaded in &file.objects {
            writeln!(out, "{}", describe(loaded))?;
        }
        for error in &file.errors {
            writeln!(err, "error: {error}")?;
        }
    }
    Ok(())
}

fn exit_code(report: &LoadReport, err: &mut impl Write) -> std::io::Result<ExitCode> {
    let refused: Vec<_> = report.files.iter().filter(|f| !f.is_valid()).collect();
    if !refused.is_empty() {
        let errors: usize = refused.iter().map(|f| f.errors.len()).sum();
        writeln!(
            err,
            "error: {} refused ({errors} error{}): nothing in {} would be applied",
            plural(refused.len(), "file"),
            if errors == 1 { "" } else { "s" },
            if refused.len() == 1 { "it" } else { "them" },
        )?;
        return Ok(ExitCode::FAILURE);
    }
    if report.objects().next().is_none() {
        writeln!(err, "error: no objects passed to apply")?;
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// `deployment.apps/web created (dry run): namespace default, 3 replicas, image nginx:1.25`
fn describe(loaded: &LoadedObject) -> String {
    let (resource, replicas, spec) = match &loaded.object {
        Object::Pod(p) => ("pod", None, &p.spec),
        Object::Deployment(d) => (
            "deployment.apps",
            Some(d.spec.replicas),
            &d.spec.template.spec,
        ),
    };
    let mut detail = vec![format!("namespace {}", loaded.object.namespace())];
    if let Some(n) = replicas {
        detail.push(plural(usize::try_from(n).unwrap_or(0), "replica"));
    }
    let images: Vec<&str> = spec.containers.iter().map(|c| c.image.as_str()).collect();
    detail.push(format!(
        "{} {}",
        if images.len() == 1 { "image" } else { "images" },
        images.join(", ")
    ));
    format!(
        "{resource}/{} created (dry run): {}",
        loaded.object.name(),
        detail.join(", ")
    )
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
