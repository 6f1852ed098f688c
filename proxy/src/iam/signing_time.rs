//! The signing time: one UTC instant, in whole seconds, that feeds the SigV4 date
//! (`X-Amz-Date`, the credential scope), the certificate's `sigv4DateTime` (UTCTime) and its
//! validity window, as in efs-utils.

use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A UTC instant truncated to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SigningTime(OffsetDateTime);

impl SigningTime {
    /// Now, truncated to the second.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    ///
    /// A time outside years -9999 to 9999 (a far deadline computed from a huge option) is
    /// clamped to that range instead of panicking as `OffsetDateTime::from` would.
    pub fn from_system_time(t: SystemTime) -> Self {
        let seconds = match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        };
        let min = time::PrimitiveDateTime::MIN.assume_utc();
        let max = time::PrimitiveDateTime::MAX.assume_utc();
        let clamped = seconds.clamp(min.unix_timestamp(), max.unix_timestamp());
        // Whole seconds only: a SigningTime has no fraction.
        Self::from_offset(OffsetDateTime::from_unix_timestamp(clamped).unwrap_or(max))
    }

    /// Seconds since the Unix epoch, as X.509 validity times are read; `None` before 1970.
    pub fn from_unix(seconds: i64) -> Option<Self> {
        let since = std::time::Duration::from_secs(u64::try_from(seconds).ok()?);
        Some(Self::from_system_time(
            SystemTime::UNIX_EPOCH.checked_add(since)?,
        ))
    }

    fn from_offset(t: OffsetDateTime) -> Self {
        let utc = t.to_offset(time::UtcOffset::UTC);
        // Dropping nanoseconds cannot fail: 0 is always in range.
        SigningTime(utc.replace_nanosecond(0).unwrap_or(utc))
    }

    /// Parses an RFC 3339 timestamp (`2026-04-15T12:34:56Z`, any offset); fractions of a
    /// second are dropped.
    pub fn parse_rfc3339(s: &str) -> Result<Self, String> {
        OffsetDateTime::parse(s, &Rfc3339)
            .map(Self::from_offset)
            .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-04-15T12:34:56Z: {e}"))
    }

    /// Parses the SigV4 form `YYYYMMDDTHHMMSSZ`.
    pub fn parse_amz_date(s: &str) -> Result<Self, String> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| -> Option<i32> {
            s.get(r)
                .filter(|p| p.bytes().all(|c| c.is_ascii_digit()))
                .and_then(|p| p.parse().ok())
        };
        let bad = || format!("{s:?} is not a SigV4 date (YYYYMMDDTHHMMSSZ)");
        if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
            return Err(bad());
        }
        let field = |r| digits(r).ok_or_else(bad);
        let month = u8::try_from(field(4..6)?).map_err(|_| bad())?;
        let date = time::Date::from_calendar_date(
            field(0..4)?,
            time::Month::try_from(month).map_err(|_| bad())?,
            u8::try_from(field(6..8)?).map_err(|_| bad())?,
        )
        .map_err(|_| bad())?;
        let clock = time::Time::from_hms(
            u8::try_from(field(9..11)?).map_err(|_| bad())?,
            u8::try_from(field(11..13)?).map_err(|_| bad())?,
            u8::try_from(field(13..15)?).map_err(|_| bad())?,
        )
        .map_err(|_| bad())?;
        Ok(SigningTime(date.with_time(clock).assume_utc()))
    }

    /// `X-Amz-Date`: `YYYYMMDDTHHMMSSZ`.
    pub fn amz_date(&self) -> String {
        let t = self.0;
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// The credential scope's date: `YYYYMMDD`.
    pub fn date_stamp(&self) -> String {
        let t = self.0;
        format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
    }

    /// ASN.1 UTCTime content, `YYMMDDHHMMSSZ` (efs-utils' `CERT_DATETIME_FORMAT`). UTCTime has
    /// two-digit years, so it names 1950–2049 only.
    pub fn utc_time(&self) -> String {
        let t = self.0;
        format!(
            "{:02}{:02}{:02}{:02}{:02}{:02}Z",
            t.year().rem_euclid(100),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// Reads ASN.1 UTCTime content, the inverse of [`utc_time`](Self::utc_time) (years 50–99
    /// are 19xx); `None` for anything else, whatever the bytes.
    pub fn parse_utc_time(bytes: &[u8]) -> Option<Self> {
        // Checked as bytes first: slicing a `str` at 12 would panic inside a multi-byte
        // character.
        let [digits @ .., b'Z'] = bytes else {
            return None;
        };
        if digits.len() != 12 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let text = std::str::from_utf8(bytes).ok()?;
        let century = if bytes[0] >= b'5' { "19" } else { "20" };
        Self::parse_amz_date(&format!("{century}{}T{}", &text[..6], &text[6..])).ok()
    }

    /// RFC 3339, for logs and `--explain`.
    pub fn rfc3339(&self) -> String {
        self.0.format(&Rfc3339).unwrap_or_else(|_| self.amz_date())
    }

    /// The same instant as a `time` date-time (UTC), for rcgen's validity fields.
    pub fn offset_date_time(&self) -> OffsetDateTime {
        self.0
    }

    /// The same instant as a [`SystemTime`].
    pub fn system_time(&self) -> SystemTime {
        SystemTime::from(self.0)
    }

    /// `self + d`, saturating far in the future.
    pub fn plus(&self, d: std::time::Duration) -> SigningTime {
        SigningTime(
            self.0
                .saturating_add(time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
        )
    }

    /// `self - d`, saturating far in the past.
    pub fn minus(&self, d: std::time::Duration) -> SigningTime {
        SigningTime(
            self.0
                .saturating_sub(time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
        )
    }
}

impl std::fmt::Display for SigningTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_are_parsed_without_panicking_on_any_bytes() {
        let t = SigningTime::parse_utc_time(b"491231235959Z").unwrap();
        assert_eq!(
            (t.amz_date(), t.utc_time()),
            ("20491231T235959Z".into(), "491231235959Z".into())
        );
        let t = SigningTime::parse_utc_time(b"500101000000Z").unwrap();
        assert_eq!(t.amz_date(), "19500101T000000Z");
        // A multi-byte character across byte 12 used to panic (`str` slicing).
        for bad in [
            "12345678901é".as_bytes(),
            &b"1234567890\xc3\xa9Z"[..],
            b"1234567890123",
            b"12345678901Z",
            b"991332235959Z",
            b"",
            b"Z",
        ] {
            assert!(SigningTime::parse_utc_time(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_system_time_past_year_9999_is_clamped_not_a_panic() {
        let far = SystemTime::now() + Duration::from_millis(u64::MAX);
        assert_eq!(SigningTime::from_system_time(far).0.year(), 9999);
        let early = SystemTime::UNIX_EPOCH - Duration::from_secs(400_000 * 31_556_952);
        assert_eq!(SigningTime::from_system_time(early).0.year(), -9999);
        let now = SystemTime::now();
        let t = SigningTime::from_system_time(now);
        assert_eq!(t, SigningTime::from_offset(OffsetDateTime::from(now)));
    }
    use std::time::Duration;

    #[test]
    fn formats_match_efs_utils() {
        let t = SigningTime::parse_rfc3339("2026-04-15T12:34:56.789Z").unwrap();
        assert_eq!(t.amz_date(), "20260415T123456Z");
        assert_eq!(t.date_stamp(), "20260415");
        assert_eq!(t.utc_time(), "260415123456Z");
        assert_eq!(
            t.minus(Duration::from_secs(900)).utc_time(),
            "260415121956Z"
        );
        assert_eq!(
            t.plus(Duration::from_secs(3 * 3600)).utc_time(),
            "260415153456Z"
        );
        assert_eq!(t.rfc3339(), "2026-04-15T12:34:56Z");
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let t = SigningTime::parse_rfc3339("2026-01-02T05:04:05+02:00").unwrap();
        assert_eq!(t.amz_date(), "20260102T030405Z");
    }

    #[test]
    fn amz_dates_round_trip_and_bad_input_is_an_error() {
        let t = SigningTime::parse_amz_date("20260415T123456Z").unwrap();
        assert_eq!(t.amz_date(), "20260415T123456Z");
        for bad in [
            "",
            "20260415T123456",
            "20261315T123456Z",
            "2026041XT123456Z",
            "2026-04-15",
        ] {
            assert!(SigningTime::parse_amz_date(bad).is_err(), "{bad}");
        }
        assert!(SigningTime::parse_rfc3339("yesterday").is_err());
    }

    #[test]
    fn system_time_round_trip_drops_subseconds() {
        let now = SystemTime::now();
        let t = SigningTime::from_system_time(now);
        let back = t.system_time();
        assert!(back <= now && now.duration_since(back).unwrap() < Duration::from_secs(1));
    }
}
