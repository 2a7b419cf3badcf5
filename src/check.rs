//! `tidelake migrate check`: the deployment's migrations checked before
//! they reach a tenant — each file linted with squawk's rules (those that
//! hold for a database per tenant) and tidelake's own, then every
//! migration applied on a scratch database, and each down migration tried:
//! up, down (the schema must be what it was before up), up again (the
//! schema must be what up made). Each finding has a severity, a category,
//! a rule, the file and line.

use std::path::Path;

use anyhow::{Context, Result};
use model::migrations::{Layout, Migrations};
use oltp_do::engine::EngineSettings;
use oltp_do::scratch::Scratch;
use serde::Serialize;
use squawk_linter::{Linter, Rule};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// `engine` (the engine cannot run it here), `transaction` (cannot run
    /// in the transaction every migration runs in), `compatibility` (breaks
    /// the application's code still running, or the tenants' data),
    /// `down` (a down migration that does not undo its up), `style`.
    pub category: &'static str,
    /// squawk's rule name, or tidelake's (`tidelake/…`).
    pub rule: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// squawk's rules left out: they guard a shared database's concurrent
/// clients from long locks, and a tenant's migration runs alone in its
/// tenant (its requests wait for it) on a small database; or they guard
/// a migration that stops part way, and each runs in one transaction; or
/// they ask for what cannot run in a migration's transaction
/// (`CONCURRENTLY`), or for a COMMIT the migration must not have
/// (tidelake's own rules say so).
const NOT_FOR_TENANTS: &[Rule] = &[
    Rule::RequireLockTimeout,
    Rule::RequireStatementTimeout,
    Rule::PreferRobustStmts,
    Rule::RequireConcurrentIndexCreation,
    Rule::RequireConcurrentIndexDeletion,
    Rule::RequireConcurrentReindex,
    Rule::RequireConcurrentPartitionDetach,
    Rule::ConstraintMissingNotValid,
    Rule::AddingForeignKeyConstraint,
    Rule::DisallowedUniqueConstraint,
    Rule::AddingSerialPrimaryKeyField,
    Rule::PreferRepack,
    Rule::BanUncommittedTransaction,
    Rule::TransactionNesting,
    Rule::BanConcurrentIndexCreationInTransaction,
];

/// What a squawk rule's finding means here.
fn squawk_category(rule: Rule) -> (Severity, &'static str) {
    match rule {
        Rule::PreferBigintOverInt
        | Rule::PreferBigintOverSmallint
        | Rule::PreferIdentity
        | Rule::PreferTextField
        | Rule::PreferTimestampTz
        | Rule::BanCharField
        | Rule::IdentifierTooLong
        | Rule::RequireEnumValueOrdering => (Severity::Warning, "style"),
        _ => (Severity::Warning, "compatibility"),
    }
}

/// Check `set` (read from `dir`): findings of migrations newer than
/// `since` (earlier ones are applied on the scratch database, not judged),
/// most severe first.
pub fn check(dir: &Path, set: &Migrations, engine: &EngineSettings, since: i64) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    for migration in set.list.iter().filter(|m| m.version > since) {
        let file = format!("{}.sql", migration.name);
        let text = std::fs::read_to_string(dir.join(&file)).with_context(|| format!("read {}", dir.join(&file).display()))?;
        findings.extend(lint(&file, &text, true));
        if migration.down.is_some() {
            let down = format!("{}.down.sql", migration.name);
            let text = std::fs::read_to_string(dir.join(&down)).with_context(|| format!("read {}", dir.join(&down).display()))?;
            findings.extend(lint(&down, &text, false));
        } else if set.layout == Layout::Tidelake {
            findings.push(finding(
                Severity::Info,
                "down",
                "tidelake/no-down-migration",
                &file,
                (1, 1),
                format!("{} has no down migration: `migrate down` cannot undo it", migration.name),
                Some(format!("write {}.down.sql", migration.name)),
            ));
        }
    }
    findings.extend(try_on_scratch(dir, set, engine, since)?);
    findings.sort_by(|a, b| (a.severity, &a.file, a.line).cmp(&(b.severity, &b.file, b.line)));
    Ok(findings)
}

