//! Lake names: the Iceberg namespace of a tenant and the Iceberg table name
//! of a source table. Written by the shipper, read by history, the query
//! service and restores — every one of them goes through this module, so the
//! format is stated once (docs/lake.md, "Names").
//!
//! A tenant's identifiers are its own: any UTF-8, up to 63 bytes, quotes,
//! slashes and dots included. A lake name becomes a path and an object key
//! (`<warehouse>/<tenant>/<name>/…`), so it must never carry a separator or
//! `..`, and two source tables must never share one. The encoding:
//!
//! - a component (schema or table) keeps `a`–`z` and `0`–`9`, and `_` where
//!   a letter or digit follows it; every other byte becomes `-` and two
//!   lower-case hex digits (`-` itself is `-2d`, an upper-case `T` is
//!   `-54`). So a component never contains `__`, never ends in `_`, and is
//!   made only of `[a-z0-9_-]`;
//! - a component whose escaped form would be longer than
//!   [`MAX_COMPONENT_CHARS`] is written as `--` and its bytes in base32
//!   (RFC 4648, lower case, no padding) instead: at most 103 characters for
//!   PostgreSQL's 63 bytes, so a name stays far below the 255 bytes a file
//!   name may have (`--` never occurs in an escaped form);
//! - a table of the `public` schema is its table component alone; any other
//!   is `<schema>__<table>`. The first `__` of a name is the separator, since
//!   a component neither contains `__` nor ends in `_`.
//!
//! Decoding a name and encoding the result again gives the name back for
//! every name the encoding produces, and for no other: the encoding is
//! injective and each lake table has exactly one spelling.

use std::fmt;

use iceberg::NamespaceIdent;

use crate::error::{LakeError, Result};

/// The schema whose tables are named without it.
pub const DEFAULT_SCHEMA: &str = "public";

/// PostgreSQL's longest identifier, in bytes (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The longest escaped component; longer ones are written in base32.
pub const MAX_COMPONENT_CHARS: usize = 103;

const SEPARATOR: &str = "__";
const COMPACT_PREFIX: &str = "--";
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A source table: the PostgreSQL schema and table name a change names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceTable {
    pub schema: String,
    pub table: String,
}

impl SourceTable {
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self { schema: schema.into(), table: table.into() }
    }

    /// The Iceberg table name of this source table.
    pub fn lake_name(&self) -> Result<String> {
        let table = component(&self.table)?;
        if self.schema == DEFAULT_SCHEMA {
            return Ok(table);
        }
        Ok(format!("{}{SEPARATOR}{table}", component(&self.schema)?))
    }

    /// The source table a lake name stands for; None if the encoding never
    /// produces `name`.
    pub fn from_lake_name(name: &str) -> Option<Self> {
        let source = match name.split_once(SEPARATOR) {
            Some((schema, table)) => Self::new(decode_component(schema)?, decode_component(table)?),
            None => Self::new(DEFAULT_SCHEMA, decode_component(name)?),
        };
        // Only the canonical spelling: `public__t`, an escaped letter and
        // the like decode, but are not names of any table.
        (source.lake_name().ok()? == name).then_some(source)
    }

    /// The name releases before the safe encoding gave this table: the
    /// table name in `public`, `<schema>__<table>` elsewhere, unescaped.
    /// Only for finding a table such a release shipped (`table::ChangelogTable::open`).
    pub(crate) fn legacy_lake_name(&self) -> String {
        if self.schema == DEFAULT_SCHEMA {
            self.table.clone()
        } else {
            format!("{}{SEPARATOR}{}", self.schema, self.table)
        }
    }
}

/// `schema.table`, as the `tidelake.source` property and messages show it.
impl fmt::Display for SourceTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

/// The lake table a table name in a lake query means: a lake name as the
/// catalog lists it (`todos`, `billing__items`, `-54odos`) is that table;
/// any other name is a table of the `public` schema, encoded
/// (`"Todos"` → `-54odos`, `"../x"` → `-2e-2e-2fx`).
pub fn query_name(name: &str) -> Result<String> {
    if SourceTable::from_lake_name(name).is_some() {
        return Ok(name.to_owned());
    }
    SourceTable::new(DEFAULT_SCHEMA, name).lake_name()
}

