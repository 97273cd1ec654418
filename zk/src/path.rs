//! Znode path rules, as ZooKeeper's `PathUtils.validatePath` applies them,
//! and the parent / last-name split ZooKeeper uses (cut at the last `/`).

use crate::code::Code;

/// Whether `path` is a valid znode path: it starts with `/`; it is `/` or
/// does not end with `/`; no component is empty, `.` or `..`; and no
/// character is NUL, U+0001..U+001F, U+007F..U+009F, U+D800..U+F8FF,
/// U+FFF0..U+FFFF or outside the BMP (Java sees those as surrogates, which
/// fall in the forbidden range).
pub fn is_valid_path(path: &str) -> bool {
    if !path.starts_with('/') {
        return false;
    }
    if path == "/" {
        return true;
    }
    if path.ends_with('/') {
        return false;
    }
    path[1..].split('/').all(|component| {
        !component.is_empty()
            && component != "."
            && component != ".."
            && component.chars().all(|c| !is_forbidden_char(c))
    })
}

fn is_forbidden_char(c: char) -> bool {
    let c = u32::from(c);
    c <= 0x1f
        || (0x7f..=0x9f).contains(&c)
        || (0xd800..=0xf8ff).contains(&c)
        || (0xfff0..=0xffff).contains(&c)
        || c > 0xffff
}

/// ZooKeeper's `validatePath`: a bad path is `BadArguments`.
pub fn validate_path(path: &str) -> Result<(), Code> {
    if is_valid_path(path) {
        Ok(())
    } else {
        Err(Code::BadArguments)
    }
}

/// `validatePath(path, isSequential)`: for a sequential create the rules
/// apply to the path with a suffix appended, so `/a/` is a valid prefix.
pub fn validate_path_sequential(path: &str, sequential: bool) -> Result<(), Code> {
    if sequential {
        validate_path(&format!("{path}1"))
    } else {
        validate_path(path)
    }
}

/// The parent of a path: the path cut at its last `/`, with `/` for a
/// top-level node. `None` for `/` itself and for a string without `/`.
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    let (raw, _) = split_last_slash(path)?;
    Some(if raw.is_empty() { "/" } else { raw })
}

/// The last component of a path (everything after the last `/`); the whole
/// string when it has no `/`, and `""` for `/`.
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// ZooKeeper's raw split at the last `/`: (`path.substring(0, lastSlash)`,
/// the rest). The raw parent of a top-level path is `""`, which ZooKeeper's
/// node map aliases to the root.
pub(crate) fn split_last_slash(path: &str) -> Option<(&str, &str)> {
    let i = path.rfind('/')?;
    Some((&path[..i], &path[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_paths() {
        for p in [
            "/", "/a", "/a/b", "/a.b", "/...", "/a/.b", "/a/b..", "/ä", "/a b",
        ] {
            assert!(is_valid_path(p), "{p:?} should be valid");
        }
    }

    #[test]
    fn invalid_paths() {
        for p in [
            "",
            "a",
            "a/b",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/./b",
            "/a/../b",
            "/a/.",
            "/a\0b",
            "/a\u{1}",
            "/a\u{7f}",
            "/a\u{9f}",
            "/a\u{e000}",
            "/a\u{f8ff}",
            "/a\u{fff0}",
            "/a\u{ffff}",
            "/a\u{1f600}",
        ] {
            assert_eq!(validate_path(p), Err(Code::BadArguments), "{p:?}");
        }
        assert!(is_valid_path("/a\u{a0}"));
        assert!(is_valid_path("/a\u{f900}"));
    }

    #[test]
    fn sequential_prefix_may_end_with_slash() {
        assert_eq!(validate_path_sequential("/a/", true), Ok(()));
        assert_eq!(
            validate_path_sequential("/a/", false),
            Err(Code::BadArguments)
        );
        assert_eq!(validate_path_sequential("/", true), Ok(()));
        assert_eq!(
            validate_path_sequential("/a//", true),
            Err(Code::BadArguments)
        );
    }

    #[test]
    fn parent_and_name() {
        assert_eq!(parent("/"), None);
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a/"), Some("/a"));
        assert_eq!(parent("abc"), None);
        assert_eq!(name("/a/b"), "b");
        assert_eq!(name("/a"), "a");
        assert_eq!(name("/"), "");
        assert_eq!(split_last_slash("/a"), Some(("", "a")));
    }
}
