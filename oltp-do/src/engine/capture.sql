-- Change capture for one tenant database (DESIGN.md §3). Installed into the
-- tenant template, and into older tenants when they are next opened.
-- Idempotent: every object is created if missing or replaced.

CREATE SCHEMA IF NOT EXISTS tidelake;

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
    op text NOT NULL CHECK (op IN ('insert', 'update', 'delete', 'truncate')),
    table_schema text NOT NULL,
    table_name text NOT NULL,
    new_row json,
    old_row json
);

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

-- The columns of a table as the change log records them.
CREATE OR REPLACE FUNCTION tidelake.table_columns(rel oid)
RETURNS json LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(json_agg(json_build_object(
        'name', a.attname,
        'type', format_type(a.atttypid, a.atttypmod),
        'typeOid', a.atttypid::int,
        'attnum', a.attnum,
        'nullable', NOT a.attnotnull) ORDER BY a.attnum), '[]'::json)
    FROM pg_attribute a
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
-- log's JSON row (used as `(SELECT row_to_json(r) FROM (SELECT <list>) r)`).
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
        ELSE '(SELECT row_to_json(r) FROM (SELECT ' || tidelake.row_select(rel, rec) || ') r)'
    END
    FROM pg_attribute a
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$fn$;

-- (Re)write the capture trigger of one table for schema version `version`.
-- The function is generated per table so each row costs one INSERT with
-- precompiled expressions, not dynamic SQL. The next LSN is carried in a
-- transaction-local setting (rolled back with the rows it numbered), so
-- only a transaction's first change looks up the log's head.
CREATE OR REPLACE FUNCTION tidelake.install_capture(rel oid, version bigint)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    fname text := 'capture_' || rel::text;
    nsp text;
    relname text;
    new_row text := tidelake.row_json(rel, 'NEW');
    old_row text := tidelake.row_json(rel, 'OLD');
    key text[] := ARRAY(SELECT tidelake.qi(k) FROM json_array_elements_text(tidelake.table_primary_key(rel)) k);
    key_moved text := 'false';
BEGIN
    SELECT n.nspname, c.relname INTO nsp, relname
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

    EXECUTE format($f$
CREATE OR REPLACE FUNCTION tidelake.%I() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
    next_lsn bigint := nullif(current_setting('tidelake.next_lsn', true), '')::bigint;
BEGIN
    IF next_lsn IS NULL THEN
        -- The transaction's first change: tell the server it wrote.
        next_lsn := tidelake.next_lsn();
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
    END IF;
    RETURN NULL;
END
$body$
$f$, fname,
        version, nsp, relname, new_row,
        key_moved,
        version, nsp, relname, old_row,
        version, nsp, relname, new_row,
        version, nsp, relname, new_row, old_row,
        version, nsp, relname, old_row,
        version, nsp, relname);

    EXECUTE format('CREATE OR REPLACE TRIGGER tidelake_capture AFTER INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION tidelake.%I()', rel::regclass, fname);
    EXECUTE format('CREATE OR REPLACE TRIGGER tidelake_capture_truncate AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION tidelake.%I()', rel::regclass, fname);
END
$fn$;

-- The tables capture follows, in oid order: ordinary and partitioned tables
-- (not their partitions), permanent, outside the system schemas.
CREATE OR REPLACE FUNCTION tidelake.user_tables()
RETURNS TABLE (oid oid, nspname name, relname name) LANGUAGE sql STABLE AS $fn$
    SELECT c.oid, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence = 'p'
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
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    nsp name;
    relname name;
    added bigint;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    EXECUTE format(
        'INSERT INTO tidelake.changes SELECT %s + row_number() OVER (), txid_current(), %s, ''insert'', %L, %L, (SELECT row_to_json(r) FROM (SELECT %s) r), NULL FROM %s AS src',
        after, version, nsp, relname, tidelake.row_select(rel, 'src'), rel::regclass);
    GET DIAGNOSTICS added = ROW_COUNT;
    RETURN added;
END
$fn$;

-- A digest of everything capture depends on (user tables, their columns and
-- primary keys). Plain SQL, so checking it when a tenant opens is cheap;
-- sync_schema() stores the digest it brought the triggers in step with.
CREATE OR REPLACE FUNCTION tidelake.schema_fingerprint()
RETURNS text LANGUAGE sql STABLE AS $fn$
    SELECT md5(coalesce(string_agg(
        t.oid::text || ' ' || t.nspname || '.' || t.relname || ' ' ||
        tidelake.table_columns(t.oid)::text || ' ' || tidelake.table_primary_key(t.oid)::text,
        ';' ORDER BY t.oid), ''))
    FROM tidelake.user_tables() t
$fn$;

-- Compare every user table with its latest recorded schema version; record
-- a new version (and rewrite the trigger) where anything changed, and a
-- `dropped` version for tables that are gone. A table seen for the first
-- time that already holds rows (CREATE TABLE AS, SELECT INTO, or a tenant
-- that predates capture) has them recorded as inserts, so the log always
-- adds up to the table. Runs inside the caller's transaction: a rolled-back
-- DDL leaves no version behind. Returns how many versions were recorded.
CREATE OR REPLACE FUNCTION tidelake.sync_schema()
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    t record;
    gone record;
    cols json;
    pk json;
    sig text;
    last_sig text;
    last_dropped boolean;
    v bigint;
    next_lsn bigint;
    added bigint;
    recorded integer := 0;
