//! Node metrics: a sample every second (CPU busy % from `/proc/stat` deltas,
//! memory available, disk free of the agent root, load averages, network bytes)
//! kept in a ring of the last [`RING_CAPACITY`] samples — ten minutes, what the
//! console draws its sparklines from. [`Sampler`] is plain data that tests tick
//! by hand with fabricated readings; [`spawn_sampler`] drives it from a task.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::facts::{DiskUsage, disk_usage};
use super::procfs::{
    CpuTimes, LoadAvg, MemInfo, NetTotals, ProcStat, parse_loadavg, parse_meminfo, parse_net_dev,
    parse_stat,
};
use super::{NodeError, read_text};

/// Ten minutes of one-second samples.
pub const RING_CAPACITY: usize = 600;
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// One sample. Counters (`net*Bytes`) are cumulative since boot so a reader
/// that missed samples can still difference them; the rates are over the
/// interval since the previous sample and absent when there is none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSample {
    /// Increases by one per sample for the life of the agent; `node.metrics`
    /// takes the last one a reader has, to send only newer ones.
    pub seq: u64,
    pub time: DateTime<Utc>,
    /// Busy share of all CPUs together, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_total_bytes: u64,
    pub disk_free_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_rx_bytes_per_sec: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net_tx_bytes_per_sec: Option<f64>,
}

/// What `node.metrics` returns: the samples newer than the reader's last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSeries {
    pub interval_ms: u64,
    /// How many samples the agent keeps.
    pub capacity: u32,
    /// Oldest first.
    pub samples: Vec<MetricsSample>,
}

/// The raw readings behind one sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Readings {
    pub stat: ProcStat,
    pub mem: MemInfo,
    pub load: LoadAvg,
    pub net: NetTotals,
    pub disk: DiskUsage,
}

#[derive(Clone, Copy, Debug)]
struct Previous {
    cpu: CpuTimes,
    net: NetTotals,
    at: Duration,
}

/// The ring and the previous readings the next sample's deltas need.
#[derive(Debug)]
pub struct Sampler {
    root: PathBuf,
    proc_dir: PathBuf,
    ring: VecDeque<MetricsSample>,
    next_seq: u64,
    previous: Option<Previous>,
    started: Instant,
}

impl Sampler {
    /// A sampler of this host, measuring the disk that holds `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            proc_dir: PathBuf::from("/proc"),
            ring: VecDeque::with_capacity(RING_CAPACITY),
            next_seq: 1,
            previous: None,
            started: Instant::now(),
        }
    }

    /// Reads `stat`, `meminfo`, `loadavg` and `net/dev` under `dir` instead of `/proc`.
    pub fn with_proc_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.proc_dir = dir.into();
        self
    }

    /// Reads the files behind one sample. Blocking (statvfs can stall on a sick
    /// disk): the task runs it off the async workers.
    pub fn read(&self) -> Result<Readings, NodeError> {
        let p = &self.proc_dir;
        Ok(Readings {
            stat: parse_stat(&read_text(&p.join("stat"))?)?,
            mem: parse_meminfo(&read_text(&p.join("meminfo"))?)?,
            load: parse_loadavg(&read_text(&p.join("loadavg"))?)?,
            net: parse_net_dev(&read_text(&p.join("net/dev"))?)?,
            disk: disk_usage(&self.root)?,
        })
    }

    /// Reads and records one sample now.
    pub fn tick(&mut self) -> Result<MetricsSample, NodeError> {
        let readings = self.read()?;
        let at = self.started.elapsed();
        Ok(self.record(readings, Utc::now(), at))
    }

    /// Records a sample from `readings` taken at wall time `time` and at `at` on
    /// a monotonic clock (rates use that, so a wall-clock step cannot spike them).
    pub fn record(
        &mut self,
        readings: Readings,
        time: DateTime<Utc>,
        at: Duration,
    ) -> MetricsSample {
        let prev = self.previous.filter(|p| at > p.at);
        let rate = |now: u64, before: u64, secs: f64| {
            now.checked_sub(before).map(|delta| delta as f64 / secs)
        };
        let secs = prev.map(|p| (at - p.at).as_secs_f64());
        let sample = MetricsSample {
            seq: self.next_seq,
            time,
            cpu_percent: prev.and_then(|p| readings.stat.cpu.busy_percent_since(&p.cpu)),
            memory_total_bytes: readings.mem.total_bytes,
            memory_available_bytes: readings.mem.available_bytes,
            disk_total_bytes: readings.disk.total_bytes,
            disk_free_bytes: readings.disk.free_bytes,
            load1: readings.load.one,
            load5: readings.load.five,
            load15: readings.load.fifteen,
            net_rx_bytes: readings.net.rx_bytes,
            net_tx_bytes: readings.net.tx_bytes,
            // An interface going away takes its bytes out of the sum: no rate then.
            net_rx_bytes_per_sec: prev
                .zip(secs)
                .and_then(|(p, s)| rate(readings.net.rx_bytes, p.net.rx_bytes, s)),
            net_tx_bytes_per_sec: prev
                .zip(secs)
                .and_then(|(p, s)| rate(readings.net.tx_bytes, p.net.tx_bytes, s)),
        };
        self.next_seq += 1;
        self.previous = Some(Previous {
            cpu: readings.stat.cpu,
            net: readings.net,
            at,
        });
        if self.ring.len() == RING_CAPACITY {
            self.ring.pop_front();
        }
        self.ring.push_back(sample.clone());
        sample
    }

    /// The samples after `since` (all of them when `None` or when `since` is
    /// older than the ring: the reader sees the gap in `seq`).
    pub fn series(&self, since: Option<u64>) -> MetricsSeries {
        let since = since.unwrap_or(0);
        // Sequence numbers are consecutive, so the first newer sample's index is arithmetic.
        let start = self
            .ring
            .front()
            .map(|first| since.saturating_add(1).saturating_sub(first.seq))
            .unwrap_or(0);
        let start = usize::try_from(start)
            .unwrap_or(usize::MAX)
            .min(self.ring.len());
        MetricsSeries {
            interval_ms: SAMPLE_INTERVAL.as_millis() as u64,
            capacity: RING_CAPACITY as u32,
            samples: self.ring.range(start..).cloned().collect(),
        }
    }

    pub fn latest(&self) -> Option<&MetricsSample> {
        self.ring.back()
    }
}

