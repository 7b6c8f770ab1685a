//! Redis's `long double` arithmetic for `INCRBYFLOAT` and `HINCRBYFLOAT`: operands parsed with
//! `strtold`, added in extended precision, the sum printed with `"%.17Lf"` (trailing zeros
//! trimmed). Rust has no extended-precision type and f64 answers differently in ordinary
//! cases (`0.1 + 0.2`), so the arithmetic is Redis's own few lines of C, `csrc/long_double.c`,
//! built by `build.rs`; a value crosses the boundary as 16 opaque bytes.

use std::ffi::{c_char, c_int};

/// Room for any finite long double printed with 17 decimals (Redis's MAX_LONG_DOUBLE_CHARS).
const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

/// A C `long double`, kept as its bytes.
#[derive(Clone, Copy)]
pub struct LongDouble([u8; 16]);

extern "C" {
    fn shoal_ld_parse(s: *const c_char, len: usize, out: *mut u8) -> c_int;
    fn shoal_ld_from_i64(n: i64, out: *mut u8);
    fn shoal_ld_is_finite(a: *const u8) -> c_int;
    fn shoal_ld_add_format(a: *const u8, b: *const u8, out: *mut c_char, cap: usize) -> c_int;
}

impl LongDouble {
    /// The value of `s` if Redis's `string2ld` accepts it (no surrounding space, no NaN, no
    /// overflow; hexadecimal and `inf` forms as `strtold` reads them).
    pub fn parse(s: &[u8]) -> Option<LongDouble> {
        let mut out = [0u8; 16];
        // SAFETY: `s` is valid for `len` bytes (the C side copies at most that, and refuses
        // longer input than its buffer); `out` has the 16 bytes it writes.
        let ok = unsafe { shoal_ld_parse(s.as_ptr().cast(), s.len(), out.as_mut_ptr()) };
        (ok != 0).then_some(LongDouble(out))
    }

    /// The integer `n`, exactly (a hash field Redis stored as an integer).
    pub fn from_i64(n: i64) -> LongDouble {
        let mut out = [0u8; 16];
        // SAFETY: `out` has the 16 bytes it writes.
        unsafe { shoal_ld_from_i64(n, out.as_mut_ptr()) };
        LongDouble(out)
    }

    pub fn is_finite(&self) -> bool {
        // SAFETY: reads the 16 bytes of a value the C side wrote.
        unsafe { shoal_ld_is_finite(self.0.as_ptr()) != 0 }
    }

    /// `self + other` as Redis prints it, or `None` if the sum is NaN or infinite.
    pub fn add_format(&self, other: &LongDouble) -> Option<String> {
        let mut out = vec![0u8; MAX_LONG_DOUBLE_CHARS];
        // SAFETY: both operands are values the C side wrote; `out` has `cap` bytes, and the C
        // side writes at most that (snprintf) and returns the length it kept.
        let len = unsafe {
            shoal_ld_add_format(
                self.0.as_ptr(),
                other.0.as_ptr(),
                out.as_mut_ptr().cast(),
                out.len(),
            )
        };
        let len = usize::try_from(len).ok()?;
        out.truncate(len);
        String::from_utf8(out).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(current: &str, by: &str) -> Option<String> {
        LongDouble::parse(current.as_bytes())?.add_format(&LongDouble::parse(by.as_bytes())?)
    }

    /// Replies of redis-server 7.0.15 (`INCRBYFLOAT` from the first value by the second).
    #[test]
    fn sums_print_as_redis_prints_them() {
        assert_eq!(incr("0.1", "0.2").as_deref(), Some("0.3"));
        assert_eq!(incr("10.5", "0.1").as_deref(), Some("10.6"));
        assert_eq!(
            incr("100000000000000000008", "3.0e3").as_deref(),
            Some("100000000000000003008")
        );
        assert_eq!(incr("0", "1e20").as_deref(), Some("100000000000000000000"));
        assert_eq!(incr("5", "-5").as_deref(), Some("0"));
        assert_eq!(incr("-0.0", "0").as_deref(), Some("0"));
        assert_eq!(incr("0x10", "0x1p3").as_deref(), Some("24"));
        assert_eq!(incr("1e4932", "1e4932"), None, "overflows to infinity");
        assert!(
            incr("1e308", "1e308").is_some(),
            "beyond f64, within long double"
        );
    }

    #[test]
    fn parsing_follows_string2ld() {
        for bad in ["", " 1", "1 ", "nan", "1e99999", "abc", "1.5x"] {
            assert!(LongDouble::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        assert!(!LongDouble::parse(b"inf").unwrap().is_finite());
        assert!(LongDouble::parse(b"-1.5").unwrap().is_finite());
        assert_eq!(
            LongDouble::from_i64(i64::MAX)
                .add_format(&LongDouble::parse(b"0").unwrap())
                .as_deref(),
            Some("9223372036854775807")
        );
    }
}
