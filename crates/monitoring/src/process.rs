//! One process's cost, read from /proc.

/// What a process uses now.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessUsage {
    /// User plus system time since it started.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub threads: u64,
}

/// Reads `pid`'s usage; `None` when it is gone (or not readable).
pub fn process_usage(pid: u32) -> Option<ProcessUsage> {
    let process = procfs::process::Process::new(pid as i32).ok()?;
    let stat = process.stat().ok()?;
    let ticks = procfs::ticks_per_second() as f64;
    Some(ProcessUsage {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_bytes: stat.rss * procfs::page_size(),
        open_fds: process.fd_count().map(|n| n as u64).unwrap_or(0),
        threads: stat.num_threads.max(0) as u64,
    })
}

/// The free share (0 to 1) of the filesystem holding `path`, as `df` counts it (blocks
/// available to unprivileged users over all blocks).
pub fn filesystem_free_ratio(path: &std::path::Path) -> Option<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) fills the zeroed struct from a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    Some(st.f_bavail as f64 / st.f_blocks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = process_usage(std::process::id()).unwrap();
        assert!(me.resident_bytes > 1024 * 1024, "{me:?}");
        assert!(me.threads >= 1 && me.open_fds >= 3, "{me:?}");
        assert_eq!(process_usage(u32::MAX), None);
    }
}