/// The Iceberg namespace of a tenant. Tenant ids are already
/// `[a-z0-9][a-z0-9-]{0,62}` where they enter the server; the lake checks
/// again, since the namespace becomes a directory of the warehouse.
pub fn namespace(tenant: &str) -> Result<NamespaceIdent> {
    if !model::TenantId::is_valid(tenant) {
        return Err(LakeError::Name(format!("{tenant:?} is not a tenant id ([a-z0-9][a-z0-9-]{{0,62}})")));
    }
    Ok(NamespaceIdent::new(tenant.to_owned()))
}

fn kept(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// One schema or table name, encoded.
fn component(name: &str) -> Result<String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IDENTIFIER_BYTES {
        return Err(LakeError::Name(format!(
            "{name:?} is not a PostgreSQL identifier (1 to {MAX_IDENTIFIER_BYTES} bytes)"
        )));
    }
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        let underscore_kept = b == b'_' && bytes.get(i + 1).copied().is_some_and(kept);
        if kept(b) || underscore_kept {
            out.push(char::from(b));
        } else {
            out.push('-');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
    if out.len() <= MAX_COMPONENT_CHARS {
        return Ok(out);
    }
    Ok(format!("{COMPACT_PREFIX}{}", base32(bytes)))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The name an encoded component stands for (not checked for being the
/// canonical spelling: `SourceTable::from_lake_name` does that).
fn decode_component(encoded: &str) -> Option<String> {
    let bytes = match encoded.strip_prefix(COMPACT_PREFIX) {
        Some(compact) => unbase32(compact)?,
        None => {
            let mut bytes = Vec::with_capacity(encoded.len());
            let mut rest = encoded.as_bytes();
            while let Some((&b, tail)) = rest.split_first() {
                if b == b'-' {
                    let [hi, lo, tail @ ..] = tail else { return None };
                    bytes.push(hex_digit(*hi)? << 4 | hex_digit(*lo)?);
                    rest = tail;
                } else if kept(b) || b == b'_' {
                    bytes.push(b);
                    rest = tail;
                } else {
                    return None;
                }
            }
            bytes
        }
    };
    String::from_utf8(bytes).ok()
}

fn hex_digit(c: u8) -> Option<u8> {
    HEX.iter().position(|h| *h == c).and_then(|p| u8::try_from(p).ok())
}

fn base32(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(BASE32[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(BASE32[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

fn unbase32(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = BASE32.iter().position(|b| *b == c)?;
        buffer = ((buffer << 5) | value as u32) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
    }
    // Leftover bits must be zero padding (the canonical spelling).
    (buffer & ((1 << bits) - 1) == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(schema: &str, table: &str) -> String {
        SourceTable::new(schema, table).lake_name().unwrap()
    }

    fn assert_safe(name: &str) {
        assert!(!name.is_empty(), "empty name");
        assert!(name.len() <= 2 * MAX_COMPONENT_CHARS + SEPARATOR.len(), "{name} is {} long", name.len());
        assert!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'),
            "{name:?} has a character outside [a-z0-9_-]"
        );
        assert!(!name.contains(".."), "{name}");
    }

    #[test]
    fn ordinary_names_stay_readable() {
        assert_eq!(name("public", "todos"), "todos");
        assert_eq!(name("public", "order_items"), "order_items");
        assert_eq!(name("public", "_prisma_migrations"), "_prisma_migrations");
        assert_eq!(name("billing", "items"), "billing__items");
        assert_eq!(name("billing", "line_items2"), "billing__line_items2");
        assert_eq!(name("public", "Todos"), "-54odos");
        assert_eq!(name("public", "a b"), "a-20b");
    }

    #[test]
    fn hostile_names_have_no_separator_and_no_dots() {
        let hostile = [
            "../../../../../../../../tmp/tl-esc",
            "../othertenant/todos",
            "..",
            ".",
            "a/b",
            "a\\b",
            "\"quoted\"",
            "it's",
            "price$history",
            "$changes",
            "tab\there",
            "nul\0byte",
            "new\nline",
            "%2e%2e",
            "Ünïcødé 表",
            "-",
            "_",
            "__",
            "a_",
            "--compact",
        ];
        for table in hostile {
            for schema in ["public", "a", "../x", "A__B"] {
                let encoded = name(schema, table);
                assert_safe(&encoded);
                assert_eq!(SourceTable::from_lake_name(&encoded), Some(SourceTable::new(schema, table)), "{encoded}");
            }
        }
        assert_eq!(name("public", "../othertenant/todos"), "-2e-2e-2fothertenant-2ftodos");
    }

    #[test]
    fn two_source_tables_never_share_a_name() {
        // The collision of the old `<schema>__<table>` rule.
        assert_ne!(name("public", "a__b"), name("a", "b"));
        assert_eq!(name("a", "b"), "a__b");
        assert_eq!(name("public", "a__b"), "a-5f_b");
        let tricky = [
            ("public", "a__b"), ("a", "b"), ("a_", "b"), ("a", "_b"), ("a", "__b"), ("a__", "b"),
            ("public", "a___b"), ("a_", "_b"), ("public", "public__b"), ("public", "b"), ("PUBLIC", "b"),
            ("public", "a-5f_b"), ("public", "-"), ("public", "-2d"), ("x", "y__z"), ("x__y", "z"),
            ("public", "a.b"), ("a", "b."), ("a.", "b"), ("public", "A"), ("public", "a"), ("public", "--a"),
        ];
        let mut seen = std::collections::HashMap::new();
        for (schema, table) in tricky {
            let encoded = name(schema, table);
            assert_safe(&encoded);
            if let Some(other) = seen.insert(encoded.clone(), (schema, table)) {
                panic!("{other:?} and {:?} both map to {encoded}", (schema, table));
            }
            assert_eq!(SourceTable::from_lake_name(&encoded), Some(SourceTable::new(schema, table)));
        }
    }

    #[test]
    fn longest_identifiers_fit_a_file_name() {
        let ascii = "x".repeat(63);
        assert_eq!(name("public", &ascii), ascii);
        // 21 three-byte characters: 63 bytes, escaped 189 characters, so base32.
        let wide = "表".repeat(21);
        let encoded = name(&wide, &wide);
        assert_safe(&encoded);
        assert!(encoded.starts_with("--") && encoded.len() <= 208, "{encoded}");
        assert_eq!(SourceTable::from_lake_name(&encoded), Some(SourceTable::new(&wide, &wide)));
        let slashes = "/".repeat(63);
        let encoded = name("public", &slashes);
        assert_safe(&encoded);
        assert_eq!(SourceTable::from_lake_name(&encoded), Some(SourceTable::new("public", &slashes)));
        // Beyond PostgreSQL's limit, or empty: not a table name.
        assert!(SourceTable::new("public", "x".repeat(64)).lake_name().is_err());
        assert!(SourceTable::new("public", "").lake_name().is_err());
        assert!(SourceTable::new("", "t").lake_name().is_err());
    }

    #[test]
    fn only_canonical_spellings_decode() {
        for name in [
            "public__t", "a-61", "a-5F", "a-5", "a-", "a_", "__t", "t__", "a__b__c", "a/b", "A", "a.b", "", "--", "--0",
            "a b", "---", "-2e-2e-2f-", "--ab_", "x__-61",
        ] {
            assert_eq!(SourceTable::from_lake_name(name), None, "{name:?}");
        }
        // Base32 whose padding bits are not zero is another spelling.
        let encoded = name_of_compact();
        let mut other = encoded.clone();
        other.pop();
        other.push('z');
        assert_eq!(SourceTable::from_lake_name(&other), None);
    }

    fn name_of_compact() -> String {
        name("public", &"é".repeat(31))
    }

    #[test]
    fn base32_round_trips() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(unbase32(&base32(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base32(b"foobar"), "mzxw6ytboi");
    }

    #[test]
    fn query_names_are_lake_names_or_public_tables() {
        assert_eq!(query_name("todos").unwrap(), "todos");
        assert_eq!(query_name("billing__items").unwrap(), "billing__items");
        assert_eq!(query_name("Todos").unwrap(), "-54odos");
        assert_eq!(query_name("-54odos").unwrap(), "-54odos");
        assert_eq!(query_name("../othertenant/todos").unwrap(), "-2e-2e-2fothertenant-2ftodos");
        // `a__b` is the lake name of a.b; public."a__b" is `a-5f_b`.
        assert_eq!(query_name("a__b").unwrap(), "a__b");
        assert_eq!(query_name("a-5f_b").unwrap(), "a-5f_b");
        assert!(query_name(&"y".repeat(200)).is_err());
    }

    #[test]
    fn namespaces_are_tenant_ids() {
        assert_eq!(namespace("shop-a").unwrap(), NamespaceIdent::new("shop-a".into()));
        for bad in ["", "../x", "a/b", "A", "-a", "a.b", &"a".repeat(64)] {
            assert!(namespace(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn legacy_names_are_the_old_rule() {
        assert_eq!(SourceTable::new("public", "a__b").legacy_lake_name(), "a__b");
        assert_eq!(SourceTable::new("billing", "items").legacy_lake_name(), "billing__items");
    }
}
