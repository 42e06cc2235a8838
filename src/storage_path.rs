//! Storage paths: the decoded, normalised absolute path of a file (`/pub/a.txt`) or a
//! directory (`/pub/dir/`) inside one user's space. Requests are percent-decoded and
//! normalised here; stored paths, cursors and capability scopes use the strict form.
//! The result goes to routing (tenant + path) and on into the store's keys.

use std::fmt;

/// Maximum decoded byte length of one segment.
pub const MAX_SEGMENT: usize = 255;
/// Maximum decoded byte length of a whole path (leaves room for a 52-byte key in 1 KiB).
pub const MAX_TOTAL: usize = 972;

/// A canonical decoded storage path: starts with `/`, no empty, `.` or `..` segments
/// (except the trailing `/` of a directory), no control characters or backslashes,
/// no trailing whitespace, within the length limits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoragePath(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    EmptySegment,
    DotSegment,
    AboveRoot,
    ControlCharacter,
    Backslash,
    TrailingWhitespace,
    SegmentTooLong(usize),
    TooLong(usize),
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute => f.write_str("path must be absolute"),
            PathError::EmptySegment => f.write_str("path contains an empty segment"),
            PathError::DotSegment => f.write_str("path contains a `.` or `..` segment"),
            PathError::AboveRoot => f.write_str("path traverses above root"),
            PathError::ControlCharacter => f.write_str("path contains a control character"),
            PathError::Backslash => f.write_str("path must not contain a backslash"),
            PathError::TrailingWhitespace => f.write_str("path must not end in whitespace"),
            PathError::SegmentTooLong(n) => {
                write!(f, "path segment is {n} bytes; maximum is {MAX_SEGMENT}")
            }
            PathError::TooLong(n) => write!(f, "path is {n} bytes; maximum is {MAX_TOTAL}"),
            PathError::NotUtf8 => f.write_str("path is not valid UTF-8"),
        }
    }
}

impl std::error::Error for PathError {}

impl StoragePath {
    /// Normalises a decoded request path: drops empty and `.` segments, resolves `..`,
    /// keeps directory shape, then validates.
    pub fn normalize(path: &str) -> Result<Self, PathError> {
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        let last = path.rsplit('/').next().unwrap_or("");
        let dir_shaped = path.ends_with('/') || last == "." || last == "..";
        let mut segments: Vec<&str> = Vec::new();
        for seg in path.split('/').skip(1) {
            match seg {
                "" | "." => {}
                ".." => {
                    segments.pop().ok_or(PathError::AboveRoot)?;
                }
                _ => {
                    check_segment(seg)?;
                    segments.push(seg);
                }
            }
        }
        let mut out = String::with_capacity(path.len());
        out.push('/');
        out.push_str(&segments.join("/"));
        if dir_shaped && out.len() > 1 {
            out.push('/');
        }
        check_whole(&out)?;
        Ok(StoragePath(out))
    }

    /// Accepts only an already canonical path (stored paths, cursors, scopes).
    pub fn strict(path: &str) -> Result<Self, PathError> {
        if !path.starts_with('/') {
            return Err(PathError::NotAbsolute);
        }
        check_whole(path)?;
        if path != "/" {
            let inner = &path[1..];
            let segs: Vec<&str> = inner.split('/').collect();
            let last = segs.len() - 1;
            for (i, seg) in segs.into_iter().enumerate() {
                match seg {
                    "" if i == last => {}
                    "" => return Err(PathError::EmptySegment),
                    "." | ".." => return Err(PathError::DotSegment),
                    _ => check_segment(seg)?,
                }
            }
        }
        Ok(StoragePath(path.to_string()))
    }

