//! Pod sandboxes: the network, IPC and UTS namespaces a pod's containers
//! share, kept alive without any process by bind-mounting their nsfs files
//! under `RUN_DIR/<pod-id>/ns/` (as `ip netns add` does), plus the pod's
//! /etc/hosts, /etc/hostname and /etc/resolv.conf.
//!
//! ```text
//! RUN_DIR/<pod-id>/sandbox.json     what the pod was created with (for open)
//! RUN_DIR/<pod-id>/ns/{net,ipc,uts} nsfs bind mounts (no net with hostNetwork)
//! RUN_DIR/<pod-id>/{hosts,hostname,resolv.conf}
//! ```
//!
//! The namespaces are made by a short-lived thread of the caller: namespaces
//! belong to threads, and net, IPC and UTS may be unshared by one thread of a
//! multi-threaded process, so no fork (and no `unsafe`) is needed. The thread
//! names the pod, brings loopback up, binds its namespaces and ends.
//!
//! A sandbox made with `container_namespaces` binds nothing: the pod's only
//! container makes the namespaces itself as it starts, and they end with it.
//! `run --rm` pods are made so (as crun and runc make a container's): no
//! thread, no three binds now and three unmounts later (each unmount waits
//! for an RCU grace period), for namespaces nothing else will join. Only a
//! pod that neither restarts, nor has a second container, nor is attached
//! to a network through its netns path can do without them.
//!
//! The three /etc files are bound into every container **read-only**, where
//! Docker binds its per-container copies read-write: here one set of files
//! serves every container of the pod, so a writable mount would let one
//! container change name resolution for its siblings (and the agent rewrites
//! them anyway). A program that edits /etc/hosts at run time fails with
//! EROFS; hostAliases-style entries belong in the pod spec.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde::{Deserialize, Serialize};

use super::RuntimeError;
use super::rootfs::errno_text;
use super::spec::{BindMount, Namespace, Namespaces, valid_hostname, valid_id};

const NODE_RESOLV_CONF: &str = "/etc/resolv.conf";
/// Docker's fallback when the node's resolv.conf names only local resolvers,
/// which a pod's own network namespace cannot reach.
const FALLBACK_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// What a pod sandbox is made of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// Names the sandbox's directory: `[A-Za-z0-9_.-]`, 1 to 128 characters.
    pub id: String,
    /// The pod's name: its hostname, an RFC 1123 label.
    pub name: String,
    /// Share the node's network namespace instead of getting one.
    pub host_network: bool,
    /// The node's resolv.conf to derive the pod's from.
    #[serde(default = "node_resolv_conf")]
    pub resolv_conf: PathBuf,
    /// The pod's one container makes its namespaces itself; none is bound
    /// here (see the module's doc).
    #[serde(default)]
    pub container_namespaces: bool,
}

fn node_resolv_conf() -> PathBuf {
    NODE_RESOLV_CONF.into()
}

impl SandboxSpec {
    pub fn new(id: &str, name: &str, host_network: bool) -> SandboxSpec {
        SandboxSpec {
            id: id.to_string(),
            name: name.to_string(),
            host_network,
            resolv_conf: node_resolv_conf(),
            container_namespaces: false,
        }
    }
}

/// A pod's namespaces and files, alive until [`PodSandbox::destroy`].
#[derive(Debug)]
pub struct PodSandbox {
    dir: PathBuf,
    spec: SandboxSpec,
}

