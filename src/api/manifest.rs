//! Loading manifests: files and directories to documents, documents to checked,
//! defaulted, validated objects, and every problem on the way as a diagnostic
//! that names the file, the document, the field path and the bad value.
//!
//! A file is the unit of acceptance: one error anywhere in it refuses every
//! object in it, so a Service + Deployment file never half-applies.
//!
//! Per document: the JSON (from YAML or JSON) is matched to a kind, walked by the
//! `unsupported` pre-pass (unknown, unsupported and mistyped fields, all reported
//! and removed), decoded into the typed structs, defaulted, then validated.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::defaults::{default_deployment, default_pod};
use super::deployment::{DEPLOYMENT_API_VERSION, DEPLOYMENT_KIND, Deployment};
use super::field::{FieldError, FieldPath};
use super::meta::ObjectMeta;
use super::pod::{POD_API_VERSION, POD_KIND, Pod};
use super::unsupported::{self, DEPLOYMENT_SHAPE, FieldWarning, Findings, POD_SHAPE, Shape};
use super::validate::{Validation, validate_deployment, validate_pod};

/// Larger files are refused unread: the API server's own request limit is 3 MiB.
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The extensions a directory is searched for, as `kubectl apply -f DIR` does.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// An object flotilla runs.
// Unboxed: objects are few, and matching on them directly keeps callers simple.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Object {
    Pod(Pod),
    Deployment(Deployment),
}

impl Object {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Pod(_) => POD_KIND,
            Self::Deployment(_) => DEPLOYMENT_KIND,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Self::Pod(p) => &p.metadata,
            Self::Deployment(d) => &d.metadata,
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata().name
    }

    pub fn namespace(&self) -> &str {
        &self.metadata().namespace
    }
}

impl Serialize for Object {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Pod(p) => p.serialize(serializer),
            Self::Deployment(d) => d.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Object {
    /// Reads a stored object back by its `kind` (no validation: it was validated
    /// when it was applied).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        match value.get("kind").and_then(Value::as_str) {
            Some(POD_KIND) => serde_json::from_value(value)
                .map(Object::Pod)
                .map_err(D::Error::custom),
            Some(DEPLOYMENT_KIND) => serde_json::from_value(value)
                .map(Object::Deployment)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected kind Pod or Deployment, found {other:?}"
            ))),
        }
    }
}

/// An accepted object and where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedObject {
    pub object: Object,
    pub file: PathBuf,
    /// 1-based index of the document in the file.
    pub document: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// Which document of a file a diagnostic is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRef {
    /// 1-based. Empty documents (`---` with nothing after it) are skipped by the
    /// YAML reader and not counted.
    pub index: usize,
    pub kind: Option<String>,
    pub name: Option<String>,
}

impl fmt::Display for DocumentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "document {}", self.index)?;
        match (&self.kind, &self.name) {
            (Some(kind), Some(name)) => write!(f, " ({kind} {name:?})"),
            (Some(kind), None) => write!(f, " ({kind})"),
            (None, Some(name)) => write!(f, " ({name:?})"),
            (None, None) => Ok(()),
        }
    }
}

/// A position in a file's text, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextPosition {
    pub line: u32,
    pub column: u32,
}

/// One problem or warning, with everything needed to find it.
/// Displays as `FILE: document N (Kind "name"): PATH: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub document: Option<DocumentRef>,
    /// For syntax errors, where the parser stopped.
    pub position: Option<TextPosition>,
    /// The field path in Kubernetes' form (`spec.containers[0].image`).
    pub path: Option<String>,
    pub message: String,
    /// The message already names the path (unknown fields), so it is not repeated.
    path_in_message: bool,
}

impl Diagnostic {
    fn new(severity: Severity, file: &Path, message: impl Into<String>) -> Self {
        Self {
            severity,
            file: file.to_owned(),
            document: None,
            position: None,
            path: None,
            message: message.into(),
            path_in_message: false,
        }
    }

    fn in_document(mut self, doc: &DocumentRef) -> Self {
        self.document = Some(doc.clone());
        self
    }

    fn at_path(mut self, path: &FieldPath) -> Self {
        if !path.is_root() {
            self.path = Some(path.to_string());
        }
        self
    }

