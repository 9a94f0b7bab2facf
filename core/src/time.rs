//! Timestamps on the wire: RFC 3339, UTC, exactly six fractional digits (`2026-01-17T16:49:31.040938Z`).
//!
//! The original emitted Go's nanosecond precision, which Python 3.9/3.10 clients cannot parse with
//! `datetime.fromisoformat`; microseconds parse everywhere.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time, kept at microsecond precision in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from_datetime(OffsetDateTime::now_utc())
    }

    /// Truncates to microseconds and converts to UTC.
    pub fn from_datetime(at: OffsetDateTime) -> Self {
        let at = at.to_offset(UtcOffset::UTC);
        let micros = at.microsecond();
        Self(at.replace_microsecond(micros).unwrap_or(at))
    }

    /// Microseconds since the Unix epoch (for storage and ordering).
    pub fn unix_micros(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    /// Inverse of [`Timestamp::unix_micros`].
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000).ok().map(Self)
    }

    /// Milliseconds from `earlier` to `self` (0 when `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        ((self.0 - earlier.0).whole_milliseconds()).max(0) as i64
    }

    /// Adds a duration.
    pub fn plus(self, d: std::time::Duration) -> Self {
        Self(self.0 + d)
    }

    /// The wire form.
    pub fn to_rfc3339(self) -> String {
        let d = self.0;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.microsecond()
        )
    }

    /// Parses any RFC 3339 time (any precision, any offset).
    pub fn parse(s: &str) -> Option<Self> {
        OffsetDateTime::parse(s, &Rfc3339).ok().map(Self::from_datetime)
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 time {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_exactly_six_digits_in_utc() {
        let t = Timestamp::parse("2026-01-17T17:49:31.040938123+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-01-17T16:49:31.040938Z");
        let whole = Timestamp::parse("2026-01-17T16:49:31Z").unwrap();
        assert_eq!(whole.to_rfc3339(), "2026-01-17T16:49:31.000000Z");
    }

    #[test]
    fn micros_round_trip() {
        let t = Timestamp::now();
        assert_eq!(Timestamp::from_unix_micros(t.unix_micros()), Some(t));
        let later = t.plus(std::time::Duration::from_millis(1500));
        assert_eq!(later.millis_since(t), 1500);
        assert_eq!(t.millis_since(later), 0);
    }

    #[test]
    fn serde_uses_the_wire_form() {
        let t = Timestamp::parse("2026-11-26T09:00:00.5Z").unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-26T09:00:00.500000Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }
}
