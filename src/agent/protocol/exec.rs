//! The messages of `exec.start` and the requests that steer a running exec
//! (`exec.input`, `exec.resize`, `exec.signal`): a process run inside a
//! container over the agent's own connection, as the kubelet's exec stream
//! and containerd's exec API do, so an exec costs no SSH session, login
//! shell or sudo on the host.
//!
//! ```json
//! {"id": 5, "method": "exec.start", "params": {"name": "web", "command": ["sh"], "stdin": true,
//!   "tty": {"term": "xterm-256color", "cols": 120, "rows": 40}}}
//! {"id": 5, "stream": {"stdout": "IyA="}}
//! {"id": 6, "method": "exec.input", "params": {"id": 5, "data": "ZXhpdAo="}}
//! {"id": 6, "result": {"found": true}}
//! {"id": 5, "stream": {"exit": {"code": 0}}}
//! {"id": 5, "end": true}
//! ```
//!
//! Bytes travel as base64 (a terminal's output need not be UTF-8). The
//! stream's last item is `exit` with the shell's code (128 + N after signal
//! N); an exec that could not start at all (no such pod, container not
//! running) fails `exec.start` with `not_found` or `conflict` instead. A
//! control request names the exec by its request id and answers `found:
//! false` once that exec has ended. Cancelling the stream, or closing the
//! connection, hangs the process up (SIGHUP) and kills it shortly after.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::messages::RequestId;

/// `exec.start` params.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecStartParams {
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub name: String,
    /// Default: the pod's first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Empty: the container's shell (its `$SHELL`, else /bin/sh).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// The process reads what `exec.input` sends; without it, EOF.
    #[serde(default)]
    pub stdin: bool,
    /// A pseudo-terminal for the process: its stdin, stdout and stderr, so
    /// the stream carries `stdout` items only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<ExecTerminal>,
}

fn default_namespace() -> String {
    crate::api::meta::DEFAULT_NAMESPACE.to_string()
}

/// The terminal at the client's end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecTerminal {
    /// `TERM` for the process.
    pub term: String,
    pub cols: u16,
    pub rows: u16,
}

/// One item of an exec's stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExecOutput {
    Stdout(Bytes),
    Stderr(Bytes),
    /// The last item: the process has ended.
    Exit {
        code: i32,
    },
}

/// `exec.input` params: bytes for the process's stdin, and/or its end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecInputParams {
    /// The `exec.start` request's id.
    pub id: RequestId,
    #[serde(default, skip_serializing_if = "Bytes::is_empty")]
    pub data: Bytes,
    /// No more input: the process reads EOF after `data` (with a terminal,
    /// the terminal's end-of-file character).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub eof: bool,
}

/// `exec.resize` params: the client's terminal has a new size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecResizeParams {
    pub id: RequestId,
    pub cols: u16,
    pub rows: u16,
}

/// `exec.signal` params: a signal for the process, by its name without
/// `SIG` (one of [`SIGNALS`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecSignalParams {
    pub id: RequestId,
    pub signal: String,
}

/// The signals `exec.signal` delivers: SSH's list less the core-dumping ones.
pub const SIGNALS: [(&str, nix::sys::signal::Signal); 8] = {
    use nix::sys::signal::Signal::*;
    [
        ("HUP", SIGHUP),
        ("INT", SIGINT),
        ("QUIT", SIGQUIT),
        ("TERM", SIGTERM),
        ("KILL", SIGKILL),
        ("USR1", SIGUSR1),
        ("USR2", SIGUSR2),
        ("WINCH", SIGWINCH),
    ]
};

/// The signal named `name`, if [`SIGNALS`] has it.
pub fn signal_named(name: &str) -> Option<nix::sys::signal::Signal> {
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The answer to a control request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    /// False when no exec with that id runs on this connection (it ended).
    pub found: bool,
}

/// A control request on its way from the connection to the exec it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecControl {
    Input(Vec<u8>),
    Eof,
    Resize { cols: u16, rows: u16 },
    Signal(nix::sys::signal::Signal),
}

impl ExecInputParams {
    /// What the exec gets: the bytes, then the end.
    pub fn controls(self) -> impl Iterator<Item = ExecControl> {
        let data = (!self.data.is_empty()).then_some(ExecControl::Input(self.data.0));
        data.into_iter().chain(self.eof.then_some(ExecControl::Eof))
    }
}

/// Bytes as a base64 string on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        BASE64
            .decode(text.as_bytes())
            .map(Bytes)
            .map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn output_items_are_tagged_and_bytes_are_base64() {
        let item = ExecOutput::Stdout(Bytes(b"hi\x1b[0m\xff".to_vec()));
        let wire = serde_json::to_value(&item).unwrap();
        assert_eq!(wire, json!({"stdout": "aGkbWzBt/w=="}));
        assert_eq!(serde_json::from_value::<ExecOutput>(wire).unwrap(), item);
        let exit = serde_json::to_value(ExecOutput::Exit { code: 130 }).unwrap();
        assert_eq!(exit, json!({"exit": {"code": 130}}));
    }

    #[test]
    fn start_params_default_and_refuse_unknown_fields() {
        let start: ExecStartParams = serde_json::from_value(json!({"name": "web"})).unwrap();
        assert_eq!(start.namespace, "default");
        assert!(start.command.is_empty() && !start.stdin && start.tty.is_none());
        let typo = serde_json::from_value::<ExecStartParams>(json!({"name": "web", "tyy": true}));
        assert!(typo.is_err());
    }

    #[test]
    fn input_is_data_then_eof_and_bad_base64_is_refused() {
        let input: ExecInputParams =
            serde_json::from_value(json!({"id": 5, "data": "YQ==", "eof": true})).unwrap();
        let controls: Vec<_> = input.controls().collect();
        assert_eq!(
            controls,
            vec![ExecControl::Input(b"a".to_vec()), ExecControl::Eof]
        );
        let bad = serde_json::from_value::<ExecInputParams>(json!({"id": 5, "data": "!!"}));
        assert!(bad.unwrap_err().to_string().contains("not base64"));
    }

    #[test]
    fn signals_are_named_without_sig() {
        assert_eq!(signal_named("INT"), Some(nix::sys::signal::Signal::SIGINT));
        assert_eq!(signal_named("SIGINT"), None);
        assert_eq!(signal_named("SEGV"), None);
    }
}
