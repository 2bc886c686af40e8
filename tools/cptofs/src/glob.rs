//! Shell-style patterns, matched by `fnmatch(3)` with no flags (as
//! upstream cptofs does): `*` any run of bytes, `?` one byte, `[...]` a
//! set (ranges `a-z`, negation `!` or `^`), `\` quotes the next byte.
//! `*` and `?` match a leading `.` too. Names are bytes: patterns match
//! names that are not UTF-8.

/// Whether `s` holds an unquoted `*`, `?` or `[`.
pub fn is_pattern(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// `pattern` with its quoting removed (for a component with no pattern).
pub fn unquote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            i += 1;
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Whether `name` matches `pattern`: the C library's `fnmatch(3)` with no
/// flags, as upstream cptofs calls it (this program never calls
/// `setlocale`, so bytes are matched in the C locale). A name or pattern
/// holding a NUL byte (which no file name can) matches nothing.
pub fn matches(pattern: &[u8], name: &[u8]) -> bool {
    let (Ok(p), Ok(n)) = (
        std::ffi::CString::new(pattern),
        std::ffi::CString::new(name),
    ) else {
        return false;
    };
    // SAFETY: both are NUL-terminated strings that live across the call;
    // fnmatch only reads them.
    unsafe { libc::fnmatch(p.as_ptr(), n.as_ptr(), 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_fnmatch() {
        let yes = [
            ("*", ""),
            ("*", ".hidden"),
            ("*.txt", "a.txt"),
            ("a?c", "abc"),
            ("[a-c]x", "bx"),
            ("[!a-c]x", "dx"),
            ("[]]", "]"),
            ("\\*", "*"),
            ("a*b*c", "aXXbYYc"),
            ("[", "["),
        ];
        for (p, n) in yes {
            assert!(matches(p.as_bytes(), n.as_bytes()), "{p} {n}");
        }
        let no = [
            ("*.txt", "a.txt.bak"),
            ("a?c", "ac"),
            ("[a-c]x", "dx"),
            ("[^a-c]x", "ax"),
            ("\\*", "a"),
        ];
        for (p, n) in no {
            assert!(!matches(p.as_bytes(), n.as_bytes()), "{p} {n}");
        }
        // Names are bytes, not necessarily UTF-8.
        assert!(matches(b"a*", b"a\xff\xfe"));
        assert!(matches(b"?", b"\xff"));
        assert!(!matches(b"a*", b"b\xff"));
        assert!(is_pattern(b"a*"));
        assert!(!is_pattern(b"a\\*"));
        assert_eq!(unquote(b"a\\*b"), b"a*b");
    }
}