/// A shared view of a sampler that a task ticks.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    sampler: Arc<Mutex<Sampler>>,
}

impl MetricsHandle {
    pub fn new(sampler: Sampler) -> Self {
        Self {
            sampler: Arc::new(Mutex::new(sampler)),
        }
    }

    pub fn series(&self, since: Option<u64>) -> MetricsSeries {
        self.lock().series(since)
    }

    pub fn latest(&self) -> Option<MetricsSample> {
        self.lock().latest().cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Sampler> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.sampler.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Samples every `interval` until the returned task is aborted. A failed read
/// is logged once per run of failures and leaves a gap in the ring.
pub fn spawn_sampler(
    sampler: Sampler,
    interval: Duration,
) -> (MetricsHandle, tokio::task::JoinHandle<()>) {
    let handle = MetricsHandle::new(sampler);
    let task_handle = handle.clone();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut failing = false;
        loop {
            ticker.tick().await;
            let h = task_handle.clone();
            let read = tokio::task::spawn_blocking(move || {
                let sampler = h.lock();
                (sampler.read(), sampler.started.elapsed())
            })
            .await;
            match read {
                Ok((Ok(readings), at)) => {
                    task_handle.lock().record(readings, Utc::now(), at);
                    if failing {
                        tracing::info!("node metrics: sampling works again");
                        failing = false;
                    }
                }
                Ok((Err(err), _)) => {
                    if !failing {
                        tracing::warn!(error = %err, "node metrics: cannot take a sample");
                        failing = true;
                    }
                }
                Err(err) => tracing::error!(error = %err, "node metrics: the sampling task failed"),
            }
        }
    });
    (handle, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(cpu_total: u64, cpu_idle: u64, rx: u64, tx: u64) -> Readings {
        Readings {
            stat: ProcStat {
                cpu: CpuTimes {
                    total: cpu_total,
                    idle: cpu_idle,
                },
                cpus: 2,
                boot_time: None,
            },
            mem: MemInfo {
                total_bytes: 1000,
                available_bytes: 400,
            },
            load: LoadAvg {
                one: 0.5,
                five: 0.25,
                fifteen: 0.1,
            },
            net: NetTotals {
                rx_bytes: rx,
                tx_bytes: tx,
            },
            disk: DiskUsage {
                path: "/var/lib/flotilla".into(),
                total_bytes: 100,
                free_bytes: 60,
            },
        }
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn first_sample_has_no_rates_then_deltas_give_them() {
        let mut s = Sampler::new("/");
        let first = s
            .record(readings(1000, 900, 0, 0), t(0), Duration::from_secs(0))
            .clone();
        assert_eq!(first.seq, 1);
        assert_eq!(first.cpu_percent, None);
        assert_eq!(first.net_rx_bytes_per_sec, None);
        assert_eq!(first.memory_available_bytes, 400);
        let second = s
            .record(
                readings(1200, 950, 4000, 1000),
                t(2),
                Duration::from_secs(2),
            )
            .clone();
        assert_eq!(second.seq, 2);
        assert_eq!(second.cpu_percent, Some(75.0));
        assert_eq!(second.net_rx_bytes_per_sec, Some(2000.0));
        assert_eq!(second.net_tx_bytes_per_sec, Some(500.0));
        // An interface went away: counters fell, so no rate rather than a wrapped one.
        let third = s
            .record(
                readings(1300, 1000, 100, 2000),
                t(3),
                Duration::from_secs(3),
            )
            .clone();
        assert_eq!(third.net_rx_bytes_per_sec, None);
        assert_eq!(third.net_tx_bytes_per_sec, Some(1000.0));
        assert_eq!(third.cpu_percent, Some(50.0));
    }

    #[test]
    fn ring_keeps_ten_minutes_and_since_returns_only_newer() {
        let mut s = Sampler::new("/");
        for i in 0..(RING_CAPACITY as u64 + 50) {
            s.record(
                readings(i * 100, i * 50, i, i),
                t(i as i64),
                Duration::from_secs(i),
            );
        }
        let all = s.series(None);
        assert_eq!(all.samples.len(), RING_CAPACITY);
        assert_eq!(all.samples[0].seq, 51);
        assert_eq!(all.samples.last().unwrap().seq, 650);
        let newer = s.series(Some(640));
        assert_eq!(
            newer.samples.iter().map(|x| x.seq).collect::<Vec<_>>(),
            (641..=650).collect::<Vec<_>>()
        );
        assert!(s.series(Some(650)).samples.is_empty());
        assert!(s.series(Some(u64::MAX)).samples.is_empty());
        assert_eq!(
            s.series(Some(3)).samples.len(),
            RING_CAPACITY,
            "older than the ring: all of it"
        );
        assert_eq!(all.interval_ms, 1000);
    }

    #[test]
    fn ticks_from_a_fixture_proc_dir() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("net")).unwrap();
        std::fs::write(
            p.join("stat"),
            "cpu 100 0 0 100 0 0 0 0 0 0\ncpu0 1 1 1 1\n",
        )
        .unwrap();
        std::fs::write(p.join("meminfo"), "MemTotal: 10 kB\nMemAvailable: 5 kB\n").unwrap();
        std::fs::write(p.join("loadavg"), "1.00 2.00 3.00 1/2 3\n").unwrap();
        std::fs::write(
            p.join("net/dev"),
            "h\nh\n eth0: 10 0 0 0 0 0 0 0 20 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        let mut s = Sampler::new(dir.path()).with_proc_dir(p);
        let a = s.tick().unwrap();
        assert_eq!(
            (a.memory_available_bytes, a.load5, a.net_tx_bytes),
            (5120, 2.0, 20)
        );
        std::fs::write(
            p.join("stat"),
            "cpu 150 0 0 150 0 0 0 0 0 0\ncpu0 1 1 1 1\n",
        )
        .unwrap();
        let b = s.tick().unwrap();
        assert_eq!(b.cpu_percent, Some(50.0));
        std::fs::remove_file(p.join("loadavg")).unwrap();
        assert!(s.tick().is_err());
        assert_eq!(
            s.series(None).samples.len(),
            2,
            "a failed read leaves a gap, not a bad sample"
        );
    }

    #[tokio::test]
    async fn the_task_fills_the_ring() {
        let (handle, task) = spawn_sampler(Sampler::new("/"), Duration::from_millis(20));
        let deadline = Instant::now() + Duration::from_secs(10);
        while handle.series(None).samples.len() < 3 {
            assert!(Instant::now() < deadline, "no samples from the task");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        task.abort();
        let series = handle.series(None);
        assert!(series.samples[1].cpu_percent.is_some());
        assert_eq!(
            handle.latest().unwrap().seq,
            series.samples.last().unwrap().seq
        );
    }
}
