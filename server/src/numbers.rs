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
        _ => match parse_hex_float(&lower) {
            Some(v) => v,
            None => text.parse().ok()?,
        },
    };
    (!v.is_nan()).then_some(v)
}

/// C's `strtod` hexadecimal form, which Redis accepts wherever it reads a float (`ZADD z 0x10
/// m`, `INCRBYFLOAT k 0x1p3`, a timeout of `0x1`): `[sign]0x<hex>[.<hex>][p[sign]<decimal>]`,
/// lowercase here. `None` if `s` is not of that form.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let rest = rest.strip_prefix("0x")?;
    let (digits, exponent) = match rest.split_once('p') {
        Some((d, e)) => (d, e.parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for c in whole.chars() {
        value = value * 16.0 + f64::from(c.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for c in fraction.chars() {
        value += f64::from(c.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let value = value * 2f64.powi(exponent);
    Some(if negative { -value } else { value })
}

/// Formats a float the way `INCRBYFLOAT` stores it: shortest round-trip digits, no exponent.
pub fn format_f64(v: f64) -> String {
    shoal_protocol::format_double(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_take_c_hexadecimal_form_like_redis() {
        assert_eq!(parse_f64(b"0x10"), Some(16.0));
        assert_eq!(parse_f64(b"0X1p3"), Some(8.0));
        assert_eq!(parse_f64(b"0x1.8p1"), Some(3.0));
        assert_eq!(parse_f64(b"-0xA"), Some(-10.0));
        assert_eq!(parse_f64(b"0x.8"), Some(0.5));
        assert_eq!(parse_f64(b"0x1p-2"), Some(0.25));
        for bad in [&b"0x"[..], b"0x.", b"0xg", b"0x1p", b"0x1q3", b" 0x1"] {
            assert_eq!(parse_f64(bad), None, "{:?}", std::str::from_utf8(bad));
        }
    }

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
