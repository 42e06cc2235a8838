//! Capabilities: `<scope>:<actions>` entries (`/pub/app/:rw`), comma-joined in lists. A
//! directory scope covers itself and everything below it, a file scope only itself; `r`
//! and `w` grant storage reads and writes, `e` (encryption keys) grants no storage access.
//! Parsed from grants, enforced by `http::storage`.

use std::fmt;

use crate::storage_path::{PathError, StoragePath};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub scope: StoragePath,
    pub read: bool,
    pub write: bool,
    pub encrypt: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityError {
    Scope(PathError),
    ScopeDelimiter(char),
    Format,
    MissingActions,
    Action(char),
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapabilityError::Scope(e) => write!(f, "invalid capability scope: {e}"),
            CapabilityError::ScopeDelimiter(c) => {
                write!(f, "capability scope contains reserved delimiter `{c}`")
            }
            CapabilityError::Format => {
                f.write_str("capability must have format `<scope>:<actions>`")
            }
            CapabilityError::MissingActions => {
                f.write_str("capability must contain at least one action")
            }
            CapabilityError::Action(c) => write!(f, "invalid capability action `{c}`"),
        }
    }
}

impl std::error::Error for CapabilityError {}

/// An error in one entry of a capability list (positions count from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilitiesError {
    pub position: usize,
    pub entry: String,
    pub source: CapabilityError,
}

impl fmt::Display for CapabilitiesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid capability at position {} (`{}`): {}",
            self.position, self.entry, self.source
        )
    }
}

impl std::error::Error for CapabilitiesError {}

impl Capability {
    pub fn parse(s: &str) -> Result<Capability, CapabilityError> {
        let (scope, actions) = s.split_once(':').ok_or(CapabilityError::Format)?;
        if actions.contains(':') {
            return Err(CapabilityError::Format);
        }
        if actions.is_empty() {
            return Err(CapabilityError::MissingActions);
        }
        let (mut read, mut write, mut encrypt) = (false, false, false);
        for c in actions.chars() {
            match c {
                'r' => read = true,
                'w' => write = true,
                'e' => encrypt = true,
                other => return Err(CapabilityError::Action(other)),
            }
        }
        if let Some(d) = [':', ','].into_iter().find(|d| scope.contains(*d)) {
            return Err(CapabilityError::ScopeDelimiter(d));
        }
        let scope = StoragePath::strict(scope).map_err(CapabilityError::Scope)?;
        Ok(Capability {
            scope,
            read,
            write,
            encrypt,
        })
    }

    /// Root: scope `/` with both read and write.
    pub fn is_root(&self) -> bool {
        self.scope.as_str() == "/" && self.read && self.write
    }

    /// Scope covers `other`'s scope and every action of `other` is present here.
    fn covers(&self, other: &Capability) -> bool {
        self.scope.covers(&other.scope)
            && (self.read || !other.read)
            && (self.write || !other.write)
            && (self.encrypt || !other.encrypt)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scope)?;
        for (on, c) in [(self.read, 'r'), (self.write, 'w'), (self.encrypt, 'e')] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities(pub Vec<Capability>);

impl Capabilities {
    /// Parses a comma-joined list; `""` is the empty list, empty entries are errors.
    pub fn parse(s: &str) -> Result<Capabilities, CapabilitiesError> {
        if s.is_empty() {
            return Ok(Capabilities::default());
        }
        Self::collect(s.split(','))
    }

    /// Parses the JSON-array form used in grants.
    pub fn from_strings(list: &[String]) -> Result<Capabilities, CapabilitiesError> {
        Self::collect(list.iter().map(String::as_str))
    }

