//! The lake's table format, in one place: the changelog columns and their
//! field ids, and the `tidelake.*` properties and snapshot summary keys
//! that make an Iceberg table a tenant's history (docs/lake.md). Readers
//! (the query service, outside tools) need nothing else of the lake crate
//! to read a table; the older paths (`table::PROP_…`) re-export these.

// The changelog columns every changelog table ends with, and their field ids.

/// Operation of the change: insert, update, delete, truncate or drop.
pub const OP: &str = "_op";
/// The change's LSN in its tenant's change log.
pub const LSN: &str = "_lsn";
/// The PostgreSQL transaction that committed it.
pub const XID: &str = "_xid";
/// When that transaction committed.
pub const COMMIT_TS: &str = "_commit_ts";
/// All four, in table order.
pub const CHANGELOG_COLUMNS: [&str; 4] = [OP, LSN, XID, COMMIT_TS];

/// Field ids proposed for the changelog columns of a new table.
pub const OP_FIELD_ID: i32 = 10001;
pub const LSN_FIELD_ID: i32 = 10002;
pub const XID_FIELD_ID: i32 = 10003;
pub const COMMIT_TS_FIELD_ID: i32 = 10004;
/// Field ids of `_op`, `_lsn`, `_xid`, `_commit_ts`, in that order.
pub const CHANGELOG_FIELD_IDS: [i32; 4] = [OP_FIELD_ID, LSN_FIELD_ID, XID_FIELD_ID, COMMIT_TS_FIELD_ID];

// Changelog tables: properties and snapshot summaries.

pub const PROP_TENANT: &str = "tidelake.tenant";
/// `schema.table`, for people: either part may contain a dot.
pub const PROP_SOURCE: &str = "tidelake.source";
/// The source table's schema and name, exactly (written since the safe
/// lake names; older tables have only `tidelake.source`).
pub const PROP_SOURCE_SCHEMA: &str = "tidelake.source-schema";
pub const PROP_SOURCE_TABLE: &str = "tidelake.source-table";
pub const PROP_TABLE_OID: &str = "tidelake.table-oid";
pub const PROP_SCHEMA_VERSION: &str = "tidelake.schema-version";
pub const PROP_FIELD_IDS: &str = "tidelake.field-ids";
pub const PROP_PRIMARY_KEY: &str = "tidelake.primary-key";
/// Every relation (a table created, dropped and created again under the
/// same name is a new one) that shipped into the table, oldest first:
/// `<first LSN>@<commit time in µs>`, comma-separated. Readers of the state
/// ignore changes of a relation before the one current at their instant.
pub const PROP_RELATIONS: &str = "tidelake.relations";
/// The columns of every schema version shipped, oldest first, as JSON:
/// `[{"version", "lsn", "at", "columns": [[name, field id, Iceberg type], …],
/// "key": [field id, …]}]` (`lsn`: the first LSN the version applies to;
/// `at`: its commit time in µs). Readers answer `AS OF` an instant with
/// the columns of the version in force then, read from their fields.
pub const PROP_COLUMNS: &str = "tidelake.columns";
/// Table property: every change of the source table up to this LSN is in
/// the table (moved by each append, in its commit).
pub const PROP_LSN_TO: &str = "tidelake.lsn-to";
/// Earlier metadata files a changelog table keeps (older ones are removed
/// by the commit that drops them from the metadata log).
pub const PREVIOUS_METADATA_FILES: usize = 10;
pub const SUMMARY_TENANT: &str = "tidelake.tenant";
pub const SUMMARY_LSN_FROM: &str = "tidelake.lsn-from";
pub const SUMMARY_LSN_TO: &str = "tidelake.lsn-to";
pub const SUMMARY_CHANGES: &str = "tidelake.changes";

// Namespaces.

/// Namespace property: every change up to this LSN is in the namespace's tables.
pub const PROP_SHIPPED_LSN: &str = "tidelake.shipped-lsn";

// Checkpoint tables.

/// The suffix of a checkpoint table's name.
pub const CHECKPOINT_SUFFIX: &str = "$checkpoint";
/// Checkpoint table property: the changelog table it checkpoints.
pub const PROP_CHECKPOINT_OF: &str = "tidelake.checkpoint-of";
pub const SUMMARY_CHECKPOINT_LSN: &str = "tidelake.checkpoint-lsn";
pub const SUMMARY_CHECKPOINT_AT: &str = "tidelake.checkpoint-at";
pub const SUMMARY_CHECKPOINT_ROWS: &str = "tidelake.checkpoint-rows";
/// The key's field ids the checkpoint's state is keyed by.
pub const SUMMARY_CHECKPOINT_KEY: &str = "tidelake.checkpoint-key";
/// The changelog's record count when the checkpoint was taken.
pub const SUMMARY_CHECKPOINT_RECORDS: &str = "tidelake.checkpoint-changelog-records";

// Maintenance.

/// Snapshot summary key of maintenance commits: what the commit did.
pub const SUMMARY_MAINTENANCE: &str = "tidelake.maintenance";
