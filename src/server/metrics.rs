//! The logging/metrics observer: one `tracing` event per call and per-method counters.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::Code;

use super::intercept::{CallObserver, CallRecord};

/// Counters of one method.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodStats {
    pub calls: u64,
    /// Calls that ended with a status other than OK, by status code.
    pub errors: HashMap<i32, u64>,
    pub total_time: Duration,
    pub max_time: Duration,
    pub response_bytes: u64,
}

/// Counts calls per method. A single short critical section per call keeps it cheap next to the
/// tens of microseconds a relayed call takes.
#[derive(Debug, Default)]
pub struct Metrics {
    methods: Mutex<HashMap<String, MethodStats>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn snapshot(&self) -> HashMap<String, MethodStats> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, MethodStats>> {
        // A panic while holding the lock leaves only counters behind; keep counting.
        self.methods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A one-line-per-method summary, logged at shutdown.
    pub fn summary(&self) -> String {
        let methods = self.lock();
        let mut names: Vec<_> = methods.keys().collect();
        names.sort();
        let mut out = String::new();
        for name in names {
            let s = &methods[name];
            let errors: u64 = s.errors.values().sum();
            let mean = s.total_time.checked_div(s.calls as u32).unwrap_or_default();
            out.push_str(&format!(
                "{name} calls={} errors={errors} mean={mean:?} max={:?}\n",
                s.calls, s.max_time
            ));
        }
        out
    }
}

impl CallObserver for Metrics {
    fn call_finished(&self, call: &CallRecord<'_>) {
        tracing::debug!(
            method = call.method,
            code = ?call.code,
            elapsed_us = call.elapsed.as_micros() as u64,
            response_bytes = call.response_bytes,
            "relayed"
        );
        let mut methods = self.lock();
        let stats = match methods.get_mut(call.method) {
            Some(stats) => stats,
            None => methods.entry(call.method.to_string()).or_default(),
        };
        stats.calls += 1;
        stats.total_time += call.elapsed;
        stats.max_time = stats.max_time.max(call.elapsed);
        stats.response_bytes += call.response_bytes;
        if call.code != Code::Ok {
            *stats.errors.entry(call.code as i32).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_calls_and_errors_per_method() {
        let m = Metrics::new();
        let rec = |code, us| CallRecord {
            method: "/runtime.v1.RuntimeService/Version",
            code,
            elapsed: Duration::from_micros(us),
            response_bytes: 10,
        };
        m.call_finished(&rec(Code::Ok, 10));
        m.call_finished(&rec(Code::NotFound, 30));
        let s = &m.snapshot()["/runtime.v1.RuntimeService/Version"];
        assert_eq!(s.calls, 2);
        assert_eq!(s.errors.get(&(Code::NotFound as i32)), Some(&1));
        assert_eq!(s.max_time, Duration::from_micros(30));
        assert_eq!(s.response_bytes, 20);
        assert!(m.summary().contains("Version calls=2 errors=1"));
    }
}
