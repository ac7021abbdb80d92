//! Docker's units: sizes ([`parse_bytes`]) and durations ([`parse_duration`], [`format_duration`]).
//!
//! Sizes as Docker's command line and Compose write them: `64m`, `1.5g`, `512 KiB`, `100b`,
//! `1024` (Docker's go-units `RAMInBytes`, which `--memory`, `--shm-size`, `--keep-storage`
//! and compose's `mem_limit` all use).
//!
//! A number (decimals allowed), an optional single space, then an optional unit, in any case:
//! `b`, or `k`, `m`, `g`, `t`, `p` (powers of 1024) alone or followed by `b` or `ib`. The
//! result is truncated to whole bytes. It is not a formatter (see the CLI's `human_size`).

#![deny(unsafe_code)]

mod duration;

pub use duration::{DurationError, format_duration, parse_duration};

/// Why a size does not read; prints as `invalid size "VALUE": REASON`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {value:?}: {reason}")]
pub struct SizeError {
    /// The text as given.
    pub value: String,
    /// What is wrong with it, and what would be right.
    pub reason: String,
}

const HINT: &str = "use a number of bytes, or one with a unit b, k, m, g, t or p (for example 64m or 1.5g)";

/// Reads a size in bytes, as Docker's `RAMInBytes` does.
/// White space around the whole is ignored.
pub fn parse_bytes(value: &str) -> Result<u64, SizeError> {
    let fail = |reason: String| SizeError { value: value.to_string(), reason };
    let text = value.trim();
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, rest) = text.split_at(number_end);
    if number.is_empty() || !number.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(fail(HINT.into()));
    }
    let n: f64 = number.parse().map_err(|_| fail(HINT.into()))?;
    let unit = rest.strip_prefix(' ').unwrap_or(rest).to_ascii_lowercase();
    let scale: u64 = match unit.as_str() {
        "" | "b" => 1,
        u => {
            let power = match u.as_bytes()[0] {
                b'k' => 1,
                b'm' => 2,
                b'g' => 3,
                b't' => 4,
                b'p' => 5,
                _ => return Err(fail(format!("unknown unit {rest:?}: {HINT}"))),
            };
            if !matches!(&u[1..], "" | "b" | "ib") {
                return Err(fail(format!("unknown unit {rest:?}: {HINT}")));
            }
            1u64 << (10 * power)
        }
    };
    let bytes = n * scale as f64;
    if bytes >= i64::MAX as f64 {
        return Err(fail("too large".into()));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_powers_of_1024_in_any_case_with_optional_b_or_ib() {
        for (text, bytes) in [
            ("1024", 1024),
            ("0", 0),
            ("100b", 100),
            ("100B", 100),
            ("64m", 64 << 20),
            ("64M", 64 << 20),
            ("64mb", 64 << 20),
            ("64MiB", 64 << 20),
            ("1g", 1 << 30),
            ("1GB", 1 << 30),
            ("2k", 2048),
            ("2 KiB", 2048),
            ("1t", 1 << 40),
            ("1p", 1 << 50),
            ("1.5g", 3 << 29),
            ("0.5k", 512),
            ("1.7b", 1),
            (" 8m\n", 8 << 20),
        ] {
            assert_eq!(parse_bytes(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn anything_else_is_an_error_naming_the_value() {
        for bad in ["", "lots", "m", "-1", "1x", "1kk", "1kib2", "1  m", "1.2.3m", "1bb", "1 m b", "10000000p"] {
            let e = parse_bytes(bad).expect_err(bad);
            assert!(e.to_string().starts_with(&format!("invalid size {bad:?}: ")), "{e}");
        }
        assert_eq!(
            parse_bytes("3x").unwrap_err().to_string(),
            "invalid size \"3x\": unknown unit \"x\": use a number of bytes, or one with a unit b, k, m, g, t or p (for example 64m or 1.5g)"
        );
    }
}
