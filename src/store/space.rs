//! Free space on the data filesystem. sled treats a failed log write (ENOSPC) as fatal: every
//! later write fails until the process restarts. So the store refuses changes with
//! `DiskFull` (507) while free space is below a reserve, before sled or an upload can use
//! the last bytes; deletes get to dig deeper into the reserve so space can still be freed.

use std::path::Path;

use super::StoreError;

/// Free bytes a write that adds data must leave untouched.
pub const RESERVE_BYTES: u64 = 8 << 20;

/// Free bytes a delete (which only writes a small log record) needs.
pub const DELETE_RESERVE_BYTES: u64 = 1 << 20;

/// Bytes available to this (unprivileged) process on the filesystem holding `path`.
pub fn available(path: &Path) -> std::io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// `DiskFull` unless `need` bytes plus `reserve` are available under `path`. A failing
/// statvfs is not a reason to refuse a write: the write itself will report real errors.
pub fn ensure(path: &Path, need: u64, reserve: u64) -> Result<(), StoreError> {
    match available(path) {
        Ok(free) if free < need.saturating_add(reserve) => Err(StoreError::DiskFull),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read() {
        assert!(available(Path::new("/")).unwrap() > 0);
        assert!(available(Path::new("/no/such/dir")).is_err());
        assert!(ensure(Path::new("/"), u64::MAX - RESERVE_BYTES, RESERVE_BYTES).is_err());
    }
}
