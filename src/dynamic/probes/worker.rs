//! The pure probe state machine of one container, on the `Host` clock (monotonic time passed in):
//! when each of its probes is due, and what a result changes. Kubernetes' semantics:
//!
//! - 0 (or less) means the default: timeout 1 s, period 10 s, success 1, failure 3;
//! - the first probe is `initialDelaySeconds` after the container started, then one per period
//!   (a probe that overran its period is followed by the next one at once, as a Go ticker does);
//! - a result is published after `successThreshold` successes or `failureThreshold` failures in
//!   a row; an unknown result (the probe could not run: containerd unreachable, podgraft-side
//!   errors) is thrown away, as the kubelet throws away prober errors;
//! - readiness starts false, liveness true, startup false; while a startup probe has not passed,
//!   liveness and readiness do not run, and once it has passed it runs no more;
//! - without a readiness probe a container is ready once started;
//! - a published liveness or startup failure asks for a kill, and that probe stops (it is on hold
//!   until the container is gone, as the kubelet's worker waits for a new container ID).

use std::time::Duration;

use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::spec::Probe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Startup, Kind::Liveness, Kind::Readiness];

    fn index(self) -> usize {
        self as usize
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// What one probe run found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// The probe could not be run; changes nothing.
    Unknown,
}

/// A probe's timing, with Kubernetes' defaults for unset values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe) -> Timing {
        let or = |v: i32, default: u32| if v > 0 { v as u32 } else { default };
        Timing {
            initial_delay: Duration::from_secs(p.initial_delay_seconds.max(0) as u64),
            period: Duration::from_secs(or(p.period_seconds, 10).into()),
            timeout: Duration::from_secs(or(p.timeout_seconds, 1).into()),
            success_threshold: or(p.success_threshold, 1),
            failure_threshold: or(p.failure_threshold, 3),
        }
    }
}

/// What a recorded result changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    StartupSucceeded,
    Ready,
    NotReady,
    /// The liveness or startup probe failed `failureThreshold` times: kill the container.
    Kill(Kind),
}

#[derive(Debug, Clone)]
struct Worker {
    timing: Timing,
    next: Duration,
    last: Option<Outcome>,
    run: u32,
    on_hold: bool,
}

impl Worker {
    /// Counts `outcome`; returns it once its threshold is reached.
    fn count(&mut self, outcome: Outcome) -> Option<Outcome> {
        if self.last == Some(outcome) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(outcome);
            self.run = 1;
        }
        let threshold = match outcome {
            Outcome::Success => self.timing.success_threshold,
            _ => self.timing.failure_threshold,
        };
        (self.run >= threshold).then_some(outcome)
    }
}

/// The probes of one container (one attempt).
#[derive(Debug, Clone)]
pub struct ContainerProbes {
    workers: [Option<Worker>; 3],
    started: bool,
    ready: bool,
}

impl ContainerProbes {
    /// The probes of `spec` at `now`, for a container that has run for `running_for` already
    /// (initial delays count from its start; the clock may not reach back that far).
    pub fn new(spec: &ContainerSpec, now: Duration, running_for: Duration) -> Self {
        let worker = |p: &Option<Probe>| {
            p.as_ref().map(|p| {
                let timing = Timing::of(p);
                Worker {
                    timing,
                    next: now + timing.initial_delay.saturating_sub(running_for),
                    last: None,
                    run: 0,
                    on_hold: false,
                }
            })
        };
        let workers = [
            worker(&spec.startup_probe),
            worker(&spec.liveness_probe),
            worker(&spec.readiness_probe),
        ];
        let started = workers[Kind::Startup.index()].is_none();
        let ready = started && workers[Kind::Readiness.index()].is_none();
        ContainerProbes {
            workers,
            started,
            ready,
        }
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.workers[kind.index()].is_some()
    }

    pub fn timing(&self, kind: Kind) -> Option<Timing> {
        self.workers[kind.index()].as_ref().map(|w| w.timing)
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn ready(&self) -> bool {
        self.ready
    }

    /// When `kind` is next to run; `None` while it may not run (not configured, on hold, gated
    /// by the startup probe, or a startup probe that has passed).
    pub fn due(&self, kind: Kind) -> Option<Duration> {
        let w = self.workers[kind.index()].as_ref()?;
        let gated = match kind {
            Kind::Startup => self.started,
            _ => !self.started,
        };
        (!w.on_hold && !gated).then_some(w.next)
    }

    /// Records the outcome of a `kind` probe that finished at `now`, schedules the next one and
    /// says what changed.
    pub fn record(&mut self, kind: Kind, now: Duration, outcome: Outcome) -> Vec<Transition> {
        let mut out = Vec::new();
        let Some(w) = self.workers[kind.index()].as_mut() else {
            return out;
        };
        w.next = (w.next + w.timing.period).max(now);
        if outcome == Outcome::Unknown {
            return out;
        }
        let Some(published) = w.count(outcome) else {
            return out;
        };
        match (kind, published) {
            (Kind::Liveness | Kind::Startup, Outcome::Failure) => {
                w.on_hold = true;
                w.run = 0;
                out.push(Transition::Kill(kind));
            }
            (Kind::Startup, Outcome::Success) if !self.started => {
                self.started = true;
                out.push(Transition::StartupSucceeded);
                // Liveness and readiness start now, but not before their initial delay.
                for k in [Kind::Liveness, Kind::Readiness] {
                    if let Some(w) = self.workers[k.index()].as_mut() {
                        w.next = w.next.max(now);
                    }
                }
                if !self.has(Kind::Readiness) {
                    self.ready = true;
                    out.push(Transition::Ready);
                }
            }
            (Kind::Readiness, Outcome::Success) if !self.ready => {
                self.ready = true;
                out.push(Transition::Ready);
            }
            (Kind::Readiness, Outcome::Failure) if self.ready => {
                self.ready = false;
                out.push(Transition::NotReady);
            }
            _ => {}
        }
        out
    }

    /// A kill asked for by `kind` could not be done: probe again from scratch, so that the next
    /// failures ask again.
    pub fn resume(&mut self, kind: Kind, now: Duration) {
        if let Some(w) = self.workers[kind.index()].as_mut() {
            w.on_hold = false;
            w.last = None;
            w.run = 0;
            w.next = w.next.max(now);
        }
    }
}
