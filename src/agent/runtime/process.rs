//! The container's process, the last steps before `execve`: who it runs as
//! (the user resolved against the image's own /etc/passwd and /etc/group),
//! its environment, its working directory (checked to be inside the root:
//! CVE-2024-21626), its capabilities (bounding set cut to the allowed ones,
//! inheritable and ambient empty), no_new_privs, and no descriptor but 0, 1
//! and 2 surviving the exec.

use std::ffi::CString;
use std::os::fd::{AsFd, RawFd};

use nix::unistd::{Gid, Uid};
use rustix::fs::FileType;
use rustix::thread::{CapabilitySet, CapabilitySets};

use super::RuntimeError;
use super::init::{StepError, StepResult};
use super::rootfs::{Root, errno_text, io_text};
use super::seccomp;
use super::spec::{DEFAULT_PATH, ProcessSpec, capability_mask};

/// /etc/passwd and /etc/group are read up to this size.
const ACCOUNT_FILE_MAX: u64 = 4 << 20;

/// A `user` field as the image or the pod spec writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub user: Id,
    pub group: Option<Id>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Number(u32),
    Name(String),
}

impl Id {
    fn parse(text: &str) -> Option<Id> {
        if text.is_empty() || text.contains([':', '\n', '\0']) {
            return None;
        }
        Some(match text.parse::<u32>() {
            Ok(n) => Id::Number(n),
            Err(_) => Id::Name(text.to_string()),
        })
    }
}

impl UserSpec {
    /// `name`, `uid`, `name:group`, `uid:gid` (and the mixed forms).
    pub fn parse(text: &str) -> Result<UserSpec, RuntimeError> {
        let bad = || RuntimeError::Spec(format!("user {text:?} is not NAME, UID or USER:GROUP"));
        let (user, group) = match text.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (text, None),
        };
        Ok(UserSpec {
            user: Id::parse(user).ok_or_else(bad)?,
            group: match group {
                Some(g) => Some(Id::parse(g).ok_or_else(bad)?),
                None => None,
            },
        })
    }
}

/// Who the process runs as, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub home: String,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || f[0].starts_with('#') {
            return None;
        }
        Some(PasswdEntry {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || f[0].starts_with('#') {
            return None;
        }
        Some(GroupEntry {
            name: f[0],
            gid: f[2].parse().ok()?,
            members: f[3].split(',').filter(|m| !m.is_empty()).collect(),
        })
    })
}

/// Resolves `spec` against the image's account files, as runc's
/// `GetExecUser` does: a numeric uid need not exist (then gid 0, home `/`);
/// a name must; supplementary groups are the groups listing the user.
pub fn resolve_user(
    spec: Option<&UserSpec>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ExecUser, String> {
    let passwd = passwd.unwrap_or("");
    let group = group.unwrap_or("");
    let default_user = UserSpec {
        user: Id::Number(0),
        group: None,
    };
    let spec = spec.unwrap_or(&default_user);
    let entry = passwd_entries(passwd).find(|e| match &spec.user {
        Id::Number(n) => e.uid == *n,
        Id::Name(name) => e.name == name,
    });
    let (uid, mut gid, home, name) = match (&spec.user, entry) {
        (_, Some(e)) => (e.uid, e.gid, e.home.to_string(), Some(e.name)),
        (Id::Number(n), None) => (*n, 0, "/".to_string(), None),
        (Id::Name(name), None) => {
            return Err(format!("no user {name:?} in the image's /etc/passwd"));
        }
    };
    if let Some(g) = &spec.group {
        gid = match g {
            Id::Number(n) => *n,
            Id::Name(gname) => group_entries(group)
                .find(|e| e.name == gname)
                .map(|e| e.gid)
                .ok_or_else(|| format!("no group {gname:?} in the image's /etc/group"))?,
        };
    }
    let mut groups = vec![gid];
    // An explicit group replaces the user's memberships, as in Docker.
    if spec.group.is_none()
        && let Some(name) = name
    {
        for g in group_entries(group) {
            if g.members.contains(&name) && !groups.contains(&g.gid) {
                groups.push(g.gid);
            }
        }
    }
    Ok(ExecUser {
        uid,
        gid,
        groups,
        home,
    })
}

/// The environment the process gets: the spec's, plus `PATH` (Docker's
/// default), `HOSTNAME` and `HOME` when the spec has none.
pub fn build_env(env: &[String], hostname: &str, home: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len() + 3);
    let has = |out: &[String], key: &str| {
        out.iter()
            .any(|e| e.split_once('=').is_some_and(|(k, _)| k == key))
    };
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        out.push(format!("HOSTNAME={hostname}"));
    }
    for entry in env {
        // A later entry for the same key wins, as in Docker.
        if let Some((key, _)) = entry.split_once('=') {
            out.retain(|e| e.split_once('=').is_none_or(|(k, _)| k != key));
        }
        out.push(entry.clone());
    }
    if !has(&out, "HOME") {
        out.push(format!("HOME={home}"));
    }
    out
}

