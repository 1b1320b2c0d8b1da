//! The agent's buffer: records wait here, numbered, until the collector acknowledges
//! them. Bounded: a full buffer refuses the newest record and counts it (Vector's
//! `when_full = "drop_newest"`), so memory stays flat while the collector is away and
//! the drop counter says exactly how much is missing.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::wire::{Record, KINDS};

pub struct Outbox {
    bound: usize,
    state: Mutex<State>,
}

struct State {
    queue: VecDeque<Record>,
    /// The number of the record at the front of the queue.
    front_seq: u64,
    /// Drops by kind, in the order of [`KINDS`].
    dropped: [u64; 4],
}

impl Outbox {
    pub fn new(bound: usize) -> Outbox {
        Outbox {
            bound,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                front_seq: 1,
                dropped: [0; 4],
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a record, or counts it as dropped when the buffer is full.
    pub fn push(&self, r: Record) {
        let mut s = self.lock();
        if s.queue.len() >= self.bound {
            let kind = KINDS
                .iter()
                .position(|k| *k == r.kind())
                .expect("a known kind");
            s.dropped[kind] += 1;
        } else {
            s.queue.push_back(r);
        }
    }

    /// Up to `max` records from the front, with the number of the first: what to send.
    pub fn peek(&self, max: usize) -> (u64, Vec<Record>) {
        let s = self.lock();
        (s.front_seq, s.queue.iter().take(max).cloned().collect())
    }

    /// The collector holds every record up to `through`: forget them.
    pub fn ack(&self, through: u64) {
        let mut s = self.lock();
        while s.front_seq <= through && s.queue.pop_front().is_some() {
            s.front_seq += 1;
        }
    }

    pub fn bound(&self) -> usize {
        self.bound
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dropped(&self) -> u64 {
        self.lock().dropped.iter().sum()
    }

    /// (kind, records of that kind dropped).
    pub fn dropped_by_kind(&self) -> Vec<(&'static str, u64)> {
        let s = self.lock();
        KINDS.iter().copied().zip(s.dropped).collect()
    }

    /// Records numbered so far (held or acknowledged), not counting drops.
    pub fn taken(&self) -> u64 {
        let s = self.lock();
        s.front_seq - 1 + s.queue.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> Record {
        Record::Metrics {
            at: i as f64,
            text: String::new(),
        }
    }

    #[test]
    fn bounded_numbered_and_acknowledged_in_order() {
        let o = Outbox::new(3);
        for i in 0..5 {
            o.push(rec(i));
        }
        assert_eq!((o.len(), o.dropped()), (3, 2));
        assert_eq!(o.dropped_by_kind()[0], ("metrics", 2));
        let (first, batch) = o.peek(2);
        assert_eq!((first, batch.len()), (1, 2));
        o.ack(2);
        assert_eq!(o.peek(10).0, 3);
        o.push(rec(9));
        assert_eq!(o.len(), 2);
        // An old acknowledgement (a retried batch) changes nothing.
        o.ack(1);
        assert_eq!((o.peek(10).0, o.taken()), (3, 4));
    }
}
