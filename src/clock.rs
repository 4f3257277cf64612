//! The one source of business time. Nothing else in the service reads the wall clock, so tests
//! and the sandbox can move time and every rule (windows, expiries, closing) moves with it.
//! Transport times are not business times: webhook signature timestamps, in and out, are checked
//! by providers' and platforms' own real clocks, so they come from [`wall_clock`] (PRODUCT.md
//! section 7).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    #[default]
    System,
    /// Real time plus an offset that `POST /v1/sandbox/clock` moves; sandbox and tests only.
    Manual,
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("the clock is in system mode; only a manual clock can be moved")]
    NotManual,
    #[error("moving the clock by that much is out of range")]
    OutOfRange,
}

/// The one place the service reads the wall clock. Business rules use [`Clock::now`]; this is
/// for transport times only (webhook signature timestamps, in and out), which must be real
/// however far a manual clock has been moved.
pub(crate) fn wall_clock() -> DateTime<Utc> {
    Utc::now()
}

/// The last instant RFC 3339 can write (its years have four digits): a deadline computed past it
/// (a manual clock moved to the year 9999, say) is held there, so every time the API shows parses.
pub(crate) fn last_writable() -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap() + TimeDelta::microseconds(999_999)
}

/// Cheap to clone; all clones share one time.
#[derive(Clone, Debug)]
pub struct Clock {
    mode: ClockMode,
    offset_micros: Arc<AtomicI64>,
    // Background jobs wait on this so they act as soon as time jumps, not at their next tick.
    moved: watch::Sender<()>,
}

impl Clock {
    pub fn new(mode: ClockMode) -> Self {
        Clock {
            mode,
            offset_micros: Arc::new(AtomicI64::new(0)),
            moved: watch::channel(()).0,
        }
    }

    pub fn system() -> Self {
        Clock::new(ClockMode::System)
    }

    pub fn manual() -> Self {
        Clock::new(ClockMode::Manual)
    }

    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    pub fn now(&self) -> DateTime<Utc> {
        let real = wall_clock();
        match self.mode {
            ClockMode::System => real,
            ClockMode::Manual => real + TimeDelta::microseconds(self.offset_micros.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock forward (or back, with a negative number) by `seconds`.
    pub fn advance(&self, seconds: i64) -> Result<DateTime<Utc>, ClockError> {
        let delta = TimeDelta::try_seconds(seconds).ok_or(ClockError::OutOfRange)?;
        self.set(self.now().checked_add_signed(delta).ok_or(ClockError::OutOfRange)?)
    }

    /// Sets a manual clock to `to`; time keeps flowing from there.
    pub fn set(&self, to: DateTime<Utc>) -> Result<DateTime<Utc>, ClockError> {
        if self.mode != ClockMode::Manual {
            return Err(ClockError::NotManual);
        }
        let offset = (to - wall_clock()).num_microseconds().ok_or(ClockError::OutOfRange)?;
        self.offset_micros.store(offset, Ordering::SeqCst);
        self.moved.send_replace(());
        Ok(self.now())
    }

    /// A receiver that is notified whenever the clock is moved.
    pub(crate) fn subscribe(&self) -> watch::Receiver<()> {
        self.moved.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_and_system_clock_refuses() {
        let clock = Clock::manual();
        let before = clock.now();
        let after = clock.advance(4 * 86_400).unwrap();
        assert!(after - before >= TimeDelta::days(4));
        let target: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        let now = clock.set(target).unwrap();
        assert!((now - target).abs() < TimeDelta::seconds(1));
        assert!(matches!(Clock::system().advance(1), Err(ClockError::NotManual)));
        assert!(matches!(clock.advance(i64::MAX), Err(ClockError::OutOfRange)));
    }
}
