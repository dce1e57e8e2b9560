//! The metrics observer: per-method counters. (Each call's log line is its span's:
//! [`super::span`].)

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

/// Distinct methods counted one by one; CRI has about 40.
const MAX_METHODS: usize = 256;
const OTHER_METHODS: &str = "(other methods)";

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
        crate::metrics::cri_call(call.method, call.code, call.elapsed);
        let mut methods = self.lock();
        // Method paths come from clients: past a bound, new ones are counted together so that a
        // stream of made-up paths cannot grow this map without limit.
        let key = if methods.contains_key(call.method) || methods.len() < MAX_METHODS {
            call.method
        } else {
            OTHER_METHODS
        };
        let stats = match methods.get_mut(key) {
            Some(stats) => stats,
            None => methods.entry(key.to_string()).or_default(),
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

    #[test]
    fn made_up_methods_cannot_grow_the_map_without_bound() {
        let m = Metrics::new();
        for i in 0..(MAX_METHODS + 100) {
            let method = format!("/x.Y/M{i}");
            m.call_finished(&CallRecord {
                method: &method,
                code: Code::Unimplemented,
                elapsed: Duration::from_micros(1),
                response_bytes: 0,
            });
        }
        let snap = m.snapshot();
        assert_eq!(snap.len(), MAX_METHODS + 1);
        assert_eq!(snap[OTHER_METHODS].calls, 100);
    }
}
