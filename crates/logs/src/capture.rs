//! A process's own output (stdout and stderr, and so its children's, which inherit them)
//! through a pipe into a rotating log. A file descriptor cannot rotate by itself: a child
//! such as an application command writes into whatever fd 1 is, so the pipe's reader is
//! the one place where lines can be cut into files.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::fd::FromRawFd;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use crate::policy::RotationPolicy;
use crate::rotating::RotatingFile;

/// Set while this process's output is captured; `finish_capture` drains it.
static CAPTURE: Mutex<Option<mpsc::Receiver<()>>> = Mutex::new(None);

/// Replaces fds 1 and 2 of this process with a pipe whose reader thread writes whole lines
/// into `path`, rotated by `policy`. Children started afterwards inherit the pipe.
/// Whatever the process wrote to its old stdout before stays where it was.
/// What sees each captured line besides the log file.
pub type Tap = Box<dyn Fn(&[u8]) + Send + Sync>;

static TAP: std::sync::OnceLock<Tap> = std::sync::OnceLock::new();

/// Also hands every captured line to `tap` (the monitoring agent, which sends them on as
/// records). Set once; a second tap is ignored.
pub fn tap_output(tap: Tap) {
    let _ = TAP.set(tap);
}

pub fn capture_output(path: &Path, policy: RotationPolicy) -> io::Result<()> {
    let mut log = RotatingFile::open(path, policy)?;
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) fills the two-element array; the read end is close-on-exec so no
    // child holds it.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let [read_end, write_end] = fds;
    for target in [1, 2] {
        // SAFETY: dup2(2) onto stdout and stderr; the copies are not close-on-exec, so
        // children inherit them.
        if unsafe { libc::dup2(write_end, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: closing our extra copy of the write end, which nothing else owns.
    unsafe { libc::close(write_end) };
    // SAFETY: the read end is ours alone from here on.
    let reader = unsafe { File::from_raw_fd(read_end) };
    let (done, finished) = mpsc::channel();
    std::thread::Builder::new()
        .name("log-capture".into())
        .spawn(move || {
            let mut reader = BufReader::with_capacity(64 * 1024, reader);
            let mut line = Vec::with_capacity(1024);
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line.last() != Some(&b'\n') {
                            line.push(b'\n');
                        }
                        // A full disk drops the line but keeps the pipe drained, so the
                        // writers never block on a log.
                        let _ = log.write_line(&line);
                        if let Some(tap) = TAP.get() {
                            tap(&line);
                        }
                    }
                }
            }
            let _ = done.send(());
        })?;
    *CAPTURE.lock().unwrap_or_else(|e| e.into_inner()) = Some(finished);
    Ok(())
}

/// Ends the capture at exit: points fds 1 and 2 at /dev/null so the pipe closes, then
/// waits (at most `patience`, since a child may still hold the pipe) until the reader has
/// written every line that was sent, so the last words of a process reach its log.
pub fn finish_capture(patience: Duration) {
    let Some(finished) = CAPTURE.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for target in [1, 2] {
            // SAFETY: dup2(2) of /dev/null onto stdout and stderr.
            unsafe { libc::dup2(null.as_raw_fd(), target) };
        }
    }
    let _ = finished.recv_timeout(patience);
}
