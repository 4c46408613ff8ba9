//! A tiny registry that misbehaves on purpose: just enough HTTP/1.1 to answer
//! `GET /v2/`, manifests and blobs (GET and HEAD), one request per connection,
//! with blobs that can be served corrupted (same length, wrong bytes),
//! over-long (more bytes than the descriptor says), or that stall half-way.
//! It records every request so a test can count what the agent asked for.
//!
//! It runs on a tokio runtime in a thread of its own; Drop stops it and drops
//! every connection (a stalled one included).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use super::image::{Image, Index, OCI_INDEX};
use super::sha256;

/// How a blob is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// As stored.
    Normal,
    /// Same length, bytes flipped in the middle: the digest no longer matches.
    Corrupt,
    /// The right bytes followed by `extra` more, with a Content-Length that
    /// covers them all.
    OverLong { extra: usize },
    /// The headers and the first `after` bytes, then nothing, ever.
    Stall { after: usize },
    /// The first `after` bytes, a pause of `millis`, then the rest: a slow
    /// registry, to hold a pull half-way while another command runs.
    Pause { after: usize, millis: u64 },
}

struct Blob {
    data: Arc<Vec<u8>>,
    serve: Serve,
}

struct Manifest {
    content_type: String,
    bytes: Arc<Vec<u8>>,
}

#[derive(Default)]
struct State {
    /// `(repository, tag or digest)` → manifest.
    manifests: Mutex<HashMap<(String, String), Manifest>>,
    blobs: Mutex<HashMap<String, Blob>>,
    /// `"GET /v2/…"` for every request, in order.
    requests: Mutex<Vec<String>>,
    /// Set once a stalling blob has sent what it will send.
    stalled: (Mutex<bool>, Condvar),
}

