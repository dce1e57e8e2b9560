//! The ledger of dynamic growth: what each dynamic container adds to its pod, bounded by a per-pod
//! ceiling (pod annotations) and a node-wide budget (config). Reservations are taken atomically
//! per request, so concurrent adds can never overshoot either bound.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_cri::v1 as cri;

use crate::cgroup::Growth;
use crate::dynamic::error::{Error, Result};
use crate::dynamic::model::ContainerSpec;
use crate::dynamic::model::keys::{MAX_CPU_ANNOTATION, MAX_MEMORY_ANNOTATION};
use crate::dynamic::model::quantity;

/// Upper bounds on growth; `None` is unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub cpu_milli: Option<i64>,
    pub memory: Option<i64>,
}

impl Bounds {
    /// A pod's ceiling from its annotations. Without them the pod has no ceiling of its own and
    /// only the node budget applies; a malformed annotation admits nothing (fail closed).
    pub fn from_pod(config: &cri::PodSandboxConfig) -> Bounds {
        let read = |key: &str, parse: fn(&str) -> Option<i64>| {
            config.annotations.get(key).map(|v| {
                parse(v).unwrap_or_else(|| {
                    tracing::warn!(annotation = key, value = %v, "malformed ceiling annotation: no growth allowed");
                    0
                })
            })
        };
        Bounds {
            cpu_milli: read(MAX_CPU_ANNOTATION, quantity::milli_cpu),
            memory: read(MAX_MEMORY_ANNOTATION, quantity::bytes),
        }
    }
}

/// What one container adds to its pod: its CPU and memory limits, and its CPU request as shares
/// (requests default to limits).
pub fn growth_of(spec: &ContainerSpec) -> Growth {
    let r = spec.resources.amounts();
    Growth {
        cpu_milli: r.cpu_limit,
        cpu_shares: r.request_shares(),
        memory: r.memory_limit,
    }
}

/// Every reservation of dynamic growth on the node, by sandbox and container name.
#[derive(Default)]
pub struct Ledger {
    budget: Bounds,
    pods: Mutex<HashMap<String, HashMap<String, Growth>>>,
}

fn total<'a>(items: impl Iterator<Item = &'a Growth>) -> Growth {
    items.fold(Growth::default(), |acc, g| acc.add(g))
}

fn exhausted(what: &str, scope: &str, requested: i64, used: i64, limit: i64, unit: &str) -> Error {
    Error::ResourceExhausted(format!(
        "{what}: requested {requested}{unit}, {scope} has {used}{unit} of {limit}{unit} in use by dynamic containers, {}{unit} available",
        (limit - used).max(0)
    ))
}