    fn collect<'a>(
        entries: impl Iterator<Item = &'a str>,
    ) -> Result<Capabilities, CapabilitiesError> {
        entries
            .enumerate()
            .map(|(i, e)| {
                Capability::parse(e).map_err(|source| CapabilitiesError {
                    position: i + 1,
                    entry: e.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Capabilities)
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(Capability::to_string).collect()
    }

    pub fn can_read(&self, path: &StoragePath) -> bool {
        self.0.iter().any(|c| c.read && c.scope.covers(path))
    }

    pub fn can_write(&self, path: &StoragePath) -> bool {
        self.0.iter().any(|c| c.write && c.scope.covers(path))
    }

    pub fn is_root(&self) -> bool {
        self.0.iter().any(Capability::is_root)
    }

    /// Merges entries with equal scopes, then drops entries covered by broader ones
    /// (insertion order kept otherwise).
    pub fn normalize(self) -> Capabilities {
        let mut merged: Vec<Capability> = Vec::new();
        for cap in self.0 {
            match merged.iter_mut().find(|m| m.scope == cap.scope) {
                Some(m) => {
                    m.read |= cap.read;
                    m.write |= cap.write;
                    m.encrypt |= cap.encrypt;
                }
                None => merged.push(cap),
            }
        }
        let mut out: Vec<Capability> = Vec::new();
        for cap in merged {
            if out.iter().any(|o| o.covers(&cap)) {
                continue;
            }
            out.retain(|o| !cap.covers(o));
            out.push(cap);
        }
        Capabilities(out)
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_strings().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(s: &str) -> Result<Capability, CapabilityError> {
        Capability::parse(s)
    }

    #[test]
    fn round_trips_and_action_order() {
        for s in ["/pub/my-cool-app/:rw", "/pub/file.txt:r", "/pub/uploads/:w"] {
            assert_eq!(cap(s).unwrap().to_string(), s);
        }
        assert_eq!(cap("/:wrrw").unwrap().to_string(), "/:rw");
        for a in ["e", "re", "we", "rwe"] {
            let s = format!("/pub/chat/:{a}");
            assert_eq!(cap(&s).unwrap().to_string(), s);
        }
        assert!(cap("/:rwe").unwrap().is_root());
        assert!(!cap("/:e").unwrap().is_root());
        assert!(!cap("/:r").unwrap().is_root());
    }

    #[test]
    fn parse_errors() {
        assert_eq!(
            cap("not/abs:rw"),
            Err(CapabilityError::Scope(PathError::NotAbsolute))
        );
        assert_eq!(cap("/pub/my.app"), Err(CapabilityError::Format));
        assert_eq!(cap("/pub/my.app:"), Err(CapabilityError::MissingActions));
        assert_eq!(cap("/pub/my.app:rx"), Err(CapabilityError::Action('x')));
        assert_eq!(cap("/pub/a:b:rw"), Err(CapabilityError::Format));
        assert_eq!(
            cap("/pub/a,b:rw"),
            Err(CapabilityError::ScopeDelimiter(','))
        );
        assert_eq!(
            cap("/pub//my.app:rw"),
            Err(CapabilityError::Scope(PathError::EmptySegment))
        );
        assert_eq!(
            cap("/priv/report :rw"),
            Err(CapabilityError::Scope(PathError::TrailingWhitespace))
        );
        assert_eq!(
            cap("/priv/app\\..\\secret:rw"),
            Err(CapabilityError::Scope(PathError::Backslash))
        );
    }

    #[test]
    fn list_parsing_and_errors() {
        assert_eq!(Capabilities::parse("").unwrap(), Capabilities::default());
        let e = Capabilities::parse("/pub/app/:w,missing-leading-slash:r,/priv/file.txt:x")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid capability at position 2 (`missing-leading-slash:r`): invalid capability scope: path must be absolute"
        );
        for bad in [",/:r", "/:r,", "/:r,,/:w"] {
            assert!(Capabilities::parse(bad).is_err(), "{bad}");
        }
        let c = Capabilities::parse("/pub/my-cool-app/:rw,/pub/file.txt:r").unwrap();
        assert_eq!(c.to_string(), "/pub/my-cool-app/:rw,/pub/file.txt:r");
        assert_eq!(Capabilities::from_strings(&c.to_strings()).unwrap(), c);
    }

    #[test]
    fn normalisation() {
        let c = Capabilities::parse(
            "/pub/example.com/:r,/pub/example.com/:w,/pub/example.com/subfolder:w,/priv/other:r",
        )
        .unwrap();
        assert_eq!(
            c.normalize().to_string(),
            "/pub/example.com/:rw,/priv/other:r"
        );
        let c = Capabilities::parse("/pub/a/b/:r,/pub/:rw").unwrap();
        assert_eq!(c.normalize().to_string(), "/pub/:rw");
    }

    #[test]
    fn enforcement() {
        let p = |s| StoragePath::strict(s).unwrap();
        let c = Capabilities::parse("/pub/app/:rw,/priv/notes.txt:r,/pub/keys/:e").unwrap();
        assert!(c.can_write(&p("/pub/app/x")));
        assert!(c.can_read(&p("/pub/app/sub/y")));
        assert!(!c.can_write(&p("/pub/app")));
        assert!(!c.can_write(&p("/pub/app-evil/file")));
        assert!(c.can_read(&p("/priv/notes.txt")));
        assert!(!c.can_write(&p("/priv/notes.txt")));
        assert!(!c.can_read(&p("/pub/keys/k")));
        assert!(!c.can_write(&p("/pub/keys/k")));
        assert!(!c.is_root());
        assert!(Capabilities::parse("/:rw")
            .unwrap()
            .can_write(&p("/priv/a")));
    }
}
