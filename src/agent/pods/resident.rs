//! A long-lived shim's resident set: once its container runs, the shim gives
//! back the page-table entries of the code and read-only data it touched only
//! while starting.
//!
//! A shim is the agent binary (8 MB of code, of which start-up touches half:
//! reading the launch plan, building the container's spec, the init stage's
//! spawn) and lives as long as its container, doing little more than copying
//! pipes into a log. Those start-up pages stay mapped, and counted in its RSS,
//! for the container's whole life although they are page cache shared with
//! the agent and every other shim. Unmapping them (`MADV_DONTNEED` on clean,
//! read-only, private file mappings) loses nothing: a page touched again is
//! faulted back in from the same file, and the process's private memory is
//! unchanged. Mappings holding copy-on-write pages (the relocated RELRO data,
//! anything anonymous) are never touched, since dropping them would revert
//! them to the file's contents.

use std::fs;

/// What a file mapping of `/proc/self/smaps` says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    writable: bool,
    private: bool,
    /// Backed by a file (a non-zero inode); not `[vdso]`, `[stack]` and kin.
    file_backed: bool,
    rss_kb: u64,
    anonymous_kb: u64,
}

impl Mapping {
    /// Clean, read-only, private file pages, and at least one resident.
    fn is_releasable(&self) -> bool {
        !self.writable
            && self.private
            && self.file_backed
            && self.anonymous_kb == 0
            && self.rss_kb > 0
    }
}

/// Parses `/proc/PID/smaps`; unreadable entries are skipped.
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut mappings = Vec::new();
    for line in text.lines() {
        if let Some(mapping) = parse_header(line) {
            mappings.push(mapping);
        } else if let Some(current) = mappings.last_mut() {
            let mut fields = line.split_whitespace();
            let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "Rss:" => current.rss_kb = value,
                "Anonymous:" => current.anonymous_kb = value,
                _ => {}
            }
        }
    }
    mappings
}

/// `start-end perms offset dev inode [path]`, or `None` for a field line.
fn parse_header(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?.as_bytes();
    if perms.len() != 4 {
        return None;
    }
    let _offset = fields.next()?;
    let _device = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    Some(Mapping {
        start,
        end,
        writable: perms[1] == b'w',
        private: perms[3] == b'p',
        file_backed: inode != 0,
        // Unknown until the field lines say; nothing is released without them.
        rss_kb: 0,
        anonymous_kb: u64::MAX,
    })
}

/// Unmaps this process's clean read-only file pages (see the module's doc)
/// and gives the heap's free pages back. Best effort: any failure leaves the
/// pages mapped, which is only memory.
pub fn release_startup_pages() {
    trim_heap();
    let Ok(text) = fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for mapping in parse_smaps(&text).iter().filter(|m| m.is_releasable()) {
        let Some(start) = std::ptr::NonNull::new(mapping.start as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process, read-only,
        // private and file-backed with no anonymous (copy-on-write) page, so
        // MADV_DONTNEED only drops page-table entries whose contents the file
        // still holds: a later access faults the same bytes back in. No code
        // here makes such a mapping writable, so it cannot gain a private
        // page between the read of smaps and this call.
        let _ = unsafe {
            nix::sys::mman::madvise(
                start,
                mapping.end - mapping.start,
                nix::sys::mman::MmapAdvise::MADV_DONTNEED,
            )
        };
    }
}

/// glibc keeps the pages of freed heap memory mapped; start-up's (the launch
/// plan, the container's spec) would stay resident for the container's life.
#[cfg(target_env = "gnu")]
fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions; it only returns free heap
    // memory to the kernel and leaves every live allocation where it is.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(not(target_env = "gnu"))]
fn trim_heap() {}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d4ce88e000-55d4cea59000 r--p 00000000 fe:00 876577                     /opt/flotilla-agent
Size:               1836 kB
Rss:                 768 kB
Anonymous:             0 kB
55d4cf02c000-55d4cf055000 r--p 0079c000 fe:00 876577                     /opt/flotilla-agent
Size:                164 kB
Rss:                 164 kB
Anonymous:           160 kB
55d4cf055000-55d4cf058000 rw-p 007c4000 fe:00 876577                     /opt/flotilla-agent
Rss:                  12 kB
Anonymous:            12 kB
7ffc6f5ea000-7ffc6f60b000 rw-p 00000000 00:00 0                          [stack]
Rss:                  64 kB
Anonymous:            64 kB
7ffc6f7f0000-7ffc6f7f2000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   8 kB
Anonymous:             0 kB
7f0000000000-7f0000100000 r-xp 00000000 fe:00 1234                       /usr/lib/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r--s 00000000 fe:00 99                         /dev/shm/x
Rss:                   4 kB
Anonymous:             0 kB
7f0000400000-7f0000500000 r--p 00000000 fe:00 1235                       /usr/lib/libm.so.6
Size:               1024 kB
";

    #[test]
    fn only_clean_read_only_private_file_mappings_are_released() {
        let releasable: Vec<usize> = parse_smaps(SMAPS)
            .iter()
            .filter(|m| m.is_releasable())
            .map(|m| m.start)
            .collect();
        // The binary's first read-only mapping and libc's code; not the
        // relocated RELRO (anonymous pages), the data, the stack, the vdso,
        // a shared mapping, or one whose fields are missing.
        assert_eq!(releasable, vec![0x55d4ce88e000, 0x7f0000000000]);
    }

    #[test]
    fn releasing_keeps_this_process_working_and_its_data_intact() {
        static TABLE: [u64; 4] = [3, 1, 4, 1];
        let before: u64 = TABLE.iter().sum();
        release_startup_pages();
        assert_eq!(TABLE.iter().sum::<u64>(), before);
        assert_eq!(format!("{}", before), "9");
    }
}