const NAMESPACES: [(&str, CloneFlags); 3] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl PodSandbox {
    /// Creates the pod's namespaces and files under `run_dir/<id>`. On
    /// failure nothing is left behind.
    pub fn create(run_dir: &Path, spec: &SandboxSpec) -> Result<PodSandbox, RuntimeError> {
        if !valid_id(&spec.id) {
            return Err(RuntimeError::Spec(format!(
                "pod id {:?}: use 1 to 128 of A-Z a-z 0-9 _ . - (not . or ..)",
                spec.id
            )));
        }
        if !valid_hostname(&spec.name) {
            return Err(RuntimeError::Spec(format!(
                "pod name {:?} is not a hostname (1 to 63 of a-z 0-9 -, not starting or ending with -)",
                spec.name
            )));
        }
        fs::create_dir_all(run_dir).map_err(io(run_dir))?;
        let dir = run_dir.join(&spec.id);
        fs::create_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                RuntimeError::SandboxExists(dir.clone())
            } else {
                io(&dir)(e)
            }
        })?;
        let sandbox = PodSandbox {
            dir,
            spec: spec.clone(),
        };
        match sandbox.populate() {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                let _ = sandbox.destroy();
                Err(e)
            }
        }
    }

    fn populate(&self) -> Result<(), RuntimeError> {
        let write = |name: &str, text: &[u8]| {
            let path = self.dir.join(name);
            fs::write(&path, text).map_err(io(&path))
        };
        write(
            "sandbox.json",
            &serde_json::to_vec_pretty(&self.spec).unwrap_or_default(),
        )?;
        write("hosts", hosts_file(&self.spec.name).as_bytes())?;
        write("hostname", format!("{}\n", self.spec.name).as_bytes())?;
        let node = fs::read_to_string(&self.spec.resolv_conf).unwrap_or_default();
        write(
            "resolv.conf",
            pod_resolv_conf(&node, self.spec.host_network).as_bytes(),
        )?;
        let files = self.ns_files();
        if files.is_empty() {
            return Ok(());
        }
        let ns_dir = self.dir.join("ns");
        fs::create_dir(&ns_dir).map_err(io(&ns_dir))?;
        let mut flags = CloneFlags::empty();
        for (_, flag) in self.bound_namespaces() {
            flags |= flag;
        }
        for (_, path) in &files {
            fs::write(path, b"").map_err(io(path))?;
        }
        let hostname = self.spec.name.clone();
        let new_net = !self.spec.host_network;
        std::thread::spawn(move || make_namespaces(flags, &hostname, new_net, &files))
            .join()
            .map_err(|_| RuntimeError::Sandbox {
                step: "create namespaces".into(),
                detail: "the namespace thread panicked".into(),
            })?
    }

    /// Re-opens the sandbox `run_dir/<id>` (after an agent restart): its
    /// namespace files must still be nsfs mounts.
    pub fn open(run_dir: &Path, id: &str) -> Result<PodSandbox, RuntimeError> {
        if !valid_id(id) {
            return Err(RuntimeError::Spec(format!("pod id {id:?} is not valid")));
        }
        let dir = run_dir.join(id);
        let spec_path = dir.join("sandbox.json");
        let text = fs::read(&spec_path).map_err(io(&spec_path))?;
        let spec: SandboxSpec =
            serde_json::from_slice(&text).map_err(|e| RuntimeError::Sandbox {
                step: format!("read {}", spec_path.display()),
                detail: e.to_string(),
            })?;
        let sandbox = PodSandbox { dir, spec };
        for (name, path) in sandbox.ns_files() {
            let alive = nix::sys::statfs::statfs(&path)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
            if !alive {
                return Err(RuntimeError::Sandbox {
                    step: format!("open the {name} namespace {}", path.display()),
                    detail: "not a namespace mount (was the node rebooted?)".into(),
                });
            }
        }
        Ok(sandbox)
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespaces bound for this pod: none for container namespaces,
    /// no net with the node's network.
    fn bound_namespaces(&self) -> impl Iterator<Item = (&'static str, CloneFlags)> + '_ {
        NAMESPACES
            .into_iter()
            .filter(|_| !self.spec.container_namespaces)
            .filter(|(name, _)| !(*name == "net" && self.spec.host_network))
    }

    /// The nsfs files of [`Self::bound_namespaces`].
    fn ns_files(&self) -> Vec<(&'static str, PathBuf)> {
        self.bound_namespaces()
            .map(|(name, _)| (name, self.dir.join("ns").join(name)))
            .collect()
    }

    /// The pod's own network namespace, bound where CNI plugins can enter
    /// it; None with the node's network or container namespaces.
    pub fn netns(&self) -> Option<PathBuf> {
        (!self.spec.host_network && !self.spec.container_namespaces)
            .then(|| self.dir.join("ns").join("net"))
    }

    /// The namespaces a container of this pod joins (or makes).
    pub fn namespaces(&self) -> Namespaces {
        let join = |name: &str| {
            if self.spec.container_namespaces {
                Namespace::New
            } else {
                Namespace::Join(self.dir.join("ns").join(name))
            }
        };
        Namespaces {
            net: if self.spec.host_network {
                Namespace::Host
            } else {
                join("net")
            },
            ipc: join("ipc"),
            uts: join("uts"),
        }
    }

    /// The pod's /etc files, bound read-only into each container.
    pub fn etc_mounts(&self) -> Vec<BindMount> {
        ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|name| BindMount {
                source: self.dir.join(name),
                destination: format!("/etc/{name}"),
                read_only: true,
            })
            .collect()
    }

    /// Unmounts the namespaces and removes the directory. The namespaces
    /// themselves end when the last container in them does.
    pub fn destroy(self) -> Result<(), RuntimeError> {
        for (name, path) in self.ns_files() {
            match nix::mount::umount2(&path, MntFlags::MNT_DETACH) {
                // EINVAL: not a mount point (never bound); ENOENT: no file.
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(RuntimeError::Sandbox {
                        step: format!("unmount the {name} namespace {}", path.display()),
                        detail: errno_text(e as i32),
                    });
                }
            }
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&self.dir)(e)),
        }
    }
}

/// Runs on a thread of its own: unshares, names, brings lo up, binds.
fn make_namespaces(
    flags: CloneFlags,
    hostname: &str,
    new_net: bool,
    files: &[(&str, PathBuf)],
) -> Result<(), RuntimeError> {
    let fail = |step: String, detail: String| RuntimeError::Sandbox { step, detail };
    nix::sched::unshare(flags)
        .map_err(|e| fail("unshare namespaces".into(), errno_text(e as i32)))?;
    nix::unistd::sethostname(hostname)
        .map_err(|e| fail(format!("set hostname {hostname}"), errno_text(e as i32)))?;
    if new_net {
        loopback_up().map_err(|detail| fail("bring loopback up".into(), detail))?;
    }
    for (name, path) in files {
        let source = format!("/proc/thread-self/ns/{name}");
        nix::mount::mount(
            Some(source.as_str()),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            fail(
                format!("bind the {name} namespace on {}", path.display()),
                errno_text(e as i32),
            )
        })?;
    }
    Ok(())
}

