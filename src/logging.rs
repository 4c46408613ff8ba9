//! Logging to the log file. The console owns the terminal, so nothing that runs
//! in the background may print to it: everything goes through `tracing` into a
//! daily-rolling file under `data_local_dir/logs`.

use std::path::Path;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot create the log directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open a log file in {path}: {source}")]
    Appender {
        path: String,
        source: tracing_appender::rolling::InitError,
    },
}

/// Lines queued for the writer thread before new ones are dropped.
/// tracing-appender's default, 128 000, preallocates and touches a
/// 4 MB queue up front: more than the rest of the agent's idle memory. The
/// writer thread drains the queue as fast as the disk takes it, so only a
/// burst of this many lines within one write could lose any.
const BUFFERED_LINES: usize = 2048;

/// Starts logging to `<dir>/<prefix>.YYYY-MM-DD`. Keep the returned guard alive
/// for the life of `main`: dropping it stops the writer thread. The level comes
/// from `FLOTILLA_LOG` (an `EnvFilter` directive), `info` by default.
pub fn init_file_logging(dir: &Path, prefix: &str) -> Result<WorkerGuard, LoggingError> {
    std::fs::create_dir_all(dir).map_err(|source| LoggingError::CreateDir {
        path: dir.display().to_string(),
        source,
    })?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(prefix)
        .max_log_files(14)
        .build(dir)
        .map_err(|source| LoggingError::Appender {
            path: dir.display().to_string(),
            source,
        })?;
    let (writer, guard) = NonBlockingBuilder::default()
        .buffered_lines_limit(BUFFERED_LINES)
        .finish(appender);
    let filter = EnvFilter::try_from_env("FLOTILLA_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // A second init (tests calling twice) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
    Ok(guard)
}