    /// Percent-decodes a raw URL path once (as UTF-8), then normalises it.
    pub fn from_url_path(raw: &str) -> Result<Self, PathError> {
        Self::normalize(&percent_decode(raw)?)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_dir(&self) -> bool {
        self.0.ends_with('/')
    }

    /// `/pub/` and everything below it.
    pub fn is_public(&self) -> bool {
        self.0.starts_with("/pub/")
    }

    /// `/priv/` and everything below it.
    pub fn is_private(&self) -> bool {
        self.0.starts_with("/priv/")
    }

    /// Scope coverage: a directory covers itself and its descendants, a file only itself.
    pub fn covers(&self, other: &StoragePath) -> bool {
        Self::covers_str(&self.0, &other.0)
    }

    /// [`StoragePath::covers`] for canonical paths held as text (stored events, the
    /// admin's allowed paths): the one coverage rule.
    pub fn covers_str(scope: &str, path: &str) -> bool {
        scope == path || (scope.ends_with('/') && path.starts_with(scope))
    }

    /// Ancestor directories of this path, deepest last, excluding the root
    /// (`/a/b/c` → `/a/`, `/a/b/`).
    pub fn ancestors(&self) -> impl Iterator<Item = &str> {
        let s = self.0.trim_end_matches('/');
        s.match_indices('/')
            .skip(1)
            .map(move |(i, _)| &self.0[..=i])
    }
}

impl fmt::Display for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StoragePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoragePath({:?})", self.0)
    }
}

fn check_segment(seg: &str) -> Result<(), PathError> {
    if seg.len() > MAX_SEGMENT {
        return Err(PathError::SegmentTooLong(seg.len()));
    }
    if seg.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter);
    }
    if seg.contains('\\') {
        return Err(PathError::Backslash);
    }
    Ok(())
}

fn check_whole(path: &str) -> Result<(), PathError> {
    if path.len() > MAX_TOTAL {
        return Err(PathError::TooLong(path.len()));
    }
    if path.chars().next_back().is_some_and(char::is_whitespace) {
        return Err(PathError::TrailingWhitespace);
    }
    Ok(())
}