/// Sets `lo` up in the calling thread's network namespace with one
/// RTM_NEWLINK request (loopback is always interface 1 in a new namespace).
pub fn loopback_up() -> Result<(), String> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    let text = |e: rustix::io::Errno| errno_text(e.raw_os_error());
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        // NETLINK_ROUTE is protocol 0.
        None,
    )
    .map_err(text)?;
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST_ACK: u16 = 0x1 | 0x4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    let mut msg = Vec::with_capacity(32);
    msg.extend(32u32.to_ne_bytes()); // nlmsghdr: length
    msg.extend(RTM_NEWLINK.to_ne_bytes());
    msg.extend(NLM_F_REQUEST_ACK.to_ne_bytes());
    msg.extend(1u32.to_ne_bytes()); // sequence
    msg.extend(0u32.to_ne_bytes()); // port id: the kernel fills it
    msg.extend([0u8, 0]); // ifinfomsg: AF_UNSPEC, padding
    msg.extend(0u16.to_ne_bytes()); // device type
    msg.extend(1i32.to_ne_bytes()); // interface index: lo
    msg.extend(IFF_UP.to_ne_bytes()); // flags
    msg.extend(IFF_UP.to_ne_bytes()); // change mask
    rustix::net::send(&socket, &msg, SendFlags::empty()).map_err(text)?;
    let mut reply = [0u8; 256];
    let (got, _) = rustix::net::recv(&socket, &mut reply[..], RecvFlags::empty()).map_err(text)?;
    let u16_at = |o: usize| u16::from_ne_bytes([reply[o], reply[o + 1]]);
    if got < 20 || u16_at(4) != NLMSG_ERROR {
        return Err("unexpected netlink reply".into());
    }
    let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    if code != 0 {
        return Err(errno_text(-code));
    }
    Ok(())
}

/// Kubernetes' managed hosts file, with the pod's name on 127.0.1.1 (the pod
/// has no address of its own until networking beyond loopback exists).
fn hosts_file(name: &str) -> String {
    format!(
        "# flotilla-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n\
         127.0.1.1\t{name}\n"
    )
}

/// The node's resolv.conf for a pod: as it is with the host's network;
/// in a network namespace of its own, without the nameservers on loopback
/// (the pod's loopback is not the node's), and Docker's public fallback if
/// nothing is left.
fn pod_resolv_conf(node: &str, host_network: bool) -> String {
    if host_network {
        return node.to_string();
    }
    let is_local = |line: &str| {
        let mut words = line.split_whitespace();
        words.next() == Some("nameserver")
            && words.next().is_some_and(|addr| {
                addr.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
            })
    };
    let mut out: Vec<&str> = node.lines().filter(|l| !is_local(l)).collect();
    let has_nameserver = out
        .iter()
        .any(|l| l.split_whitespace().next() == Some("nameserver"));
    let mut text = String::new();
    for line in out.drain(..) {
        text.push_str(line);
        text.push('\n');
    }
    if !has_nameserver {
        for ns in FALLBACK_NAMESERVERS {
            text.push_str(&format!("nameserver {ns}\n"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_nameservers_stay_on_the_node() {
        let node = "search lan\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.1\noptions edns0\n";
        assert_eq!(
            pod_resolv_conf(node, false),
            "search lan\nnameserver 10.0.0.1\noptions edns0\n"
        );
        assert_eq!(pod_resolv_conf(node, true), node);
        assert_eq!(
            pod_resolv_conf("nameserver 127.0.0.53\n", false),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn a_sandbox_for_container_namespaces_binds_nothing() {
        // Needs no privilege: no namespace is made here.
        let run = tempfile::tempdir().unwrap();
        for host_network in [false, true] {
            let mut spec = SandboxSpec::new("p1", "web", host_network);
            spec.container_namespaces = true;
            let sandbox = PodSandbox::create(run.path(), &spec).unwrap();
            assert!(!sandbox.dir().join("ns").exists());
            assert_eq!(sandbox.netns(), None);
            let net = if host_network {
                Namespace::Host
            } else {
                Namespace::New
            };
            assert_eq!(
                sandbox.namespaces(),
                Namespaces {
                    net,
                    ipc: Namespace::New,
                    uts: Namespace::New
                }
            );
            assert_eq!(sandbox.etc_mounts().len(), 3);
            let opened = PodSandbox::open(run.path(), "p1").unwrap();
            assert_eq!(opened.namespaces(), sandbox.namespaces());
            opened.destroy().unwrap();
            assert!(!run.path().join("p1").exists());
        }
    }

    #[test]
    fn the_pod_name_resolves() {
        assert!(hosts_file("web-1").contains("127.0.1.1\tweb-1\n"));
    }
}