fn finding(
    severity: Severity,
    category: &'static str,
    rule: &str,
    file: &str,
    (line, column): (usize, usize),
    message: String,
    help: Option<String>,
) -> Finding {
    Finding { severity, category, rule: rule.to_owned(), file: file.to_owned(), line, column, message, help }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The statements of a file with the byte offset each starts at.
fn statements(text: &str) -> Vec<(usize, &str)> {
    let mut cursor = 0;
    let mut out = Vec::new();
    for statement in model::sql::split(text) {
        let start = text[cursor..].find(statement).map_or(cursor, |at| cursor + at);
        cursor = start + statement.len();
        out.push((start + (statement.len() - model::sql::after_comments(statement).len()), statement));
    }
    out
}

/// squawk's findings (for an up migration) and tidelake's rules.
fn lint(file: &str, text: &str, up: bool) -> Vec<Finding> {
    let mut findings = Vec::new();
    if up {
        let parsed = squawk_syntax::SourceFile::parse(text);
        let mut linter = Linter::with_rules(&[], NOT_FOR_TENANTS);
        linter.settings.assume_in_transaction = true;
        if let Ok(version) = "17".parse() {
            linter.settings.pg_version = version;
        }
        for violation in linter.lint(&parsed, text) {
            let (severity, category) = squawk_category(violation.code);
            findings.push(finding(
                severity,
                category,
                &violation.code.to_string(),
                file,
                line_column(text, usize::from(violation.text_range.start())),
                violation.message,
                violation.help,
            ));
        }
    }
    for (offset, statement) in statements(text) {
        if let Some((category, rule, message, help)) = own_rule(statement) {
            findings.push(finding(Severity::Error, category, rule, file, line_column(text, offset), message, Some(help.to_owned())));
        }
    }
    findings
}

/// tidelake's rules for one statement: what cannot run in the transaction
/// a migration runs in, or in a tenant's session at all.
fn own_rule(statement: &str) -> Option<(&'static str, &'static str, String, &'static str)> {
    let words: Vec<String> =
        model::sql::after_comments(statement).split_whitespace().map(|w| w.trim_end_matches(';').to_ascii_uppercase()).collect();
    let word = |i: usize| words.get(i).map_or("", String::as_str);
    let first_two = format!("{} {}", word(0), word(1));
    if let Some(control) = model::sql::transaction_control(statement) {
        return Some((
            "transaction",
            "tidelake/transaction-control",
            format!("{control}: each migration already runs in its own transaction, which this would end or nest"),
            "remove it: tidelake commits the migration when all its statements succeed, and rolls all back if one fails",
        ));
    }
    let concurrently = words.iter().any(|w| w == "CONCURRENTLY") && word(0) != "REFRESH";
    let outside = ["VACUUM", "CREATE DATABASE", "DROP DATABASE", "CREATE TABLESPACE", "DROP TABLESPACE", "CREATE SUBSCRIPTION", "DROP SUBSCRIPTION"];
    if concurrently || outside.iter().any(|s| first_two.starts_with(s) || word(0) == *s) {
        let what = if concurrently { "CONCURRENTLY" } else { "this statement" };
        return Some((
            "transaction",
            "tidelake/outside-transaction",
            format!("{what} cannot run inside a transaction block, and every migration runs in one"),
            "a tenant's migration runs while its requests wait, so the plain form (without CONCURRENTLY) takes no one's time but the tenant's",
        ));
    }
    let roles = ["CREATE ROLE", "ALTER ROLE", "DROP ROLE", "CREATE USER", "ALTER USER", "DROP USER", "CREATE GROUP", "SET ROLE"];
    let session_authorization = word(0) == "SET" && words.iter().any(|w| w == "AUTHORIZATION");
    if roles.iter().any(|r| first_two == *r) || session_authorization || first_two == "ALTER SYSTEM" || word(0) == "LOAD" {
        return Some((
            "engine",
            "tidelake/tenant-session",
            format!("{first_two}: a tenant's database has one role, its own; a migration runs as it and cannot change roles or the server"),
            "grant to the tenant role nothing: it owns what its migrations make",
        ));
    }
    if words.iter().any(|w| w.starts_with("TIDELAKE.") || w.starts_with("\"TIDELAKE\".")) {
        return Some((
            "engine",
            "tidelake/server-schema",
            "the tidelake schema is the server's (the change log, the migrations record): a migration may not change it".to_owned(),
            "keep the application's objects in public or a schema of its own",
        ));
    }
    None
}

/// Every migration applied on a scratch database, in order, and each down
/// migration of those newer than `since` tried: up, down, up.
fn try_on_scratch(dir: &Path, set: &Migrations, engine: &EngineSettings, since: i64) -> Result<Vec<Finding>> {
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let mut findings = Vec::new();
    let mut scratch = Scratch::new(engine).context("make a scratch database")?;
    for (i, migration) in set.list.iter().enumerate() {
        let file = format!("{}.sql", migration.name);
        let before = scratch.catalog()?;
        if let Err(err) = scratch.run(&migration.up)? {
            findings.push(failed(&file, &read(&file), &migration.up, &err, format!("{} fails on a new tenant's database", migration.name)));
            // Nothing after it can be applied as tenants would.
            return Ok(findings);
        }
        let Some(down) = migration.down.as_ref().filter(|_| migration.version > since) else { continue };
        let after = scratch.catalog()?;
        let down_file = format!("{}.down.sql", migration.name);
        let mut in_step = true;
        match scratch.run(down)? {
            Err(err) => {
                findings.push(failed(&down_file, &read(&down_file), down, &err, format!("the down migration of {} fails right after it", migration.name)));
                // Rolled back: the database is as up left it.
                continue;
            }
            Ok(()) => {
                let undone = scratch.catalog()?;
                if undone != before {
                    findings.push(finding(
                        Severity::Error,
                        "down",
                        "tidelake/down-does-not-undo",
                        &down_file,
                        (1, 1),
                        format!("{} does not undo {}: {}", down_file, file, difference(&before, &undone)),
                        Some("after up then down, the schema must be as it was before up".to_owned()),
                    ));
                    in_step = false;
                }
            }
        }
        // Up again (after a down that did not undo it, that says nothing more).
        if in_step {
            match scratch.run(&migration.up)? {
                Err(err) => {
                    findings.push(failed(
                        &file,
                        &read(&file),
                        &migration.up,
                        &err,
                        format!("{} fails when applied again after its down migration", migration.name),
                    ));
                    in_step = false;
                }
                Ok(()) => {
                    let again = scratch.catalog()?;
                    if again != after {
                        findings.push(finding(
                            Severity::Error,
                            "down",
                            "tidelake/up-after-down-differs",
                            &file,
                            (1, 1),
                            format!("{file} applied again after its down migration gives another schema: {}", difference(&after, &again)),
                            None,
                        ));
                        in_step = false;
                    }
                }
            }
        }
        if !in_step {
            // Go on from where tenants would be: a new scratch database with
            // every migration so far applied once.
            scratch = Scratch::new(engine).context("make a scratch database")?;
            for earlier in &set.list[..=i] {
                if let Err(err) = scratch.run(&earlier.up)? {
                    anyhow::bail!("{} failed on a second scratch database after passing on the first: {}", earlier.name, err.message);
                }
            }
        }
    }
    Ok(findings)
}

/// A migration that failed on the scratch database, at the statement that
/// failed (found in the file's `text`).
fn failed(file: &str, text: &str, statements: &[String], err: &oltp_do::DbError, what: String) -> Finding {
    let statement = err.statement_index.and_then(|i| statements.get(i));
    let (line, column) = statement.and_then(|s| text.find(s.as_str())).map_or((1, 1), |at| line_column(text, at));
    let statement = statement.map(|s| s.lines().next().unwrap_or("").to_owned());
    Finding {
        severity: Severity::Error,
        category: "engine",
        rule: "tidelake/fails".to_owned(),
        file: file.to_owned(),
        line,
        column,
        message: match statement {
            Some(statement) => format!("{what}: SQLSTATE {} {} (at `{statement}`)", err.code, err.message),
            None => format!("{what}: SQLSTATE {} {}", err.code, err.message),
        },
        help: err.hint.clone(),
    }
}

/// What is in one catalog and not the other, briefly.
fn difference(expected: &[String], found: &[String]) -> String {
    let missing: Vec<&String> = expected.iter().filter(|l| !found.contains(l)).collect();
    let extra: Vec<&String> = found.iter().filter(|l| !expected.contains(l)).collect();
    let list = |lines: &[&String]| {
        let shown: Vec<&str> = lines.iter().take(5).map(|l| l.as_str()).collect();
        let more = if lines.len() > 5 { format!(" and {} more", lines.len() - 5) } else { String::new() };
        format!("{}{more}", shown.join("; "))
    };
    match (missing.is_empty(), extra.is_empty()) {
        (false, false) => format!("missing {}; left {}", list(&missing), list(&extra)),
        (false, true) => format!("missing {}", list(&missing)),
        (true, false) => format!("left {}", list(&extra)),
        (true, true) => "the same lines in another order".to_owned(),
    }
}

/// The findings for people: one line each, then a count.
pub fn print(findings: &[Finding], checked: usize) {
    for f in findings {
        let severity = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        println!("{severity}[{}] {}:{}:{}: {} ({})", f.category, f.file, f.line, f.column, f.message, f.rule);
        if let Some(help) = &f.help {
            println!("    help: {help}");
        }
    }
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count();
    println!(
        "{checked} migration{} checked: {} error(s), {} warning(s), {} note(s)",
        if checked == 1 { "" } else { "s" },
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidelakes_rules_name_what_cannot_run_in_a_migration() {
        assert_eq!(own_rule("CREATE INDEX CONCURRENTLY i ON t (a)").map(|r| r.1), Some("tidelake/outside-transaction"));
        assert_eq!(own_rule("-- x\nDROP INDEX CONCURRENTLY i").map(|r| r.1), Some("tidelake/outside-transaction"));
        assert_eq!(own_rule("VACUUM t").map(|r| r.1), Some("tidelake/outside-transaction"));
        assert_eq!(own_rule("REFRESH MATERIALIZED VIEW CONCURRENTLY v"), None);
        assert_eq!(own_rule("COMMIT").map(|r| r.1), Some("tidelake/transaction-control"));
        assert_eq!(own_rule("create role app").map(|r| r.1), Some("tidelake/tenant-session"));
        assert_eq!(own_rule("SET SESSION AUTHORIZATION postgres").map(|r| r.1), Some("tidelake/tenant-session"));
        assert_eq!(own_rule("DELETE FROM tidelake.migrations").map(|r| r.1), Some("tidelake/server-schema"));
        assert_eq!(own_rule("CREATE TABLE t (id int PRIMARY KEY)"), None);
    }

    #[test]
    fn findings_point_at_their_line() {
        let text = "CREATE TABLE a (id int);\n\n-- why\nCREATE INDEX CONCURRENTLY i ON a (id);\n";
        let found = lint("0001_a.sql", text, false);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].line, found[0].column), (4, 1));
        let squawk = lint("0001_a.sql", "ALTER TABLE a DROP COLUMN b;\n", true);
        assert!(squawk.iter().any(|f| f.rule == "ban-drop-column" && f.line == 1), "{squawk:?}");
    }
}
