//! The agent binary is copied to every host: it must stay self-contained and
//! must not link the console (ratatui, crossterm), per DESIGN.md's import rule.

use std::process::Command;

#[test]
fn the_agent_binary_does_not_link_the_console() {
    let agent = std::fs::read(env!("CARGO_BIN_EXE_flotilla-agent")).expect("read the agent binary");
    // Symbol names and panic locations name the crate they come from.
    for crate_name in ["ratatui", "crossterm"] {
        assert!(
            memchr::memmem::find(&agent, crate_name.as_bytes()).is_none(),
            "flotilla-agent contains code from {crate_name}: the agent must not import the console"
        );
    }
}

#[test]
fn the_agent_reports_its_version_and_platform() {
    let output = Command::new(env!("CARGO_BIN_EXE_flotilla-agent"))
        .arg("version")
        .output()
        .expect("run flotilla-agent");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.starts_with(&format!("flotilla-agent {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains(std::env::consts::ARCH), "{text}");
}
