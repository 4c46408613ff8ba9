//! The container's seccomp filter: the system calls Docker's default profile
//! (moby `profiles/seccomp/default.json`) refuses to a container with its
//! default capabilities, refused here too with EPERM, as a classic BPF
//! program installed just before the privileges are dropped.
//!
//! Docker's profile is an allow-list; this is the deny-list of what that
//! allow-list leaves out for the 14 default capabilities (and what it grants
//! only with a capability the container lacks), so a system call added to
//! the kernel after this list is allowed here where Docker would refuse it.
//! The parts that matter most are the same: no new namespaces (`unshare`,
//! `clone` with namespace flags, `setns`: no user namespace to gain
//! capabilities in), no mount API, no keyrings, no `bpf`, `userfaultfd`,
//! `perf_event_open`, `io_uring`, kexec or modules, no AF_VSOCK sockets, and
//! `clone3` answering ENOSYS so libcs fall back to the filterable `clone`.
//! A system call of a foreign ABI (i386, x32) is refused outright.
//! `personality` is not narrowed to Docker's few values.

use super::init::{StepError, StepResult};
use super::rootfs::io_text;
use nix::libc;

// Capability numbers (capability.h) that unlock groups of system calls.
const CAP_SYS_MODULE: u32 = 16;
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_PACCT: u32 = 20;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_BOOT: u32 = 22;
const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_TIME: u32 = 25;
const CAP_SYS_TTY_CONFIG: u32 = 26;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Refused whatever the capabilities.
const ALWAYS: &[libc::c_long] = &[
    libc::SYS_add_key,
    libc::SYS_keyctl,
    libc::SYS_request_key,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_nfsservctl,
    libc::SYS_open_by_handle_at,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ustat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_sysfs,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
];

/// Refused unless the container holds the capability.
const BY_CAPABILITY: &[(u32, &[libc::c_long])] = &[
    (
        CAP_SYS_ADMIN,
        &[
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_mount_setattr,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_sethostname,
            libc::SYS_setdomainname,
            libc::SYS_quotactl,
            libc::SYS_quotactl_fd,
            libc::SYS_lookup_dcookie,
            libc::SYS_name_to_handle_at,
            libc::SYS_fanotify_init,
            libc::SYS_swapon,
            libc::SYS_swapoff,
        ],
    ),
    (CAP_SYS_BOOT, &[libc::SYS_reboot]),
    (
        CAP_SYS_MODULE,
        &[
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
        ],
    ),
    (CAP_SYS_PACCT, &[libc::SYS_acct]),
    (
        CAP_SYS_PTRACE,
        &[
            libc::SYS_kcmp,
            libc::SYS_pidfd_getfd,
            libc::SYS_process_madvise,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
        ],
    ),
    #[cfg(target_arch = "x86_64")]
    (CAP_SYS_RAWIO, &[libc::SYS_iopl, libc::SYS_ioperm]),
    (
        CAP_SYS_TIME,
        &[
            libc::SYS_settimeofday,
            libc::SYS_clock_settime,
            libc::SYS_clock_adjtime,
        ],
    ),
    (CAP_SYS_TTY_CONFIG, &[libc::SYS_vhangup]),
    (
        CAP_SYS_NICE,
        &[
            libc::SYS_get_mempolicy,
            libc::SYS_set_mempolicy,
            libc::SYS_set_mempolicy_home_node,
            libc::SYS_mbind,
        ],
    ),
    (CAP_SYSLOG, &[libc::SYS_syslog]),
    (CAP_PERFMON, &[libc::SYS_perf_event_open]),
    (CAP_BPF, &[libc::SYS_bpf]),
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;
/// x86_64's x32 ABI marks its system call numbers with this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

const NAMESPACE_FLAGS: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u32;
const AF_VSOCK: u32 = 40;

// Classic BPF opcodes and seccomp return values.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JSET_K: u16 = 0x45;
const RET_K: u16 = 0x06;
const RET_ALLOW: u32 = 0x7fff_0000;
const RET_ERRNO: u32 = 0x0005_0000;
// struct seccomp_data: nr at 0, arch at 4, args at 16 (little-endian: the
// low 32 bits of args[0] first).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG0_LOW: u32 = 16;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn errno(e: i32) -> u32 {
    RET_ERRNO | (e as u32 & 0xffff)
}

