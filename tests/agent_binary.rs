//! The agent binary is copied to every host: it must stay self-contained and
//! must not link the console (ratatui, crossterm), per DESIGN.md's import rule.

use std::process::Command;

#[test]
fn the_agent_binary_does_not_link_the_console() {
    // The symbol table, not the raw bytes: debug info may name the console's
    // types (the library is compiled as one crate), but no function of
    // ratatui or crossterm may be linked into the agent.
    let agent = env!("CARGO_BIN_EXE_flotilla-agent");
    let out = Command::new("nm")
        .args(["--demangle", "--defined-only", agent])
        .output()
        .expect("nm (binutils, installed with gcc) lists the agent's symbols");
    assert!(
        out.status.success(),
        "nm failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let symbols = String::from_utf8_lossy(&out.stdout);
    assert!(
        symbols.lines().count() > 1000,
        "nm listed too few symbols to judge: {}",
        symbols.lines().count()
    );
    for crate_name in ["ratatui", "crossterm"] {
        let linked: Vec<&str> = symbols
            .lines()
            .filter(|l| l.contains(crate_name))
            .take(5)
            .collect();
        assert!(
            linked.is_empty(),
            "flotilla-agent links code from {crate_name} (the agent must not import the console): {linked:#?}"
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

/// The agent hosts run (scripts/test builds it, and names it in
/// `$FLOTILLA_TEST_AGENT`) is linked statically: a dynamic build asks for the
/// build machine's glibc (2.34 or later here), which many hosts lack.
#[test]
fn the_agent_hosts_run_needs_no_particular_glibc() {
    let agent = std::env::var("FLOTILLA_TEST_AGENT").unwrap_or_else(|_| {
        panic!(
            "FLOTILLA_TEST_AGENT is not set: run the README's test command (scripts/test), \
             which links the agent as the hosts get it"
        )
    });
    let out = Command::new("readelf")
        .args(["--program-headers", &agent])
        .output()
        .expect("readelf (binutils, installed with gcc)");
    assert!(out.status.success(), "readelf {agent} failed");
    let headers = String::from_utf8_lossy(&out.stdout);
    assert!(
        headers.contains("LOAD"),
        "no program headers read: {headers}"
    );
    assert!(
        !headers.contains("INTERP"),
        "{agent} asks for a dynamic loader (it is linked dynamically):\n{headers}"
    );
    let version = Command::new(&agent)
        .arg("version")
        .output()
        .expect("run the agent");
    assert!(version.status.success(), "{agent} version failed");
}
