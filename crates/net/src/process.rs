//! Child processes that a server runs (mariadbd, an application command).

/// Makes the child receive SIGKILL when the thread that spawned it exits, so that a killed
/// node takes its children with it, as a machine that loses power does. Spawn from an
/// async task on a runtime worker thread (those live as long as the runtime), never from
/// `spawn_blocking`, whose threads come and go.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends a signal to a process by pid; false if there is no such process.
pub fn signal(pid: u32, signal: i32) -> bool {
    // SAFETY: kill(2) has no memory effects.
    unsafe { libc::kill(pid as i32, signal) == 0 }
}

/// True if a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Runs a hook command a design names (an alert's or a floating IP's `notify`) without
/// waiting for it: its failure, or a run past 30 s (then it is killed), is logged with
/// `what` after `prefix`.
pub fn spawn_hook(mut cmd: tokio::process::Command, prefix: &'static str, what: String) {
    cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
    match cmd.spawn() {
        Ok(mut child) => {
            tokio::spawn(async move {
                match tokio::time::timeout(std::time::Duration::from_secs(30), child.wait()).await {
                    Ok(Ok(st)) if st.success() => {}
                    Ok(Ok(st)) => eprintln!("{prefix}: {what} exited with {st}"),
                    Ok(Err(e)) => eprintln!("{prefix}: {what}: {e}"),
                    Err(_) => eprintln!("{prefix}: {what} ran past 30 s and was killed"),
                }
            });
        }
        Err(e) => eprintln!("{prefix}: cannot run {what}: {e}"),
    }
}
