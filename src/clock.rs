//! The one source of the current time. Production reads the system clock; tests
//! hand the application a controlled clock (through `Settings::clock`) and move
//! it on, so expiry is tested without sleeping. Nothing else asks the system for
//! the date.

use std::fmt;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

/// What time it is. Clones share their source.
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock.
    controlled: Option<Arc<Mutex<DateTime<Utc>>>>,
}

/// Moves a controlled [`Clock`] on.
pub struct TimeControl {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// A clock standing at `start` until its [`TimeControl`] moves it.
    pub fn controlled(start: DateTime<Utc>) -> (Self, TimeControl) {
        let now = Arc::new(Mutex::new(start));
        (
            Self {
                controlled: Some(now.clone()),
            },
            TimeControl { now },
        )
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.controlled {
            None => Utc::now(),
            Some(now) => *lock(now),
        }
    }
}

impl TimeControl {
    pub fn advance(&self, by: TimeDelta) {
        let mut now = lock(&self.now);
        *now += by;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A time value cannot be left half-written.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.controlled {
            None => f.write_str("Clock::System"),
            Some(now) => write!(f, "Clock::Controlled({})", *lock(now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_controlled_clock_stands_still_until_moved() {
        let start = Utc.with_ymd_and_hms(2025, 1, 24, 10, 30, 0).unwrap();
        let (clock, control) = Clock::controlled(start);
        let copy = clock.clone();
        assert_eq!(clock.now(), start);
        control.advance(TimeDelta::days(2));
        assert_eq!(copy.now(), start + TimeDelta::days(2));
    }

    #[test]
    fn the_system_clock_moves() {
        let clock = Clock::system();
        let before = clock.now();
        assert!(clock.now() >= before);
    }
}