/// The program to exec: `args[0]` itself when it has a `/`, else the first
/// executable regular file named so in `PATH` (inside the new root).
pub fn find_program(program: &str, env: &[String]) -> StepResult<String> {
    if program.contains('/') {
        return Ok(program.to_string());
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = format!("{}/{program}", dir.trim_end_matches('/'));
        if let Ok(stat) = rustix::fs::stat(candidate.as_str())
            && FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
            && stat.st_mode & 0o111 != 0
        {
            return Ok(candidate);
        }
    }
    Err(StepError {
        step: format!("exec {program}"),
        detail: "executable file not found in $PATH".into(),
    })
}

/// Enters the working directory, creating it if it is missing and `create`
/// says so (a container's start does, as Docker does; an exec does not),
/// and checks the result is inside the root. Resolution goes through `root`
/// (no magic links), so `cwd: /proc/self/fd/N` cannot reach a descriptor of
/// ours (CVE-2024-21626); `getcwd` proves the result is reachable from `/`.
pub fn enter_cwd(root: &Root, cwd: &str, create: bool) -> StepResult<()> {
    let step = || format!("chdir {cwd}");
    let dir = if create {
        root.ensure_dir(cwd)
    } else {
        root.resolve(cwd)
    }
    .map_err(|e| StepError::errno(step(), e))?;
    let stat = rustix::fs::fstat(&dir).map_err(|e| StepError::errno(step(), e))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(StepError {
            step: step(),
            detail: "Not a directory".into(),
        });
    }
    nix::unistd::fchdir(dir.as_fd()).map_err(|e| StepError {
        step: step(),
        detail: errno_text(e as i32),
    })?;
    match nix::unistd::getcwd() {
        Ok(path) if path.is_absolute() => Ok(()),
        Ok(path) => Err(StepError {
            step: step(),
            detail: format!(
                "the directory is outside the container ({})",
                path.display()
            ),
        }),
        Err(e) => Err(StepError {
            step: step(),
            detail: format!(
                "the directory is outside the container: {}",
                errno_text(e as i32)
            ),
        }),
    }
}

/// Makes this process the container's process, inside the container's root
/// (already its `/`): its user from the image's account files, its working
/// directory, its environment, its program looked up in its `PATH`, then
/// Docker's seccomp refusals, the capabilities, no_new_privs and a fresh
/// signal state. What is left before the exec is for the caller: waiting
/// for the cgroup move and closing descriptors. The container's first
/// process and every `exec` into it go through here, so both are confined
/// alike. Returns the program's path and its environment.
pub fn confine(
    process: &ProcessSpec,
    hostname: &str,
    create_cwd: bool,
) -> StepResult<(String, Vec<String>)> {
    let root = Root::open(std::path::Path::new("/"))
        .map_err(|e| StepError::errno("open the container's /".into(), e))?;
    let (passwd, group) = read_accounts(&root)?;
    let user_spec = match &process.user {
        Some(text) => Some(UserSpec::parse(text).map_err(|e| StepError {
            step: format!("user {text}"),
            detail: e.to_string(),
        })?),
        None => None,
    };
    let user = resolve_user(user_spec.as_ref(), passwd.as_deref(), group.as_deref()).map_err(
        |detail| StepError {
            step: format!("user {}", process.user.as_deref().unwrap_or("root")),
            detail,
        },
    )?;
    enter_cwd(&root, &process.cwd, create_cwd)?;
    drop(root);
    let env = build_env(&process.env, hostname, &user.home);
    let program = find_program(&process.args[0], &env)?;
    let capabilities = capability_mask(&process.capabilities).map_err(|e| StepError {
        step: "capabilities".into(),
        detail: e.to_string(),
    })?;
    set_umask(0o022);
    // Before the privileges go: installing a filter needs CAP_SYS_ADMIN or
    // no_new_privs, and none of the calls left to make is refused by it.
    if process.seccomp {
        seccomp::install(capabilities)?;
    }
    drop_privileges(&user, capabilities, process.no_new_privileges)?;
    reset_signals()?;
    Ok((program, env))
}

