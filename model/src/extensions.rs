//! Which PostgreSQL extensions a tenant may create, and what a
//! `CREATE EXTENSION` of one it may not gets instead.
//!
//! The engine bundles its extensions' files; the server installs them all
//! where every tenant's database finds them and marks [`OFFERED`] ones
//! trusted, so the tenant role (no superuser) creates them with plain
//! `CREATE EXTENSION` — PostgreSQL then runs their scripts as the bootstrap
//! superuser on its behalf, as it does for its own trusted extensions.
//! Extensions that read or repair the server's storage, or need a superuser
//! session, stay untrusted; a `CREATE EXTENSION` naming one, or one the
//! engine does not have but PostgreSQL users reach for, is refused with
//! what to use instead ([`refusal`]).

use crate::api::DbError;
use crate::sql::{after_comments, first_word};

/// The extensions any tenant may create.
pub const OFFERED: &[&str] = &[
    "bloom",
    "btree_gin",
    "btree_gist",
    "citext",
    "cube",
    "dict_int",
    "dict_xsyn",
    "earthdistance",
    "fuzzystrmatch",
    "hstore",
    "intarray",
    "isn",
    "lo",
    "ltree",
    "pg_hashids",
    "pg_trgm",
    "pg_uuidv7",
    "pgtap",
    "seg",
    "tablefunc",
    "tcn",
    "tsm_system_rows",
    "tsm_system_time",
    "unaccent",
    "vector",
];

/// Extensions the engine has that tenants may not create, and why.
pub const WITHHELD: &[(&str, &str)] = &[
    ("amcheck", "it reads the server's storage directly"),
    ("pageinspect", "it reads the server's storage directly"),
    ("pg_buffercache", "it reads the server's shared memory"),
    ("pg_freespacemap", "it reads the server's storage directly"),
    ("pg_visibility", "it reads the server's storage directly"),
    ("pg_walinspect", "it reads the server's write-ahead log"),
    ("pg_surgery", "it changes the server's storage directly"),
    ("file_fdw", "it reads the server's files"),
    ("age", "it needs a superuser session (LOAD and its own search_path)"),
    ("pg_textsearch", "its authors ship this release as a prerelease not to be used in production"),
    ("pg_ivm", "its views are maintained by triggers of their own, which the change capture does not follow"),
];

/// Extensions the engine does not have, with the built-in alternatives.
pub const ABSENT: &[(&str, &str)] = &[
    (
        "pgcrypto",
        "gen_random_uuid() for random UUIDs, sha224()/sha256()/sha384()/sha512() and md5() for digests",
    ),
    ("uuid-ossp", "gen_random_uuid() for random UUIDs, or uuid_generate_v7() from the pg_uuidv7 extension"),
];

/// The extension a `CREATE EXTENSION` statement names (as PostgreSQL
/// reads it: folded to lower case unless quoted), None for any other
/// statement.
pub fn created(sql: &str) -> Option<String> {
    if first_word(sql) != "CREATE" {
        return None;
    }
    let mut rest = after_comments(sql);
    let mut word = || -> Option<String> {
        rest = rest.trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            let mut name = String::new();
            let mut chars = quoted.char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c == '"' {
                    if chars.peek().is_some_and(|(_, d)| *d == '"') {
                        chars.next();
                    } else {
                        rest = &quoted[i + 1..];
                        return Some(name);
                    }
                }
                name.push(c);
            }
            None
        } else {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$')).unwrap_or(rest.len());
            let (word, tail) = rest.split_at(end);
            rest = tail;
            (!word.is_empty()).then(|| word.to_lowercase())
        }
    };
    if word()? != "create" || word()? != "extension" {
        return None;
    }
    let mut name = word()?;
    if name == "if" {
        if word()? != "not" || word()? != "exists" {
            return None;
        }
        name = word()?;
    }
    Some(name)
}

/// The error a statement creating an extension a tenant may not create
/// gets (SQLSTATE 0A000, naming what to use instead), None for every other
/// statement.
pub fn refusal(sql: &str) -> Option<DbError> {
    let name = created(sql)?;
    let (message, hint) = if let Some((_, why)) = WITHHELD.iter().find(|(n, _)| *n == name) {
        (format!("extension \"{name}\" is not offered to tenants: {why}"), None)
    } else if let Some((_, instead)) = ABSENT.iter().find(|(n, _)| *n == name) {
        (
            format!("extension \"{name}\" is not in tidelake's engine"),
            Some(format!("use the built-in {instead}")),
        )
    } else {
        return None;
    };
    let mut err = DbError::new("0A000", message);
    err.hint = hint;
    Some(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_created_extension_is_read_as_postgresql_reads_it() {
        assert_eq!(created("CREATE EXTENSION vector").as_deref(), Some("vector"));
        assert_eq!(created("  -- x\ncreate extension if not exists PG_TRGM with schema s").as_deref(), Some("pg_trgm"));
        assert_eq!(created("CREATE EXTENSION \"uuid-ossp\"").as_deref(), Some("uuid-ossp"));
        assert_eq!(created("CREATE EXTENSION \"a\"\"b\" CASCADE").as_deref(), Some("a\"b"));
        assert_eq!(created("CREATE EXTENSION").as_deref(), None);
        assert_eq!(created("CREATE TABLE extension (a int)").as_deref(), None);
        assert_eq!(created("SELECT 'CREATE EXTENSION pgcrypto'").as_deref(), None);
    }

    #[test]
    fn refusals_name_what_to_use_instead() {
        let err = refusal("CREATE EXTENSION pgcrypto").unwrap();
        assert_eq!(err.code, "0A000");
        assert!(err.message.contains("not in tidelake's engine"), "{}", err.message);
        let hint = err.hint.unwrap();
        for alternative in ["gen_random_uuid()", "sha256()", "md5()"] {
            assert!(hint.contains(alternative), "{hint}");
        }
        assert!(refusal("create extension if not exists \"uuid-ossp\"").unwrap().hint.unwrap().contains("gen_random_uuid()"));
        assert!(refusal("CREATE EXTENSION pageinspect").unwrap().message.contains("not offered to tenants"));
        for name in OFFERED {
            assert!(refusal(&format!("CREATE EXTENSION {name}")).is_none(), "{name}");
        }
        assert!(refusal("CREATE EXTENSION postgis").is_none(), "PostgreSQL's own error says it is not available");
    }

    #[test]
    fn no_extension_is_both_offered_and_withheld() {
        for (name, _) in WITHHELD.iter().chain(ABSENT) {
            assert!(!OFFERED.contains(name), "{name}");
        }
    }
}