    fn from_field_error(file: &Path, doc: &DocumentRef, e: &FieldError) -> Self {
        let mut d = Self::new(Severity::Error, file, e.message())
            .in_document(doc)
            .at_path(&e.path);
        d.path_in_message = e.message_names_path();
        d
    }

    fn from_warning(file: &Path, doc: &DocumentRef, w: &FieldWarning) -> Self {
        Self::new(Severity::Warning, file, w.message.clone())
            .in_document(doc)
            .at_path(&w.path)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file.display())?;
        if let Some(pos) = self.position {
            write!(f, "line {}, column {}: ", pos.line, pos.column)?;
        }
        if let Some(doc) = &self.document {
            write!(f, "{doc}: ")?;
        }
        if let Some(path) = &self.path
            && !self.path_in_message
        {
            write!(f, "{path}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// What loading one file (or one path that could not be read) gave.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub file: PathBuf,
    /// Empty when the file has any error: a file is accepted whole or not at all.
    pub objects: Vec<LoadedObject>,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl FileReport {
    fn new(file: &Path) -> Self {
        Self {
            file: file.to_owned(),
            ..Self::default()
        }
    }

    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn first_error(&self) -> Option<&Diagnostic> {
        self.errors.first()
    }

    /// One line for a list of files: "valid" with what it holds, or its first error.
    pub fn status_line(&self) -> String {
        match self.first_error() {
            Some(e) if self.errors.len() > 1 => {
                format!("{e} (and {} more errors)", self.errors.len() - 1)
            }
            Some(e) => e.to_string(),
            None => {
                let n = self.objects.len();
                let objects = if n == 1 { "object" } else { "objects" };
                match self.warnings.len() {
                    0 => format!("{}: valid, {n} {objects}", self.file.display()),
                    w => format!(
                        "{}: valid, {n} {objects}, {w} warning{}",
                        self.file.display(),
                        if w == 1 { "" } else { "s" }
                    ),
                }
            }
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }
}

/// What loading a set of paths gave, file by file in load order.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    pub files: Vec<FileReport>,
}

impl LoadReport {
    /// Every accepted object, in file and document order.
    pub fn objects(&self) -> impl Iterator<Item = &LoadedObject> {
        self.files.iter().flat_map(|f| f.objects.iter())
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.errors.iter())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.files.iter().flat_map(|f| f.warnings.iter())
    }

    pub fn has_errors(&self) -> bool {
        self.files.iter().any(|f| !f.is_valid())
    }
}

/// How a file's text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON for `.json`, YAML for anything else (YAML reads most JSON too).
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Self::Json,
            _ => Self::Yaml,
        }
    }
}

/// Loads files and directories (recursively, `.yaml`/`.yml`/`.json` files in
/// sorted order), as `kubectl apply -f` takes them. A path that cannot be read
/// gets a report of its own with the error.
pub fn load_paths(paths: &[PathBuf]) -> LoadReport {
    let mut report = LoadReport::default();
    for path in paths {
        if path.is_dir() {
            let mut files = Vec::new();
            let mut visited = HashSet::new();
            if let Err(e) = collect_manifests(path, &mut files, &mut visited) {
                let mut r = FileReport::new(path);
                r.error(Diagnostic::new(
                    Severity::Error,
                    path,
                    format!("cannot read directory: {e}"),
                ));
                report.files.push(r);
                continue;
            }
            files.sort();
            if files.is_empty() {
                let mut r = FileReport::new(path);
                r.error(Diagnostic::new(
                    Severity::Error,
                    path,
                    "no .yaml, .yml or .json files in this directory",
                ));
                report.files.push(r);
            }
            report.files.extend(files.iter().map(|f| load_file(f)));
        } else {
            report.files.push(load_file(path));
        }
    }
    warn_duplicates(&mut report);
    report
}

