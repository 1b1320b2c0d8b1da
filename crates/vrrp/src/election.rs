//! One member's state machine. Time is a `Duration` since any fixed point the caller
//! chooses (a monotonic clock), passed to every call; the caller sleeps until
//! `next_deadline` and calls `on_timer`, and hands over every authentic advert.
//!
//! Timing (RFC 5798 §6.1): Skew_Time = (256 − priority) × interval / 256;
//! Master_Down_Interval = 3 × interval + Skew_Time.

use std::net::IpAddr;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// 1 to 254; the member with the highest effective priority should be master.
    pub priority: u8,
    pub interval: Duration,
    /// A higher-priority backup takes the address from a lower-priority master.
    pub preempt: bool,
    /// After it starts, a member does not preempt for this long (keepalived's
    /// `preempt_delay`), so a flapping member does not take the address back at once.
    pub preempt_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Backup,
    Master,
    /// Stopped, or its load balancer cannot serve (keepalived's FAULT): it never becomes
    /// master in this state.
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

/// An authentic advert from another member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    pub from: IpAddr,
    /// 0: the master is leaving.
    pub priority: u8,
}

/// What the caller must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send an advert with this priority to every other member.
    Send(u8),
    /// Take the floating address (bind the load balancer's ports on it).
    Take,
    /// Let go of it (close those listeners).
    Release,
    /// The state changed (for notify hooks, logs and metrics).
    Became(State),
}

pub struct Election {
    settings: Settings,
    me: IpAddr,
    state: State,
    /// The priority in effect: the setting, lowered by tracking.
    priority: u8,
    started: Duration,
    master_down_at: Duration,
    advert_at: Duration,
    pub transitions: u64,
    /// When this member last became master.
    pub last_takeover: Option<Duration>,
    /// The master's address, as far as this member knows.
    pub master: Option<IpAddr>,
}

impl Election {
    /// A member starts as backup (it has never been the address's owner) and listens for
    /// a master for one Master_Down_Interval.
    pub fn new(settings: Settings, me: IpAddr, now: Duration) -> Election {
        let priority = settings.priority;
        let mut e = Election {
            settings,
            me,
            state: State::Backup,
            priority,
            started: now,
            master_down_at: now,
            advert_at: now,
            transitions: 0,
            last_takeover: None,
            master: None,
        };
        e.master_down_at = now + e.master_down_interval();
        e
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.priority
    }

    pub fn skew(&self) -> Duration {
        self.settings.interval * (256 - u32::from(self.priority)) / 256
    }

    pub fn master_down_interval(&self) -> Duration {
        self.settings.interval * 3 + self.skew()
    }

    /// When `on_timer` must be called next.
    pub fn next_deadline(&self) -> Duration {
        match self.state {
            State::Master => self.advert_at,
            State::Backup => self.master_down_at,
            // Nothing runs out; tracking brings it back.
            State::Fault => self.started + Duration::from_secs(86400 * 365),
        }
    }

    fn preempts(&self, now: Duration) -> bool {
        self.settings.preempt && now >= self.started + self.settings.preempt_delay
    }

    fn become_master(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.state = State::Master;
        self.transitions += 1;
        self.last_takeover = Some(now);
        self.master = Some(self.me);
        self.advert_at = now + self.settings.interval;
        out.extend([
            Action::Send(self.priority),
            Action::Take,
            Action::Became(State::Master),
        ]);
    }

    fn become_backup(&mut self, now: Duration, out: &mut Vec<Action>) {
        let was_master = self.state == State::Master;
        self.state = State::Backup;
        self.transitions += 1;
        self.master_down_at = now + self.master_down_interval();
        if was_master {
            out.push(Action::Release);
        }
        out.push(Action::Became(State::Backup));
    }

