-- Change capture for one tenant database (DESIGN.md §3, §7). Installed into the
-- tenant template, and into older tenants when they are next opened.
-- Idempotent: every object is created if missing or replaced.
--
-- Runs as the bootstrap superuser, which owns everything here. Tenant SQL runs
-- as the ordinary role `tenant`, which owns the tenant's own schemas and what
-- is in them, may read the change log, and can write none of it: capture
-- triggers run as their owner (SECURITY DEFINER), and are marked internal,
-- so the owner of a table can neither disable, replace nor drop them.

SET LOCAL search_path = pg_catalog, pg_temp;

-- The role tenant SQL runs as. An older release ran tenant SQL as the
-- superuser, which may have made this role or granted it others: whatever
-- it was, it is an ordinary role that is a member of none.
DO $do$
DECLARE
    m record;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant') THEN
        CREATE ROLE tenant NOLOGIN;
    END IF;
    ALTER ROLE tenant NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOLOGIN INHERIT;
    FOR m IN
        SELECT r.rolname AS role, g.rolname AS grantor
        FROM pg_auth_members a
        JOIN pg_roles r ON r.oid = a.roleid
        JOIN pg_roles g ON g.oid = a.grantor
        WHERE a.member = 'tenant'::regrole
    LOOP
        EXECUTE format('REVOKE %I FROM tenant GRANTED BY %I', m.role, m.grantor);
    END LOOP;
    EXECUTE format('GRANT CREATE, TEMPORARY ON DATABASE %I TO tenant', current_database());
END
$do$;

CREATE SCHEMA IF NOT EXISTS tidelake;
ALTER SCHEMA tidelake OWNER TO CURRENT_USER;
REVOKE ALL ON SCHEMA tidelake FROM PUBLIC;
GRANT USAGE ON SCHEMA tidelake TO PUBLIC;
-- Functions made here later (each table's capture function) are not
-- callable by others unless granted.
ALTER DEFAULT PRIVILEGES IN SCHEMA tidelake REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

CREATE TABLE IF NOT EXISTS tidelake.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);

-- The change log. `lsn` is gap-free and in commit order: it is assigned as
-- max + 1 inside the writing transaction, and transactions of a tenant run
-- one at a time, so a rolled-back transaction leaves no hole.
CREATE TABLE IF NOT EXISTS tidelake.changes (
    lsn bigint PRIMARY KEY,
    xid bigint NOT NULL,
    schema_version bigint NOT NULL,
    op text NOT NULL CONSTRAINT changes_op_check CHECK (op IN ('insert', 'update', 'delete', 'truncate', 'drop')),
    table_schema text NOT NULL,
    table_name text NOT NULL,
    new_row json,
    old_row json
);

-- A dropped table is a change too (`drop`, since capture version 9).
DO $do$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'tidelake.changes'::regclass
                   AND conname = 'changes_op_check' AND pg_get_constraintdef(oid) LIKE '%drop%') THEN
        ALTER TABLE tidelake.changes DROP CONSTRAINT IF EXISTS changes_op_check;
        ALTER TABLE tidelake.changes ADD CONSTRAINT changes_op_check
            CHECK (op IN ('insert', 'update', 'delete', 'truncate', 'drop')) NOT VALID;
    END IF;
END
$do$;

-- One row per table per schema change: the full column list (with attnum,
-- so renames are told apart from drop + add) and the primary key.
CREATE TABLE IF NOT EXISTS tidelake.schema_versions (
    version bigint PRIMARY KEY,
    lsn bigint NOT NULL,
    xid bigint NOT NULL,
    table_oid oid NOT NULL,
    table_schema text NOT NULL,
    table_name text NOT NULL,
    columns json NOT NULL,
    primary_key json NOT NULL,
    dropped boolean NOT NULL DEFAULT false,
    signature text NOT NULL
);
CREATE INDEX IF NOT EXISTS schema_versions_table ON tidelake.schema_versions (table_oid, version);
-- When a version was committed, for versions a restore carried over from
-- the database it replaced (whose transaction ids mean nothing here); NULL
-- for a version committed in this database (its xid's commit time).
ALTER TABLE tidelake.schema_versions ADD COLUMN IF NOT EXISTS commit_ts timestamptz;

-- Each table's storage as capture last saw it: a DDL statement that
-- rewrites a table (`ALTER COLUMN … TYPE … USING …`, even to the type it
-- had) gives it a new relfilenode, which tells sync_schema its rows may
-- hold other values than the log says.
CREATE TABLE IF NOT EXISTS tidelake.filenodes (
    table_oid oid PRIMARY KEY,
    filenode oid NOT NULL
);

-- Consumers of the change log (the lake shipper) and what they acknowledged.
CREATE TABLE IF NOT EXISTS tidelake.consumers (
    name text PRIMARY KEY,
    acked_lsn bigint NOT NULL,
    acked_at timestamptz NOT NULL DEFAULT now()
);

-- The LSN the next change gets: after the newest in the log, and after the
-- floor a restore left (its log starts afresh above the LSNs the replaced
-- database had used, which readers of the lake already hold).
CREATE OR REPLACE FUNCTION tidelake.next_lsn()
RETURNS bigint LANGUAGE sql STABLE AS $fn$
    SELECT greatest(
        (SELECT coalesce(max(lsn), 0) FROM tidelake.changes),
        (SELECT coalesce(max(value::bigint), 0) FROM tidelake.meta WHERE key = 'lsn_floor')) + 1
$fn$;

-- What a read's answer depends on, for its ETag: the tables it reads (by
-- its plan, the statement not run; partitions count as their root), as a
-- JSON array of [schema, table] — the names the change log records their
-- changes under — sorted; NULL when the answer may change without a write to them —
-- a volatile function (`random()`, `nextval()`, `clock_timestamp()`), a
-- stable one that reads the clock, the server's state or a setting
-- (`now()`, `age(ts)`, `pg_*`, `current_setting`) or is the tenant's own
-- (it may read any table), the time of day (`CURRENT_TIMESTAMP`, …), a
-- write or row lock, or a relation whose changes are not logged (a
-- sequence, the change log itself). Stable built-ins that only depend on
-- the session's fixed settings (`json_agg`, `to_char`) are fine. Functions
-- go by name: one a volatile function shares a name with counts as
-- volatile. Runs as the caller, in the caller's search_path (the
-- statement's names resolve as they did), after the read, in a
-- transaction of its own: a plan it cannot make is an error (the server
-- takes the read as not cacheable). Its answer holds until the catalogs
-- change (the server keeps it so).
CREATE OR REPLACE FUNCTION tidelake.read_tables(query text)
RETURNS json LANGUAGE plpgsql AS $fn$
DECLARE
    plan jsonb;
    texts text;
    tables json;
    logged boolean;
