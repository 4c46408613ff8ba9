//! Pure parsers for the few kernel text files the node facts and metrics read
//! (`/proc/stat`, `/proc/meminfo`, `/proc/loadavg`, `/proc/net/dev`,
//! `/etc/os-release`). They take text and return numbers, so they are tested on
//! captured samples and never touch the machine; a malformed file is an error
//! naming the file and line, never a panic.

use super::NodeError;

/// Cumulative CPU time over all CPUs, in USER_HZ ticks, from the `cpu` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Every mode but guest time, which the kernel already counts in user/nice.
    pub total: u64,
    /// Idle plus iowait: time no task wanted the CPU.
    pub idle: u64,
}

impl CpuTimes {
    /// Percent of CPU time busy between `earlier` and `self`, over all CPUs
    /// (100 = every CPU busy). `None` when no time passed or the counters went
    /// backwards (a CPU went offline, taking its counters with it).
    pub fn busy_percent_since(&self, earlier: &CpuTimes) -> Option<f64> {
        let total = self.total.checked_sub(earlier.total)?;
        let idle = self.idle.checked_sub(earlier.idle)?;
        if total == 0 || idle > total {
            return None;
        }
        Some(100.0 * (total - idle) as f64 / total as f64)
    }
}

/// What `/proc/stat` says that flotilla uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    pub cpu: CpuTimes,
    /// The number of `cpuN` lines: CPUs online.
    pub cpus: u32,
    /// Boot time, seconds since the epoch (`btime`).
    pub boot_time: Option<i64>,
}

pub fn parse_stat(text: &str) -> Result<ProcStat, NodeError> {
    let mut cpu = None;
    let mut cpus = 0u32;
    let mut boot_time = None;
    for (n, line) in text.lines().enumerate() {
        let mut fields = line.split_ascii_whitespace();
        match fields.next() {
            Some("cpu") => {
                let values = fields
                    .map(|f| f.parse::<u64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| bad("/proc/stat", n, "a cpu time is not a number"))?;
                // user nice system idle iowait irq softirq steal guest guest_nice;
                // kernels before 2.6.11 stop after irq/softirq, so read what is there.
                if values.len() < 4 {
                    return Err(bad("/proc/stat", n, "the cpu line has fewer than 4 times"));
                }
                let busy_and_idle = values
                    .iter()
                    .take(8)
                    .fold(0u64, |a, v| a.saturating_add(*v));
                let idle = values[3].saturating_add(values.get(4).copied().unwrap_or(0));
                cpu = Some(CpuTimes {
                    total: busy_and_idle,
                    idle,
                });
            }
            Some(name) if name.starts_with("cpu") && name[3..].parse::<u32>().is_ok() => {
                cpus = cpus.saturating_add(1)
            }
            Some("btime") => {
                boot_time = fields.next().and_then(|v| v.parse().ok());
            }
            _ => {}
        }
    }
    let cpu = cpu.ok_or_else(|| bad("/proc/stat", 0, "no cpu line"))?;
    Ok(ProcStat {
        cpu,
        cpus,
        boot_time,
    })
}

/// Memory figures from `/proc/meminfo`, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total_bytes: u64,
    /// `MemAvailable`: what can be allocated without swapping (kernel ≥ 3.14).
    pub available_bytes: u64,
}

pub fn parse_meminfo(text: &str) -> Result<MemInfo, NodeError> {
    let mut total = None;
    let mut available = None;
    for (n, line) in text.lines().enumerate() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            _ => continue,
        };
        let mut parts = rest.split_ascii_whitespace();
        let value: u64 = parts
            .next()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("/proc/meminfo", n, "the value is not a number"))?;
        let bytes = match parts.next() {
            Some("kB") => value.saturating_mul(1024),
            None => value,
            Some(_) => return Err(bad("/proc/meminfo", n, "an unknown unit")),
        };
        *slot = Some(bytes);
    }
    Ok(MemInfo {
        total_bytes: total.ok_or_else(|| bad("/proc/meminfo", 0, "no MemTotal"))?,
        available_bytes: available.ok_or_else(|| bad("/proc/meminfo", 0, "no MemAvailable"))?,
    })
}

/// `/proc/loadavg`: run-queue averages over 1, 5 and 15 minutes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LoadAvg {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
}

pub fn parse_loadavg(text: &str) -> Result<LoadAvg, NodeError> {
    let mut fields = text.split_ascii_whitespace().map(|f| f.parse::<f64>());
    let mut next = || match fields.next() {
        Some(Ok(v)) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(bad("/proc/loadavg", 0, "expected three load averages")),
    };
    Ok(LoadAvg {
        one: next()?,
        five: next()?,
        fifteen: next()?,
    })
}

/// Bytes received and sent, summed over every interface but loopback.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetTotals {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

pub fn parse_net_dev(text: &str) -> Result<NetTotals, NodeError> {
    let mut totals = NetTotals::default();
    // Two header lines, then `name: rx_bytes rx_packets … (8 rx) tx_bytes …`.
    for (n, line) in text.lines().enumerate().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<&str> = counters.split_ascii_whitespace().collect();
        let field = |i: usize| -> Result<u64, NodeError> {
            fields
                .get(i)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("/proc/net/dev", n, "a counter is missing or not a number"))
        };
        totals.rx_bytes = totals.rx_bytes.saturating_add(field(0)?);
        totals.tx_bytes = totals.tx_bytes.saturating_add(field(8)?);
    }
    Ok(totals)
}

