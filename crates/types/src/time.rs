//! Timestamps in UTC without a calendar library: RFC 3339 for people and
//! JSON, RFC 5322 for mail headers.

/// `2026-11-23T13:08:50Z` for Unix seconds.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `Mon, 23 Nov 2026 13:08:50 +0000` for Unix seconds (RFC 5322 date-time).
pub fn rfc5322(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{}, {d} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[m as usize - 1],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_known_instants() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_439_330), "2026-11-23T13:08:50Z");
        assert_eq!(
            super::rfc5322(1_795_439_330),
            "Mon, 23 Nov 2026 13:08:50 +0000"
        );
        assert_eq!(super::rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
    }
}

/// Unix seconds of midnight UTC starting the day `YYYY-MM-DD`, or `None`
/// when the text is not such a date (years 1970–9999).
pub fn parse_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = &text[r];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())
            .flatten()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if y < 1970 || !(1..=12).contains(&m) || d < 1 {
        return None;
    }
    let days = days_from_civil(y, m as u32, d as u32);
    // Reject 2026-02-30 and the like: it must come back the same.
    (civil_from_days(days) == (y, m as u32, d as u32)).then_some(days * 86_400)
}

/// Howard Hinnant's civil-to-days algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod date_tests {
    use super::*;

    #[test]
    fn dates_parse_to_midnight_and_round_trip() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        let t = parse_date("2026-11-23").unwrap();
        assert_eq!(rfc3339(t), "2026-11-23T00:00:00Z");
        assert_eq!(
            parse_date("2024-02-29").map(rfc3339).unwrap(),
            "2024-02-29T00:00:00Z"
        );
        for bad in [
            "2026-02-30",
            "2026-13-01",
            "26-11-23",
            "2026/11/23",
            "2026-1-023",
            "",
            "1969-12-31",
            "2026-11-2x",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