/// Reads the account files inside the root.
pub fn read_accounts(root: &Root) -> StepResult<(Option<String>, Option<String>)> {
    let read = |path: &str| {
        root.read_small(path, ACCOUNT_FILE_MAX)
            .map_err(|detail| StepError {
                step: format!("read {path}"),
                detail,
            })
    };
    Ok((read("/etc/passwd")?, read("/etc/group")?))
}

/// Drops to `user` with exactly `capabilities` (a mask): the bounding set is
/// cut first (that needs CAP_SETPCAP, which root still has), then the ids
/// change with the permitted set kept, then effective = permitted = the
/// allowed set, inheritable and ambient empty, then no_new_privs.
pub fn drop_privileges(user: &ExecUser, capabilities: u64, no_new_privs: bool) -> StepResult<()> {
    let caps_step = |what: &str, e: rustix::io::Errno| StepError {
        step: format!("capabilities: {what}"),
        detail: errno_text(e.raw_os_error()),
    };
    for cap in 0..64u32 {
        if capabilities & (1 << cap) != 0 {
            continue;
        }
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << cap,
        )) {
            Ok(()) => {}
            // Past the kernel's last capability.
            Err(rustix::io::Errno::INVAL) => break,
            Err(e) => return Err(caps_step("drop from the bounding set", e)),
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(|e| caps_step("keep", e))?;
    let user_step = |what: &str, e: nix::errno::Errno| StepError {
        step: format!("switch to user {}:{} ({what})", user.uid, user.gid),
        detail: errno_text(e as i32),
    };
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    nix::unistd::setgroups(&groups).map_err(|e| user_step("setgroups", e))?;
    let gid = Gid::from_raw(user.gid);
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| user_step("setgid", e))?;
    let uid = Uid::from_raw(user.uid);
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| user_step("setuid", e))?;
    rustix::thread::set_keep_capabilities(false).map_err(|e| caps_step("keep", e))?;
    let allowed = CapabilitySet::from_bits_retain(capabilities);
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: allowed,
            permitted: allowed,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| caps_step("capset", e))?;
    rustix::thread::clear_ambient_capability_set().map_err(|e| caps_step("clear ambient", e))?;
    if no_new_privs {
        rustix::thread::set_no_new_privs(true).map_err(|e| StepError {
            step: "set no_new_privs".into(),
            detail: errno_text(e.raw_os_error()),
        })?;
    }
    Ok(())
}

/// Gives the program the signal state of a fresh process: nothing blocked,
/// every signal at its default action, as runc's containers start. Both
/// the mask and ignored dispositions survive `execve`, and ours are not the
/// container's: Rust's runtime ignores SIGPIPE (in the init stage too), so a
/// `yes | head` in the container would never end, and a foreground `run`
/// blocks SIGINT and SIGTERM for the thread that forwards them, so the
/// container would never hear `stop`. Called last before the exec, so the
/// setup keeps getting EPIPE rather than SIGPIPE from a vanished caller.
pub fn reset_signals() -> StepResult<()> {
    // The kernel's struct sigaction, all zero: SIG_DFL, no flags, empty
    // mask (its layout differs between architectures, its zero does not).
    // The system call itself, because the C library refuses the signals it
    // keeps for its threads (32, 33), which a parent may still have ignored.
    let default = [0u64; 4];
    for signal in 1..=64 {
        if signal == nix::libc::SIGKILL || signal == nix::libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction reads `default`, a live buffer at least as
        // large as the kernel's struct sigaction, and writes nothing (no
        // old-action pointer). Installing SIG_DFL runs no code of ours.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
    nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    )
    .map_err(|e| StepError {
        step: "unblock signals".into(),
        detail: errno_text(e as i32),
    })
}