BEGIN
    EXECUTE 'EXPLAIN (GENERIC_PLAN, VERBOSE, FORMAT JSON) ' || query INTO plan;
    IF pg_catalog.jsonb_path_exists(plan, 'strict $.** ? (@."Node Type" == "ModifyTable" || @."Node Type" == "LockRows")') THEN
        RETURN NULL;
    END IF;
    SELECT pg_catalog.string_agg(v #>> '{}', ' ') INTO texts
    FROM pg_catalog.jsonb_path_query(plan, 'strict $.**') v
    WHERE pg_catalog.jsonb_typeof(v) = 'string';
    texts := coalesce(texts, '');
    IF texts ~* '\m(CURRENT_DATE|CURRENT_TIME|CURRENT_TIMESTAMP|LOCALTIME|LOCALTIMESTAMP)\M' THEN
        RETURN NULL;
    END IF;
    IF EXISTS (
        SELECT FROM pg_catalog.regexp_matches(texts, '([A-Za-z_][A-Za-z_0-9$]*)\(', 'g') m
        JOIN pg_catalog.pg_proc p ON p.proname = m[1]
        WHERE p.provolatile = 'v'
           OR (p.provolatile = 's' AND (p.pronamespace <> 'pg_catalog'::pg_catalog.regnamespace
               OR p.proname IN ('now', 'transaction_timestamp', 'statement_timestamp', 'age', 'current_setting')
               OR p.proname LIKE 'pg\_%' OR p.proname LIKE 'txid%'))
    ) THEN
        RETURN NULL;
    END IF;
    WITH rels AS (
        SELECT DISTINCT pg_catalog.to_regclass(pg_catalog.format('%I.%I', r->>'Schema', r->>'Relation Name')) AS rel
        FROM pg_catalog.jsonb_path_query(plan, 'strict $.** ? (exists(@."Relation Name"))') r
    )
    SELECT coalesce(bool_and(c.relkind IN ('r', 'p', 'm') AND n.nspname <> 'tidelake'), true),
           coalesce(pg_catalog.json_agg(DISTINCT pg_catalog.jsonb_build_array(n.nspname, c.relname)), '[]')
    INTO logged, tables
    FROM rels r
    JOIN pg_catalog.pg_class c ON c.oid = coalesce(pg_catalog.pg_partition_root(r.rel), r.rel)
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace;
    RETURN CASE WHEN logged THEN tables END;
END
$fn$;


-- An identifier, always double-quoted: PL/pgSQL treats some words that
-- quote_ident leaves bare (BY, for one) as its own keywords.
CREATE OR REPLACE FUNCTION tidelake.qi(name text)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT '"' || replace(name, '"', '""') || '"'
$fn$;

-- How one column of record `rec` is written into the change log's JSON:
-- JSON-native types as themselves, everything else as PostgreSQL's text form
-- (so numeric keeps every digit and timestamps read as the query API shows them).
CREATE OR REPLACE FUNCTION tidelake.value_expr(rec text, col name, typ oid)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE
        WHEN typ IN (16, 20, 21, 23, 26, 700, 701, 114, 3802)
            THEN rec || '.' || tidelake.qi(col)
        WHEN typ IN (1000, 1016, 1005, 1007, 1028, 1021, 1022, 199, 3807)
            THEN rec || '.' || tidelake.qi(col)
        -- char(n): a cast to text would drop the padding the column keeps.
        WHEN typ = 1042
            THEN format('CASE WHEN %1$s IS NULL THEN NULL ELSE concat(%1$s) END', rec || '.' || tidelake.qi(col))
        WHEN (SELECT t.typcategory = 'A' FROM pg_type t WHERE t.oid = typ)
            THEN rec || '.' || tidelake.qi(col) || '::text[]'
        ELSE rec || '.' || tidelake.qi(col) || '::text'
    END
$fn$;

-- The columns of a table as the change log records them; a column of an
-- extension's type also names the extension (the key is absent otherwise,
-- so the signature of a table without one is what it always was).
CREATE OR REPLACE FUNCTION tidelake.table_columns(rel oid)
RETURNS json LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(json_agg(CASE WHEN x.extname IS NULL THEN json_build_object(
        'name', a.attname,
        'type', format_type(a.atttypid, a.atttypmod),
        'typeOid', a.atttypid::int,
        'attnum', a.attnum,
        'nullable', NOT a.attnotnull) ELSE json_build_object(
        'name', a.attname,
        'type', format_type(a.atttypid, a.atttypmod),
        'typeOid', a.atttypid::int,
        'attnum', a.attnum,
        'nullable', NOT a.attnotnull,
        'extension', x.extname) END ORDER BY a.attnum), '[]'::json)
    FROM pg_attribute a
    LEFT JOIN LATERAL (
        SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
        WHERE d.classid = 'pg_type'::regclass AND d.objid = a.atttypid AND d.deptype = 'e'
        LIMIT 1) x ON true
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$fn$;

CREATE OR REPLACE FUNCTION tidelake.table_primary_key(rel oid)
RETURNS json LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(json_agg(a.attname ORDER BY k.ord), '[]'::json)
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = rel AND i.indisprimary
$fn$;

-- The select list that turns record `rec` of table `rel` into the change
-- log's JSON row (used as `(SELECT row_to_json(tidelake_row.*) FROM (SELECT <list>) tidelake_row)`).
CREATE OR REPLACE FUNCTION tidelake.row_select(rel oid, rec text)
RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(string_agg(
        tidelake.value_expr(rec, a.attname, a.atttypid) || ' AS ' || tidelake.qi(a.attname),
        ', ' ORDER BY a.attnum), '')
    FROM pg_attribute a
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$fn$;

