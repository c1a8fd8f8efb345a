//! The one clock of the system. Everything that needs "now" or "today" asks it,
//! so tests can move time across days, month ends and year ends.

use chrono::{DateTime, NaiveDate, Utc};
use std::sync::Arc;

/// A timestamp as the API writes it (RFC 3339, microseconds, `Z`).
pub fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
use std::sync::atomic::{AtomicI64, Ordering};

/// UTC clock with an adjustable offset (zero in production).
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_us: Arc<AtomicI64>,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::microseconds(self.offset_us.load(Ordering::Relaxed))
    }

    /// Today's date in UTC (D22).
    pub fn today(&self) -> NaiveDate {
        self.now().date_naive()
    }

    /// Moves the clock so that `now()` is (approximately) `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        let delta = at - Utc::now();
        self.offset_us.store(
            delta.num_microseconds().unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.offset_us
            .fetch_add(by.num_microseconds().unwrap_or(0), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn set_and_advance_cross_a_year_end() {
        let c = Clock::system();
        c.set(Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 0).unwrap());
        assert_eq!(c.today(), NaiveDate::from_ymd_opt(2026, 12, 31).unwrap());
        c.advance(chrono::Duration::minutes(2));
        assert_eq!(c.today(), NaiveDate::from_ymd_opt(2027, 1, 1).unwrap());
    }
}
