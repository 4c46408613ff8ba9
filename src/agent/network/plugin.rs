//! Executing one CNI plugin binary the way the CNI spec's runtime does:
//! finding it on the plugin path, the `CNI_*` environment, the configuration
//! on stdin, the result or error object on stdout, and a timeout.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Deserialize;
use serde_json::Value;

use super::NetworkError;

/// Plugins exec `iptables` (bridge's ipMasq, portmap) and `host-local`; an
/// agent started with an empty environment still needs them found.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Output beyond this is drained and dropped: a result is a few KiB, and a
/// runaway plugin must not grow the agent without bound.
const OUTPUT_CAP: u64 = 1 << 20;

/// The first of `dirs` holding an executable file `name`.
pub(crate) fn find(dirs: &[PathBuf], name: &str) -> Result<PathBuf, NetworkError> {
    use std::os::unix::fs::PermissionsExt;
    for dir in dirs {
        let path = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return Ok(path);
        }
    }
    Err(NetworkError::PluginMissing {
        plugin: name.to_string(),
        searched: dirs.to_vec(),
    })
}

/// One plugin call: which command, on what, with which configuration.
pub(crate) struct Call<'a> {
    /// ADD, DEL, CHECK or VERSION.
    pub command: &'a str,
    pub container_id: &'a str,
    /// Empty for DEL of a namespace that is gone (the spec's "CNI_NETNS may be
    /// empty for DEL").
    pub netns: &'a Path,
    pub ifname: &'a str,
    /// `CNI_PATH`: every plugin dir, so bridge finds host-local.
    pub cni_path: &'a OsString,
    pub stdin: &'a [u8],
    pub timeout: Duration,
}

/// The CNI error object (spec: "Error" section).
#[derive(Debug, Deserialize, PartialEq)]
pub(crate) struct CniError {
    pub code: Option<u64>,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: String,
}

impl CniError {
    pub(crate) fn message(&self) -> String {
        let mut text = self.msg.trim().to_string();
        let details = self.details.trim();
        if !details.is_empty() && details != text {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(details);
        }
        if let Some(hint) = self.code.and_then(code_meaning) {
            text.push_str(&format!(" [{hint}]"));
        }
        text
    }
}

/// The spec's well-known error codes, for the operator reading the message.
fn code_meaning(code: u64) -> Option<&'static str> {
    Some(match code {
        1 => "incompatible CNI version",
        2 => "unsupported field in network configuration",
        3 => "container unknown or does not exist",
        4 => "invalid necessary environment variables",
        5 => "I/O failure",
        6 => "failed to decode content",
        7 => "invalid network config",
        11 => "try again later",
        _ => return None,
    })
}

/// Parses the error object a failed plugin printed; `None` when stdout is
/// not one (a crash, a panic trace, nothing at all).
pub(crate) fn parse_error(stdout: &[u8]) -> Option<CniError> {
    let value: Value = serde_json::from_slice(stdout).ok()?;
    // An object without `code` and `msg` is not an error object, whatever it is.
    if value.get("code").is_none() && value.get("msg").is_none() {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// Runs one plugin in the calling thread's network namespace and returns its
/// stdout parsed as JSON (`None` when it printed nothing, as DEL and CHECK do).
///
/// `std::process::Command` opens its own pipes with `O_CLOEXEC` and Rust
/// opens every file descriptor close-on-exec, so the plugin inherits only
/// stdin, stdout and stderr, never the agent's sockets or files.
pub(crate) fn run(plugin: &str, path: &Path, call: &Call) -> Result<Option<Value>, NetworkError> {
    let failed = |code: Option<u64>, message: String| NetworkError::PluginFailed {
        plugin: plugin.to_string(),
        command: call.command.to_string(),
        code,
        message,
    };

    let mut cmd = Command::new(path);
    // The spec's variables are ours to set: drop any the agent inherited
    // (notably CNI_ARGS, which plugins parse and reject on unknown keys).
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", call.ifname)
        .env("CNI_PATH", call.cni_path);
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", DEFAULT_PATH);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the iptables it may be
        // waiting on too, and the pipes close.
        .process_group(0);

    let mut child = spawn(&mut cmd).map_err(|e| NetworkError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;

    // Feed stdin and drain both outputs on their own threads: a plugin that
    // fills a pipe while we write the other would otherwise deadlock.
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = call.stdin.to_vec();
    // A plugin may exit without reading its input (EPIPE): its exit status
    // and output tell what happened, so a write error is not ours to report.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let stdout = reader(child.stdout.take().expect("piped stdout"));
    let stderr = reader(child.stderr.take().expect("piped stderr"));

    let status = match wait_timeout(&mut child, call.timeout) {
        Ok(Some(status)) => status,
        Ok(None) => {
            // Kill the whole group, reap the child; the reader threads end
            // once the group's copies of the pipes are closed, and are left
            // to do so on their own (a stray grandchild may hold them).
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(failed(
                None,
                format!(
                    "did not finish within {} s and was killed; a plugin usually hangs \
                     on the xtables lock (/run/xtables.lock) held by another iptables, \
                     or on a stuck netlink call",
                    call.timeout.as_secs_f64()
                ),
            ));
        }
        Err(e) => {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(NetworkError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
    };
    let _ = writer.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();

    if !status.success() {
        if let Some(error) = parse_error(&stdout) {
            return Err(failed(error.code, error.message()));
        }
        let mut message = String::from_utf8_lossy(&stderr).trim().to_string();
        if message.is_empty() {
            message = String::from_utf8_lossy(&stdout).trim().to_string();
        }
        let status_text = match status.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("{status}"),
        };
        message = if message.is_empty() {
            format!("{status_text}, no output")
        } else {
            format!("{message} ({status_text})")
        };
        return Err(failed(None, message));
    }

    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let value: Value = serde_json::from_slice(&stdout).map_err(|e| NetworkError::BadResult {
        plugin: plugin.to_string(),
        message: format!(
            "{} printed output that is not JSON ({e}): {}",
            call.command,
            String::from_utf8_lossy(&stdout).trim()
        ),
    })?;
    // A plugin that exits 0 with an error object (the spec says non-zero)
    // still failed: a result never carries `code` or `msg`.
    if let Some(error) = parse_error(&stdout) {
        return Err(failed(error.code, error.message()));
    }
    Ok(Some(value))
}

/// `spawn`, retrying ETXTBSY: a plugin binary written moments ago (uploaded
/// by flotilla, or by a test) can still be open for writing in a child that
/// another thread forked before its close-on-exec took effect.
fn spawn(cmd: &mut Command) -> std::io::Result<Child> {
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 10 => {
                attempt += 1;
                thread::sleep(Duration::from_millis(10 * attempt));
            }
            other => return other,
        }
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut pipe).take(OUTPUT_CAP).read_to_end(&mut out);
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        out
    })
}

