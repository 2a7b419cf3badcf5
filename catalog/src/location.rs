//! Where a table or namespace may put files: strictly inside the warehouse.
//!
//! A location names a place in the warehouse's storage: `file:///…` (or a
//! bare absolute path, or Java's `file:/…`) for a local warehouse,
//! `s3://bucket/…` for object storage. A location is inside the warehouse
//! when it has the warehouse's scheme and bucket, and its path is the
//! warehouse's path followed by at least one more segment. Nothing is
//! resolved against the file system: a location with a `.` or `..` segment,
//! a backslash, a control character, or a `%`, `?` or `#` (which URL
//! parsers turn into other paths: `%2e%2e` is `..` to them) is refused
//! rather than interpreted.

use crate::error::CatalogError;

/// Table properties that name where a table's files go.
pub const LOCATION_PROPERTIES: [&str; 4] =
    ["write.data.path", "write.folder-storage.path", "write.metadata.path", "write.object-storage.path"];

/// The namespace property that places its tables.
pub const NAMESPACE_LOCATION: &str = "location";

/// The warehouse root, as configured and as parsed.
#[derive(Debug, Clone)]
pub struct Root {
    /// The configured location without a trailing `/`.
    raw: String,
    parsed: Parsed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed {
    /// Lower case; `s3a` and `s3n` are `s3`.
    scheme: String,
    /// The bucket (empty for a local path).
    authority: String,
    segments: Vec<String>,
}

impl Root {
    /// The root of a warehouse. The configuration is trusted: its `.` and
    /// `..` are resolved (`--data-dir ../data` gives one), not refused.
    pub fn parse(warehouse: &str) -> Result<Self, CatalogError> {
        let raw = warehouse.trim_end_matches('/').to_owned();
        let parsed = parse(&raw, Dots::Resolve)
            .map_err(|e| CatalogError::Internal(format!("warehouse location {warehouse:?}: {e}")))?;
        Ok(Self { raw, parsed })
    }

    /// Refuse `location` (of `what`, for the message) unless it is strictly
    /// inside the warehouse.
    pub fn check(&self, what: &str, location: &str) -> Result<(), CatalogError> {
        self.check_under(&self.raw, what, location)
    }

    /// Refuse `location` unless it is strictly inside `base`, itself a
    /// location inside (or of) the warehouse.
    pub fn check_under(&self, base: &str, what: &str, location: &str) -> Result<(), CatalogError> {
        let refuse =
            |why: String| CatalogError::BadRequest(format!("{what} {location:?} is outside the warehouse: {why}"));
        let base = self.resolve(base.trim_end_matches('/')).map_err(refuse)?;
        let location = self.resolve(location).map_err(refuse)?;
        if location.scheme != base.scheme || location.authority != base.authority {
            return Err(refuse(format!("not in {}://{}", base.scheme, base.authority)));
        }
        if location.segments.len() <= base.segments.len() || !location.segments.starts_with(&base.segments) {
            return Err(refuse(format!("not below /{}", base.segments.join("/"))));
        }
        Ok(())
    }

    /// The location of `segments` below the root, each checked to be one
    /// plain path segment (a namespace level or a table name).
    pub fn child(&self, segments: &[&str]) -> Result<String, CatalogError> {
        let mut location = self.raw.clone();
        for segment in segments {
            check_segment(segment).map_err(|e| CatalogError::BadRequest(format!("name {segment:?}: {e}")))?;
            location.push('/');
            location.push_str(segment);
        }
        Ok(location)
    }

    /// A location's parts. The warehouse's own prefix, as configured, is
    /// taken as the root (the SQL catalog derives locations by appending to
    /// it); everything else must be free of `.` and `..`.
    fn resolve(&self, location: &str) -> Result<Parsed, String> {
        check_characters(location)?;
        if let Some(rest) = location.strip_prefix(&self.raw)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            let mut parsed = self.parsed.clone();
            parsed.segments.extend(segments(rest, Dots::Refuse)?);
            return Ok(parsed);
        }
        parse(location, Dots::Refuse)
    }
}

/// Whether a name may be one segment of a location.
pub fn check_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() || segment == "." || segment == ".." {
        return Err("not a path segment".into());
    }
    if segment.contains('/') {
        return Err("contains a /".into());
    }
    check_characters(segment)
}

