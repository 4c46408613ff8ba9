//! What the demo needs from the machine, checked before anything is made, so a
//! missing piece is one line naming the package rather than a half-built cluster.

use std::path::Path;

use super::DemoError;
use super::images::{BUSYBOX, check_busybox_static};
use super::node::SSHD;
use super::registry_server::REGISTRY_BINARY;

/// (program: an absolute path, or a name looked up in PATH; its Debian package)
const PROGRAMS: &[(&str, &str)] = &[
    (SSHD, "openssh-server"),
    (REGISTRY_BINARY, "docker-registry"),
    (BUSYBOX, "busybox-static"),
    ("ip", "iproute2"),
    ("nsenter", "util-linux"),
    // The pod network: CNI's bridge, host-local, portmap and loopback, and
    // the iptables they call for masquerading and hostPort.
    ("/usr/lib/cni/bridge", "containernetworking-plugins"),
    ("iptables", "iptables"),
];

pub fn check() -> Result<(), DemoError> {
    if std::env::consts::OS != "linux" {
        return Err(DemoError::NotLinux(std::env::consts::OS.to_string()));
    }
    if !nix::unistd::geteuid().is_root() {
        return Err(DemoError::NotRoot);
    }
    check_programs(PROGRAMS)?;
    check_busybox_static(Path::new(BUSYBOX)).map_err(|_| DemoError::MissingProgram {
        program: format!("a statically linked {BUSYBOX}"),
        package: "busybox-static".into(),
    })
}

/// The first program of `programs` that is missing, named with its package.
fn check_programs(programs: &[(&str, &str)]) -> Result<(), DemoError> {
    match programs.iter().find(|(program, _)| !is_installed(program)) {
        Some((program, package)) => Err(DemoError::MissingProgram {
            program: program.to_string(),
            package: package.to_string(),
        }),
        None => Ok(()),
    }
}

/// An absolute path must exist; a bare name must be in PATH or an sbin directory
/// (root's PATH does not always include them under sudo).
fn is_installed(program: &str) -> bool {
    if program.starts_with('/') {
        return Path::new(program).exists();
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|dir| !dir.is_empty() && Path::new(dir).join(program).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_named_with_its_package() {
        let err = check_programs(&[("sh", "dash"), ("/nonexistent/sshd", "openssh-server")])
            .expect_err("missing");
        assert_eq!(
            err.to_string(),
            "flotilla demo needs /nonexistent/sshd: apt-get install openssh-server"
        );
        assert!(check_programs(&[("sh", "dash"), ("/bin/sh", "dash")]).is_ok());
    }
}
