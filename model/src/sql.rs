//! Splitting a SQL script into statements at top-level semicolons, the way
//! psql does: quotes, quoted identifiers, dollar quotes, comments and
//! SQL-standard function bodies (`BEGIN ATOMIC … END`) are respected.
//!
//! Pure text handling (no PostgreSQL needed), shared by every front and the
//! query service; also what a statement is by its first words (transaction
//! control, a possible schema change), for the server's engine and the edge's.

/// The statements of `script`, trimmed, without empty ones and without their
/// terminating semicolons. Comments stay with the statement they precede.
pub fn split(script: &str) -> Vec<&str> {
    let bytes = script.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    // Words seen at top level, for BEGIN ATOMIC detection.
    let mut previous_word: Option<&str> = None;
    // Inside BEGIN ATOMIC: nesting of BEGIN/CASE … END.
    let mut atomic_depth = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\'' => {
                let escapes = i > 0 && matches!(bytes[i - 1], b'E' | b'e') && !is_ident(bytes, i - 1);
                i = skip_quoted(bytes, i, b'\'', escapes);
            }
            b'"' => i = skip_quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..].iter().position(|&c| c == b'\n').map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'$' => i = skip_dollar_quoted(bytes, i),
            b';' if atomic_depth == 0 => {
                push(&mut out, &script[start..i]);
                i += 1;
                start = i;
                previous_word = None;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let begin = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$') {
                    i += 1;
                }
                let word = &script[begin..i];
                if atomic_depth > 0 {
                    if word.eq_ignore_ascii_case("CASE") || word.eq_ignore_ascii_case("BEGIN") {
                        atomic_depth += 1;
                    } else if word.eq_ignore_ascii_case("END") {
                        atomic_depth -= 1;
                    }
                } else if word.eq_ignore_ascii_case("ATOMIC")
                    && previous_word.is_some_and(|w| w.eq_ignore_ascii_case("BEGIN"))
                {
                    atomic_depth = 1;
                }
                previous_word = Some(word);
            }
            _ => i += 1,
        }
    }
    push(&mut out, &script[start..]);
    out
}

fn push<'a>(out: &mut Vec<&'a str>, statement: &'a str) {
    let trimmed = statement.trim();
    if !only_comments(trimmed) {
        out.push(trimmed);
    }
}

/// An identifier, always double-quoted (any spelling round-trips).
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Whether the text holds nothing but white space and comments.
pub fn only_comments(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..].iter().position(|&c| c == b'\n').map_or(bytes.len(), |p| i + p + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            _ => return false,
        }
    }
    true
}

fn is_ident(bytes: &[u8], at: usize) -> bool {
    at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_')
}