fn collect_manifests(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    visited: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    // Symlinked directories are followed once, so a link loop cannot recurse forever.
    if !visited.insert(fs::canonicalize(dir)?) {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_manifests(&path, out, visited)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// The same object twice in one apply is legal (the later wins) but rarely meant.
fn warn_duplicates(report: &mut LoadReport) {
    let mut seen: HashMap<(String, String, String), (PathBuf, usize)> = HashMap::new();
    for file in &mut report.files {
        let mut warnings = Vec::new();
        for loaded in &file.objects {
            let o = &loaded.object;
            let key = (
                o.kind().to_owned(),
                o.namespace().to_owned(),
                o.name().to_owned(),
            );
            if let Some((first_file, first_doc)) = seen.get(&key) {
                let doc = DocumentRef {
                    index: loaded.document,
                    kind: Some(o.kind().to_owned()),
                    name: Some(o.name().to_owned()),
                };
                warnings.push(
                    Diagnostic::new(
                        Severity::Warning,
                        &loaded.file,
                        format!(
                            "also defined in {} (document {first_doc}), in the same namespace {:?}; both are applied, this one last",
                            first_file.display(),
                            o.namespace(),
                        ),
                    )
                    .in_document(&doc),
                );
            } else {
                seen.insert(key, (loaded.file.clone(), loaded.document));
            }
        }
        file.warnings.extend(warnings);
    }
}

/// Loads one file, whatever its extension.
pub fn load_file(path: &Path) -> FileReport {
    let mut report = FileReport::new(path);
    let fail = |report: &mut FileReport, msg: String| {
        report.error(Diagnostic::new(Severity::Error, path, msg));
    };
    match fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fail(&mut report, "the path does not exist".to_owned());
            return report;
        }
        Err(e) => {
            fail(&mut report, format!("cannot read: {e}"));
            return report;
        }
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            fail(
                &mut report,
                format!(
                    "is {} bytes, more than the {MAX_FILE_BYTES} a manifest file may have",
                    m.len()
                ),
            );
            return report;
        }
        Ok(_) => {}
    }
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            fail(&mut report, format!("cannot read: {e}"));
            return report;
        }
    };
    match String::from_utf8(bytes) {
        Ok(text) => load_str(path, &text, Format::for_path(path)),
        Err(e) => {
            fail(
                &mut report,
                format!(
                    "is not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ),
            );
            report
        }
    }
}

/// Loads manifest text as if read from `file` (which names it in diagnostics).
pub fn load_str(file: &Path, text: &str, format: Format) -> FileReport {
    let mut report = FileReport::new(file);
    let documents = match format {
        Format::Yaml => parse_yaml(text),
        Format::Json => parse_json(text),
    };
    let documents = match documents {
        Ok(docs) => docs,
        Err((position, message)) => {
            let mut d = Diagnostic::new(Severity::Error, file, message);
            d.position = position;
            report.error(d);
            return report;
        }
    };
    if documents.is_empty() {
        report.warnings.push(Diagnostic::new(
            Severity::Warning,
            file,
            "contains no objects",
        ));
    }
    for (i, doc) in documents.into_iter().enumerate() {
        load_document(file, i + 1, doc, &mut report);
    }
    if !report.errors.is_empty() {
        report.objects.clear();
    }
    report
}

type SyntaxError = (Option<TextPosition>, String);

fn parse_yaml(text: &str) -> Result<Vec<Value>, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    // One line per error; the position is reported separately.
    options.with_snippet = false;
    serde_saphyr::from_multiple_with_options::<Value>(text, options).map_err(|e| {
        let message = e.to_string();
        match e.location() {
            Some(loc) => {
                let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message).to_owned();
                let position = TextPosition {
                    line: loc.line() as u32,
                    column: loc.column() as u32,
                };
                (Some(position), format!("YAML syntax error: {message}"))
            }
            None => (None, format!("YAML error: {message}")),
        }
    })
}

fn parse_json(text: &str) -> Result<Vec<Value>, SyntaxError> {
    // Several concatenated objects are accepted, as kubectl accepts them.
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map(|doc| {
            doc.map_err(|e| {
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message);
                let position = (e.line() > 0).then(|| TextPosition {
                    line: e.line() as u32,
                    column: e.column() as u32,
                });
                (position, format!("JSON syntax error: {message}"))
            })
        })
        .collect()
}

