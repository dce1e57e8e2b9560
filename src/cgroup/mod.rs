//! Pod-level cgroup limits: find a pod's cgroup from its cgroup parent (cgroupfs or systemd
//! driver), read and write its CPU and memory limits on cgroup v1 or v2.
//!
//! Everything takes the cgroup root as a parameter, so the same code runs on `/sys/fs/cgroup` and on
//! fixture trees in a temp dir; file access goes through [`CgroupIo`] so tests can also record the
//! order of writes and play the kernel's refusals.

mod io;
mod path;

use std::path::{Path, PathBuf};

pub use io::{CgroupIo, RealIo};
pub use path::{Driver, relative_path};

/// Memory and quota values at or above this read as "unlimited" (v1 prints a page-rounded i64::MAX).
const UNLIMITED_FLOOR: i64 = 1 << 62;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    V1,
    V2,
}

impl Mode {
    /// v2 when the root is a unified hierarchy with controllers; a hybrid host whose cgroup2 mount
    /// has no controllers (this project's CI machines) is v1.
    pub fn detect(root: &Path) -> Mode {
        match std::fs::read_to_string(root.join("cgroup.controllers")) {
            Ok(c) if c.split_whitespace().any(|x| x == "memory" || x == "cpu") => Mode::V2,
            _ => Mode::V1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("memory limit {limit} bytes would be below the pod's current usage of {usage} bytes")]
    BelowUsage { limit: i64, usage: i64 },
    #[error("cgroup parent {0:?} is not a pod cgroup")]
    NotAPod(String),
    #[error("{path}: the kernel refused {value}: the cgroup uses more memory than that")]
    Busy { path: PathBuf, value: String },
}

/// The pod-level limits podgraft grows and shrinks. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// CFS quota in µs per `cpu_period`.
    pub cpu_quota: Option<i64>,
    pub cpu_period: i64,
    /// v1 cpu.shares (v2 cpu.weight is derived from it with the kubelet's formula).
    pub cpu_shares: i64,
    pub memory: Option<i64>,
}

impl Limits {
    /// These limits as `mode` can hold them: v2 keeps a weight, so shares only survive to the
    /// precision of the kubelet's shares→weight formula. Compare limits in this form.
    pub fn normalized(&self, mode: Mode) -> Limits {
        match mode {
            Mode::V1 => *self,
            Mode::V2 => Limits {
                cpu_shares: weight_to_shares(shares_to_weight(self.cpu_shares)),
                ..*self
            },
        }
    }

    /// These limits plus `growth` (an unlimited limit stays unlimited).
    pub fn plus(&self, growth: &Growth) -> Limits {
        let quota_growth = growth.cpu_milli * self.cpu_period.max(1) / 1000;
        Limits {
            cpu_quota: self.cpu_quota.map(|q| q + quota_growth),
            cpu_period: self.cpu_period,
            cpu_shares: (self.cpu_shares + growth.cpu_shares).clamp(2, 262_144),
            memory: self.memory.map(|m| m + growth.memory),
        }
    }
}

/// What dynamic containers add to a pod: the sum of their limits (CPU, memory) and of their CPU
/// requests as shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Growth {
    pub cpu_milli: i64,
    pub cpu_shares: i64,
    pub memory: i64,
}

impl Growth {
    pub fn add(&self, other: &Growth) -> Growth {
        Growth {
            cpu_milli: self.cpu_milli + other.cpu_milli,
            cpu_shares: self.cpu_shares + other.cpu_shares,
            memory: self.memory + other.memory,
        }
    }

