//! Redis's number rules, shared by argument parsing and by the state machine (so `INCR` on a
//! stored value accepts exactly what `INCRBY`'s argument accepts).

/// Redis's `string2ll`: an optional `-`, then `0` alone or digits not starting with `0`; no
/// spaces, no `+`, no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let digits = s.strip_prefix(b"-").unwrap_or(s);
    match digits {
        [] => None,
        [b'0'] if digits.len() == s.len() => Some(0),
        [b'0', ..] => None,
        _ => shoal_protocol::parse_int(s),
    }
}

/// A float as Redis's `string2ld` accepts it for `INCRBYFLOAT`: no surrounding spaces, and
/// not NaN.
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let v: f64 = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ if lower.contains("inf") || lower.contains("nan") => return None,
        _ => text.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

/// Formats a float the way `INCRBYFLOAT` stores it: shortest round-trip digits, no exponent.
pub fn format_f64(v: f64) -> String {
    shoal_protocol::format_double(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_strict_like_redis() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b"01"[..],
            b"-0",
            b"+1",
            b" 1",
            b"1 ",
            b"",
            b"-",
            b"1.0",
            b"9223372036854775808",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"10.5"), Some(10.5));
        assert_eq!(parse_f64(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b" 1"), None);
        assert_eq!(parse_f64(b"abc"), None);
        assert_eq!(format_f64(10.5 + 0.1), "10.6");
        assert_eq!(format_f64(5200.0), "5200");
    }
}
