//! The Manifests view's data: every manifest file under the directories the
//! operator named, each document parsed and checked as `apply` would, so a
//! bad one shows its first error before anyone presses `a`.

use std::path::{Path, PathBuf};

use crate::api::manifest::{Object, load_paths};

/// One object of a manifest file, or a file that does not load.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestEntry {
    /// The file, as the operator named it (relative to its directory's parent).
    pub file: String,
    pub path: PathBuf,
    pub kind: String,
    pub name: String,
    pub replicas: Option<i32>,
    /// The object, ready to apply; `None` when the file has errors.
    pub object: Option<Object>,
    /// The file's first error (and how many more).
    pub error: Option<String>,
}

/// Loads every manifest under `dirs` (files are taken as they are).
pub fn scan(dirs: &[PathBuf]) -> Vec<ManifestEntry> {
    let report = load_paths(dirs);
    let mut entries = Vec::new();
    for file in &report.files {
        let shown = shown_name(&file.file, dirs);
        if !file.is_valid() {
            let first = file.first_error().map(ToString::to_string);
            let more = file.errors.len().saturating_sub(1);
            entries.push(ManifestEntry {
                file: shown,
                path: file.file.clone(),
                kind: String::new(),
                name: String::new(),
                replicas: None,
                object: None,
                error: first.map(|e| {
                    if more > 0 {
                        format!("{e} (and {more} more)")
                    } else {
                        e
                    }
                }),
            });
            continue;
        }
        for loaded in &file.objects {
            let replicas = match &loaded.object {
                Object::Deployment(d) => Some(d.spec.replicas),
                _ => None,
            };
            entries.push(ManifestEntry {
                file: shown.clone(),
                path: file.file.clone(),
                kind: loaded.object.kind().to_string(),
                name: loaded.object.name().to_string(),
                replicas,
                object: Some(loaded.object.clone()),
                error: None,
            });
        }
    }
    entries
}

fn shown_name(file: &Path, dirs: &[PathBuf]) -> String {
    dirs.iter()
        .filter_map(|d| file.strip_prefix(d.parent().unwrap_or(d)).ok())
        .next()
        .unwrap_or(file)
        .display()
        .to_string()
}
