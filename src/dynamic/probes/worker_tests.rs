//! The probe state machine on FakeHost's virtual clock.

use std::time::Duration;

use super::worker::{ContainerProbes, Kind, Outcome, Timing, Transition};
use crate::dynamic::host::{FakeHost, Host};
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::spec::{Probe, ProbeHandler};

fn probe(delay: i32, period: i32, success: i32, failure: i32) -> Probe {
    Probe {
        handler: ProbeHandler::Exec {
            command: vec!["true".into()],
        },
        initial_delay_seconds: delay,
        timeout_seconds: 0,
        period_seconds: period,
        success_threshold: success,
        failure_threshold: failure,
        termination_grace_period_seconds: None,
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;

/// Runs the probes of `cp` on the virtual clock until `until` (seconds after start), each probe
/// taking no time and answering `result(kind, seconds since start)`; returns every transition
/// with the second it happened at.
fn drive(
    host: &FakeHost,
    cp: &mut ContainerProbes,
    until: u64,
    result: impl Fn(Kind, u64) -> Outcome,
) -> Vec<(u64, Transition)> {
    let start = host.monotonic();
    let mut seen = Vec::new();
    loop {
        let Some((at, kind)) = Kind::ALL
            .iter()
            .filter_map(|k| cp.due(*k).map(|d| (d, *k)))
            .min_by_key(|(d, _)| *d)
        else {
            return seen;
        };
        if at > start + S(until) {
            return seen;
        }
        if at > host.monotonic() {
            host.advance(at - host.monotonic());
        }
        let t = (host.monotonic() - start).as_secs();
        for tr in cp.record(kind, host.monotonic(), result(kind, t)) {
            seen.push((t, tr));
        }
    }
}

#[test]
fn zeros_take_the_kubernetes_defaults() {
    let t = Timing::of(&probe(0, 0, 0, 0));
    assert_eq!(
        (
            t.initial_delay,
            t.period,
            t.timeout,
            t.success_threshold,
            t.failure_threshold
        ),
        (S(0), S(10), S(1), 1, 3)
    );
    let t = Timing::of(&probe(5, 2, 2, 4));
    assert_eq!((t.initial_delay, t.period), (S(5), S(2)));
    assert_eq!((t.success_threshold, t.failure_threshold), (2, 4));
}

#[test]
fn without_probes_a_running_container_is_started_and_ready() {
    let cp = ContainerProbes::new(&ContainerSpec::default(), S(0), S(0));
    assert!(cp.started() && cp.ready());
    assert!(Kind::ALL.iter().all(|k| cp.due(*k).is_none()));
}

#[test]
fn readiness_starts_false_and_follows_its_thresholds() {
    let host = FakeHost::default();
    let spec = ContainerSpec {
        readiness_probe: Some(probe(3, 2, 2, 3)),
        ..Default::default()
    };
    let mut cp = ContainerProbes::new(&spec, host.monotonic(), Duration::ZERO);
    assert!(cp.started() && !cp.ready());
    assert_eq!(cp.due(Kind::Readiness), Some(host.monotonic() + S(3)));
    // Succeeds until t=12, fails until t=20, then succeeds again.
    let seen = drive(&host, &mut cp, 30, |_, t| {
        if (12..20).contains(&t) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    });
    // Probes at 3, 5, 7, ...: ready after the 2nd success (5); failures at 13, 15, 17 → not
    // ready at 17; successes at 21, 23 → ready at 23.
    assert_eq!(
        seen,
        [
            (5, Transition::Ready),
            (17, Transition::NotReady),
            (23, Transition::Ready)
        ]
    );
}

#[test]
fn unknown_results_change_nothing_and_break_no_run() {
    let host = FakeHost::default();
    let spec = ContainerSpec {
        liveness_probe: Some(probe(0, 1, 1, 3)),
        ..Default::default()
    };
    let mut cp = ContainerProbes::new(&spec, host.monotonic(), Duration::ZERO);
    // Failure, unknown (containerd away), failure, unknown, failure: the third failure kills.
    let seen = drive(&host, &mut cp, 10, |_, t| {
        if t % 2 == 1 {
            Outcome::Unknown
        } else {
            Outcome::Failure
        }
    });
    assert_eq!(seen, [(4, Transition::Kill(Kind::Liveness))]);
    assert_eq!(cp.due(Kind::Liveness), None, "on hold after the kill");
    // A kill that could not be done: probing starts over.
    cp.resume(Kind::Liveness, host.monotonic());
    assert_eq!(cp.due(Kind::Liveness), Some(host.monotonic() + S(1)));
}

#[test]
fn liveness_kills_after_failure_threshold_in_a_row() {
    let host = FakeHost::default();
    let spec = ContainerSpec {
        liveness_probe: Some(probe(2, 1, 1, 3)),
        ..Default::default()
    };
    let mut cp = ContainerProbes::new(&spec, host.monotonic(), Duration::ZERO);
    // One success between failures resets the run.
    let seen = drive(&host, &mut cp, 20, |_, t| {
        if t == 4 || t >= 7 {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    });
    assert_eq!(seen, [(9, Transition::Kill(Kind::Liveness))]);
}

#[test]
fn the_startup_probe_gates_liveness_and_readiness() {
    let host = FakeHost::default();
    let spec = ContainerSpec {
        startup_probe: Some(probe(0, 1, 1, 10)),
        liveness_probe: Some(probe(0, 1, 1, 1)),
        readiness_probe: Some(probe(0, 5, 1, 1)),
        ..Default::default()
    };
    let mut cp = ContainerProbes::new(&spec, host.monotonic(), Duration::ZERO);
    assert!(!cp.started() && !cp.ready());
    assert_eq!(cp.due(Kind::Liveness), None);
    assert_eq!(cp.due(Kind::Readiness), None);
    // Liveness would fail at once; it must not run before startup passes at t=6.
    let seen = drive(&host, &mut cp, 6, |kind, t| match kind {
        Kind::Startup if t < 6 => Outcome::Failure,
        Kind::Startup => Outcome::Success,
        Kind::Liveness => Outcome::Failure,
        Kind::Readiness => Outcome::Success,
    });
    // Startup passes at 6; readiness and liveness run right then (their delay is long over).
    assert_eq!(
        seen,
        [
            (6, Transition::StartupSucceeded),
            (6, Transition::Kill(Kind::Liveness)),
            (6, Transition::Ready)
        ]
    );
    assert!(cp.started());
    assert_eq!(
        cp.due(Kind::Startup),
        None,
        "a passed startup probe runs no more"
    );
}

#[test]
fn a_startup_probe_that_never_passes_kills() {
    let host = FakeHost::default();
    let spec = ContainerSpec {
        startup_probe: Some(probe(1, 2, 1, 3)),
        ..Default::default()
    };
    let mut cp = ContainerProbes::new(&spec, host.monotonic(), Duration::ZERO);
    let seen = drive(&host, &mut cp, 30, |_, _| Outcome::Failure);
    // Probes at 1, 3, 5: the third failure kills; nothing more runs.
    assert_eq!(seen, [(5, Transition::Kill(Kind::Startup))]);
    assert!(!cp.ready() && !cp.started());
}

#[test]
fn without_a_readiness_probe_ready_follows_startup() {
    let host = FakeHost::default();
    let spec = ContainerSpec {
        startup_probe: Some(probe(0, 1, 2, 3)),
        ..Default::default()
    };
    let mut cp = ContainerProbes::new(&spec, host.monotonic(), Duration::ZERO);
    let seen = drive(&host, &mut cp, 10, |_, _| Outcome::Success);
    assert_eq!(
        seen,
        [(1, Transition::StartupSucceeded), (1, Transition::Ready)]
    );
}

#[test]
fn a_probe_that_overran_its_period_is_followed_at_once() {
    let host = FakeHost::default();
    let spec = ContainerSpec {
        readiness_probe: Some(probe(0, 2, 1, 1)),
        ..Default::default()
    };
    let mut cp = ContainerProbes::new(&spec, host.monotonic(), Duration::ZERO);
    let t0 = host.monotonic();
    host.advance(S(5));
    cp.record(Kind::Readiness, host.monotonic(), Outcome::Success);
    assert_eq!(cp.due(Kind::Readiness), Some(t0 + S(5)));
    cp.record(Kind::Readiness, host.monotonic(), Outcome::Success);
    assert_eq!(cp.due(Kind::Readiness), Some(t0 + S(7)));
}

#[test]
fn initial_delays_count_from_the_containers_start() {
    // Found running for 3 s (say, after a podgraft restart): 2 s of the 5 s delay are left; a
    // container running longer than its delay is probed at once.
    let spec = ContainerSpec {
        readiness_probe: Some(probe(5, 1, 1, 1)),
        liveness_probe: Some(probe(2, 1, 1, 1)),
        ..Default::default()
    };
    let cp = ContainerProbes::new(&spec, S(1), S(3));
    assert_eq!(cp.due(Kind::Readiness), Some(S(3)));
    assert_eq!(cp.due(Kind::Liveness), Some(S(1)));
}