    pub fn sub(&self, other: &Growth) -> Growth {
        Growth {
            cpu_milli: self.cpu_milli - other.cpu_milli,
            cpu_shares: self.cpu_shares - other.cpu_shares,
            memory: self.memory - other.memory,
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Growth::default()
    }
}

/// The kubelet's v2 weight from v1 shares: 1 + ((shares − 2) × 9999) / 262142.
pub fn shares_to_weight(shares: i64) -> i64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// Inverse of [`shares_to_weight`] (rounded up), to read v2 weights back as shares.
pub fn weight_to_shares(weight: i64) -> i64 {
    2 + ((weight.clamp(1, 10_000) - 1) * 262_142 + 9998) / 9999
}

/// One pod's cgroup.
#[derive(Debug, Clone)]
pub struct PodCgroup {
    root: PathBuf,
    mode: Mode,
    rel: PathBuf,
}

impl PodCgroup {
    /// The cgroup of a pod whose sandbox has `cgroup_parent`, under `root`.
    pub fn new(root: &Path, mode: Mode, cgroup_parent: &str) -> Result<Self, CgroupError> {
        Ok(Self {
            root: root.to_path_buf(),
            mode,
            rel: relative_path(cgroup_parent)?,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn file(&self, controller: &str, name: &str) -> PathBuf {
        match self.mode {
            Mode::V1 => self.root.join(controller).join(&self.rel).join(name),
            Mode::V2 => self.root.join(&self.rel).join(name),
        }
    }

    fn read_i64(&self, io: &dyn CgroupIo, path: &Path) -> Result<i64, CgroupError> {
        let text = io.read(path)?;
        text.trim().parse().map_err(|_| CgroupError::Parse {
            path: path.to_path_buf(),
            content: text,
        })
    }

    pub fn read(&self, io: &dyn CgroupIo) -> Result<Limits, CgroupError> {
        match self.mode {
            Mode::V1 => {
                let quota = self.read_i64(io, &self.file("cpu", "cpu.cfs_quota_us"))?;
                let period = self.read_i64(io, &self.file("cpu", "cpu.cfs_period_us"))?;
                let shares = self.read_i64(io, &self.file("cpu", "cpu.shares"))?;
                let memory = self.read_i64(io, &self.file("memory", "memory.limit_in_bytes"))?;
                Ok(Limits {
                    cpu_quota: (quota > 0).then_some(quota),
                    cpu_period: period,
                    cpu_shares: shares,
                    memory: (memory < UNLIMITED_FLOOR).then_some(memory),
                })
            }
            Mode::V2 => {
                let path = self.file("", "cpu.max");
                let text = io.read(&path)?;
                let mut parts = text.split_whitespace();
                let bad = || CgroupError::Parse {
                    path: path.clone(),
                    content: text.clone(),
                };
                let quota = match parts.next().ok_or_else(bad)? {
                    "max" => None,
                    q => Some(q.parse().map_err(|_| bad())?),
                };
                let period = parts
                    .next()
                    .map_or(Ok(100_000), |p| p.parse().map_err(|_| bad()))?;
                let weight = self.read_i64(io, &self.file("", "cpu.weight"))?;
                let mem_path = self.file("", "memory.max");
                let mem = io.read(&mem_path)?;
                let memory = match mem.trim() {
                    "max" => None,
                    m => Some(m.parse().map_err(|_| CgroupError::Parse {
                        path: mem_path.clone(),
                        content: mem.clone(),
                    })?),
                };
                Ok(Limits {
                    cpu_quota: quota,
                    cpu_period: period,
                    cpu_shares: weight_to_shares(weight),
                    memory,
                })
            }
        }
    }

    fn memory_usage(&self, io: &dyn CgroupIo) -> Result<i64, CgroupError> {
        let name = match self.mode {
            Mode::V1 => "memory.usage_in_bytes",
            Mode::V2 => "memory.current",
        };
        self.read_i64(io, &self.file("memory", name))
    }

    /// Writes `to` over `from`. Refuses a memory limit below current usage before writing anything.
    /// Only values that change are written; the kernel checks each file on its own, so order
    /// within the pod does not matter, but callers order pod writes against container creation
    /// and removal (grow the pod before a container starts, shrink it after one is gone).
    pub fn write(&self, io: &dyn CgroupIo, from: &Limits, to: &Limits) -> Result<(), CgroupError> {
        if let Some(limit) = to.memory.filter(|_| to.memory != from.memory) {
            let usage = self.memory_usage(io)?;
            if limit < usage {
                return Err(CgroupError::BelowUsage { limit, usage });
            }
        }
        match self.mode {
            Mode::V1 => {
                // Memory first when growing, CPU first when shrinking, so that a failure half-way
                // leaves the pod with at least the room it had.
                let memory = |io: &dyn CgroupIo| -> Result<(), CgroupError> {
                    if to.memory != from.memory {
                        let v = to.memory.map_or("-1".to_string(), |m| m.to_string());
                        io.write(&self.file("memory", "memory.limit_in_bytes"), &v)?;
                    }
                    Ok(())
                };
                let cpu = |io: &dyn CgroupIo| -> Result<(), CgroupError> {
                    if to.cpu_quota != from.cpu_quota {
                        let v = to.cpu_quota.map_or("-1".to_string(), |q| q.to_string());
                        io.write(&self.file("cpu", "cpu.cfs_quota_us"), &v)?;
                    }
                    if to.cpu_shares != from.cpu_shares {
                        io.write(&self.file("cpu", "cpu.shares"), &to.cpu_shares.to_string())?;
                    }
                    Ok(())
                };
                if to.memory.unwrap_or(i64::MAX) >= from.memory.unwrap_or(i64::MAX) {
                    memory(io)?;
                    cpu(io)
                } else {
                    cpu(io)?;
                    memory(io)
                }
            }
            Mode::V2 => {
                if to.memory != from.memory {
                    let v = to.memory.map_or("max".to_string(), |m| m.to_string());
                    io.write(&self.file("", "memory.max"), &v)?;
                }
                if to.cpu_quota != from.cpu_quota || to.cpu_period != from.cpu_period {
                    let q = to.cpu_quota.map_or("max".to_string(), |q| q.to_string());
                    io.write(&self.file("", "cpu.max"), &format!("{q} {}", to.cpu_period))?;
                }
                if to.cpu_shares != from.cpu_shares {
                    io.write(
                        &self.file("", "cpu.weight"),
                        &shares_to_weight(to.cpu_shares).to_string(),
                    )?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