impl Ledger {
    pub fn new(budget: Bounds) -> Self {
        Self {
            budget,
            pods: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Growth>>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves `batch` for `sandbox` if it fits both the pod's ceiling and the node budget;
    /// all or nothing.
    pub fn reserve(
        &self,
        sandbox: &str,
        ceiling: Bounds,
        batch: &[(String, Growth)],
    ) -> Result<()> {
        let mut pods = self.lock();
        let want = total(batch.iter().map(|(_, g)| g));
        let pod_used = pods
            .get(sandbox)
            .map_or_else(Growth::default, |p| total(p.values()));
        let node_used = total(pods.values().flat_map(|p| p.values()));
        for (scope, bounds, used) in [
            ("the pod (podgraft.io/max-*)", ceiling, pod_used),
            ("the node budget", self.budget, node_used),
        ] {
            if let Some(limit) = bounds
                .cpu_milli
                .filter(|l| used.cpu_milli + want.cpu_milli > *l)
            {
                return Err(exhausted(
                    "cpu",
                    scope,
                    want.cpu_milli,
                    used.cpu_milli,
                    limit,
                    "m",
                ));
            }
            if let Some(limit) = bounds.memory.filter(|l| used.memory + want.memory > *l) {
                return Err(exhausted(
                    "memory",
                    scope,
                    want.memory,
                    used.memory,
                    limit,
                    " bytes",
                ));
            }
        }
        let pod = pods.entry(sandbox.to_string()).or_default();
        for (name, growth) in batch {
            pod.insert(name.clone(), *growth);
        }
        Ok(())
    }

    /// Records growth that already exists (containers found at start); no bounds are checked.
    pub fn adopt(&self, sandbox: &str, name: &str, growth: Growth) {
        self.lock()
            .entry(sandbox.to_string())
            .or_default()
            .insert(name.to_string(), growth);
    }

    /// Whether growth of `name` in `sandbox` is recorded.
    pub fn holds(&self, sandbox: &str, name: &str) -> bool {
        self.lock()
            .get(sandbox)
            .is_some_and(|p| p.contains_key(name))
    }

    pub fn release(&self, sandbox: &str, names: &[String]) {
        let mut pods = self.lock();
        if let Some(pod) = pods.get_mut(sandbox) {
            for name in names {
                pod.remove(name);
            }
            if pod.is_empty() {
                pods.remove(sandbox);
            }
        }
    }

    pub fn forget_pod(&self, sandbox: &str) {
        self.lock().remove(sandbox);
    }

    pub fn pod_growth(&self, sandbox: &str) -> Growth {
        self.lock()
            .get(sandbox)
            .map_or_else(Growth::default, |p| total(p.values()))
    }

    /// Operability (metrics): what dynamic containers add to all pods together.
    pub fn node_growth(&self) -> Growth {
        total(self.lock().values().flat_map(|p| p.values()))
    }

    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::model::spec::testing::with_resources as spec;

    #[test]
    fn growth_counts_limits_and_request_shares() {
        let g = growth_of(&spec(("250m", "32Mi"), ("1", "64Mi")));
        assert_eq!(
            g,
            Growth {
                cpu_milli: 1000,
                cpu_shares: 256,
                memory: 64 << 20
            }
        );
        let g = growth_of(&spec(("", ""), ("500m", "")));
        assert_eq!(
            g,
            Growth {
                cpu_milli: 500,
                cpu_shares: 512,
                memory: 0
            }
        );
    }

    #[test]
    fn reservations_respect_pod_ceiling_and_node_budget_atomically() {
        let ledger = Ledger::new(Bounds {
            cpu_milli: None,
            memory: Some(100),
        });
        let g = |m| Growth {
            memory: m,
            ..Default::default()
        };
        let ceiling = Bounds {
            cpu_milli: None,
            memory: Some(60),
        };
        ledger
            .reserve("a", ceiling, &[("x".into(), g(40))])
            .unwrap();
        let err = ledger
            .reserve("a", ceiling, &[("y".into(), g(10)), ("z".into(), g(20))])
            .unwrap_err();
        let Error::ResourceExhausted(msg) = err else {
            panic!()
        };
        assert!(
            msg.contains("requested 30 bytes")
                && msg.contains("40 bytes of 60 bytes")
                && msg.contains("20 bytes available"),
            "{msg}"
        );
        assert_eq!(
            ledger.pod_growth("a"),
            g(40),
            "a refused batch reserves nothing"
        );
        ledger
            .reserve("b", Bounds::default(), &[("x".into(), g(60))])
            .unwrap();
        assert!(
            matches!(ledger.reserve("c", Bounds::default(), &[("x".into(), g(1))]), Err(Error::ResourceExhausted(m)) if m.contains("node budget"))
        );
        ledger.release("b", &["x".into()]);
        ledger
            .reserve("c", Bounds::default(), &[("x".into(), g(60))])
            .unwrap();
    }

    #[test]
    fn ceilings_come_from_pod_annotations() {
        let mut config = cri::PodSandboxConfig::default();
        assert_eq!(Bounds::from_pod(&config), Bounds::default());
        config
            .annotations
            .insert(MAX_CPU_ANNOTATION.into(), "2".into());
        config
            .annotations
            .insert(MAX_MEMORY_ANNOTATION.into(), "lots".into());
        assert_eq!(
            Bounds::from_pod(&config),
            Bounds {
                cpu_milli: Some(2000),
                memory: Some(0)
            }
        );
    }
}
