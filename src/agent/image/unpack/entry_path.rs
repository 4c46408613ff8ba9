//! The lexical half of containment: a tar entry's path turned into clean
//! components under the layer root, and the OCI whiteout names recognised.
//! The kernel (`RESOLVE_IN_ROOT`, see `root.rs`) is the other half: it keeps
//! symlinks met on the way inside the root.

use std::fmt;

/// Prefix of an OCI whiteout file: `.wh.NAME` deletes NAME from lower layers.
const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// Prefix of AUFS bookkeeping entries (`.wh..wh.plnk`, `.wh..wh.aufs`, ...).
const WHITEOUT_META_PREFIX: &[u8] = b".wh..wh.";
/// Marks its directory opaque: lower layers' contents of it are hidden.
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// A path inside the layer: no empty, `.` or `..` components and no NUL, so
/// every component is a plain name the `*at` calls can take as it is. No
/// components at all is the layer root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LayerPath(Vec<Vec<u8>>);

impl LayerPath {
    /// Cleans `raw` lexically. Leading `/` is dropped (GNU tar and Docker
    /// treat archive paths as relative to the root); `..` that would climb
    /// above the root is refused rather than clamped, because an archive that
    /// says so is hostile or broken and its other entries cannot be trusted.
    pub(super) fn parse(raw: &[u8]) -> Result<Self, String> {
        if raw.contains(&0) {
            return Err("the path contains a NUL byte".into());
        }
        let mut components: Vec<Vec<u8>> = Vec::new();
        for part in raw.split(|b| *b == b'/') {
            match part {
                b"" | b"." => {}
                b".." => {
                    if components.pop().is_none() {
                        return Err("the path climbs above the layer root".into());
                    }
                }
                name => components.push(name.to_vec()),
            }
        }
        Ok(Self(components))
    }

    /// The parent's components and the final name; `None` for the root.
    pub(super) fn split_last(&self) -> Option<(&[Vec<u8>], &[u8])> {
        self.0
            .split_last()
            .map(|(name, parent)| (parent, name.as_slice()))
    }
}

impl fmt::Display for LayerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            f.write_str(&String::from_utf8_lossy(c))?;
        }
        Ok(())
    }
}

/// What an entry's name asks for, before its tar type is looked at.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Role<'a> {
    /// An ordinary entry: create what the header describes.
    Plain,
    /// `.wh.NAME`: delete NAME (in `parent`) and leave an overlay whiteout.
    Whiteout {
        parent: &'a [Vec<u8>],
        name: &'a [u8],
    },
    /// `.wh..wh..opq`: mark the directory `dir` opaque.
    Opaque { dir: &'a [Vec<u8>] },
    /// AUFS bookkeeping (`.wh..wh.*` other than the opaque marker, and
    /// anything below such a directory): meaningless for overlayfs.
    AufsMeta,
}

pub(super) fn role(path: &LayerPath) -> Result<Role<'_>, String> {
    let Some((parent, last)) = path.split_last() else {
        return Ok(Role::Plain);
    };
    if parent.iter().any(|c| c.starts_with(WHITEOUT_META_PREFIX)) {
        return Ok(Role::AufsMeta);
    }
    if last == OPAQUE_MARKER {
        return Ok(Role::Opaque { dir: parent });
    }
    if last.starts_with(WHITEOUT_META_PREFIX) {
        return Ok(Role::AufsMeta);
    }
    if let Some(name) = last.strip_prefix(WHITEOUT_PREFIX) {
        // `.wh.` alone would whiteout the directory holding it (the root at
        // the top), `.wh..` likewise, `.wh...` its parent: none is a file
        // this layer could mean to delete.
        if matches!(name, b"" | b"." | b"..") {
            return Err(format!(
                "whiteout {:?} names no file (it would delete {})",
                String::from_utf8_lossy(last),
                if parent.is_empty() {
                    "the layer root"
                } else {
                    "a directory containing it"
                }
            ));
        }
        return Ok(Role::Whiteout { parent, name });
    }
    Ok(Role::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, String> {
        LayerPath::parse(s.as_bytes()).map(|p| p.to_string())
    }

    #[test]
    fn cleans_leading_slashes_dots_and_inner_dotdot() {
        assert_eq!(parse("/etc/passwd").unwrap(), "etc/passwd");
        assert_eq!(parse("///a//./b/").unwrap(), "a/b");
        assert_eq!(parse("a/b/../c").unwrap(), "a/c");
        assert_eq!(parse("./").unwrap(), "/");
        assert_eq!(parse("a/..").unwrap(), "/");
    }

    #[test]
    fn refuses_climbing_and_nul() {
        assert!(parse("../x").is_err());
        assert!(parse("a/../../x").is_err());
        assert!(parse("/..").is_err());
        assert!(LayerPath::parse(b"a\0b").is_err());
    }

    #[test]
    fn recognises_whiteouts() {
        let p = LayerPath::parse(b"etc/.wh.passwd").unwrap();
        assert_eq!(
            role(&p).unwrap(),
            Role::Whiteout {
                parent: &[b"etc".to_vec()],
                name: b"passwd"
            }
        );
        let p = LayerPath::parse(b"var/.wh..wh..opq").unwrap();
        assert_eq!(
            role(&p).unwrap(),
            Role::Opaque {
                dir: &[b"var".to_vec()]
            }
        );
        for aufs in [".wh..wh.plnk", ".wh..wh.plnk/123.456", "a/.wh..wh.aufs"] {
            let p = LayerPath::parse(aufs.as_bytes()).unwrap();
            assert_eq!(role(&p).unwrap(), Role::AufsMeta, "{aufs}");
        }
        for bad in [".wh.", ".wh..", ".wh...", "a/.wh...", "/.wh."] {
            let p = LayerPath::parse(bad.as_bytes()).unwrap();
            assert!(role(&p).is_err(), "{bad}");
        }
        let p = LayerPath::parse(b".wh.foo/bar").unwrap();
        assert_eq!(role(&p).unwrap(), Role::Plain);
    }
}
