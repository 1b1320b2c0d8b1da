//! Writes under test: threads that make one write after another, each with a unique
//! message, until told to stop, recording what each got; and the read-back of what a
//! database server holds, as root over its own socket.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::eventually;

/// `threads` writers, each calling `write(message)` (which returns the HTTP status) with
/// messages `PREFIX-THREAD-N`; a 201 is an acknowledged write.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<Vec<(String, u16)>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    pub fn start(
        threads: usize,
        prefix: &str,
        write: impl Fn(&str) -> u16 + Send + Sync + 'static,
    ) -> Writers {
        let write = Arc::new(write);
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads)
            .map(|t| {
                let (write, stop, acknowledged, outcomes) = (
                    write.clone(),
                    stop.clone(),
                    acknowledged.clone(),
                    outcomes.clone(),
                );
                let prefix = prefix.to_string();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let m = format!("{prefix}-{t}-{i}");
                        let status = write(&m);
                        if status == 201 {
                            acknowledged.fetch_add(1, Ordering::Relaxed);
                        }
                        outcomes.lock().unwrap().push((m, status));
                        i += 1;
                    }
                })
            })
            .collect();
        Writers {
            stop,
            acknowledged,
            outcomes,
            threads,
        }
    }

    pub fn acknowledged(&self) -> usize {
        self.acknowledged.load(Ordering::Relaxed)
    }

    /// Waits (within `patience`) until at least `n` writes were acknowledged.
    pub fn wait_for(&self, n: usize, patience: Duration, what: &str) {
        eventually(patience, what, || (self.acknowledged() >= n).then_some(()));
    }

    /// Stops the writers and returns every write with the status it got.
    pub fn stop(mut self) -> Vec<(String, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().unwrap();
        }
        self.outcomes.lock().unwrap().clone()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Every guestbook message the database server whose socket is `socket` holds.
pub fn messages_held(socket: &Path) -> Vec<String> {
    let out = Command::new("mariadb")
        .arg("--socket")
        .arg(socket)
        .args(["-u", "root", "-N", "-B"])
        .args(["-e", "SELECT message FROM foobar.messages"])
        .output()
        .expect("the mariadb client runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}