/// `Ok(None)` when `timeout` passed first. A thread blocks in `waitid`
/// until the child exits, without reaping it (`WNOWAIT`), and says so; this
/// thread waits for that word with the timeout. Polling `try_wait` with a
/// doubling pause (1, 2, 4 ... ms, as this did) noticed a plugin up to
/// twice its run time late: the demo's ADDs, timed by the agent's log,
/// clustered at ~17 and ~33 ms, the polls at 15 and 31 ms. Left unreaped,
/// the child's pid (and so its process group) cannot be reused before the
/// caller kills the group after a timeout; a SIGCHLD handler would be
/// process-wide state the rest of the agent does not expect.
fn wait_timeout(
    child: &mut Child,
    timeout: Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let pid = child.id();
    let (exited, exit) = mpsc::channel();
    // Ends when the child does: at its exit, or at the SIGKILL the caller
    // sends after a timeout; ECHILD if the caller reaped it first.
    thread::spawn(move || {
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT;
        let outcome = loop {
            match waitid(Id::Pid(Pid::from_raw(pid as i32)), flags) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map(drop),
            }
        };
        let _ = exited.send(outcome);
    });
    match exit.recv_timeout(timeout) {
        Ok(Ok(())) => child.wait().map(Some),
        Ok(Err(errno)) => Err(std::io::Error::from(errno)),
        Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(std::io::Error::other(
            "the thread waiting for the plugin ended",
        )),
    }
}

/// The `supportedVersions` of a VERSION reply.
pub(crate) fn supported_versions(
    plugin: &str,
    reply: Option<Value>,
) -> Result<Vec<String>, NetworkError> {
    let bad = |message: String| NetworkError::BadResult {
        plugin: plugin.to_string(),
        message,
    };
    let reply = reply.ok_or_else(|| bad("VERSION printed nothing".into()))?;
    let versions = reply
        .get("supportedVersions")
        .and_then(Value::as_array)
        .ok_or_else(|| bad(format!("VERSION reply has no supportedVersions: {reply}")))?;
    Ok(versions
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_objects() {
        let e = parse_error(
            br#"{"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"subnet missing"}"#,
        )
        .unwrap();
        assert_eq!(e.code, Some(7));
        assert_eq!(
            e.message(),
            "invalid config: subnet missing [invalid network config]"
        );
        let e = parse_error(br#"{"code":999,"msg":"custom"}"#).unwrap();
        assert_eq!(e.message(), "custom");
        let e = parse_error(br#"{"code":11,"msg":"busy","details":"busy"}"#).unwrap();
        assert_eq!(e.message(), "busy [try again later]");
        // Not error objects.
        assert_eq!(parse_error(b"panic: runtime error"), None);
        assert_eq!(parse_error(b""), None);
        assert_eq!(parse_error(br#"{"cniVersion":"1.0.0","ips":[]}"#), None);
        assert_eq!(parse_error(br#"{"code":"seven","msg":"x"}"#), None);
    }

    #[test]
    fn reads_supported_versions() {
        let reply = serde_json::json!({"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]});
        assert_eq!(
            supported_versions("bridge", Some(reply)).unwrap(),
            ["0.4.0", "1.0.0"]
        );
        let err = supported_versions("bridge", Some(serde_json::json!({}))).unwrap_err();
        assert!(matches!(err, NetworkError::BadResult { .. }), "{err}");
        assert!(supported_versions("bridge", None).is_err());
    }

    #[test]
    fn finds_the_first_executable() {
        use std::os::unix::fs::PermissionsExt;
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        // Not executable in the first dir: skipped.
        std::fs::write(a.path().join("bridge"), "").unwrap();
        std::fs::write(b.path().join("bridge"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(b.path().join("bridge"), PermissionsExt::from_mode(0o755))
            .unwrap();
        let dirs = vec![a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(find(&dirs, "bridge").unwrap(), b.path().join("bridge"));
        match find(&dirs, "portmap") {
            Err(NetworkError::PluginMissing { plugin, searched }) => {
                assert_eq!(plugin, "portmap");
                assert_eq!(searched, dirs);
            }
            other => panic!("{other:?}"),
        }
    }
}