    pub fn on_timer(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Backup if now >= self.master_down_at => self.become_master(now, &mut out),
            State::Master if now >= self.advert_at => {
                out.push(Action::Send(self.priority));
                // Keep the beat even when a tick comes late.
                while self.advert_at <= now {
                    self.advert_at += self.settings.interval;
                }
            }
            _ => {}
        }
        out
    }

    pub fn on_advert(&mut self, now: Duration, a: Advert) -> Vec<Action> {
        let mut out = Vec::new();
        if a.from == self.me {
            return out;
        }
        match self.state {
            State::Fault => {}
            State::Backup => {
                if a.priority == 0 {
                    // The master is leaving: take over after the skew alone.
                    self.master_down_at = now + self.skew();
                    self.master = None;
                } else if !self.preempts(now) || a.priority >= self.priority {
                    self.master_down_at = now + self.master_down_interval();
                    self.master = Some(a.from);
                }
                // Else a lower-priority master, and this member preempts: its adverts
                // are ignored and the timer runs out.
            }
            State::Master => {
                if a.priority == 0 {
                    // Another master left: say at once who holds the address now.
                    out.push(Action::Send(self.priority));
                    self.advert_at = now + self.settings.interval;
                } else if a.priority > self.priority
                    || (a.priority == self.priority && a.from > self.me)
                {
                    self.master = Some(a.from);
                    self.become_backup(now, &mut out);
                } else {
                    // Two masters (a split that healed): answer at once, so the other
                    // steps down now instead of at our next beat (keepalived#166).
                    out.push(Action::Send(self.priority));
                    self.advert_at = now + self.settings.interval;
                }
            }
        }
        out
    }

    /// Tracking changed the priority in effect (1 to 254). A master announces it at once,
    /// so a backup that now outranks it can preempt.
    pub fn set_priority(&mut self, now: Duration, priority: u8) -> Vec<Action> {
        let priority = priority.clamp(1, 254);
        if priority == self.priority {
            return Vec::new();
        }
        self.priority = priority;
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::Send(priority));
            self.advert_at = now + self.settings.interval;
        }
        out
    }

    /// The member cannot serve (its load balancer is not ready) or can again. A faulty
    /// master leaves as a stopping one does.
    pub fn set_fault(&mut self, now: Duration, fault: bool) -> Vec<Action> {
        let mut out = Vec::new();
        match (fault, self.state) {
            (true, State::Fault) | (false, State::Backup | State::Master) => {}
            (true, _) => {
                if self.state == State::Master {
                    out.extend([Action::Send(0), Action::Release]);
                }
                self.state = State::Fault;
                self.transitions += 1;
                out.push(Action::Became(State::Fault));
            }
            (false, State::Fault) => {
                self.state = State::Backup;
                self.transitions += 1;
                self.master_down_at = now + self.master_down_interval();
                out.push(Action::Became(State::Backup));
            }
        }
        out
    }

    /// A clean stop: a master says it is leaving (priority 0) and lets go.
    pub fn stop(&mut self, now: Duration) -> Vec<Action> {
        self.set_fault(now, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 10, 3, last])
    }

    fn settings(priority: u8) -> Settings {
        Settings {
            priority,
            interval: 100 * MS,
            preempt: true,
            preempt_delay: Duration::ZERO,
        }
    }

    /// A few members on a perfect network, stepped every millisecond: the adverts each
    /// sends reach the others at once (unless `cut`).
    struct Net {
        members: Vec<(IpAddr, Election, bool)>,
        cut: bool,
        now: Duration,
    }

    impl Net {
        fn new(prios: &[(u8, u8, bool)]) -> Net {
            Net {
                members: prios
                    .iter()
                    .map(|(last, p, preempt)| {
                        let s = Settings {
                            preempt: *preempt,
                            ..settings(*p)
                        };
                        (
                            ip(*last),
                            Election::new(s, ip(*last), Duration::ZERO),
                            false,
                        )
                    })
                    .collect(),
                cut: false,
                now: Duration::ZERO,
            }
        }

        fn deliver(&mut self, from: usize, actions: Vec<Action>) {
            for a in actions {
                match a {
                    Action::Take => self.members[from].2 = true,
                    Action::Release => self.members[from].2 = false,
                    Action::Send(p) if !self.cut => {
                        let advert = Advert {
                            from: self.members[from].0,
                            priority: p,
                        };
                        for to in 0..self.members.len() {
                            if to != from {
                                let out = self.members[to].1.on_advert(self.now, advert);
                                self.deliver(to, out);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }

        fn run(&mut self, d: Duration) {
            let end = self.now + d;
            while self.now < end {
                self.now += MS;
                for i in 0..self.members.len() {
                    let out = self.members[i].1.on_timer(self.now);
                    self.deliver(i, out);
                }
            }
        }

        fn holders(&self) -> Vec<IpAddr> {
            self.members.iter().filter(|m| m.2).map(|m| m.0).collect()
        }

        fn act(&mut self, i: usize, f: impl FnOnce(&mut Election, Duration) -> Vec<Action>) {
            let now = self.now;
            let out = f(&mut self.members[i].1, now);
            self.deliver(i, out);
        }
    }

    #[test]
    fn timing_follows_rfc_5798() {
        let e = Election::new(settings(100), ip(1), Duration::ZERO);
        // (256 − 100) × 100 ms / 256 = 60.9 ms; 3 × 100 ms + that.
        assert_eq!(e.skew(), Duration::from_nanos(60_937_500));
        assert_eq!(e.master_down_interval(), Duration::from_nanos(360_937_500));
    }

    #[test]
    fn the_highest_priority_becomes_master_and_a_killed_master_is_replaced_in_time() {
        let mut net = Net::new(&[(10, 200, true), (20, 100, true)]);
        net.run(Duration::from_secs(1));
        assert_eq!(net.holders(), [ip(10)]);
        // Kill: lb1 falls silent and its address goes with its process.
        let killed_at = net.now;
        net.members[0].1 = Election::new(settings(200), ip(10), Duration::from_secs(3600));
        net.members[0].2 = false;
        let mdi = net.members[1].1.master_down_interval();
        // lb1's replacement object never ticks: step only lb2.
        while net.holders().is_empty() {
            net.now += MS;
            let out = net.members[1].1.on_timer(net.now);
            net.deliver_only(1, out);
        }
        let took = net.now - killed_at;
        assert!(took <= mdi + MS, "took {took:?}, bound {mdi:?}");
        assert_eq!(net.holders(), [ip(20)]);
    }

    impl Net {
        /// Like `deliver`, but nothing reaches member 0 (it is dead).
        fn deliver_only(&mut self, from: usize, actions: Vec<Action>) {
            for a in actions {
                match a {
                    Action::Take => self.members[from].2 = true,
                    Action::Release => self.members[from].2 = false,
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn a_clean_stop_hands_over_after_the_skew_alone() {
        let mut net = Net::new(&[(10, 200, true), (20, 100, true)]);
        net.run(Duration::from_secs(1));
        net.act(0, |e, now| e.stop(now));
        assert!(net.holders().is_empty());
        let stopped = net.now;
        net.run(Duration::from_millis(200));
        assert_eq!(net.holders(), [ip(20)]);
        let took = net.members[1].1.last_takeover.unwrap() - stopped;
        assert!(took <= net.members[1].1.skew() + MS, "{took:?}");
    }

    #[test]
    fn preempt_takes_back_and_nopreempt_stays_backup() {
        for (preempt, expected) in [(true, ip(10)), (false, ip(20))] {
            let mut net = Net::new(&[(10, 200, preempt), (20, 100, preempt)]);
            net.run(Duration::from_secs(1));
            net.act(0, |e, now| e.stop(now));
            net.run(Duration::from_secs(1));
            assert_eq!(net.holders(), [ip(20)]);
            // lb1 comes back (a fresh start).
            let now = net.now;
            net.members[0].1 = Election::new(
                Settings {
                    preempt,
                    ..settings(200)
                },
                ip(10),
                now,
            );
            for _ in 0..2000 {
                net.run(MS);
                assert!(net.holders().len() <= 1, "two holders at {:?}", net.now);
            }
            assert_eq!(net.holders(), [expected], "preempt {preempt}");
        }
    }

    #[test]
    fn a_preempt_delay_holds_the_returning_master_back() {
        let mut net = Net::new(&[(10, 200, true), (20, 100, true)]);
        net.run(Duration::from_secs(1));
        net.act(0, |e, now| e.stop(now));
        net.run(Duration::from_secs(1));
        let now = net.now;
        net.members[0].1 = Election::new(
            Settings {
                preempt_delay: Duration::from_secs(2),
                ..settings(200)
            },
            ip(10),
            now,
        );
        net.run(Duration::from_millis(1900));
        assert_eq!(net.holders(), [ip(20)], "within the delay");
        net.run(Duration::from_millis(600));
        assert_eq!(net.holders(), [ip(10)], "after it");
    }

    #[test]
    fn equal_priorities_end_with_one_master_by_address() {
        // keepalived#2190: nopreempt with equal priorities must not leave both backup.
        let mut net = Net::new(&[(10, 100, false), (20, 100, false)]);
        net.run(Duration::from_secs(1));
        assert_eq!(net.holders().len(), 1, "{:?}", net.holders());
        // Both masters at once (they started cut off from each other): the higher
        // address wins the tie (RFC 5798 §6.4.3).
        let mut net = Net::new(&[(10, 100, false), (20, 100, false)]);
        net.cut = true;
        net.run(Duration::from_secs(1));
        net.cut = false;
        net.run(Duration::from_millis(200));
        assert_eq!(net.holders(), [ip(20)]);
    }

    #[test]
    fn a_split_brain_heals_to_one_master_at_once() {
        let mut net = Net::new(&[(10, 200, true), (20, 100, true)]);
        net.run(Duration::from_secs(1));
        // Heartbeats blocked: both become master (keepalived#821 — expected while cut).
        net.cut = true;
        net.run(Duration::from_secs(1));
        assert_eq!(net.holders().len(), 2);
        net.cut = false;
        // The next advert settles it; no member waits a whole interval to re-announce.
        net.run(Duration::from_millis(101));
        assert_eq!(net.holders(), [ip(10)]);
    }

    #[test]
    fn tracking_hands_over_to_a_backup_that_now_outranks_the_master() {
        let mut net = Net::new(&[(10, 200, true), (20, 150, true)]);
        net.run(Duration::from_secs(1));
        // lb1's backends are all down: its priority drops by 60, under lb2's.
        net.act(0, |e, now| e.set_priority(now, 140));
        net.run(Duration::from_secs(1));
        assert_eq!(net.holders(), [ip(20)]);
        // A faulty member (its balancer is not ready) never holds the address.
        net.act(1, |e, now| e.set_fault(now, true));
        net.run(Duration::from_secs(1));
        assert_eq!(net.holders(), [ip(10)]);
    }
}