/// The `PRETTY_NAME` of `os-release(5)`, unquoted as the shell would; falls back
/// to `NAME VERSION`, as the spec says a reader may.
pub fn parse_os_release(text: &str) -> Option<String> {
    let mut pretty = None;
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let slot = match key {
            "PRETTY_NAME" => &mut pretty,
            "NAME" => &mut name,
            "VERSION" => &mut version,
            _ => continue,
        };
        *slot = Some(unquote(value)).filter(|v| !v.is_empty());
    }
    pretty.or_else(|| match (name, version) {
        (Some(n), Some(v)) => Some(format!("{n} {v}")),
        (Some(n), None) => Some(n),
        _ => None,
    })
}

/// Shell-style unquoting of one os-release value: `"…"` with `\` escapes of
/// `$ " \ ``, or `'…'` taken literally, or a bare word.
fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('$' | '"' | '\\' | '`')) => out.push(e),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn bad(file: &'static str, line_index: usize, what: &'static str) -> NodeError {
    NodeError::Parse {
        file,
        line: line_index + 1,
        what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a 2-CPU Debian 12 VM.
    const STAT: &str = "cpu  724654 0 115413 567070 13458 0 1747 4982 0 0
cpu0 347287 0 53002 305905 4469 0 537 2477 0 0
cpu1 377366 0 62410 261165 8989 0 1209 2505 0 0
intr 6203873 0 0 0 0
ctxt 5433482
btime 1795753031
processes 166740
procs_running 2
procs_blocked 0
softirq 2552069 0 342752 1497 270146 487098 0 1204 517456 126142 805774
";

    const MEMINFO: &str = "MemTotal:       24683656 kB
MemFree:        19781284 kB
MemAvailable:   24190476 kB
Buffers:           12184 kB
Cached:          4046540 kB
HugePages_Total:       0
";

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 15359408529  441087    0    0    0     0          0         0 15359408529  441087    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 398875672   23539    0    0    0     0          0         0  1675099   18613    0    0    0     0       0          0
veth1a2b:1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0
";

    #[test]
    fn stat_cpu_times_count_and_boot_time() {
        let s = parse_stat(STAT).unwrap();
        assert_eq!(s.cpus, 2);
        assert_eq!(s.boot_time, Some(1_795_753_031));
        assert_eq!(
            s.cpu.total,
            724_654 + 115_413 + 567_070 + 13_458 + 1_747 + 4_982
        );
        assert_eq!(s.cpu.idle, 567_070 + 13_458);
    }

    #[test]
    fn stat_guest_time_is_not_counted_twice() {
        let s = parse_stat("cpu 100 0 0 100 0 0 0 0 50 50\ncpu0 1 1 1 1\n").unwrap();
        assert_eq!(s.cpu.total, 200);
    }

    #[test]
    fn stat_refuses_what_is_not_a_stat_file() {
        assert!(parse_stat("").is_err());
        assert!(parse_stat("cpu 1 2 x 4").is_err());
        assert!(parse_stat("cpu 1 2").is_err());
        assert!(parse_stat("cpux 1 2 3 4\n").is_err());
    }

    #[test]
    fn busy_percent_from_deltas() {
        let a = CpuTimes {
            total: 1000,
            idle: 800,
        };
        let b = CpuTimes {
            total: 1200,
            idle: 850,
        };
        assert_eq!(b.busy_percent_since(&a), Some(75.0));
        assert_eq!(a.busy_percent_since(&a), None);
        assert_eq!(a.busy_percent_since(&b), None, "counters went backwards");
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total_bytes, 24_683_656 * 1024);
        assert_eq!(m.available_bytes, 24_190_476 * 1024);
        assert!(
            parse_meminfo("MemTotal: 1 kB\n").is_err(),
            "no MemAvailable"
        );
        assert!(parse_meminfo("MemTotal: x kB\nMemAvailable: 1 kB").is_err());
    }

    #[test]
    fn loadavg_three_numbers() {
        let l = parse_loadavg("0.05 0.76 1.47 2/85 4467\n").unwrap();
        assert_eq!((l.one, l.five, l.fifteen), (0.05, 0.76, 1.47));
        assert!(parse_loadavg("0.05 0.76").is_err());
        assert!(parse_loadavg("NaN 1 1").is_err());
    }

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let n = parse_net_dev(NET_DEV).unwrap();
        assert_eq!(n.rx_bytes, 398_875_672 + 1000);
        assert_eq!(n.tx_bytes, 1_675_099 + 2000);
        assert!(parse_net_dev("h\nh\n eth0: 1 2 3\n").is_err());
        assert_eq!(parse_net_dev("h\nh\n").unwrap(), NetTotals::default());
    }

    #[test]
    fn os_release_pretty_name_and_fallbacks() {
        let debian = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\n";
        assert_eq!(
            parse_os_release(debian).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            parse_os_release("NAME=Alpine\nVERSION='3.20 \"x\"'\n").as_deref(),
            Some("Alpine 3.20 \"x\"")
        );
        assert_eq!(
            parse_os_release(r#"PRETTY_NAME="A \"quoted\" \$name\\""#).as_deref(),
            Some(r#"A "quoted" $name\"#)
        );
        assert_eq!(parse_os_release("ID=x\n# comment\n"), None);
    }
}