fn check_characters(text: &str) -> Result<(), String> {
    match text.chars().find(|c| c.is_control() || matches!(c, '\\' | '%' | '?' | '#')) {
        Some(c) => Err(format!("contains {c:?}")),
        None => Ok(()),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dots {
    Resolve,
    Refuse,
}

fn parse(location: &str, dots: Dots) -> Result<Parsed, String> {
    check_characters(location)?;
    let (scheme, rest) = match location.split_once(':') {
        Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains('/') => (scheme.to_ascii_lowercase(), rest),
        _ if location.starts_with('/') => ("file".to_owned(), location),
        _ => return Err("not an absolute location".into()),
    };
    if !scheme.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')) {
        return Err(format!("bad scheme {scheme:?}"));
    }
    let scheme = match scheme.as_str() {
        "s3a" | "s3n" => "s3".to_owned(),
        _ => scheme,
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(rest) => match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        },
        None if rest.starts_with('/') => ("", rest),
        None => return Err("not an absolute location".into()),
    };
    // `file://localhost/x` is `file:///x`.
    let authority = if scheme == "file" && authority.eq_ignore_ascii_case("localhost") { "" } else { authority };
    Ok(Parsed { scheme, authority: authority.to_owned(), segments: segments(path, dots)? })
}

/// Path segments; empty ones (`a//b`, a trailing `/`) are dropped.
fn segments(path: &str, dots: Dots) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        match (segment, dots) {
            (".", Dots::Resolve) => {}
            ("..", Dots::Resolve) => {
                out.pop().ok_or("`..` above the root")?;
            }
            ("." | "..", Dots::Refuse) => return Err(format!("has a {segment:?} segment")),
            _ => out.push(segment.to_owned()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inside(root: &str, location: &str) -> bool {
        Root::parse(root).unwrap().check("location", location).is_ok()
    }

    #[test]
    fn locations_below_the_root_are_inside() {
        let root = "file:///data/warehouse";
        assert!(inside(root, "file:///data/warehouse/acme/todos"));
        assert!(inside(root, "file:///data/warehouse/acme/todos/"));
        assert!(inside(root, "file:/data/warehouse/acme/todos"));
        assert!(inside(root, "/data/warehouse/acme/todos"));
        assert!(inside(root, "file://localhost/data/warehouse/acme"));
        assert!(inside("s3://lake/prefix", "s3://lake/prefix/acme/todos"));
        assert!(inside("s3://lake/prefix", "s3a://lake/prefix/acme/todos"));
        assert!(inside("s3://lake", "s3://lake/acme"));
    }

    #[test]
    fn locations_elsewhere_are_refused() {
        let root = "file:///data/warehouse";
        for location in [
            "file:///data/warehouse",
            "file:///data/warehouse/",
            "file:///data/warehouse2/acme",
            "file:///data/warehouse/../escape",
            "file:///data/warehouse/acme/../../../tmp/x",
            "file:///data/warehouse/./acme",
            "file:///data/warehouse/%2e%2e/x",
            "file:///data/warehouse/acme\\..\\..\\x",
            "file:///data/warehouse/acme?x=/y",
            "file:///data/warehouse/acme#/../../x",
            "file:///tmp/x",
            "file://otherhost/data/warehouse/acme",
            "/tmp/x",
            "relative/acme",
            "s3://lake/data/warehouse/acme",
            "https://example.com/data/warehouse/acme",
            "file:///data/warehouse/a\nb",
            "",
        ] {
            assert!(!inside(root, location), "{location:?} was taken as inside {root}");
        }
        assert!(!inside("s3://lake/prefix", "s3://other/prefix/acme"));
        assert!(!inside("s3://lake/prefix", "s3://lake/prefix2/acme"));
        assert!(!inside("s3://lake/prefix", "s3://lake/acme"));
        let err = Root::parse(root).unwrap().check("table location", "file:///tmp/x").unwrap_err();
        assert!(matches!(err, CatalogError::BadRequest(_)), "{err}");
    }

    #[test]
    fn a_configured_root_with_dots_is_resolved() {
        let root = Root::parse("file:///home/u/../data/warehouse").unwrap();
        // As the SQL catalog derives it, by appending to the configured root …
        assert!(root.check("location", "file:///home/u/../data/warehouse/acme/todos").is_ok());
        // … and written out.
        assert!(root.check("location", "file:///home/data/warehouse/acme/todos").is_ok());
        assert!(root.check("location", "file:///home/u/../data/warehouse/../x").is_err());
        assert!(root.check("location", "file:///home/u/data/warehouse/acme").is_err());
    }

    #[test]
    fn children_are_plain_segments() {
        let root = Root::parse("file:///data/warehouse").unwrap();
        assert_eq!(root.child(&["acme", "todos"]).unwrap(), "file:///data/warehouse/acme/todos");
        for bad in ["..", ".", "", "a/b", "a\\b", "a%2f", "x\0"] {
            assert!(root.child(&["acme", bad]).is_err(), "{bad:?}");
        }
        let namespace = root.child(&["acme"]).unwrap();
        assert!(root.check_under(&namespace, "location", "file:///data/warehouse/acme/todos").is_ok());
        assert!(root.check_under(&namespace, "location", "file:///data/warehouse/other/todos").is_err());
        assert!(root.check_under(&namespace, "location", &namespace).is_err());
    }
}
