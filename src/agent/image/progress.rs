//! What a pull reports as it goes, and the command line's two ways of
//! showing it: a redrawn bar per layer on a terminal, one line per finished
//! layer otherwise (logs, tests, pipes).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One step of a pull. Layers are named by their compressed digest.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// The manifest is known: how many layers, and the manifest digest.
    Resolved {
        digest: String,
        layers: usize,
    },
    /// A layer is already in the store: nothing to do.
    LayerPresent {
        digest: String,
        size: u64,
    },
    /// Bytes downloaded so far of a layer.
    LayerBytes {
        digest: String,
        done: u64,
        size: u64,
    },
    LayerDownloaded {
        digest: String,
        size: u64,
    },
    LayerUnpacked {
        digest: String,
        entries: u64,
        skipped_devices: usize,
    },
}

pub type Progress<'a> = dyn Fn(PullEvent) + Send + Sync + 'a;

/// Prints events for a person or a log: one line per finished step, or (on
/// a terminal) a table of layers redrawn at most ten times a second.
pub struct Printer {
    terminal: bool,
    state: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    rows: Vec<Row>,
    drawn: usize,
    last_draw: Option<Instant>,
}

struct Row {
    digest: String,
    done: u64,
    size: u64,
    status: &'static str,
}

impl Printer {
    pub fn new(terminal: bool) -> Printer {
        Printer {
            terminal,
            state: Mutex::new(Table::default()),
        }
    }

    pub fn event(&self, event: PullEvent) {
        let Ok(mut table) = self.state.lock() else {
            return;
        };
        if !self.terminal {
            if let Some(line) = plain_line(&event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            return;
        }
        table.apply(&event);
        let final_step = !matches!(event, PullEvent::LayerBytes { .. });
        let due = table
            .last_draw
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if final_step || due {
            table.draw();
        }
    }

    /// Leaves the final table on screen.
    pub fn finish(&self) {
        if self.terminal
            && let Ok(mut table) = self.state.lock()
        {
            table.draw();
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

fn plain_line(event: &PullEvent) -> Option<String> {
    match event {
        PullEvent::Resolved { digest, layers } => Some(format!(
            "resolved {digest}: {layers} layer{}",
            if *layers == 1 { "" } else { "s" }
        )),
        PullEvent::LayerPresent { digest, size } => Some(format!(
            "{}: already present ({})",
            short(digest),
            human_bytes(*size)
        )),
        PullEvent::LayerBytes { .. } => None,
        PullEvent::LayerDownloaded { digest, size } => Some(format!(
            "{}: downloaded {}",
            short(digest),
            human_bytes(*size)
        )),
        PullEvent::LayerUnpacked {
            digest,
            entries,
            skipped_devices,
        } => Some(if *skipped_devices > 0 {
            format!(
                "{}: unpacked {entries} entries ({skipped_devices} device nodes not created)",
                short(digest)
            )
        } else {
            format!("{}: unpacked {entries} entries", short(digest))
        }),
    }
}

impl Table {
    fn row(&mut self, digest: &str) -> &mut Row {
        if let Some(i) = self.rows.iter().position(|r| r.digest == digest) {
            return &mut self.rows[i];
        }
        self.rows.push(Row {
            digest: digest.to_string(),
            done: 0,
            size: 0,
            status: "waiting",
        });
        let last = self.rows.len() - 1;
        &mut self.rows[last]
    }

    fn apply(&mut self, event: &PullEvent) {
        match event {
            PullEvent::Resolved { .. } => {}
            PullEvent::LayerPresent { digest, size } => {
                let row = self.row(digest);
                (row.done, row.size, row.status) = (*size, *size, "present");
            }
            PullEvent::LayerBytes { digest, done, size } => {
                let row = self.row(digest);
                (row.done, row.size, row.status) = (*done, *size, "downloading");
            }
            PullEvent::LayerDownloaded { digest, size } => {
                let row = self.row(digest);
                (row.done, row.size, row.status) = (*size, *size, "unpacking");
            }
            PullEvent::LayerUnpacked { digest, .. } => self.row(digest).status = "done",
        }
    }

    fn draw(&mut self) {
        let mut out = std::io::stdout().lock();
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        for row in &self.rows {
            let fraction = if row.size == 0 {
                0.0
            } else {
                row.done as f64 / row.size as f64
            };
            let filled = (fraction * 30.0).round() as usize;
            let _ = writeln!(
                out,
                "\x1b[2K{} [{}{}] {:>10} / {:<10} {}",
                short(&row.digest),
                "#".repeat(filled.min(30)),
                " ".repeat(30 - filled.min(30)),
                human_bytes(row.done),
                human_bytes(row.size),
                row.status
            );
        }
        let _ = out.flush();
        self.drawn = self.rows.len();
        self.last_draw = Some(Instant::now());
    }
}

/// `41.9 MB`, decimal units as registries and Docker print them.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_dockers() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(41_900_000), "41.9 MB");
        assert_eq!(human_bytes(2_000_000_000), "2.0 GB");
    }

    #[test]
    fn plain_lines_name_the_layer_and_what_happened() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            plain_line(&PullEvent::LayerDownloaded {
                digest: digest.clone(),
                size: 1_500_000
            })
            .as_deref(),
            Some("abababababab: downloaded 1.5 MB")
        );
        assert_eq!(
            plain_line(&PullEvent::LayerBytes {
                digest,
                done: 1,
                size: 2
            }),
            None
        );
    }
}
