//! Redis's glob-style pattern matching (`stringmatchlen`), used by `KEYS`, `SCAN MATCH` and
//! `CONFIG GET`. Byte-oriented, with `*`, `?`, `[abc]`, `[^a]`, `[a-z]` and `\` escapes; no path
//! separators are special, which is why a path-glob crate does not fit.

pub fn glob_match(pattern: &[u8], text: &[u8], nocase: bool) -> bool {
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: (pattern position after it, text position).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if p < pattern.len() {
            if pattern[p] == b'*' {
                while p < pattern.len() && pattern[p] == b'*' {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                star = Some((p, t));
                continue;
            }
            // Where the pattern continues if the byte at `t` matches here.
            let next = text.get(t).and_then(|&c| match pattern[p] {
                b'?' => Some(p + 1),
                b'[' => class(pattern, p, c, nocase).and_then(|(ok, next)| ok.then_some(next)),
                b'\\' if p + 1 < pattern.len() => eq(pattern[p + 1], c).then_some(p + 2),
                lit => eq(lit, c).then_some(p + 1),
            });
            if let Some(next) = next {
                p = next;
                t += 1;
                continue;
            }
        } else if t == text.len() {
            return true;
        }
        // Mismatch: let the last `*` swallow one more byte, if there is one.
        match star {
            Some((sp, st)) if st < text.len() => {
                star = Some((sp, st + 1));
                p = sp;
                t = st + 1;
            }
            _ => return false,
        }
    }
}

/// Matches `c` against the class starting at `pattern[start] == '['`. Returns whether it matched
/// and where the pattern continues; an unterminated class runs to the end, as in Redis.
fn class(pattern: &[u8], start: usize, c: u8, nocase: bool) -> Option<(bool, usize)> {
    let fold = |b: u8| if nocase { b.to_ascii_lowercase() } else { b };
    let c = fold(c);
    let mut i = start + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= fold(pattern[i + 1]) == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (mut lo, mut hi) = (fold(pattern[i]), fold(pattern[i + 2]));
            if lo > hi {
                std::mem::swap(&mut lo, &mut hi);
            }
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= fold(pattern[i]) == c;
            i += 1;
        }
    }
    let next = if i < pattern.len() { i + 1 } else { i };
    Some((matched != negate, next))
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    fn m(p: &str, t: &str) -> bool {
        glob_match(p.as_bytes(), t.as_bytes(), false)
    }

    #[test]
    fn redis_documented_patterns() {
        assert!(m("h?llo", "hello") && m("h?llo", "hallo") && !m("h?llo", "hllo"));
        assert!(m("h*llo", "hllo") && m("h*llo", "heeeello"));
        assert!(m("h[ae]llo", "hello") && m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-b]llo", "hbllo") && !m("h[a-b]llo", "hcllo"));
        assert!(m("*", "") && m("*", "anything") && m("a*b*c", "aXbYc") && !m("a*b*c", "aXbY"));
        assert!(m(r"h\*llo", "h*llo") && !m(r"h\*llo", "hello"));
        assert!(m("key:*", "key:1") && !m("key:*", "kez:1"));
        assert!(glob_match(b"HELLO", b"hello", true));
        assert!(!m("", "a") && m("", ""));
    }
}
