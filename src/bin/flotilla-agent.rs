//! The `flotilla-agent` binary: the runtime agent flotilla copies onto each host.
//! It links only `api` and `agent`, never the console.
//!
//! The scripts link it statically (`scripts/lib/setup.sh`, `build_agent`):
//! a host then needs no particular glibc (a dynamic build asks for the
//! build machine's, 2.34 or later, which Debian 11, Ubuntu 20.04 and RHEL 8
//! lack), and each of its execs (two per container start) skips the
//! dynamic loader's work.

fn main() -> std::process::ExitCode {
    pin_name_services();
    flotilla::agent::cli::main()
}

/// Keeps glibc's name lookups to what it has built in: host names from
/// /etc/hosts then DNS (a registry's name), users and groups from the
/// files. The agent needs no more. A statically linked glibc would
/// otherwise `dlopen` whatever other modules the host's nsswitch.conf
/// names (mdns, sss, systemd's), each built for the host's own glibc,
/// which need not be ours.
fn pin_name_services() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn __nss_configure_lookup(
                database: *const std::ffi::c_char,
                services: *const std::ffi::c_char,
            ) -> std::ffi::c_int;
        }
        for (database, services) in [
            (c"hosts", c"files dns"),
            (c"passwd", c"files"),
            (c"group", c"files"),
        ] {
            // SAFETY: both arguments are NUL-terminated static strings, and
            // this runs first thing in main, before any thread could be
            // looking a name up. glibc has no other interface to this
            // setting than nsswitch.conf, which belongs to the host.
            unsafe {
                __nss_configure_lookup(database.as_ptr(), services.as_ptr());
            }
        }
    }
}