/// Index just past the closing quote (doubled quotes are literal).
fn skip_quoted(bytes: &[u8], open: usize, quote: u8, backslash_escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if backslash_escapes && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

/// Index just past a (nested) block comment.
fn skip_block_comment(bytes: &[u8], open: usize) -> usize {
    let mut depth = 0;
    let mut i = open;
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// Past a `$tag$ … $tag$` string; a `$` that opens no such string (a
/// parameter like `$1`, or part of an identifier) is skipped alone.
fn skip_dollar_quoted(bytes: &[u8], open: usize) -> usize {
    if is_ident(bytes, open) {
        return open + 1;
    }
    let mut i = open + 1;
    if i < bytes.len() && bytes[i].is_ascii_digit() {
        return i;
    }
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    if bytes.get(i) != Some(&b'$') {
        return open + 1;
    }
    let tag = &bytes[open..=i];
    let body = i + 1;
    bytes[body..]
        .windows(tag.len())
        .position(|w| w == tag)
        .map_or(bytes.len(), |p| body + p + tag.len())
}

// ---- what a statement is, by its text ----

/// The transaction-control verb a statement starts with, if any (after
/// leading white space and comments).
pub fn transaction_control(sql: &str) -> Option<String> {
    const CONTROL: [&str; 8] = [
        "BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "SAVEPOINT", "RELEASE",
    ];
    let word = first_word(sql);
    CONTROL.contains(&word.as_str()).then_some(word)
}

/// The first word of a statement, upper-cased, after leading white space
/// and comments.
pub fn first_word(sql: &str) -> String {
    after_comments(sql)
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Whether a statement may change the schema capture follows, judged by
/// its first word (before it runs, so the capture sync can go in the same
/// transaction). Queries, DML and session commands may not (`SELECT … INTO`
/// may: it creates a table); everything else may — DDL, `DO`, `CALL`,
/// `EXPLAIN ANALYZE` of anything. What a function called from a query does
/// is seen afterwards, from the catalogs (the server's engine watches them).
pub fn may_change_schema(sql: &str) -> bool {
    const DATA_ONLY: [&str; 35] = [
        "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE", "FETCH", "MOVE", "CLOSE",
        "COPY", "SHOW", "SET", "RESET", "LISTEN", "NOTIFY", "UNLISTEN", "DISCARD", "DEALLOCATE",
        "PREPARE", "EXECUTE", "DECLARE", "LOCK", "BEGIN", "START", "COMMIT", "END", "ROLLBACK",
        "ABORT", "SAVEPOINT", "RELEASE", "CHECKPOINT", "TRUNCATE", "ANALYZE", "VACUUM",
    ];
    let word = first_word(sql);
    if word == "SELECT" || word == "WITH" {
        return mentions(sql, &["into"]);
    }
    !DATA_ONLY.contains(&word.as_str())
}

/// Whether a statement only reads, judged by its first word: a query
/// (`SELECT`, `WITH`, `VALUES`, `TABLE`) that does not create a table
/// (`SELECT … INTO`). A `WITH` holding a write, or a function that writes,
/// is found by the engine (its plan, its change notice).
pub fn reads_only(sql: &str) -> bool {
    matches!(first_word(sql).as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE") && !may_change_schema(sql)
}

/// The statement from its first word on (leading comments skipped).
pub fn after_comments(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, tail)| tail);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.split_once("*/").map_or("", |(_, tail)| tail);
        } else {
            return rest;
        }
    }
}


/// `CREATE [GLOBAL | LOCAL] TEMP[ORARY] …`: catalog rows that live and die
/// with the session.
pub fn creates_temporary(sql: &str) -> bool {
    let words: Vec<String> = after_comments(sql)
        .split_whitespace()
        .take(3)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let temp = |i: usize| words.get(i).is_some_and(|w| w == "TEMP" || w == "TEMPORARY");
    let scope = words.get(1).is_some_and(|w| w == "GLOBAL" || w == "LOCAL");
    words.first().is_some_and(|w| w == "CREATE") && (temp(1) || (scope && temp(2)))
}


/// `COPY … FROM STDIN`: a statement that reads its data from the client
/// after it starts (judged on the words outside quotes and parentheses).
pub fn copies_from_client(sql: &str) -> bool {
    if first_word(sql) != "COPY" {
        return false;
    }
    let mut words = Vec::new();
    let (mut depth, mut word, mut chars) = (0i32, String::new(), after_comments(sql).chars().peekable());
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                }
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            c if c.is_alphanumeric() || c == '_' => {
                if depth == 0 {
                    word.push(c.to_ascii_uppercase());
                }
                continue;
            }
            _ => {}
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words.windows(2).any(|pair| pair[0] == "FROM" && pair[1] == "STDIN")
}

/// Whether a statement (its command tag and its text) may leave state in
/// the session beyond its transaction: then the session is reset after the
/// request.
pub fn touches_session(command: &str, sql: &str) -> bool {
    matches!(
        command,
        "SET" | "RESET" | "PREPARE" | "DECLARE CURSOR" | "LISTEN" | "LOAD" | "SET CONSTRAINTS" | "DO" | "CALL"
    ) || mentions(sql, &["temp", "set_config", "advisory"])
}