/// Percent-encodes a decoded path for a URL (a `Location` header, a lock root), keeping
/// `/` and the characters a path segment may hold as they are.
pub fn percent_encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes once; the result must be UTF-8. A `%` not followed by two hex
/// digits stays literal (as URL parsers do).
pub fn percent_decode(raw: &str) -> Result<String, PathError> {
    let b = raw.as_bytes();
    if !b.contains(&b'%') {
        return Ok(raw.to_string());
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        StoragePath::normalize(p).map(|p| p.0)
    }

    #[test]
    fn encoding_for_urls() {
        assert_eq!(percent_encode_path("/docs"), "/docs");
        assert_eq!(percent_encode_path("/a b/é"), "/a%20b/%C3%A9");
        assert_eq!(percent_encode_path("/x?y#z%"), "/x%3Fy%23z%25");
        let odd = "/a b/ü?#%/c";
        assert_eq!(percent_decode(&percent_encode_path(odd)).unwrap(), odd);
    }

    #[test]
    fn normalisation_examples() {
        assert_eq!(n("//").unwrap(), "/");
        assert_eq!(n("/a//b").unwrap(), "/a/b");
        assert_eq!(n("/a/.").unwrap(), "/a/");
        assert_eq!(n("/a/b/..").unwrap(), "/a/");
        assert_eq!(n("/a/b/../c").unwrap(), "/a/c");
        assert_eq!(n("/a/..//b").unwrap(), "/b");
        assert_eq!(n("/a/%2E%2E/b").unwrap(), "/a/%2E%2E/b");
        assert_eq!(n("/pub/../priv/x").unwrap(), "/priv/x");
    }

    #[test]
    fn rejected_paths() {
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a\\b"), Err(PathError::Backslash));
        assert_eq!(n("/a\nb"), Err(PathError::ControlCharacter));
        assert_eq!(n("/a\u{85}b"), Err(PathError::ControlCharacter));
        assert_eq!(n("/a "), Err(PathError::TrailingWhitespace));
        assert_eq!(n("/a\u{a0}"), Err(PathError::TrailingWhitespace));
        assert_eq!(n("/a\u{3000}"), Err(PathError::TrailingWhitespace));
        assert_eq!(n("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(
            n(&format!("/{}", "x".repeat(256))),
            Err(PathError::SegmentTooLong(256))
        );
        assert!(n(&format!("/{}", "x".repeat(255))).is_ok());
        let long = "/aaaa".repeat(195); // 975 bytes
        assert_eq!(n(&long), Err(PathError::TooLong(975)));
    }

    #[test]
    fn allowed_oddities() {
        for p in [
            "/a b/c",
            "/a:b,c",
            "/100%",
            "/ünï/中",
            "/.hidden",
            "/...",
            "/a..",
            "/a /b",
        ] {
            assert_eq!(n(p).unwrap(), p, "{p}");
            assert!(StoragePath::strict(p).is_ok(), "{p}");
        }
    }

    #[test]
    fn url_decoding() {
        let p = |s| StoragePath::from_url_path(s).map(|p| p.0);
        assert_eq!(p("/pub/a%20b").unwrap(), "/pub/a b");
        assert_eq!(p("/pub/a%2Fb").unwrap(), "/pub/a/b");
        assert_eq!(p("/pub/100%25").unwrap(), "/pub/100%");
        assert_eq!(p("/pub/%E4%B8%AD").unwrap(), "/pub/中");
        assert_eq!(p("/pub/x%").unwrap(), "/pub/x%");
        assert_eq!(p("/pub/x%4").unwrap(), "/pub/x%4");
        assert_eq!(p("/pub/%FF"), Err(PathError::NotUtf8));
        // the spec's rejected write aliases
        assert_eq!(p("/pub/report%20"), Err(PathError::TrailingWhitespace));
        assert_eq!(p("/pub/report%C2%A0"), Err(PathError::TrailingWhitespace));
        assert_eq!(
            p("/pub/report%E3%80%80"),
            Err(PathError::TrailingWhitespace)
        );
        assert_eq!(p("/pub/scope/%5C..%5Creport"), Err(PathError::Backslash));
        assert_eq!(p("/pub/%00"), Err(PathError::ControlCharacter));
    }

    #[test]
    fn strict_form() {
        assert!(StoragePath::strict("/").is_ok());
        assert!(StoragePath::strict("/pub/a/").is_ok());
        assert_eq!(StoragePath::strict("/pub//a"), Err(PathError::EmptySegment));
        assert_eq!(StoragePath::strict("/pub/./a"), Err(PathError::DotSegment));
        assert_eq!(StoragePath::strict("/pub/.."), Err(PathError::DotSegment));
        assert_eq!(StoragePath::strict("pub/a"), Err(PathError::NotAbsolute));
    }

    #[test]
    fn coverage_and_roots() {
        let s = |p| StoragePath::strict(p).unwrap();
        let app = s("/pub/app/");
        assert!(app.covers(&s("/pub/app/")));
        assert!(app.covers(&s("/pub/app/foo")));
        assert!(app.covers(&s("/pub/app/sub/bar.txt")));
        assert!(!app.covers(&s("/pub/app")));
        assert!(!app.covers(&s("/pub/app-evil/file")));
        assert!(!app.covers(&s("/pub/other/file")));
        assert!(s("/pub/app").covers(&s("/pub/app")));
        assert!(!s("/pub/app").covers(&s("/pub/app/x")));
        assert!(s("/").covers(&s("/priv/x")));
        assert!(s("/pub/x").is_public());
        assert!(!s("/pub").is_public());
        assert!(s("/priv/x").is_private());
    }

    #[test]
    fn ancestors() {
        let p = StoragePath::strict("/pub/a/b.txt").unwrap();
        assert_eq!(p.ancestors().collect::<Vec<_>>(), vec!["/pub/", "/pub/a/"]);
        let d = StoragePath::strict("/pub/a/").unwrap();
        assert_eq!(d.ancestors().collect::<Vec<_>>(), vec!["/pub/"]);
    }
}
