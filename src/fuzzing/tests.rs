//! Replays of the committed seeds and regressions, and properties of the mutator.

use std::path::{Path, PathBuf};

use super::*;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Every file under `fuzz/<kind>/<target>/`, with its target's entry point.
fn files(kind: &str) -> Vec<(PathBuf, Target)> {
    let mut out = Vec::new();
    for (target, run) in TARGETS {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
            continue;
        };
        for entry in dir {
            out.push((entry.unwrap().path(), run));
        }
    }
    out.sort();
    out
}

#[test]
fn generated_seeds_pass_every_entry_point() {
    let seeds = seeds();
    assert!(seeds.len() > 15);
    for (target, name, data) in &seeds {
        let run = TARGETS.iter().find(|(t, _)| t == target).unwrap().1;
        run(data);
        // Cut anywhere, a seed must still pass (a truncated response or request).
        for cut in [1, data.len() / 3, data.len() / 2, data.len() - 1] {
            run(&data[..cut.min(data.len())]);
        }
        let _ = name;
    }
}

#[test]
fn committed_seeds_and_regressions_replay_without_panic() {
    let seeds = files("seeds");
    assert!(seeds.len() > 15, "fuzz/seeds/ holds the seed corpus");
    for (path, run) in seeds.into_iter().chain(files("regressions")) {
        eprintln!("replaying {}", path.display());
        run(&std::fs::read(&path).unwrap());
    }
}

#[test]
fn the_admitted_seed_holds_nothing_beyond_the_hardened_pod() {
    // The oracle is not vacuous: a plain request into the hardened pod is admitted, hardened.
    let [hardened, ..] = pods();
    let specs = convert::container_specs(&[spec("tool")]).unwrap();
    let admitted = admission::admit(
        &specs,
        &[ImageUser::default()],
        &facts(hardened.clone(), Qos::Burstable),
    )
    .unwrap();
    let eff = &admitted[0].security;
    assert_eq!(eff.run_as_user, Some(1000));
    assert!(eff.no_new_privs && eff.readonly_rootfs);
    assert_within(&hardened, &ImageUser::default(), &specs[0], eff);
}

#[test]
fn the_mutator_keeps_requests_well_formed_and_reaches_admission() {
    let seed_input = seeds()
        .into_iter()
        .find(|(t, n, _)| *t == "control_spec" && n == "hardened")
        .unwrap()
        .2;
    let no_bytes: ByteMutator = |_, size, _| size;
    let facts = facts(pods()[0].clone(), Qos::Burstable);
    let mut admitted = 0;
    for seed in 1..1000u32 {
        let mut data = seed_input.clone();
        data.resize(4096, 0);
        let size = mutate_control_spec(&mut data, seed_input.len(), 4096, seed, no_bytes);
        let req = api::AddContainersRequest::decode(&data[..size]).expect("still a request");
        control_spec(&data[..size]);
        let Ok(specs) = convert::container_specs(&req.containers) else {
            continue;
        };
        let images = vec![ImageUser::default(); specs.len()];
        if admission::request(&specs).is_ok() && admission::admit(&specs, &images, &facts).is_ok() {
            admitted += 1;
        }
    }
    // Most changes are refused, but far from all: the mutator explores admission's edges.
    assert!((50..900).contains(&admitted), "{admitted} of 999 admitted");
}

/// Found by `control_spec` (fuzz/regressions/control_spec/): a CPU or memory quantity large
/// enough to overflow the kubelet's arithmetic (shares, quota, oom_score_adj) or the
/// ledger's sums panicked in a debug build and wrapped in a release one. Now refused first.
#[test]
fn quantities_too_large_to_compute_with_are_invalid() {
    for (cpu, memory, field) in [
        ("100G", "1Gi", "containers[0].resources.limits.cpu"),
        ("9P", "1Gi", "containers[0].resources.limits.cpu"),
        ("2", "4Ei", "containers[0].resources.limits.memory"),
        ("2", "7Ei", "containers[0].resources.limits.memory"),
    ] {
        let one = api::ContainerSpec {
            resources: Some(api::Resources {
                requests: None,
                limits: Some(api::ResourceList {
                    cpu: cpu.into(),
                    memory: memory.into(),
                }),
            }),
            ..spec("a")
        };
        let req = api::AddContainersRequest {
            pod: None,
            containers: vec![
                one.clone(),
                api::ContainerSpec {
                    name: "b".into(),
                    ..one
                },
            ],
        };
        control_spec(&req.encode_to_vec());
        let specs = convert::container_specs(&req.containers).unwrap();
        match admission::request(&specs) {
            Err(crate::dynamic::Error::InvalidArgument { field: f, .. }) => {
                assert_eq!(f, field, "{cpu} {memory}")
            }
            other => panic!("{cpu} {memory}: {other:?}"),
        }
    }
    // The bounds themselves still pass, and add up without overflow.
    let specs = convert::container_specs(&[api::ContainerSpec {
        resources: Some(api::Resources {
            requests: None,
            limits: Some(api::ResourceList {
                cpu: "1000000".into(),
                memory: "1Pi".into(),
            }),
        }),
        ..spec("a")
    }])
    .unwrap();
    admission::request(&specs).unwrap();
}