/// Whether the tenant has functions that may leave session state behind
/// (their bodies set settings, prepare, declare, listen, lock, make
/// temporary tables or run dynamic SQL): then every request is followed by
/// a session reset, since any query may call one (column `hazard`).
pub const SESSION_CODE_SQL: &str = "SELECT EXISTS (SELECT FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'tidelake') \
       AND p.prosrc ~* '\\m(set|reset|set_config|prepare|declare|listen|advisory|temp|temporary|execute|discard)\\M') AS hazard";

/// What resets a session to a new connection's, less DISCARD PLANS (the
/// plans of the capture triggers stay cached) and the session user.
pub const RESET_SESSION_SQL: &str =
    "RESET ALL; DEALLOCATE ALL; CLOSE ALL; UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// Whether `sql` contains any of `words` (lower-case ASCII), ignoring case,
/// without copying the statement (this runs after every statement).
pub fn mentions(sql: &str, words: &[&str]) -> bool {
    let bytes = sql.as_bytes();
    words.iter().any(|word| {
        bytes
            .windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::{reads_only, split};

    #[test]
    fn reads_are_queries_that_create_nothing() {
        for sql in ["SELECT 1", " -- c\n select * from t", "WITH x AS (SELECT 1) SELECT * FROM x", "VALUES (1)", "TABLE t"] {
            assert!(reads_only(sql), "{sql}");
        }
        for sql in ["SELECT 1 INTO t", "INSERT INTO t VALUES (1)", "CREATE TABLE t (a int)", "EXPLAIN ANALYZE DELETE FROM t", "SHOW search_path"] {
            assert!(!reads_only(sql), "{sql}");
        }
    }

    #[test]
    fn splits_at_top_level_semicolons_only() {
        assert_eq!(split("SELECT 1; SELECT 2;"), ["SELECT 1", "SELECT 2"]);
        assert_eq!(split("SELECT 'a;b'; SELECT \"x;y\""), ["SELECT 'a;b'", "SELECT \"x;y\""]);
        assert_eq!(split("SELECT 'it''s;'; SELECT 2"), ["SELECT 'it''s;'", "SELECT 2"]);
        assert_eq!(split(r"SELECT E'\';'; SELECT 2"), [r"SELECT E'\';'", "SELECT 2"]);
        assert_eq!(
            split("DO $$ BEGIN PERFORM 1; END $$; SELECT $1"),
            ["DO $$ BEGIN PERFORM 1; END $$", "SELECT $1"]
        );
        assert_eq!(
            split("CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql; SELECT f()"),
            ["CREATE FUNCTION f() RETURNS int AS $fn$ SELECT 1; $fn$ LANGUAGE sql", "SELECT f()"]
        );
        assert_eq!(split("SELECT 1 -- a;b\n; SELECT /* ; /* ; */ */ 2"), ["SELECT 1 -- a;b", "SELECT /* ; /* ; */ */ 2"]);
    }

    #[test]
    fn keeps_sql_standard_function_bodies_whole() {
        let script = "CREATE FUNCTION f(x int) RETURNS int BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; SELECT 2; END; SELECT f(1)";
        assert_eq!(
            split(script),
            [
                "CREATE FUNCTION f(x int) RETURNS int BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; SELECT 2; END",
                "SELECT f(1)"
            ]
        );
    }

    #[test]
    fn drops_empty_and_comment_only_pieces() {
        assert!(split("").is_empty());
        assert!(split(" ; ;-- nothing\n").is_empty());
        assert_eq!(split("BEGIN; ; COMMIT"), ["BEGIN", "COMMIT"]);
    }

    #[test]
    fn copy_from_the_client_is_told_from_other_copies() {
        use super::copies_from_client;
        assert!(copies_from_client("COPY t FROM STDIN"));
        assert!(copies_from_client("-- load\ncopy public.t (a, b) from stdin with (format csv)"));
        assert!(!copies_from_client("COPY t TO STDOUT"));
        assert!(!copies_from_client("COPY (SELECT 'from stdin' FROM t) TO STDOUT"));
        assert!(!copies_from_client("COPY t FROM '/tmp/file'"));
        assert!(!copies_from_client("SELECT 1 FROM stdin"));
    }
}
