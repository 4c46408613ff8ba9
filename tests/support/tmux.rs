//! A terminal for end-to-end tests: a tmux server of the test's own runs a
//! command; keys go in with send-keys and the screen comes back with
//! capture-pane.

use std::process::Command;
use std::time::{Duration, Instant};

/// Numbers the servers one test process starts.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One tmux server of the test's own (`-L`), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(command: &str, width: u16, height: u16) -> Tmux {
        let tmux = Tmux {
            socket: format!(
                "flotilla-test-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
        };
        let status = Command::new("tmux")
            .args(["-L", &tmux.socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .status()
            .expect("tmux is installed (scripts/test installs it)");
        assert!(status.success(), "tmux new-session failed");
        tmux
    }

    pub fn keys(&self, keys: &[&str]) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0"])
            .args(keys)
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
        // A key at a time, as a person types: the console reads them in turn.
        std::thread::sleep(Duration::from_millis(150));
    }

    /// Text typed as it is (no key names), then Enter.
    pub fn type_line(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "0", "-l", text])
            .status()
            .expect("tmux send-keys");
        assert!(status.success());
        self.keys(&["Enter"]);
    }

    /// Resizes the window, as a person dragging the terminal's corner.
    pub fn resize(&self, width: u16, height: u16) {
        let status = Command::new("tmux")
            .args(["-L", &self.socket, "resize-window", "-t", "0"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .status()
            .expect("tmux resize-window");
        assert!(status.success(), "tmux resize-window failed");
    }

    /// `:COMMAND` then Enter, typed a key at a time.
    pub fn command(&self, command: &str) {
        self.keys(&[":"]);
        for c in command.chars() {
            self.keys(&[&c.to_string()]);
        }
        self.keys(&["Enter"]);
    }

    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-t", "0"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows what `done` looks for.
    pub fn wait_for(&self, what: &str, deadline: Duration, done: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                started.elapsed() < deadline,
                "{what}: not within {deadline:?}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}
