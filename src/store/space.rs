//! Free space on the data filesystem. sled treats a failed log write (ENOSPC) as fatal: every
//! later write fails until the process restarts. So the store refuses changes with
//! `DiskFull` (507) while free space is below a reserve, before sled or an upload can use
//! the last bytes; deletes get to dig deeper into the reserve so space can still be freed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::StoreError;

/// Free bytes a write that adds data must leave untouched.
pub const RESERVE_BYTES: u64 = 8 << 20;

/// Free bytes a delete (which only writes a small log record) needs.
pub const DELETE_RESERVE_BYTES: u64 = 1 << 20;

/// Bytes available to this (unprivileged) process on the filesystem holding `path`.
pub fn available(path: &Path) -> std::io::Result<u64> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path contains a NUL byte"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated string and `st` points to writable memory of
    // the right type; statvfs fills it or returns -1.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    // The fields are 32-bit on 32-bit ARM targets, so the casts are needed there.
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// `DiskFull` unless `need` bytes plus `reserve` are available under `path`. A failing
/// statvfs is not a reason to refuse a write: the write itself will report real errors.
pub fn ensure(path: &Path, need: u64, reserve: u64) -> Result<(), StoreError> {
    match available(path) {
        Ok(free) if free < need.saturating_add(reserve) => Err(StoreError::DiskFull),
        _ => Ok(()),
    }
}