pub struct FakeRegistry {
    port: u16,
    state: Arc<State>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeRegistry {
    pub fn start() -> FakeRegistry {
        let state = Arc::new(State::default());
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake registry");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let port = std_listener.local_addr().expect("local addr").port();
        let (tx, rx) = oneshot::channel();
        let served = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fake registry runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                let accept = async {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            continue;
                        };
                        let state = served.clone();
                        tokio::spawn(async move {
                            let _ = handle(stream, state).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = rx => {}
                }
            });
            // Dropping the runtime here cancels every connection task.
        });
        FakeRegistry {
            port,
            state,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Serves `image` as `repo:tag` and `repo@digest`, blobs as stored.
    pub fn add_image(&self, repo: &str, tag: &str, image: &Image) {
        for (digest, data) in image.blobs() {
            self.add_blob(&digest, data);
        }
        self.add_manifest(
            repo,
            tag,
            &image.manifest_media_type,
            image.manifest.clone(),
        );
        self.add_manifest(
            repo,
            &image.digest(),
            &image.manifest_media_type,
            image.manifest.clone(),
        );
    }

    /// Serves `index` as `repo:tag` and every image in it by digest.
    pub fn add_index(&self, repo: &str, tag: &str, index: &Index) {
        for image in &index.images {
            self.add_image(repo, &image.digest(), image);
        }
        self.add_manifest(repo, tag, OCI_INDEX, index.bytes.clone());
        self.add_manifest(repo, &index.digest(), OCI_INDEX, index.bytes.clone());
    }

    /// Serves `bytes` as the manifest `repo:reference` whatever their digest
    /// (a registry that lies about `repo@sha256:…`).
    pub fn add_manifest(&self, repo: &str, reference: &str, content_type: &str, bytes: Vec<u8>) {
        self.state.manifests.lock().unwrap().insert(
            (repo.to_string(), reference.to_string()),
            Manifest {
                content_type: content_type.to_string(),
                bytes: Arc::new(bytes),
            },
        );
    }

    pub fn add_blob(&self, digest: &str, data: Vec<u8>) {
        self.state.blobs.lock().unwrap().insert(
            digest.to_string(),
            Blob {
                data: Arc::new(data),
                serve: Serve::Normal,
            },
        );
    }

    /// Changes how the blob `digest` is served from now on.
    pub fn serve_blob(&self, digest: &str, serve: Serve) {
        self.state
            .blobs
            .lock()
            .unwrap()
            .get_mut(digest)
            .unwrap_or_else(|| panic!("the fake registry has no blob {digest}"))
            .serve = serve;
    }

    /// Every request so far, as `"METHOD /path"`.
    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    /// Requests for manifests (any method), and for blobs.
    pub fn manifest_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.contains("/manifests/"))
            .collect()
    }

    pub fn blob_requests(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.contains("/blobs/"))
            .collect()
    }

    /// Waits until a stalling (or pausing) blob has sent its first part.
    pub fn wait_for_stall(&self, timeout: Duration) -> bool {
        let (lock, cv) = &self.state.stalled;
        let guard = lock.lock().unwrap();
        let (guard, _) = cv
            .wait_timeout_while(guard, timeout, |stalled| !*stalled)
            .unwrap();
        *guard
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn handle(mut stream: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    // The request head; bodies are never expected (GET and HEAD only).
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut first = head.lines().next().unwrap_or("").split_whitespace();
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    state
        .requests
        .lock()
        .unwrap()
        .push(format!("{method} {path}"));
    let is_head = method == "HEAD";
    if method != "GET" && !is_head {
        return respond(&mut stream, "405 Method Not Allowed", &[], b"", is_head).await;
    }
    if path == "/v2/" || path == "/v2" {
        return respond(&mut stream, "200 OK", &json_type(), b"{}", is_head).await;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return not_found(&mut stream, is_head).await;
    };
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let found = state
            .manifests
            .lock()
            .unwrap()
            .get(&(repo.to_string(), reference.to_string()))
            .map(|m| (m.content_type.clone(), m.bytes.clone()));
        let Some((content_type, bytes)) = found else {
            return not_found(&mut stream, is_head).await;
        };
        // Requested by digest: claim that digest, as a lying registry would.
        let digest = if reference.starts_with("sha256:") {
            reference.to_string()
        } else {
            sha256(&bytes)
        };
        let headers = [
            ("Content-Type".to_string(), content_type),
            ("Docker-Content-Digest".to_string(), digest),
        ];
        return respond(&mut stream, "200 OK", &headers, &bytes, is_head).await;
    }
    if let Some((_repo, digest)) = rest.rsplit_once("/blobs/") {
        let found = state
            .blobs
            .lock()
            .unwrap()
            .get(digest)
            .map(|b| (b.data.clone(), b.serve));
        let Some((data, serve)) = found else {
            return not_found(&mut stream, is_head).await;
        };
        let octets = [
            (
                "Content-Type".to_string(),
                "application/octet-stream".to_string(),
            ),
            ("Docker-Content-Digest".to_string(), digest.to_string()),
        ];
        return match serve {
            Serve::Normal => respond(&mut stream, "200 OK", &octets, &data, is_head).await,
            Serve::Corrupt => {
                let mut bad = data.to_vec();
                let mid = bad.len() / 2;
                for b in &mut bad[mid..(mid + 16).min(data.len())] {
                    *b ^= 0xff;
                }
                respond(&mut stream, "200 OK", &octets, &bad, is_head).await
            }
            Serve::OverLong { extra } => {
                let mut long = data.to_vec();
                long.extend(std::iter::repeat_n(0x5a, extra));
                respond(&mut stream, "200 OK", &octets, &long, is_head).await
            }
            Serve::Pause { after, millis } => {
                let head = response_head("200 OK", &octets, data.len());
                stream.write_all(head.as_bytes()).await?;
                if !is_head {
                    let after = after.min(data.len());
                    stream.write_all(&data[..after]).await?;
                    stream.flush().await?;
                    signal_stalled(&state);
                    tokio::time::sleep(Duration::from_millis(millis)).await;
                    stream.write_all(&data[after..]).await?;
                }
                stream.flush().await?;
                stream.shutdown().await
            }
            Serve::Stall { after } => {
                let head = response_head("200 OK", &octets, data.len());
                stream.write_all(head.as_bytes()).await?;
                if !is_head {
                    stream.write_all(&data[..after.min(data.len())]).await?;
                    stream.flush().await?;
                    signal_stalled(&state);
                    // Hold the connection open until the registry is dropped.
                    std::future::pending::<()>().await;
                }
                Ok(())
            }
        };
    }
    not_found(&mut stream, is_head).await
}

/// Tells `wait_for_stall` that a blob has sent its first part.
fn signal_stalled(state: &State) {
    let (lock, cv) = &state.stalled;
    *lock.lock().unwrap() = true;
    cv.notify_all();
}

fn json_type() -> [(String, String); 2] {
    [
        ("Content-Type".to_string(), "application/json".to_string()),
        (
            "Docker-Distribution-API-Version".to_string(),
            "registry/2.0".to_string(),
        ),
    ]
}

fn response_head(status: &str, headers: &[(String, String)], length: usize) -> String {
    let mut head =
        format!("HTTP/1.1 {status}\r\nContent-Length: {length}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    headers: &[(String, String)],
    body: &[u8],
    is_head: bool,
) -> std::io::Result<()> {
    stream
        .write_all(response_head(status, headers, body.len()).as_bytes())
        .await?;
    if !is_head {
        stream.write_all(body).await?;
    }
    stream.flush().await?;
    stream.shutdown().await
}

async fn not_found(stream: &mut TcpStream, is_head: bool) -> std::io::Result<()> {
    let body = br#"{"errors":[{"code":"NOT_FOUND","message":"not known to the fake registry"}]}"#;
    respond(stream, "404 Not Found", &json_type(), body, is_head).await
}
