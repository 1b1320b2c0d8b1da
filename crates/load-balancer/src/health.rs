//! A backend's health as HAProxy keeps it: `rise` consecutive passed checks bring a down
//! backend up, `fall` consecutive failures take an up backend down. No I/O.

/// A change of a backend's health, to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Up,
    Down,
}

#[derive(Debug, Clone)]
pub struct HealthState {
    up: bool,
    passed: u32,
    failed: u32,
}

impl Default for HealthState {
    /// Backends start up, as in HAProxy: traffic flows at once, and the first failed
    /// checks (or connection errors) take a dead one out.
    fn default() -> Self {
        HealthState {
            up: true,
            passed: 0,
            failed: 0,
        }
    }
}

impl HealthState {
    /// A backend not known to be up yet: `rise` passed checks bring it up.
    pub fn down() -> Self {
        HealthState {
            up: false,
            passed: 0,
            failed: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Records one check result; returns the transition it caused, if any.
    pub fn observe(&mut self, passed: bool, rise: u32, fall: u32) -> Option<Transition> {
        if passed {
            self.failed = 0;
            self.passed = self.passed.saturating_add(1);
            if !self.up && self.passed >= rise {
                self.up = true;
                return Some(Transition::Up);
            }
        } else {
            self.passed = 0;
            self.failed = self.failed.saturating_add(1);
            if self.up && self.failed >= fall {
                self.up = false;
                return Some(Transition::Down);
            }
        }
        None
    }

    /// Passive ejection: live traffic could not connect, so the backend is down now;
    /// active checks bring it back after `rise` passes.
    pub fn eject(&mut self) -> Option<Transition> {
        self.passed = 0;
        if self.up {
            self.up = false;
            return Some(Transition::Down);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_passes() {
        let mut h = HealthState::default();
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), None);
        assert_eq!(h.observe(false, 2, 3), Some(Transition::Down));
        assert!(!h.is_up());
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(
            h.observe(false, 2, 3),
            None,
            "a failure resets the rise count"
        );
        assert_eq!(h.observe(true, 2, 3), None);
        assert_eq!(h.observe(true, 2, 3), Some(Transition::Up));
    }

    #[test]
    fn a_pass_resets_the_fall_count() {
        let mut h = HealthState::default();
        h.observe(false, 2, 2);
        h.observe(true, 2, 2);
        assert_eq!(h.observe(false, 2, 2), None);
        assert_eq!(h.observe(false, 2, 2), Some(Transition::Down));
    }

    #[test]
    fn ejection_takes_it_down_at_once() {
        let mut h = HealthState::default();
        assert_eq!(h.eject(), Some(Transition::Down));
        assert_eq!(h.eject(), None);
        assert_eq!(h.observe(true, 1, 3), Some(Transition::Up));
    }
}