BEGIN
    FOR t IN
        SELECT * FROM tidelake.user_tables()
    LOOP
        cols := tidelake.table_columns(t.oid);
        pk := tidelake.table_primary_key(t.oid);
        sig := tidelake.signature(t.nspname, t.relname, cols, pk);
        last_sig := NULL;
        last_dropped := NULL;
        SELECT s.signature, s.dropped INTO last_sig, last_dropped
        FROM tidelake.schema_versions s
        WHERE s.table_oid = t.oid ORDER BY s.version DESC LIMIT 1;
        IF last_sig IS NULL OR last_dropped OR last_sig <> sig THEN
            next_lsn := tidelake.next_lsn();
            SELECT coalesce(max(version), 0) + 1 INTO v FROM tidelake.schema_versions;
            INSERT INTO tidelake.schema_versions
            VALUES (v, next_lsn, txid_current(), t.oid, t.nspname, t.relname, cols, pk, false, sig);
            PERFORM tidelake.install_capture(t.oid, v);
            recorded := recorded + 1;
            IF last_sig IS NULL THEN
                added := tidelake.log_rows(t.oid, v, next_lsn - 1);
                IF added > 0 THEN
                    PERFORM set_config('tidelake.next_lsn', (next_lsn + added)::text, true);
                    RAISE NOTICE 'tidelake.changes';
                END IF;
            END IF;
        END IF;
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
            EXECUTE format('DROP FUNCTION IF EXISTS tidelake.%I()', 'capture_' || gone.table_oid::text);
            recorded := recorded + 1;
        END IF;
    END LOOP;
    INSERT INTO tidelake.meta VALUES ('schema_fingerprint', tidelake.schema_fingerprint())
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
    RETURN recorded;
END
$fn$;

-- Record how table `rel` differs from the rows a replaced database ended
-- with, as changes of schema version `version` at the LSNs after `after`.
-- `entries`: `[{"key": {...}, "head": row | null}]`, every key the replaced
-- database's changes since the restored instant touched, with the row it
-- held at its head (null: none). Each key logs an insert, an update or a
-- delete (old rows: the head's), or nothing where the rows are equal.
-- Returns how many changes it logged.
CREATE OR REPLACE FUNCTION tidelake.log_diff(rel oid, version bigint, after bigint, entries json)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
    nsp name;
    relname name;
    added bigint;
    matches text := (SELECT string_agg('x.' || tidelake.qi(k) || ' = k.' || tidelake.qi(k), ' AND ')
                     FROM json_array_elements_text(tidelake.table_primary_key(rel)) k);
BEGIN
    SELECT n.nspname, c.relname INTO nsp, relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    EXECUTE format($q$
        INSERT INTO tidelake.changes
        SELECT $2 + row_number() OVER (ORDER BY d.ord), txid_current(), $3, d.op, %1$L, %2$L,
               CASE WHEN d.op = 'delete' THEN NULL ELSE d.now END,
               CASE WHEN d.op = 'insert' THEN NULL ELSE d.head END
        FROM (
            SELECT e.ord, h.head, t.row AS now,
                   CASE WHEN t.row IS NULL THEN 'delete' WHEN h.head IS NULL THEN 'insert' ELSE 'update' END AS op
            FROM json_array_elements($1) WITH ORDINALITY AS e(item, ord)
            -- The head's row as this table's own types write it (whatever
            -- form its values came in), so equal rows compare equal.
            LEFT JOIN LATERAL (SELECT %3$s AS head
                               FROM json_populate_record(NULL::%5$s, CASE WHEN json_typeof(e.item->'head') = 'object' THEN e.item->'head' END) AS x
                               WHERE json_typeof(e.item->'head') = 'object') AS h ON true
            CROSS JOIN LATERAL json_populate_record(NULL::%5$s, e.item->'key') AS k
            LEFT JOIN LATERAL (SELECT %3$s AS row FROM %5$s AS x WHERE %4$s) AS t ON true
        ) AS d
        WHERE NOT (d.now IS NULL AND d.head IS NULL)
          AND NOT (d.now IS NOT NULL AND d.head IS NOT NULL AND d.now::jsonb = d.head::jsonb)
    $q$, nsp, relname, tidelake.row_json(rel, 'x'), matches, rel::regclass)
    USING entries, after, version;
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
-- `"schema"."table"`, entries as `log_diff` takes them) whose schema is
-- still its newest version logs only its differences instead, under that
-- version. Returns the new head.
DROP FUNCTION IF EXISTS tidelake.rebase(bigint, json);
CREATE OR REPLACE FUNCTION tidelake.rebase(lsn_floor bigint, versions json, diff json)
RETURNS bigint LANGUAGE plpgsql AS $fn$
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
            INSERT INTO tidelake.changes VALUES (next_lsn, txid_current(), v, 'truncate', t.nspname, t.relname, NULL, NULL);
            next_lsn := next_lsn + 1;
        END IF;
        next_lsn := next_lsn + tidelake.log_rows(t.oid, v, next_lsn - 1);
    END LOOP;
    -- Tables of `versions` that no longer exist are recorded as dropped.
    PERFORM tidelake.sync_schema();
    RETURN tidelake.next_lsn() - 1;
END
$fn$;

-- After a replay (which writes rows, not sequences): move every sequence a
-- column owns (serial, identity) up to the column's largest value, so the
-- next default does not collide with a replayed row. Never moves one down.
CREATE OR REPLACE FUNCTION tidelake.advance_sequences()
RETURNS void LANGUAGE plpgsql AS $fn$
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
RETURNS void LANGUAGE sql AS $fn$
    SELECT tidelake.install_capture(s.table_oid, s.version)
    FROM (SELECT DISTINCT ON (table_oid) table_oid, version, dropped
          FROM tidelake.schema_versions ORDER BY table_oid, version DESC) s
    WHERE NOT s.dropped AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.table_oid)
$fn$;
SELECT tidelake.reinstall_all();
SELECT tidelake.sync_schema();

INSERT INTO tidelake.meta VALUES ('capture_version', '6')
ON CONFLICT (key) DO UPDATE SET value = excluded.value;
