//! What podgraft asks of the machine it runs on, behind a trait so that time-driven logic (event
//! stamps, batch IDs, and later restart back-off and probe timing) can run on a virtual clock in
//! unit tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

pub trait Host: Send + Sync + 'static {
    /// Wall-clock time, nanoseconds since the Unix epoch.
    fn now_unix_nanos(&self) -> i64;
    /// A clock that never goes back, for intervals.
    fn monotonic(&self) -> Duration;
    /// The node's memory (MemTotal), for the kubelet's oom_score_adj formula.
    fn memory_bytes(&self) -> Option<i64>;
    /// Whether this process may write root-owned files such as pod cgroup limits.
    fn can_write_root_files(&self) -> bool;
}

/// The real machine.
#[derive(Debug, Default)]
pub struct SystemHost {
    start: std::sync::OnceLock<std::time::Instant>,
}

impl Host for SystemHost {
    fn now_unix_nanos(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default()
    }

    fn monotonic(&self) -> Duration {
        self.start.get_or_init(std::time::Instant::now).elapsed()
    }

    fn memory_bytes(&self) -> Option<i64> {
        meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    fn can_write_root_files(&self) -> bool {
        nix::unistd::geteuid().is_root()
            || caps::has_cap(
                None,
                caps::CapSet::Effective,
                caps::Capability::CAP_DAC_OVERRIDE,
            )
            .unwrap_or(false)
    }
}

/// MemTotal in bytes from the text of /proc/meminfo.
fn meminfo_total(text: &str) -> Option<i64> {
    let kib: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A host for unit tests: time moves only when told to.
#[derive(Debug)]
pub struct FakeHost {
    now: AtomicI64,
    elapsed: Mutex<Duration>,
    pub memory: i64,
    pub root: bool,
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            // 2026-01-01T00:00:00Z: a fixed, realistic start.
            now: AtomicI64::new(1_767_225_600_000_000_000),
            elapsed: Mutex::new(Duration::ZERO),
            memory: 1 << 30,
            root: true,
        }
    }
}

impl FakeHost {
    /// Moves both clocks forward.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_nanos() as i64, Ordering::SeqCst);
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Host for FakeHost {
    fn now_unix_nanos(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> Duration {
        *self.elapsed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn memory_bytes(&self) -> Option<i64> {
        Some(self.memory)
    }

    fn can_write_root_files(&self) -> bool {
        self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memtotal() {
        let text = "MemTotal:       24576000 kB\nMemFree: 1 kB\n";
        assert_eq!(meminfo_total(text), Some(24_576_000 * 1024));
        assert_eq!(meminfo_total("MemFree: 1 kB"), None);
        assert!(SystemHost::default().memory_bytes().unwrap() > 0);
    }

    #[test]
    fn the_fake_clock_moves_only_when_told() {
        let host = FakeHost::default();
        let (t0, m0) = (host.now_unix_nanos(), host.monotonic());
        assert_eq!(host.now_unix_nanos(), t0);
        host.advance(Duration::from_secs(10));
        assert_eq!(host.now_unix_nanos() - t0, 10_000_000_000);
        assert_eq!(host.monotonic() - m0, Duration::from_secs(10));
    }
}
