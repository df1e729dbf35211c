//! Memory and CPU of a local process, read from `/proc` (Linux), and a
//! sampler that keeps the largest resident size seen during a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Clock ticks per second as `/proc/<pid>/stat` counts them (`USER_HZ`),
/// which Linux fixes at 100 for user space.
const TICKS_PER_SEC: f64 = 100.0;

#[derive(Debug, Clone, Copy)]
pub struct ProcStats {
    pub rss_mb: f64,
    /// The process's lifetime peak (`VmHWM`).
    pub peak_rss_mb: f64,
    /// User plus system time.
    pub cpu_seconds: f64,
}

/// `pid` as a number, or `self`.
pub fn read(pid: Option<u32>) -> Option<ProcStats> {
    let who = pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
    let status = std::fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let kb = |key: &str| -> Option<f64> {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse::<f64>()
            .ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start at ")".
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ProcStats {
        rss_mb: kb("VmRSS:")? / 1024.0,
        peak_rss_mb: kb("VmHWM:")? / 1024.0,
        cpu_seconds: ticks / TICKS_PER_SEC,
    })
}

/// CPU seconds of these processes together, `None` when any is unreadable
/// (or none is given).
pub fn cpu_of(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| read(Some(p)).map(|s| s.cpu_seconds)).sum()
}

/// Samples a process's resident size until stopped; the largest sample is
/// the peak *during this run*, which `VmHWM` (lifetime) cannot tell.
pub struct RssSampler {
    max_kb: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> Self {
        let max_kb = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (max, token) = (max_kb.clone(), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if let Some(s) = read(Some(pid)) {
                    max.fetch_max((s.rss_mb * 1024.0) as u64, Ordering::Relaxed);
                }
            }
        });
        Self { max_kb, stop }
    }

    /// Stops sampling and returns the largest resident size seen, in MB.
    pub fn finish(self) -> Option<f64> {
        self.stop.cancel();
        let kb = self.max_kb.load(Ordering::Relaxed);
        (kb > 0).then(|| kb as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = read(None).expect("/proc/self is readable on Linux");
        assert!(s.rss_mb > 0.0 && s.peak_rss_mb >= s.rss_mb);
        assert!(s.cpu_seconds >= 0.0);
    }

    #[tokio::test]
    async fn sampler_sees_a_resident_size() {
        let sampler = RssSampler::start(std::process::id(), Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(sampler.finish().is_some_and(|mb| mb > 0.0));
    }
}
