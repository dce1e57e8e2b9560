//! Fault injection for the crash tests: named points at the step boundaries of every operation
//! that changes containers or state (add, remove, restart, pod teardown, load's recovery, the
//! state writer). With the `testing` feature (on in every test build, including the binary the
//! integration tests run), `PODGRAFT_FAULT=NAME:N[,NAME:N...]` read at start makes the N-th hit of
//! point NAME kill the process with SIGKILL, exactly as `kill -9` at that instant would. Without
//! the feature a point compiles to nothing.
//!
//! Naming: `<operation>.<before|after>_<what>` (e.g. `add.after_create`); the hit is logged on
//! stderr as `fault point NAME: SIGKILL` just before the kill, so a test can tell that it fired.
//! A new point is one line, `crate::fault::point("probe.before_restart")`, at the boundary.

/// The environment variable that arms fault points.
pub const ENV: &str = "PODGRAFT_FAULT";

/// A fault point: kills the process here if the point is armed and this is its chosen hit.
#[inline(always)]
pub fn point(name: &'static str) {
    #[cfg(feature = "testing")]
    armed::hit(name);
    #[cfg(not(feature = "testing"))]
    let _ = name;
}

/// Reads [`ENV`]; call once at start so that a malformed value is reported before any point.
pub fn arm() {
    #[cfg(feature = "testing")]
    armed::plan();
}

#[cfg(feature = "testing")]
mod armed {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub(super) struct Armed {
        name: String,
        at: u64,
        hits: AtomicU64,
    }

    pub(super) fn plan() -> &'static [Armed] {
        static PLAN: OnceLock<Vec<Armed>> = OnceLock::new();
        PLAN.get_or_init(|| {
            let Ok(spec) = std::env::var(super::ENV) else {
                return Vec::new();
            };
            let plan = parse(&spec);
            tracing::warn!(spec, points = plan.len(), "fault points armed");
            plan
        })
    }

    pub(super) fn parse(spec: &str) -> Vec<Armed> {
        spec.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (name, at) = item.rsplit_once(':').unwrap_or((item, "1"));
                let at = at
                    .parse::<u64>()
                    .unwrap_or_else(|_| panic!("{}: bad hit count in {item:?}", super::ENV));
                Armed {
                    name: name.to_string(),
                    at: at.max(1),
                    hits: AtomicU64::new(0),
                }
            })
            .collect()
    }

    pub(super) fn hit(name: &str) {
        for armed in plan().iter().filter(|a| a.name == name) {
            if armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
                // Straight to stderr (the log), unbuffered: the process dies on the next line.
                eprintln!("fault point {name}: SIGKILL");
                // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                // SIGKILL is not delivered asynchronously-later to ourselves in practice, but
                // nothing may run past the point if it were.
                loop {
                    std::thread::park();
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn plans_name_points_and_hits() {
            let plan = parse("add.after_create:2, writer.before_rename");
            assert_eq!(plan.len(), 2);
            assert_eq!((plan[0].name.as_str(), plan[0].at), ("add.after_create", 2));
            assert_eq!(
                (plan[1].name.as_str(), plan[1].at),
                ("writer.before_rename", 1)
            );
            assert!(parse("").is_empty());
        }

        #[test]
        fn unarmed_points_do_nothing() {
            // The test process has no PODGRAFT_FAULT: hitting any point returns.
            super::super::point("add.after_create");
        }
    }
}
