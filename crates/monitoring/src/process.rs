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