/// Closes every descriptor above 2 but `status` (the close-on-exec status
/// pipe), whatever the agent or the shim left open: at the exec only 0, 1
/// and 2 exist besides it, so neither a cwd nor a program path like
/// `/proc/self/fd/N` can reach a host file (CVE-2024-21626, where runc
/// leaked a directory fd). The status pipe closes at the exec, which is how
/// the caller learns it worked.
pub fn close_all_but(status: RawFd) -> StepResult<()> {
    let close = |first: u32, last: u32| {
        // SAFETY: close_range(2) takes no pointers. It closes descriptors that
        // no value of ours uses any more: from here the process only builds
        // the exec's arguments, execs, or writes to `status` (kept open) and
        // exits without running destructors. Safe Rust cannot name raw
        // descriptors it holds no `OwnedFd` for, which is the point here.
        let rc = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, first, last, 0u32) };
        if rc == 0 {
            Ok(())
        } else {
            Err(StepError {
                step: "close descriptors".into(),
                detail: io_text(&std::io::Error::last_os_error()),
            })
        }
    };
    let status = u32::try_from(status).unwrap_or(u32::MAX);
    if status > 3 {
        close(3, status - 1)?;
    }
    close(status.saturating_add(1).max(3), u32::MAX)
}

/// `execve`s the program; returns only on failure.
pub fn exec(path: &str, args: &[String], env: &[String]) -> StepError {
    let step = || format!("exec {path}");
    let cstrings = |v: &[String]| -> Result<Vec<CString>, StepError> {
        v.iter()
            .map(|s| {
                CString::new(s.as_bytes()).map_err(|_| StepError {
                    step: step(),
                    detail: "an argument contains a NUL byte".into(),
                })
            })
            .collect()
    };
    let (program, argv, envp) = match (CString::new(path), cstrings(args), cstrings(env)) {
        (Ok(p), Ok(a), Ok(e)) => (p, a, e),
        (_, Err(e), _) | (_, _, Err(e)) => return e,
        (Err(_), _, _) => {
            return StepError {
                step: step(),
                detail: "the path contains a NUL byte".into(),
            };
        }
    };
    let err = match nix::unistd::execve(&program, &argv, &envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    StepError {
        step: step(),
        detail: errno_text(err as i32),
    }
}

/// Sets the mode bits a new file gets from here on.
pub fn set_umask(mask: u32) {
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app,other\n";

    fn resolve(user: &str) -> Result<ExecUser, String> {
        let spec = UserSpec::parse(user).map_err(|e| e.to_string())?;
        resolve_user(Some(&spec), Some(PASSWD), Some(GROUP))
    }

    #[test]
    fn users_resolve_like_docker() {
        let nobody = resolve("nobody").expect("nobody");
        assert_eq!((nobody.uid, nobody.gid), (65534, 65534));
        assert_eq!(nobody.home, "/nonexistent");
        let app = resolve("app").expect("app");
        assert_eq!(app.groups, vec![1000, 10]);
        let numeric = resolve("4242").expect("unknown uid is fine");
        assert_eq!(
            (numeric.uid, numeric.gid, numeric.home.as_str()),
            (4242, 0, "/")
        );
        let both = resolve("app:nogroup").expect("app:nogroup");
        assert_eq!(
            (both.uid, both.gid, both.groups.clone()),
            (1000, 65534, vec![65534])
        );
        assert_eq!(resolve("1000:7").expect("numbers").gid, 7);
        assert!(resolve("nosuch").expect_err("unknown").contains("nosuch"));
        assert!(resolve("app:nosuch").is_err());
        let root = resolve_user(None, None, None).expect("no files");
        assert_eq!((root.uid, root.gid), (0, 0));
    }

    #[test]
    fn user_specs_parse() {
        assert!(UserSpec::parse("").is_err());
        assert!(UserSpec::parse("a:b:c").is_err());
        assert!(UserSpec::parse(":0").is_err());
        assert_eq!(
            UserSpec::parse("0:wheel").expect("valid"),
            UserSpec {
                user: Id::Number(0),
                group: Some(Id::Name("wheel".into()))
            }
        );
    }

    #[test]
    fn the_environment_gets_dockers_defaults() {
        let env = build_env(&["A=1".into(), "A=2".into()], "pod", "/root");
        assert_eq!(
            env,
            vec![
                format!("PATH={DEFAULT_PATH}"),
                "HOSTNAME=pod".to_string(),
                "A=2".to_string(),
                "HOME=/root".to_string(),
            ]
        );
        let env = build_env(&["PATH=/x".into(), "HOME=/h".into()], "pod", "/root");
        assert_eq!(env, vec!["HOSTNAME=pod", "PATH=/x", "HOME=/h"]);
    }
}
