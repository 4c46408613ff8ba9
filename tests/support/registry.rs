//! A real OCI registry for one test: Debian's distribution server
//! (`/usr/bin/docker-registry`) on 127.0.0.1 with a free port and its own
//! storage, optionally behind htpasswd basic auth. Killed on Drop.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{TestDir, die_with_parent};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

pub struct TestRegistry {
    child: Child,
    port: u16,
    log: PathBuf,
    // Dropped after the child is killed (fields drop in order, after Drop::drop).
    _dir: TestDir,
}

impl TestRegistry {
    /// An anonymous registry.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(None)
    }

    /// A registry that wants `user`:`password` (basic auth) for everything.
    pub fn start_with_htpasswd(user: &str, password: &str) -> TestRegistry {
        TestRegistry::start_with(Some((user, password)))
    }

    fn start_with(auth: Option<(&str, &str)>) -> TestRegistry {
        // A port picked by the kernel can be taken by someone else before the
        // registry binds it: try a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            match TestRegistry::try_start(auth) {
                Ok(r) => return r,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start {REGISTRY_BINARY}: {last_error}");
    }

    fn try_start(auth: Option<(&str, &str)>) -> Result<TestRegistry, String> {
        assert!(
            std::path::Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} is missing: install the docker-registry package (scripts/test does)"
        );
        let dir = TestDir::new("registry");
        let port = free_port();
        let storage = dir.subdir("storage");
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: flotilla-pull-tests\n",
            storage = storage.display()
        );
        if let Some((user, password)) = auth {
            // docker-registry reads bcrypt entries only; cost 4 keeps it quick.
            let hash = bcrypt::hash(password, 4).expect("bcrypt");
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: flotilla-tests\n    path: {}\n",
                htpasswd.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        let log = dir.path().join("registry.log");
        let log_file = fs::File::create(&log).expect("registry log");
        let mut command = Command::new(REGISTRY_BINARY);
        command
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file);
        die_with_parent(&mut command);
        let child = command
            .spawn()
            .map_err(|e| format!("spawn {REGISTRY_BINARY}: {e}"))?;
        let mut registry = TestRegistry {
            child,
            port,
            log,
            _dir: dir,
        };
        registry.wait_until_it_answers()?;
        Ok(registry)
    }

    /// Polls `GET /v2/` until the registry answers with any HTTP status (401
    /// counts: it is up, it wants credentials).
    fn wait_until_it_answers(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited ({status}): {}", self.log_text()));
            }
            if http_status(self.port, "/v2/").is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "no answer on 127.0.0.1:{} after 15 s: {}",
            self.port,
            self.log_text()
        ))
    }

    /// `127.0.0.1:PORT`, as image references spell the registry.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// The status code of a plain `GET path` on 127.0.0.1:port, if anything answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().ok()?,
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