fn load_document(file: &Path, index: usize, mut doc: Value, report: &mut FileReport) {
    let text = |v: &Value, pointer: &str| {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let kind = text(&doc, "/kind");
    let api_version = text(&doc, "/apiVersion");
    let docref = DocumentRef {
        index,
        kind: kind.clone(),
        name: text(&doc, "/metadata/name"),
    };
    let error = |report: &mut FileReport, path: &str, message: String| {
        report.error(
            Diagnostic::new(Severity::Error, file, message)
                .in_document(&docref)
                .at_path(&FieldPath::new(path)),
        );
    };
    if !doc.is_object() {
        let what = match &doc {
            Value::Array(_) => "a list",
            Value::String(_) => "a string",
            _ => "a scalar",
        };
        error(
            report,
            "",
            format!("a manifest must be an object with apiVersion and kind, not {what}"),
        );
        return;
    }
    for key in ["apiVersion", "kind"] {
        if let Some(v) = doc.get(key).filter(|v| !v.is_string()) {
            error(report, key, format!("Invalid value: {v}: must be a string"));
            return;
        }
    }
    match (api_version.as_deref(), kind.as_deref()) {
        (Some(POD_API_VERSION), Some(POD_KIND)) => {
            load_typed(file, &docref, &mut doc, &POD_SHAPE, report, |pod: Pod| {
                let mut pod = pod;
                default_pod(&mut pod);
                let v = validate_pod(&pod);
                (Object::Pod(pod), v)
            });
        }
        (Some(DEPLOYMENT_API_VERSION), Some(DEPLOYMENT_KIND)) => {
            load_typed(file, &docref, &mut doc, &DEPLOYMENT_SHAPE, report, |d: Deployment| {
                let mut d = d;
                default_deployment(&mut d);
                let v = validate_deployment(&d);
                (Object::Deployment(d), v)
            });
        }
        (_, None) => error(
            report,
            "kind",
            "Required value: a manifest names its kind (Pod or Deployment)".to_owned(),
        ),
        (None, Some(_)) => error(
            report,
            "apiVersion",
            "Required value: a manifest names its apiVersion (v1 for a Pod, apps/v1 for a Deployment)"
                .to_owned(),
        ),
        (Some(api_version), Some(kind)) => error(
            report,
            "",
            format!(
                "kind {kind} ({api_version}) is not supported: flotilla runs v1 Pod and apps/v1 Deployment"
            ),
        ),
    }
}

fn load_typed<T: DeserializeOwned>(
    file: &Path,
    docref: &DocumentRef,
    doc: &mut Value,
    shape: &Shape,
    report: &mut FileReport,
    finish: impl FnOnce(T) -> (Object, Validation),
) {
    let mut findings = Findings::default();
    unsupported::check(doc, shape, &mut findings);
    for e in &findings.errors {
        report.error(Diagnostic::from_field_error(file, docref, e));
    }
    for w in &findings.warnings {
        report
            .warnings
            .push(Diagnostic::from_warning(file, docref, w));
    }
    if findings.broken {
        // Typed decoding would stop at the first of these; they are all reported.
        return;
    }
    let typed: T = match serde_path_to_error::deserialize(doc.take()) {
        Ok(t) => t,
        Err(e) => {
            // The pre-pass checks every type, so this is a gap in the field table.
            let path = e.path().to_string();
            let mut d =
                Diagnostic::new(Severity::Error, file, e.inner().to_string()).in_document(docref);
            if path != "." {
                d.path = Some(path);
            }
            report.error(d);
            return;
        }
    };
    let (object, validation) = finish(typed);
    // A field the pre-pass already refused is not reported again by validation
    // (a missing selector is not also an empty one).
    let reported: HashSet<&FieldPath> = findings.errors.iter().map(|e| &e.path).collect();
    for e in validation
        .errors
        .iter()
        .filter(|e| !reported.contains(&e.path))
    {
        report.error(Diagnostic::from_field_error(file, docref, e));
    }
    for w in &validation.warnings {
        report
            .warnings
            .push(Diagnostic::from_warning(file, docref, w));
    }
    report.objects.push(LoadedObject {
        object,
        file: file.to_owned(),
        document: docref.index,
    });
}

#[cfg(test)]
mod tests;