/// The filter for a container holding `capabilities` (a mask).
pub fn program(capabilities: u64) -> Vec<libc::sock_filter> {
    let mut denied: Vec<libc::c_long> = ALWAYS.to_vec();
    for (cap, calls) in BY_CAPABILITY {
        if capabilities & (1 << cap) == 0 {
            denied.extend_from_slice(calls);
        }
    }
    let eperm = errno(libc::EPERM);
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, eperm),
        stmt(LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    {
        p.push(jump(JGE_K, X32_SYSCALL_BIT, 0, 1));
        p.push(stmt(RET_K, eperm));
    }
    for nr in denied {
        p.push(jump(JEQ_K, nr as u32, 0, 1));
        p.push(stmt(RET_K, eperm));
    }
    // clone3 passes its flags in memory, out of a filter's reach: ENOSYS
    // makes glibc and musl fall back to clone, whose flags are checked.
    p.push(jump(JEQ_K, libc::SYS_clone3 as u32, 0, 1));
    p.push(stmt(RET_K, errno(libc::ENOSYS)));
    if capabilities & (1 << CAP_SYS_ADMIN) == 0 {
        // clone(flags, …): no namespace flags. (The load replaces the
        // accumulator; the allow that follows ends the program either way.)
        p.push(jump(JEQ_K, libc::SYS_clone as u32, 0, 3));
        p.push(stmt(LD_W_ABS, OFF_ARG0_LOW));
        p.push(jump(JSET_K, NAMESPACE_FLAGS, 0, 1));
        p.push(stmt(RET_K, eperm));
        // Reload the number for the socket check below.
        p.push(stmt(LD_W_ABS, OFF_NR));
    }
    // socket(AF_VSOCK, …): the host's vsock services are not the
    // container's business.
    p.push(jump(JEQ_K, libc::SYS_socket as u32, 0, 3));
    p.push(stmt(LD_W_ABS, OFF_ARG0_LOW));
    p.push(jump(JEQ_K, AF_VSOCK, 0, 1));
    p.push(stmt(RET_K, eperm));
    p.push(stmt(RET_K, RET_ALLOW));
    p
}

/// Installs the filter on the calling thread (the container's process;
/// inherited by everything it starts).
pub fn install(capabilities: u64) -> StepResult<()> {
    let filter = program(capabilities);
    let fprog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl(PR_SET_SECCOMP) reads `fprog` and the `filter` it points
    // to during the call only; both live until the call returns. No safe
    // wrapper exists for passing a BPF program to the kernel.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(StepError {
            step: "install the seccomp filter".into(),
            detail: io_text(&std::io::Error::last_os_error()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program on one system call, as the kernel would.
    fn verdict(program: &[libc::sock_filter], arch: u32, nr: u32, arg0: u32) -> u32 {
        let (mut acc, mut pc) = (0u32, 0usize);
        loop {
            let i = program[pc];
            match i.code {
                LD_W_ABS => {
                    acc = match i.k {
                        OFF_NR => nr,
                        OFF_ARCH => arch,
                        OFF_ARG0_LOW => arg0,
                        other => panic!("load of offset {other}"),
                    };
                    pc += 1;
                }
                RET_K => return i.k,
                JEQ_K | JGE_K | JSET_K => {
                    let taken = match i.code {
                        JEQ_K => acc == i.k,
                        JGE_K => acc >= i.k,
                        _ => acc & i.k != 0,
                    };
                    pc += 1 + usize::from(if taken { i.jt } else { i.jf });
                }
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    const DEFAULT_CAPS: u64 = 0xa804_25fb;

    #[test]
    fn dockers_refusals_are_refused_and_the_rest_allowed() {
        let p = program(DEFAULT_CAPS);
        let eperm = errno(libc::EPERM);
        let nr = |n: libc::c_long| n as u32;
        assert_eq!(verdict(&p, AUDIT_ARCH, nr(libc::SYS_getpid), 0), RET_ALLOW);
        assert_eq!(verdict(&p, AUDIT_ARCH, nr(libc::SYS_mount), 0), eperm);
        assert_eq!(verdict(&p, AUDIT_ARCH, nr(libc::SYS_keyctl), 0), eperm);
        assert_eq!(verdict(&p, AUDIT_ARCH, nr(libc::SYS_unshare), 0), eperm);
        assert_eq!(
            verdict(&p, AUDIT_ARCH, nr(libc::SYS_clone3), 0),
            errno(libc::ENOSYS)
        );
        let fork_flags = libc::SIGCHLD as u32;
        assert_eq!(
            verdict(&p, AUDIT_ARCH, nr(libc::SYS_clone), fork_flags),
            RET_ALLOW
        );
        let new_user = fork_flags | libc::CLONE_NEWUSER as u32;
        assert_eq!(
            verdict(&p, AUDIT_ARCH, nr(libc::SYS_clone), new_user),
            eperm
        );
        assert_eq!(verdict(&p, AUDIT_ARCH, nr(libc::SYS_socket), 2), RET_ALLOW);
        assert_eq!(
            verdict(&p, AUDIT_ARCH, nr(libc::SYS_socket), AF_VSOCK),
            eperm
        );
        assert_eq!(verdict(&p, 0x4000_0003, nr(libc::SYS_getpid), 0), eperm);
        // Capabilities unlock their groups, as in Docker.
        let admin = program(DEFAULT_CAPS | 1 << CAP_SYS_ADMIN);
        assert_eq!(
            verdict(&admin, AUDIT_ARCH, nr(libc::SYS_mount), 0),
            RET_ALLOW
        );
        assert_eq!(
            verdict(&admin, AUDIT_ARCH, nr(libc::SYS_clone), new_user),
            RET_ALLOW
        );
        assert_eq!(verdict(&admin, AUDIT_ARCH, nr(libc::SYS_keyctl), 0), eperm);
    }

    #[test]
    fn the_program_fits_the_kernels_limit() {
        assert!(program(0).len() < 4096);
    }
}
