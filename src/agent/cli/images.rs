//! The image verbs: `pull`, `images`, `rmi`, `prune`.

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

use crate::agent::image::progress::{Printer, human_bytes};
use crate::agent::image::{ImageError, PullOptions, Store, parse_reference, pull as pull_image};

pub fn pull(
    root: &Path,
    image: &str,
    insecure: bool,
    no_unpack: bool,
) -> Result<ExitCode, ImageError> {
    let store = Store::open(root)?;
    let printer = Printer::new(std::io::stdout().is_terminal());
    let options = PullOptions {
        insecure,
        auth: None,
        unpack: !no_unpack,
    };
    // One thread drives the network; unpacking runs on the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ImageError::Task(e.to_string()))?;
    let pulled = runtime.block_on(pull_image(&store, image, &options, &|e| printer.event(e)))?;
    printer.finish();
    if pulled.already_present {
        println!("image is up to date");
    }
    println!(
        "pulled {} {}",
        pulled.record.reference, pulled.record.digest
    );
    Ok(ExitCode::SUCCESS)
}

pub fn list(root: &Path, json: bool) -> Result<ExitCode, ImageError> {
    let store = Store::open(root)?;
    let images = store.images()?;
    if json {
        let json = serde_json::Value::Array(
            images
                .iter()
                .map(|i| {
                    serde_json::json!({
                        "reference": i.reference,
                        "digest": i.digest,
                        "config_digest": i.config_digest,
                        "size": i.size,
                        "created": i.created,
                        "platform": i.platform,
                        "layers": i.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        );
    } else {
        println!(
            "{:<50} {:<19} {:<22} {:>10}",
            "REFERENCE", "DIGEST", "CREATED", "SIZE"
        );
        for i in &images {
            let digest = i.digest.strip_prefix("sha256:").unwrap_or(&i.digest);
            println!(
                "{:<50} {:<19} {:<22} {:>10}",
                i.reference,
                &digest[..digest.len().min(12)],
                i.created.as_deref().unwrap_or("-"),
                human_bytes(i.size)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `run_dir`: where the volatile leases of `run --rm` containers are.
pub fn remove(root: &Path, run_dir: &Path, image: &str) -> Result<ExitCode, ImageError> {
    let store = Store::open(root)?.with_run_dir(run_dir);
    let reference = parse_reference(image)?.whole();
    if !store.remove_image(&reference)? {
        return Err(ImageError::NotFound(reference));
    }
    let reclaimed = store.collect_garbage()?;
    println!(
        "removed {reference} ({} layers, {} freed)",
        reclaimed.layers,
        human_bytes(reclaimed.bytes)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn prune(root: &Path, run_dir: &Path) -> Result<ExitCode, ImageError> {
    let store = Store::open(root)?.with_run_dir(run_dir);
    let reclaimed = store.collect_garbage()?;
    println!(
        "removed {} blobs and {} layers: {} reclaimed",
        reclaimed.blobs,
        reclaimed.layers,
        human_bytes(reclaimed.bytes)
    );
    Ok(ExitCode::SUCCESS)
}
