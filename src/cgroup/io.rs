//! File access to cgroup trees, behind a trait so tests can record writes and play the kernel.

use std::path::Path;

use super::CgroupError;

pub trait CgroupIo: Send + Sync {
    fn read(&self, path: &Path) -> Result<String, CgroupError>;
    fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError>;
}

/// Plain file reads and writes: the real `/sys/fs/cgroup`, or a fixture tree in a temp dir.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealIo;

impl CgroupIo for RealIo {
    fn read(&self, path: &Path) -> Result<String, CgroupError> {
        std::fs::read_to_string(path).map_err(|source| CgroupError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError> {
        // cgroup files take one value per write(2) and must already exist: no create, no truncate
        // dance (a fixture file is overwritten all the same).
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, value.as_bytes()))
            .map_err(|source| match source.raw_os_error() {
                // v1 refuses a memory limit below usage with EBUSY; usage can grow between
                // podgraft's own check and the write.
                Some(libc::EBUSY) if path.ends_with("memory.limit_in_bytes") => CgroupError::Busy {
                    path: path.to_path_buf(),
                    value: value.to_string(),
                },
                _ => CgroupError::Io {
                    path: path.to_path_buf(),
                    source,
                },
            })
    }
}
