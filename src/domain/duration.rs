//! Durations as the API spells them: `8h`, `30m`, `4h30m`, `45s`.
//!
//! The schema admits only hours, minutes and seconds in that order (a
//! subset of Go's `time.ParseDuration`, which the API server's CEL
//! `duration()` applies at admission). Written here rather than taken from a
//! crate: `humantime` reads `1h30m` too but also `1month` and `2 days`,
//! which the schema refuses, and the operator must read exactly what
//! admission checked.

use std::time::Duration;

/// Parses `[<n>h][<n>m][<n>s]`; `None` for anything else (and for zero
/// parts in the wrong order, empty input, or overflow).
pub fn parse(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = 0;
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (order, seconds) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return None,
        };
        if digits.is_empty() || order <= last_unit {
            return None;
        }
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(seconds)?)?;
        digits.clear();
        last_unit = order;
    }
    if !digits.is_empty() {
        return None;
    }
    Some(Duration::from_secs(total))
}

/// `d` as the API spells it, the largest units first (`4h30m`, `45s`).
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_schema_admits() {
        assert_eq!(parse("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse("4h30m"), Some(Duration::from_secs(16_200)));
        assert_eq!(parse("1h0m30s"), Some(Duration::from_secs(3630)));
        assert_eq!(parse("45s"), Some(Duration::from_secs(45)));
    }

    #[test]
    fn refuses_anything_else() {
        for bad in [
            "", "h", "30", "30m1h", "1h1h", "1d", "1.5h", "-1h", "1 h", "m30",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(parse("99999999999999999999h"), None);
    }

    #[test]
    fn formats_round_trip() {
        for text in ["8h", "30m", "4h30m", "45s", "1h0m30s"] {
            let d = parse(text).expect("parses");
            assert_eq!(parse(&format(d)), Some(d));
        }
        assert_eq!(format(Duration::from_secs(16_200)), "4h30m");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
