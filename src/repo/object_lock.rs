//! S3 Object Lock as the repository sees it: a bucket whose default retention locks every object
//! written for a number of days, counted from the object's write. Nothing here talks to S3;
//! the lock is stated in the config (`repository.object_lock`) and compared with object times.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

/// COMPLIANCE locks bind everyone, the bucket's owner included; GOVERNANCE ones can be lifted by
/// whoever holds `s3:BypassGovernanceRetention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    Governance,
    Compliance,
}

/// A default retention: every object is locked for `days` from its write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLock {
    pub mode: LockMode,
    pub days: u32,
}

impl ObjectLock {
    pub fn retention(&self) -> Duration {
        Duration::days(i64::from(self.days))
    }

    /// Until when an object written at `written` stays locked, if it still is at `now`. An object
    /// whose write time the store does not say is taken as written now.
    pub fn locked_until(
        &self,
        written: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let until = written.unwrap_or(now) + self.retention();
        (until > now).then_some(until)
    }

    /// Whether this lock gives at least what `required` asks: as long, and as binding.
    pub fn satisfies(&self, required: &ObjectLock) -> bool {
        self.days >= required.days && self.mode >= required.mode
    }
}

impl std::fmt::Display for ObjectLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        };
        write!(f, "{mode}, {} day(s)", self.days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_locked_for_the_retention_from_its_write() {
        let lock = ObjectLock {
            mode: LockMode::Compliance,
            days: 1,
        };
        let written = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .to_utc();
        let until = written + Duration::days(1);
        assert_eq!(
            lock.locked_until(Some(written), written + Duration::hours(23)),
            Some(until)
        );
        assert_eq!(lock.locked_until(Some(written), until), None);
        let now = until + Duration::days(5);
        assert_eq!(lock.locked_until(None, now), Some(now + Duration::days(1)));
        let governance = ObjectLock {
            mode: LockMode::Governance,
            days: 30,
        };
        assert!(!governance.satisfies(&lock), "governance binds less");
        assert!(!lock.satisfies(&governance), "a day is less than 30");
        assert!(ObjectLock { days: 30, ..lock }.satisfies(&governance));
    }
}
