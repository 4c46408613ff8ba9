//! Resource limits as the agent writes them, the conversion from Kubernetes
//! quantities (kubelet's rules), and the cgroup v1 shares → v2 weight mapping.

/// Kubernetes' CFS period (kubelet `QuotaPeriod`): 100 ms.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
/// Kubernetes' smallest quota (kubelet `MinQuotaPeriod`): 1 ms per period.
pub const MIN_QUOTA_US: u64 = 1_000;
/// The kernel's bounds for cpu.shares (kubelet `MinShares` / `MaxShares`).
pub const MIN_SHARES: u64 = 2;
pub const MAX_SHARES: u64 = 262_144;
/// Default pids limit of a pod when the manifest does not set one: enough for
/// any normal workload, small enough that a fork bomb cannot exhaust the
/// host's pid space (kubelet's podPidsLimit is off by default; ours is not).
pub const DEFAULT_POD_PIDS_MAX: u64 = 4096;

/// A CFS bandwidth limit: `quota_us` of CPU time every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

/// What [`super::Group::set_limits`] writes. `None` means no limit (for
/// `cpu_shares`, the kernel's default weight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes; swap never extends it.
    pub memory_max: Option<u64>,
    pub cpu_quota: Option<CpuQuota>,
    /// Kubernetes / cgroup v1 CPU shares (1024 = one CPU's worth); converted
    /// to cpu.weight on cgroup v2.
    pub cpu_shares: Option<u64>,
    pub pids_max: Option<u64>,
}

impl Limits {
    /// Limits from a container's or pod's Kubernetes resources, with
    /// kubelet's rules:
    /// * requests.cpu → shares = millis × 1024 / 1000, at least 2 (kubelet
    ///   `MilliCPUToShares`); no request → 2, as kubelet gives BestEffort.
    ///   A limit without a request counts as the request too, which is what
    ///   the Kubernetes API's defaulting does before kubelet sees the pod.
    /// * limits.cpu → quota = millis × 100000 / 1000 µs per 100000 µs, at
    ///   least 1000 µs (kubelet `MilliCPUToQuota`); no limit → no quota.
    /// * limits.memory → memory_max; 0 or none → no limit.
    /// * pids → pids_max; none → [`DEFAULT_POD_PIDS_MAX`].
    pub fn from_resources(
        requests_cpu_millis: Option<u64>,
        limits_cpu_millis: Option<u64>,
        limits_memory_bytes: Option<u64>,
        pids: Option<u64>,
    ) -> Limits {
        let request = requests_cpu_millis.or(limits_cpu_millis).unwrap_or(0);
        let shares = (request.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES);
        let cpu_quota = limits_cpu_millis.filter(|&m| m > 0).map(|m| CpuQuota {
            quota_us: (m.saturating_mul(DEFAULT_CPU_PERIOD_US) / 1000).max(MIN_QUOTA_US),
            period_us: DEFAULT_CPU_PERIOD_US,
        });
        Limits {
            memory_max: limits_memory_bytes.filter(|&b| b > 0),
            cpu_quota,
            cpu_shares: Some(shares),
            pids_max: Some(pids.unwrap_or(DEFAULT_POD_PIDS_MAX)),
        }
    }
}

/// cgroup v1 cpu.shares [2, 262144] → cgroup v2 cpu.weight [1, 10000].
///
/// This is the mapping runc (>= 1.3.2, opencontainers/runc#4785, in
/// opencontainers/cgroups `ConvertCPUSharesToCgroupV2Value`) and crun
/// (>= 1.23, containers/crun#1767) use since 2025: a quadratic in log2(shares)
/// through the three points that matter — min 2 → 1, default 1024 → 100,
/// max 262144 → 10000:
///
/// ```text
/// l = log2(shares);  weight = ceil(10 ^ ((l² + 125·l) / 612 − 7/34))
/// ```
///
/// The old linear formula, `1 + (shares − 2) × 9999 / 262142`, gave a
/// one-CPU request (1024 shares) weight 39 instead of the default 100, so
/// pods lost to system services under contention (runc#4772,
/// kubernetes#131216). Using the runtimes' formula keeps our pods' weights
/// identical to a kubelet + runc/crun node's. 0 means "unset" and stays 0.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    if shares <= MIN_SHARES {
        return 1;
    }
    if shares >= MAX_SHARES {
        return 10_000;
    }
    // shares < 2^18, so the conversion to f64 is exact.
    let l = (shares as f64).log2();
    let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    // The result lies in [1, 10000] for shares in (2, 262144): the cast
    // cannot truncate.
    10f64.powf(exponent).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_to_weight_table() {
        // The fixed points of the formula and runc's own test table
        // (opencontainers/cgroups utils_test.go), plus Kubernetes requests.
        let table = [
            (0, 0),
            (1, 1),
            (2, 1),
            (3, 2),
            (102, 17),   // 100m
            (256, 35),   // 250m
            (512, 59),   // 500m
            (1000, 99),  // what naive millis-as-shares would give
            (1024, 100), // 1 CPU: the v2 default weight, as on v1
            (2048, 174), // 2 CPUs
            (4096, 303),
            (262_143, 10_000),
            (262_144, 10_000),
            (262_145, 10_000),
        ];
        for (shares, weight) in table {
            assert_eq!(shares_to_weight(shares), weight, "shares {shares}");
        }
    }

    #[test]
    fn shares_to_weight_is_monotonic_and_in_range() {
        let mut last = 1;
        for shares in 2..=MAX_SHARES {
            let w = shares_to_weight(shares);
            assert!((1..=10_000).contains(&w), "shares {shares} → {w}");
            assert!(w >= last, "shares {shares} → {w} < {last}");
            last = w;
        }
    }

    #[test]
    fn from_resources_follows_kubelet() {
        let l = Limits::from_resources(Some(250), Some(500), Some(64 << 20), None);
        assert_eq!(l.cpu_shares, Some(256));
        assert_eq!(
            l.cpu_quota,
            Some(CpuQuota {
                quota_us: 50_000,
                period_us: 100_000
            })
        );
        assert_eq!(l.memory_max, Some(64 << 20));
        assert_eq!(l.pids_max, Some(DEFAULT_POD_PIDS_MAX));

        // Tiny values hit kubelet's floors.
        let l = Limits::from_resources(Some(1), Some(1), None, Some(10));
        assert_eq!(l.cpu_shares, Some(MIN_SHARES));
        assert_eq!(l.cpu_quota.map(|q| q.quota_us), Some(MIN_QUOTA_US));
        assert_eq!(l.pids_max, Some(10));

        // No CPU at all: BestEffort shares, no quota, no memory limit.
        let l = Limits::from_resources(None, None, None, None);
        assert_eq!(l.cpu_shares, Some(MIN_SHARES));
        assert_eq!(l.cpu_quota, None);
        assert_eq!(l.memory_max, None);

        // A limit alone is also the request (API defaulting).
        let l = Limits::from_resources(None, Some(2000), None, None);
        assert_eq!(l.cpu_shares, Some(2048));
        assert_eq!(l.cpu_quota.map(|q| q.quota_us), Some(200_000));

        // Huge requests are capped at the kernel's maximum.
        let l = Limits::from_resources(Some(u64::MAX), None, Some(0), None);
        assert_eq!(l.cpu_shares, Some(MAX_SHARES));
        assert_eq!(l.memory_max, None);
    }
}