-- An expression giving record `rec` of table `rel` as the change log's JSON
-- row: json_build_object where it fits in one call (100 arguments), else a
-- row_to_json subquery.
CREATE OR REPLACE FUNCTION tidelake.row_json(rel oid, rec text)
RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT CASE
        WHEN count(*) = 0 THEN '''{}''::json'
        WHEN count(*) <= 50 THEN 'json_build_object(' || string_agg(
            quote_literal(a.attname) || ', ' || tidelake.value_expr(rec, a.attname, a.atttypid),
            ', ' ORDER BY a.attnum) || ')'
        ELSE '(SELECT row_to_json(tidelake_row.*) FROM (SELECT ' || tidelake.row_select(rel, rec) || ') tidelake_row)'
    END
    FROM pg_attribute a
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$fn$;

-- Mark (or unmark) table `rel`'s capture triggers as internal: like the
-- triggers behind foreign keys, they are then the database's, not the table
-- owner's. Disabling one (`ALTER TABLE ... DISABLE TRIGGER`, also `ALL` and
-- `ENABLE REPLICA`/`ALWAYS`) needs a superuser, `CREATE OR REPLACE TRIGGER`
-- cannot replace one, and one cannot be dropped while its table exists
-- (its dependency on the table is internal). Partitions' clones too.
CREATE OR REPLACE FUNCTION tidelake.protect_triggers(rel oid, protect boolean)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $fn$
    WITH ours AS (
        SELECT g.oid, g.tgrelid FROM pg_trigger g
        WHERE g.tgname IN ('tidelake_capture', 'tidelake_capture_truncate')
          AND g.tgrelid IN (SELECT rel UNION ALL SELECT p.relid FROM pg_partition_tree(rel) p)
    ), deps AS (
        UPDATE pg_depend d SET deptype = CASE WHEN protect THEN 'i' ELSE 'a' END
        FROM ours
        WHERE d.classid = 'pg_trigger'::regclass AND d.objid = ours.oid
          AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ours.tgrelid AND d.refobjsubid = 0
          AND d.deptype IN ('a', 'i')
        RETURNING 1
    )
    UPDATE pg_trigger g SET tgisinternal = protect FROM ours WHERE g.oid = ours.oid;
$fn$;

-- (Re)write the capture trigger of one table for schema version `version`.
-- The function is generated per table so each row costs one INSERT with
-- precompiled expressions, not dynamic SQL. It runs as its owner with a
-- fixed search path, so nothing the tenant defines is ever resolved in it.
-- The next LSN is carried in a transaction-local setting (rolled back with
-- the rows it numbered), so only a transaction's first change looks up the
-- log's head. Tenant SQL can set that setting too: it is believed only
-- when the change just before it is in the log. Then it is the head + 1
-- (the next LSN) or lower (taken: the primary key refuses the write), so
-- LSNs stay gap-free, in order and never reused whatever it is set to.
CREATE OR REPLACE FUNCTION tidelake.install_capture(rel oid, version bigint)
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    fname text := 'capture_' || rel::text;
    nsp text;
    relname text;
    kind "char";
    leaf record;
    new_row text := tidelake.row_json(rel, 'NEW');
    old_row text := tidelake.row_json(rel, 'OLD');
    key text[] := ARRAY(SELECT tidelake.qi(k) FROM json_array_elements_text(tidelake.table_primary_key(rel)) k);
    key_moved text := 'false';
    body text;
BEGIN
    SELECT n.nspname, c.relname, c.relkind INTO nsp, relname, kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    -- An update that moves a row to another primary key is logged as a
    -- delete of the old key and an insert of the new one, so a reader that
    -- keeps the latest change per key does not keep the old key alive. A
    -- statement's rows are logged in the order they changed, and a key that
    -- is not deferrable is unique after every row, so that order is a
    -- consistent history. A deferrable key may be traded between rows
    -- within one statement: there a row whose old key another row took over
    -- stays an update (that row logs the old key's new state). Whether the
    -- key is deferrable is looked up when a key moves, not when the trigger
    -- is written: re-adding the key as DEFERRABLE in one ALTER TABLE leaves
    -- the table's schema signature as it was, so no new trigger follows.
    IF cardinality(key) > 0 THEN
        key_moved := format(
            'ROW(%s) IS DISTINCT FROM ROW(%s) AND NOT (EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = %s AND contype = ''p'' AND condeferrable) AND EXISTS (SELECT 1 FROM %s AS t WHERE %s))',
            (SELECT string_agg('OLD.' || k, ', ') FROM unnest(key) k),
            (SELECT string_agg('NEW.' || k, ', ') FROM unnest(key) k),
            rel::oid, rel::regclass,
            (SELECT string_agg('t.' || k || ' = OLD.' || k, ' AND ') FROM unnest(key) k));
    END IF;

    -- The body is passed as a quoted literal: identifiers of any spelling
    -- (quotes, dollar signs, dollar-quote tags) cannot end it early.
    body := format($f$
DECLARE
    next_lsn bigint := nullif(current_setting('tidelake.next_lsn', true), '')::bigint;
BEGIN
    IF next_lsn IS NULL
       OR NOT EXISTS (SELECT FROM tidelake.changes WHERE lsn = next_lsn - 1) THEN
        -- The transaction's first change: tell the server it wrote. (The
        -- query of tidelake.next_lsn(), inline: a plan cached with this
        -- function costs a fraction of a SQL function call.)
        SELECT greatest(coalesce(max(c.lsn), 0),
                        coalesce((SELECT m.value::bigint FROM tidelake.meta m WHERE m.key = 'lsn_floor'), 0)) + 1
        INTO next_lsn FROM tidelake.changes c;
        RAISE NOTICE 'tidelake.changes';
    END IF;
    PERFORM set_config('tidelake.next_lsn', (next_lsn + 1)::text, true);
    IF TG_OP = 'INSERT' THEN
        INSERT INTO tidelake.changes VALUES (next_lsn, txid_current(), %s, 'insert', %L, %L, %s, NULL);
    ELSIF TG_OP = 'UPDATE' AND %s THEN
        INSERT INTO tidelake.changes VALUES (next_lsn, txid_current(), %s, 'delete', %L, %L, NULL, %s);
        INSERT INTO tidelake.changes VALUES (next_lsn + 1, txid_current(), %s, 'insert', %L, %L, %s, NULL);
        PERFORM set_config('tidelake.next_lsn', (next_lsn + 2)::text, true);
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO tidelake.changes VALUES (next_lsn, txid_current(), %s, 'update', %L, %L, %s, %s);
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO tidelake.changes VALUES (next_lsn, txid_current(), %s, 'delete', %L, %L, NULL, %s);
    ELSE
        INSERT INTO tidelake.changes VALUES (next_lsn, txid_current(), %s, 'truncate', %L, %L, NULL, NULL);
        -- A truncate's new storage is no schema change.
        PERFORM tidelake.note_storage(TG_RELID);
    END IF;
    RETURN NULL;
END
$f$,
        version, nsp, relname, new_row,
        key_moved,
        version, nsp, relname, old_row,
        version, nsp, relname, new_row,
        version, nsp, relname, new_row, old_row,
        version, nsp, relname, old_row,
        version, nsp, relname);
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION tidelake.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS %L',
        fname, body);
    EXECUTE format('REVOKE ALL ON FUNCTION tidelake.%I() FROM PUBLIC', fname);

    PERFORM tidelake.protect_triggers(rel, false);
    IF kind = 'p' THEN
        -- A table attached as a partition keeps the capture triggers it had
        -- as a table of its own: they make way for clones of the root's.
        FOR leaf IN
            SELECT g.tgname, g.tgrelid FROM pg_partition_tree(rel) p
            JOIN pg_trigger g ON g.tgrelid = p.relid
            WHERE p.relid <> rel AND g.tgparentid = 0
              AND g.tgname IN ('tidelake_capture', 'tidelake_capture_truncate')
        LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', leaf.tgname, leaf.tgrelid::regclass);
        END LOOP;
    END IF;
    EXECUTE format('CREATE OR REPLACE TRIGGER tidelake_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION tidelake.%I()', rel::regclass, fname);
    EXECUTE format('CREATE OR REPLACE TRIGGER tidelake_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION tidelake.%I()', rel::regclass, fname);
    PERFORM tidelake.protect_triggers(rel, true);
END
$fn$;

-- Whether table `rel`'s capture is whole: its triggers (and, for a
-- partitioned table, a clone on every partition) call its capture function,
-- are enabled and are internal.
CREATE OR REPLACE FUNCTION tidelake.capture_in_place(rel oid)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT NOT EXISTS (
        SELECT FROM (SELECT rel AS relid UNION ALL SELECT p.relid FROM pg_partition_tree(rel) p WHERE p.relid <> rel) r
        CROSS JOIN (VALUES ('tidelake_capture'), ('tidelake_capture_truncate')) t(name)
        WHERE NOT (t.name = 'tidelake_capture_truncate' AND r.relid <> rel)
          AND NOT EXISTS (
            SELECT FROM pg_trigger g
            WHERE g.tgrelid = r.relid AND g.tgname = t.name
              AND g.tgfoid = to_regprocedure('tidelake.capture_' || rel::text || '()')
              AND g.tgenabled = 'O' AND g.tgisinternal))
$fn$;

-- The tables capture follows, in oid order: ordinary and partitioned tables
-- (not their partitions), permanent or unlogged (not temporary), outside
-- the system schemas.
CREATE OR REPLACE FUNCTION tidelake.user_tables()
RETURNS TABLE (oid oid, nspname name, relname name) LANGUAGE sql STABLE AS $fn$
    SELECT c.oid, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence IN ('p', 'u')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'tidelake')
      AND n.nspname NOT LIKE 'pg\_%'
    ORDER BY c.oid
$fn$;

-- A table's schema signature: what a new schema version is recorded for.
CREATE OR REPLACE FUNCTION tidelake.signature(nsp name, rel name, cols json, pk json)
RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT md5(nsp || '.' || rel || ' ' || cols::text || ' ' || pk::text)
$fn$;

-- Record every row table `rel` holds as an insert of schema version
-- `version`, at the LSNs after `after`. Returns how many.
CREATE OR REPLACE FUNCTION tidelake.log_rows(rel oid, version bigint, after bigint)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    nsp name;
    relname name;
    added bigint;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    EXECUTE format(
        'INSERT INTO tidelake.changes SELECT %s + row_number() OVER (), txid_current(), %s, ''insert'', %L, %L, (SELECT row_to_json(tidelake_row.*) FROM (SELECT %s) tidelake_row), NULL FROM %s AS src',
        after, version, nsp, relname, tidelake.row_select(rel, 'src'), rel::regclass);
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$fn$;

-- Log table `rel` whole as schema version `version`: a truncate at LSN
-- `at`, then every row it holds after it. Returns how many changes.
CREATE OR REPLACE FUNCTION tidelake.log_table(rel oid, version bigint, at bigint)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    INSERT INTO tidelake.changes
    SELECT at, txid_current(), version, 'truncate', n.nspname, c.relname, NULL, NULL
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    RETURN 1 + tidelake.log_rows(rel, version, at);
END
$fn$;

-- Whether table `rel` holds any row.
CREATE OR REPLACE FUNCTION tidelake.has_rows(rel oid)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    found boolean;
BEGIN
    EXECUTE format('SELECT EXISTS (SELECT FROM %s)', rel::regclass) INTO found;
    RETURN found;
END
$fn$;

-- Record table `rel`'s storage as capture sees it now.
CREATE OR REPLACE FUNCTION tidelake.note_storage(rel oid)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $fn$
    INSERT INTO tidelake.filenodes SELECT c.oid, c.relfilenode FROM pg_class c WHERE c.oid = rel
    ON CONFLICT (table_oid) DO UPDATE SET filenode = excluded.filenode;
$fn$;

-- Whether a schema change of table `rel` (from columns `was` and primary
-- key `was_key` to `cols` and `key`) may have changed the values of rows it
-- holds without any row trigger firing: a column added that holds values
-- (a default, an identity, a generated column), a column whose type
-- changed (a USING expression, a new typmod that rounds or pads), or
-- another primary key (the rows' identity). Dropped and renamed columns
-- change no remaining value. Runs as the superuser inside sync_schema: it
-- reads columns with IS NOT NULL only, so no code of the tenant's runs.
CREATE OR REPLACE FUNCTION tidelake.values_changed(rel oid, was json, was_key json, cols json, key json)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    added text;
    found boolean;
BEGIN
    IF NOT tidelake.has_rows(rel) THEN
        RETURN false;
    END IF;
    -- Keys compared by attnum: renaming a key column keeps the identity.
    IF (SELECT array_agg(c->>'attnum' ORDER BY k.ord) FROM json_array_elements_text(was_key) WITH ORDINALITY k(name, ord)
        JOIN json_array_elements(was) c ON c->>'name' = k.name)
       IS DISTINCT FROM
       (SELECT array_agg(c->>'attnum' ORDER BY k.ord) FROM json_array_elements_text(key) WITH ORDINALITY k(name, ord)
        JOIN json_array_elements(cols) c ON c->>'name' = k.name) THEN
        RETURN true;
    END IF;
    IF EXISTS (SELECT FROM json_array_elements(cols) n JOIN json_array_elements(was) o ON o->>'attnum' = n->>'attnum'
               WHERE o->>'type' <> n->>'type' OR o->>'typeOid' <> n->>'typeOid') THEN
        RETURN true;
    END IF;
    SELECT string_agg(tidelake.qi(n->>'name') || ' IS NOT NULL', ' OR ') INTO added
    FROM json_array_elements(cols) n
    WHERE NOT EXISTS (SELECT FROM json_array_elements(was) o WHERE o->>'attnum' = n->>'attnum');
    IF added IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT FROM %s WHERE %s)', rel::regclass, added) INTO found;
    RETURN found;
END
$fn$;

-- Whether table `rel` holds rows and has other storage than capture last
-- saw (a DDL statement rewrote it). A table capture never saw is not.
CREATE OR REPLACE FUNCTION tidelake.rewritten(rel oid)
RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    -- The table is looked into only once its storage changed.
    IF NOT EXISTS (SELECT FROM tidelake.filenodes f JOIN pg_class c ON c.oid = f.table_oid
                   WHERE f.table_oid = rel AND c.relfilenode <> f.filenode AND c.relfilenode <> 0) THEN
        RETURN false;
    END IF;
    RETURN tidelake.has_rows(rel);
END
$fn$;

-- A digest of everything capture depends on (user tables, their columns and
-- primary keys). Plain SQL, so checking it when a tenant opens is cheap;
-- sync_schema() stores the digest it brought the triggers in step with.
CREATE OR REPLACE FUNCTION tidelake.schema_fingerprint()
RETURNS text LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT md5(coalesce(string_agg(
        t.oid::text || ' ' || t.nspname || '.' || t.relname || ' ' ||
        tidelake.table_columns(t.oid)::text || ' ' || tidelake.table_primary_key(t.oid)::text || ' ' ||
        (SELECT string_agg(p.relid::text, ',' ORDER BY p.relid) FROM pg_partition_tree(t.oid) p),
        ';' ORDER BY t.oid), ''))
    FROM tidelake.user_tables() t
$fn$;

-- Compare every user table with its latest recorded schema version; record
-- a new version (and rewrite the trigger) where anything changed, and a
-- `dropped` version for tables that are gone. A table seen for the first
-- time that already holds rows (CREATE TABLE AS, SELECT INTO, or a tenant
-- that predates capture) has them recorded as inserts, so the log always
-- adds up to the table. A table whose capture is not whole (a partition
-- attached since) has its trigger rewritten at its version. Runs inside the
-- caller's transaction: a rolled-back DDL leaves no version behind. Runs as
-- its owner (tenant SQL may call it; it only does what the server would).
-- Returns how many versions were recorded.
CREATE OR REPLACE FUNCTION tidelake.sync_schema()
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    t record;
    gone record;
    cols json;
    pk json;
    sig text;
    last_sig text;
    last_dropped boolean;
    last_version bigint;
    last_cols json;
    last_pk json;
    v bigint;
    next_lsn bigint;
    added bigint;
    recorded integer := 0;
BEGIN
    -- A capture trigger goes by its name: renaming one is refused.
    FOR t IN
        SELECT g.tgname, g.tgrelid FROM pg_trigger g JOIN pg_proc p ON p.oid = g.tgfoid
        WHERE p.pronamespace = 'tidelake'::regnamespace AND p.proname LIKE 'capture\_%'
          AND g.tgname NOT IN ('tidelake_capture', 'tidelake_capture_truncate')
    LOOP
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('permission denied: trigger %I on %s is the table''s change capture and cannot be renamed',
                             t.tgname, t.tgrelid::regclass);
    END LOOP;
    -- An extension's script runs as the owner: none may put its objects in
    -- the schemas PostgreSQL and capture resolve their own names in
    -- (PostgreSQL checks the schema for ALTER EXTENSION … SET SCHEMA, not
    -- for a trusted extension's CREATE).
    FOR t IN
        SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname <> 'plpgsql' AND (n.nspname IN ('pg_catalog', 'information_schema', 'tidelake') OR n.nspname LIKE 'pg\_%')
    LOOP
        RAISE EXCEPTION USING ERRCODE = '42501',
            MESSAGE = format('permission denied to create extension %I in schema %I: create it in a schema of the tenant''s (public by default)',
                             t.extname, t.nspname);
    END LOOP;
    FOR t IN
        SELECT * FROM tidelake.user_tables()
    LOOP
        cols := tidelake.table_columns(t.oid);
        pk := tidelake.table_primary_key(t.oid);
        sig := tidelake.signature(t.nspname, t.relname, cols, pk);
        last_sig := NULL;
        last_dropped := NULL;
        SELECT s.signature, s.dropped, s.version, s.columns, s.primary_key
        INTO last_sig, last_dropped, last_version, last_cols, last_pk
        FROM tidelake.schema_versions s
        WHERE s.table_oid = t.oid ORDER BY s.version DESC LIMIT 1;
        IF last_sig = sig AND NOT last_dropped THEN
            IF NOT tidelake.capture_in_place(t.oid) THEN
                PERFORM tidelake.install_capture(t.oid, last_version);
            END IF;
            -- Rewritten with the same columns (a type changed to itself
            -- USING an expression): the rows as they are now.
            IF tidelake.rewritten(t.oid) THEN
                next_lsn := tidelake.next_lsn();
                added := tidelake.log_table(t.oid, last_version, next_lsn);
                PERFORM set_config('tidelake.next_lsn', (next_lsn + added)::text, true);
                RAISE NOTICE 'tidelake.changes';
            END IF;
        END IF;
        IF last_sig IS NULL OR last_dropped OR last_sig <> sig THEN
            next_lsn := tidelake.next_lsn();
            SELECT coalesce(max(version), 0) + 1 INTO v FROM tidelake.schema_versions;
            INSERT INTO tidelake.schema_versions
            VALUES (v, next_lsn, txid_current(), t.oid, t.nspname, t.relname, cols, pk, false, sig);
            PERFORM tidelake.install_capture(t.oid, v);
            recorded := recorded + 1;
            IF last_sig IS NULL THEN
                added := tidelake.log_rows(t.oid, v, next_lsn - 1);
            ELSIF NOT last_dropped AND (tidelake.rewritten(t.oid) OR tidelake.values_changed(t.oid, last_cols, last_pk, cols, pk)) THEN
                -- The rows as the change left them, as a truncate and every
                -- row: the history equals the table from this LSN on.
                added := tidelake.log_table(t.oid, v, next_lsn);
            ELSE
                added := 0;
            END IF;
            IF added > 0 THEN
                PERFORM set_config('tidelake.next_lsn', (next_lsn + added)::text, true);
                RAISE NOTICE 'tidelake.changes';
            END IF;
        END IF;
        PERFORM tidelake.note_storage(t.oid);
    END LOOP;

    FOR gone IN
        SELECT DISTINCT ON (s.table_oid) s.*
        FROM tidelake.schema_versions s
        ORDER BY s.table_oid, s.version DESC
    LOOP
        IF NOT gone.dropped AND NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = gone.table_oid) THEN
            next_lsn := tidelake.next_lsn();
            SELECT coalesce(max(version), 0) + 1 INTO v FROM tidelake.schema_versions;
            INSERT INTO tidelake.schema_versions
            VALUES (v, next_lsn, txid_current(), gone.table_oid, gone.table_schema, gone.table_name,
                    gone.columns, gone.primary_key, true, 'dropped');
            -- The drop is a change: the table holds nothing from here on.
            INSERT INTO tidelake.changes
            VALUES (next_lsn, txid_current(), v, 'drop', gone.table_schema, gone.table_name, NULL, NULL);
            PERFORM set_config('tidelake.next_lsn', (next_lsn + 1)::text, true);
            RAISE NOTICE 'tidelake.changes';
            EXECUTE format('DROP FUNCTION IF EXISTS tidelake.%I()', 'capture_' || gone.table_oid::text);
            DELETE FROM tidelake.filenodes WHERE table_oid = gone.table_oid;
            recorded := recorded + 1;
        END IF;
    END LOOP;
    INSERT INTO tidelake.meta VALUES ('schema_fingerprint', tidelake.schema_fingerprint())
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    RETURN recorded;
END
$fn$;

-- How table `rel` differs from the rows a replaced database ended with:
-- `entries` is `[{"key": {...}, "head": row | null}]`, every key the
-- replaced database's changes since the restored instant touched, with the
-- row it held at its head (null: none). One row per key that differs, in
-- order: `op` insert, update or delete, `now` the row here (null for a
-- delete), `head` the head's row as this table's own types write it.
-- Runs as the table's owner (the server calls it in the tenant's session):
-- reading rows back through the table's types runs the tenant's domain
-- checks, which must never run as the superuser.
DROP FUNCTION IF EXISTS tidelake.log_diff(oid, bigint, bigint, json);
CREATE OR REPLACE FUNCTION tidelake.diff_rows(rel oid, entries json)
RETURNS TABLE (ord bigint, op text, "now" json, head json)
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    matches text := (SELECT string_agg('x.' || tidelake.qi(k) || ' = k.' || tidelake.qi(k), ' AND ')
                     FROM json_array_elements_text(tidelake.table_primary_key(rel)) k);
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT d.ord, d.op,
               CASE WHEN d.op = 'delete' THEN NULL ELSE d.now END,
               CASE WHEN d.op = 'insert' THEN NULL ELSE d.head END
        FROM (
            SELECT e.ord, h.head, t.row AS now,
                   CASE WHEN t.row IS NULL THEN 'delete' WHEN h.head IS NULL THEN 'insert' ELSE 'update' END AS op
            FROM json_array_elements($1) WITH ORDINALITY AS e(item, ord)
            -- The head's row as this table's own types write it (whatever
            -- form its values came in), so equal rows compare equal.
            LEFT JOIN LATERAL (SELECT %1$s AS head
                               FROM json_populate_record(NULL::%3$s, CASE WHEN json_typeof(e.item->'head') = 'object' THEN e.item->'head' END) AS x
                               WHERE json_typeof(e.item->'head') = 'object') AS h ON true
            CROSS JOIN LATERAL json_populate_record(NULL::%3$s, e.item->'key') AS k
            LEFT JOIN LATERAL (SELECT %1$s AS row FROM %3$s AS x WHERE %2$s) AS t ON true
        ) AS d
        WHERE NOT (d.now IS NULL AND d.head IS NULL)
          AND NOT (d.now IS NOT NULL AND d.head IS NOT NULL AND d.now::jsonb = d.head::jsonb)
        ORDER BY d.ord
    $q$, tidelake.row_json(rel, 'x'), matches, rel::regclass)
    USING entries;
END
$fn$;

-- Log rows `diff_rows` found for table `rel` (`[{"op":…, "now":…, "head":…}]`,
-- in order) as changes of schema version `version` at the LSNs after
-- `after`. Returns how many.
CREATE OR REPLACE FUNCTION tidelake.log_diff(rel oid, version bigint, after bigint, rows json)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    nsp name;
    relname name;
    added bigint;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    INSERT INTO tidelake.changes
    SELECT after + r.ord, txid_current(), version, r.item->>'op', nsp, relname, r.item->'now', r.item->'head'
    FROM json_array_elements(rows) WITH ORDINALITY AS r(item, ord);
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$fn$;

-- After a restore: start the change log afresh above `lsn_floor`, as if
-- every table had just been created holding its rows. `versions` are the
-- schema versions to keep (the replaced database's, for a restore in place;
-- none for a new branch), so version numbers are never reused and tables
-- the restore took away are recorded as dropped. Every table gets a new
-- version above them and, above a floor, a truncate before its rows, so a
-- reader of the lake sees the restored state from the first LSN after the
-- floor and the old history before it. A table `diff` names (keyed
-- `"schema"."table"`, rows as `diff_rows` gives them) whose schema is
-- still its newest version logs only its differences instead, under that
-- version. Returns the new head.
DROP FUNCTION IF EXISTS tidelake.rebase(bigint, json);
CREATE OR REPLACE FUNCTION tidelake.rebase(lsn_floor bigint, versions json, diff json)
RETURNS bigint LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    t record;
    v bigint;
    cols json;
    pk json;
    entries json;
    newest record;
    next_lsn bigint := lsn_floor + 1;
BEGIN
    DELETE FROM tidelake.changes;
    DELETE FROM tidelake.schema_versions;
    -- Acknowledgements were of the old log's LSNs.
    DELETE FROM tidelake.consumers;
    INSERT INTO tidelake.schema_versions
    SELECT * FROM json_populate_recordset(NULL::tidelake.schema_versions, versions);
    INSERT INTO tidelake.meta VALUES ('lsn_floor', lsn_floor::text)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    FOR t IN
        SELECT * FROM tidelake.user_tables()
    LOOP
        cols := tidelake.table_columns(t.oid);
        pk := tidelake.table_primary_key(t.oid);
        entries := diff -> (tidelake.qi(t.nspname) || '.' || tidelake.qi(t.relname));
        IF entries IS NOT NULL AND json_array_length(pk) > 0 THEN
            SELECT s.version, s.signature, s.dropped INTO newest
            FROM tidelake.schema_versions s WHERE s.table_oid = t.oid ORDER BY s.version DESC LIMIT 1;
            IF FOUND AND NOT newest.dropped AND newest.signature = tidelake.signature(t.nspname, t.relname, cols, pk) THEN
                PERFORM tidelake.install_capture(t.oid, newest.version);
                next_lsn := next_lsn + tidelake.log_diff(t.oid, newest.version, next_lsn - 1, entries);
                CONTINUE;
            END IF;
        END IF;
        SELECT coalesce(max(version), 0) + 1 INTO v FROM tidelake.schema_versions;
        INSERT INTO tidelake.schema_versions
        VALUES (v, next_lsn, txid_current(), t.oid, t.nspname, t.relname, cols, pk, false,
                tidelake.signature(t.nspname, t.relname, cols, pk));
        PERFORM tidelake.install_capture(t.oid, v);
        IF lsn_floor > 0 THEN
            next_lsn := next_lsn + tidelake.log_table(t.oid, v, next_lsn);
        ELSE
            next_lsn := next_lsn + tidelake.log_rows(t.oid, v, next_lsn - 1);
        END IF;
    END LOOP;
    -- Every table was just logged as it is (the replay rewrote some).
    PERFORM tidelake.note_storage(u.oid) FROM tidelake.user_tables() u;
    -- Tables of `versions` that no longer exist are recorded as dropped.
    PERFORM tidelake.sync_schema();
    RETURN tidelake.next_lsn() - 1;
END
$fn$;

-- After a replay (which writes rows, not sequences): move every sequence a
-- column owns (serial, identity) up to the column's largest value, so the
-- next default does not collide with a replayed row. Never moves one down.
CREATE OR REPLACE FUNCTION tidelake.advance_sequences()
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r record;
    largest bigint;
    current bigint;
BEGIN
    FOR r IN
        SELECT s.oid::regclass AS seq, c.oid::regclass AS tbl, a.attname
        FROM pg_class s
        JOIN pg_sequence q ON q.seqrelid = s.oid
        JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass
                        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
        JOIN pg_class c ON c.oid = d.refobjid
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.refobjsubid
        WHERE s.relkind = 'S' AND q.seqincrement > 0
    LOOP
        EXECUTE format('SELECT max(%I)::bigint FROM %s', r.attname, r.tbl) INTO largest;
        EXECUTE format('SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM %s', r.seq) INTO current;
        IF largest IS NOT NULL AND largest > current THEN
            PERFORM setval(r.seq, largest);
        END IF;
    END LOOP;
END
$fn$;

-- Rewrite every table's trigger at its current version (after an upgrade
-- of this file changed how triggers are written).
CREATE OR REPLACE FUNCTION tidelake.reinstall_all()
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT tidelake.install_capture(s.table_oid, s.version)
    FROM (SELECT DISTINCT ON (table_oid) table_oid, version, dropped
          FROM tidelake.schema_versions ORDER BY table_oid, version DESC) s
    WHERE NOT s.dropped AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.table_oid)
$fn$;

-- What the server reads of the change log, as functions with a fixed search
-- path that run as their owner: nothing the tenant defines (an operator, a
-- function, a setting) can change what the server reads of its history.
DROP FUNCTION IF EXISTS tidelake.read_changes(bigint, bigint);
CREATE FUNCTION tidelake.read_changes(since bigint, lim bigint)
RETURNS TABLE (lsn bigint, xid bigint, "commitTs" timestamptz, "schemaVersion" bigint, op text,
               "schema" text, "table" text, "new" json, "old" json)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT c.lsn, c.xid, pg_xact_commit_timestamp((c.xid % 4294967296)::text::xid), c.schema_version,
           c.op, c.table_schema, c.table_name, c.new_row, c.old_row
    FROM tidelake.changes c WHERE c.lsn > since ORDER BY c.lsn LIMIT lim
$fn$;

CREATE OR REPLACE FUNCTION tidelake.log_stats(OUT head bigint, OUT tail bigint, OUT bytes bigint, OUT acked bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT coalesce(max(c.lsn), 0), coalesce(min(c.lsn), 0), pg_total_relation_size('tidelake.changes'),
           (SELECT coalesce(min(k.acked_lsn), 0) FROM tidelake.consumers k)
    FROM tidelake.changes c
$fn$;

-- The newest LSN committed at or before `at`, the log's tail, whether the
-- tail is at or before `at`, and the floor a restore left.
CREATE OR REPLACE FUNCTION tidelake.lsn_at(at timestamptz, OUT lsn bigint, OUT tail bigint, OUT "tailBefore" boolean, OUT floor bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT coalesce((SELECT max(c.lsn) FROM tidelake.changes c
                     WHERE pg_xact_commit_timestamp((c.xid % 4294967296)::text::xid) <= at), 0),
           coalesce((SELECT min(c.lsn) FROM tidelake.changes c), 0),
           (SELECT pg_xact_commit_timestamp((c.xid % 4294967296)::text::xid) <= at
            FROM tidelake.changes c ORDER BY c.lsn LIMIT 1),
           coalesce((SELECT max(m.value::bigint) FROM tidelake.meta m WHERE m.key = 'lsn_floor'), 0)
$fn$;

-- Whether the change at `at_lsn` committed more than `secs` seconds ago.
CREATE OR REPLACE FUNCTION tidelake.older_than(at_lsn bigint, secs float8)
RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT coalesce(pg_xact_commit_timestamp((c.xid % 4294967296)::text::xid), '-infinity') < now() - make_interval(secs => secs)
    FROM tidelake.changes c WHERE c.lsn = at_lsn
$fn$;

CREATE OR REPLACE FUNCTION tidelake.schema_history()
RETURNS TABLE (version bigint, lsn bigint, "tableOid" oid, "schema" text, "table" text, columns json,
               "primaryKey" json, dropped boolean, "commitTs" timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT s.version, s.lsn, s.table_oid, s.table_schema, s.table_name, s.columns, s.primary_key, s.dropped,
           coalesce(s.commit_ts, pg_xact_commit_timestamp((s.xid % 4294967296)::text::xid))
    FROM tidelake.schema_versions s ORDER BY s.version
$fn$;

-- The schemas that are the tenant's: everything but the system's and ours.
CREATE OR REPLACE FUNCTION tidelake.is_tenant_schema(nsp name)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$
    SELECT nsp NOT IN ('pg_catalog', 'information_schema', 'tidelake', 'pg_toast') AND nsp NOT LIKE 'pg\_temp\_%'
           AND nsp NOT LIKE 'pg\_toast\_temp\_%'
$fn$;

-- Give the tenant role what is the tenant's: its schemas and every object in
-- them that an older release (which ran tenant SQL as the superuser) left
-- owned by someone else. Objects of extensions stay with their extension.
CREATE OR REPLACE FUNCTION tidelake.adopt_objects()
RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    r record;
    owner oid := 'tenant'::regrole;
BEGIN
    FOR r IN SELECT n.nspname FROM pg_namespace n WHERE tidelake.is_tenant_schema(n.nspname) AND n.nspowner <> owner
    LOOP
        EXECUTE format('ALTER SCHEMA %I OWNER TO tenant', r.nspname);
    END LOOP;
    FOR r IN
        SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE tidelake.is_tenant_schema(n.nspname) AND c.relowner <> owner
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
          -- a column's sequence follows its table
          AND NOT (c.relkind = 'S' AND EXISTS (
              SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')))
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
        ORDER BY c.oid
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO tenant',
            CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE'
                           WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
            r.oid::regclass);
    END LOOP;
    FOR r IN
        SELECT p.oid, p.prokind FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE tidelake.is_tenant_schema(n.nspname) AND p.proowner <> owner
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO tenant',
            CASE r.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
            r.oid::regprocedure);
    END LOOP;
    FOR r IN
        SELECT t.oid, t.typtype FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE tidelake.is_tenant_schema(n.nspname) AND t.typowner <> owner
          AND (t.typtype IN ('d', 'e', 'r') OR (t.typtype = 'c' AND (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c'))
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO tenant', CASE r.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, r.oid::regtype);
    END LOOP;
    FOR r IN
        SELECT s.oid FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
        WHERE tidelake.is_tenant_schema(n.nspname) AND s.stxowner <> owner
    LOOP
        EXECUTE format('ALTER STATISTICS %I.%I OWNER TO tenant',
            (SELECT n.nspname FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE s.oid = r.oid),
            (SELECT s.stxname FROM pg_statistic_ext s WHERE s.oid = r.oid));
    END LOOP;
    FOR r IN SELECT m.oid FROM pg_largeobject_metadata m WHERE m.lomowner <> owner
    LOOP
        EXECUTE format('ALTER LARGE OBJECT %s OWNER TO tenant', r.oid);
    END LOOP;
END
$fn$;
SELECT tidelake.adopt_objects();

-- Nothing but capture writes the change log: triggers and rules an older
-- release let tenant SQL put on our tables are removed.
DO $do$
DECLARE
    r record;
BEGIN
    FOR r IN
        SELECT g.tgname, g.tgrelid FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
        WHERE c.relnamespace = 'tidelake'::regnamespace AND NOT g.tgisinternal
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.tgrelid::regclass);
    END LOOP;
    FOR r IN
        SELECT w.rulename, w.ev_class FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
        WHERE c.relnamespace = 'tidelake'::regnamespace AND c.relkind = 'r'
    LOOP
        EXECUTE format('DROP RULE %I ON %s', r.rulename, r.ev_class::regclass);
    END LOOP;
END
$do$;
ALTER TABLE tidelake.meta OWNER TO CURRENT_USER;
ALTER TABLE tidelake.changes OWNER TO CURRENT_USER;
ALTER TABLE tidelake.schema_versions OWNER TO CURRENT_USER;
ALTER TABLE tidelake.consumers OWNER TO CURRENT_USER;
ALTER TABLE tidelake.filenodes OWNER TO CURRENT_USER;
ALTER TABLE tidelake.meta DISABLE ROW LEVEL SECURITY;
ALTER TABLE tidelake.changes DISABLE ROW LEVEL SECURITY;
ALTER TABLE tidelake.schema_versions DISABLE ROW LEVEL SECURITY;
ALTER TABLE tidelake.consumers DISABLE ROW LEVEL SECURITY;
ALTER TABLE tidelake.filenodes DISABLE ROW LEVEL SECURITY;

-- The tenant may read its history; only capture (and the server) write it.
REVOKE ALL ON ALL TABLES IN SCHEMA tidelake FROM PUBLIC, tenant;
GRANT SELECT ON ALL TABLES IN SCHEMA tidelake TO PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA tidelake FROM PUBLIC, tenant;
GRANT EXECUTE ON FUNCTION tidelake.sync_schema(), tidelake.next_lsn(), tidelake.read_changes(bigint, bigint),
    tidelake.log_stats(), tidelake.lsn_at(timestamptz), tidelake.schema_history(),
    -- what the server computes in the tenant's session during a restore
    tidelake.diff_rows(oid, json), tidelake.row_json(oid, text), tidelake.row_select(oid, text),
    tidelake.value_expr(text, name, oid), tidelake.qi(text), tidelake.table_primary_key(oid),
    tidelake.advance_sequences(), tidelake.read_tables(text)
    TO PUBLIC;

-- (With capture on, the server then runs `SELECT tidelake.reinstall_all();
-- SELECT tidelake.sync_schema()`: see `capture.rs`.)
INSERT INTO tidelake.meta VALUES ('capture_version', '12')
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
