//! Durations as Go reads and prints them (`time.ParseDuration`, `time.Duration.String`):
//! what HEALTHCHECK's flags, `--health-interval` and compose's `interval:` take, and what
//! image history and `compose config` print.

/// Why a duration does not read; prints as `invalid duration "VALUE": use …`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {value:?}: use a number with a unit ns, us, ms, s, m or h (for example 30s, 1m30s or 500ms)")]
pub struct DurationError {
    /// The text as given.
    pub value: String,
}

/// Reads a duration in Go's syntax (`1m30s`, `1.5s`, `500ms`, `-2ms`, `0`) into nanoseconds.
/// Every number needs a unit, except a lone `0`.
pub fn parse_duration(value: &str) -> Result<i64, DurationError> {
    let bad = || DurationError { value: value.to_string() };
    let (negative, mut rest) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number = &rest[..number_end];
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let n: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_end..];
        total += n * scale;
    }
    if total >= i64::MAX as f64 {
        return Err(bad());
    }
    let ns = total.round() as i64;
    Ok(if negative { -ns } else { ns })
}

/// Prints nanoseconds as Go's `time.Duration.String`: `1m30s`, `2h0m0s`, `1.5s`, `250ms`, `0s`.
pub fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let sign = if ns < 0 { "-" } else { "" };
    let u = ns.unsigned_abs();
    let fraction = |whole: u64, rest: u64, digits: usize| -> String {
        let r = format!("{rest:0digits$}");
        let r = r.trim_end_matches('0');
        if r.is_empty() { whole.to_string() } else { format!("{whole}.{r}") }
    };
    if u < 1_000_000_000 {
        let (div, digits, unit) = if u < 1_000 {
            (1, 0, "ns")
        } else if u < 1_000_000 {
            (1_000, 3, "µs")
        } else {
            (1_000_000, 6, "ms")
        };
        let body = if div == 1 { u.to_string() } else { fraction(u / div, u % div, digits) };
        return format!("{sign}{body}{unit}");
    }
    let secs = u / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::from(sign);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&fraction(s, u % 1_000_000_000, 9));
    out.push('s');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_go_reads_them() {
        for (text, ns) in [
            ("1m30s", 90_000_000_000),
            ("1.5s", 1_500_000_000),
            ("500ms", 500_000_000),
            ("2h", 7_200_000_000_000),
            ("0", 0),
            ("-2ms", -2_000_000),
            ("+3s", 3_000_000_000),
            (".5s", 500_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
        ] {
            assert_eq!(parse_duration(text), Ok(ns), "{text}");
        }
    }

    #[test]
    fn a_number_without_a_unit_or_an_unknown_unit_is_an_error_naming_the_value() {
        for bad in ["", "5", "5 minutes", "1d", "s", ".s", "1m30", "-", "9999999999h"] {
            let e = parse_duration(bad).expect_err(bad);
            assert!(e.to_string().starts_with(&format!("invalid duration {bad:?}: ")), "{e}");
        }
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        for (ns, text) in [
            (0, "0s"),
            (90_000_000_000, "1m30s"),
            (7_200_000_000_000, "2h0m0s"),
            (1_500_000_000, "1.5s"),
            (250_000_000, "250ms"),
            (1_500, "1.5µs"),
            (7, "7ns"),
            (-2_000_000, "-2ms"),
            (30_000_000_000, "30s"),
        ] {
            assert_eq!(format_duration(ns), text, "{ns}");
        }
    }
}
