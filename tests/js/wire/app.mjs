// A small app against a tenant over the PostgreSQL wire protocol, with the
// Node clients apps have: node-postgres (and pg-copy-streams), postgres.js
// and Drizzle on node-postgres. Prints what it saw as JSON (tests/tests/wire.rs).
//
//   node app.mjs <host> <port> <tenant> [password]

import pg from "pg";
import postgres from "postgres";
import { from as copyFrom, to as copyTo } from "pg-copy-streams";
import { pipeline } from "node:stream/promises";
import { Readable, Writable } from "node:stream";
import { drizzle } from "drizzle-orm/node-postgres";
import { pgTable, serial, text, integer } from "drizzle-orm/pg-core";
import { eq } from "drizzle-orm";

const [host, port, database, password] = process.argv.slice(2);
const config = { host, port: Number(port), database, user: "app", password: password ?? "" };
const out = {};
const failure = async (work) => {
  try {
    await work();
    return null;
  } catch (e) {
    return { code: e.code, message: e.message, constraint: e.constraint ?? null, table: e.table ?? null };
  }
};

// node-postgres: DDL, every common type through parameters, a rollback.
const client = new pg.Client(config);
await client.connect();
await client.query(`CREATE TABLE things (
  id int PRIMARY KEY, name text NOT NULL UNIQUE, big bigint, ratio float8, price numeric(10,2), ok boolean,
  born date, at timestamptz, uid uuid, doc jsonb, raw bytea, tags text[], nums int[])`);
const insert = "INSERT INTO things VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) RETURNING id";
await client.query(insert, [1, "ada", "9007199254740993", 0.5, "12.34", true, "1815-12-10",
  new Date("2026-12-03T10:00:00Z"), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", { k: [1, null] }, Buffer.from([0, 1, 255]),
  ["x", "y, z"], [1, 2, 3]]);
await client.query(insert, [2, "bob", null, null, null, null, null, null, null, null, null, null, null]);
const typed = await client.query("SELECT * FROM things ORDER BY id");
out.pgRows = typed.rows.map((r) => ({ ...r, raw: r.raw ? [...r.raw] : null, born: r.born ? r.born.toISOString() : null, at: r.at ? r.at.toISOString() : null }));
out.pgTypes = typed.fields.map((f) => [f.name, f.dataTypeID]);
await client.query("BEGIN");
await client.query("INSERT INTO things (id, name) VALUES (3, 'gone')");
await client.query("ROLLBACK");
out.pgAfterRollback = (await client.query("SELECT count(*)::int AS n FROM things")).rows[0].n;
out.pgUnique = await failure(() => client.query("INSERT INTO things (id, name) VALUES (4, 'ada')"));
out.pgAfterError = (await client.query("SELECT 'still here' AS s")).rows[0].s;

// Prepared statements are the connection's: two connections, one name, two queries.
const other = new pg.Client(config);
await other.connect();
const mine = await client.query({ name: "pick", text: "SELECT name FROM things WHERE id = $1", values: [1] });
const theirs = await other.query({ name: "pick", text: "SELECT id FROM things WHERE name = $1", values: ["bob"] });
const mineAgain = await client.query({ name: "pick", text: "SELECT name FROM things WHERE id = $1", values: [2] });
out.prepared = [mine.rows, theirs.rows, mineAgain.rows];
// DEALLOCATE drops the connection's own statement, by its name, and no one else's.
out.deallocated = (await client.query("DEALLOCATE pick")).command;
out.deallocateUnknown = await failure(() => client.query("DEALLOCATE nothing_here"));
out.theirsAfter = (await other.query({ name: "pick", text: "SELECT id FROM things WHERE name = $1", values: ["ada"] })).rows;

// Settings are the connection's.
await client.query("SET TIME ZONE 'America/New_York'");
await client.query("SET application_name = 'mine'");
out.settings = [
  (await client.query("SHOW TIME ZONE")).rows[0].TimeZone,
  (await other.query("SHOW TIME ZONE")).rows[0].TimeZone,
  (await client.query("SELECT current_setting('application_name') AS a")).rows[0].a,
];

// A transaction holds the tenant: the other connection's write waits for
// its end, and sees none of it before.
await client.query("BEGIN");
await client.query("UPDATE things SET name = 'ada2' WHERE id = 1");
const waiting = other.query("SELECT name FROM things WHERE id = 1");
await new Promise((r) => setTimeout(r, 300));
await client.query("COMMIT");
out.afterCommit = (await waiting).rows[0].name;

// Concurrent connections from a pool, each its own writes.
const pool = new pg.Pool({ ...config, max: 4 });
await Promise.all([...Array(8).keys()].map((i) => pool.query("INSERT INTO things (id, name) VALUES ($1, $2)", [10 + i, `pool${i}`])));
out.pooled = (await pool.query("SELECT count(*)::int AS n FROM things WHERE name LIKE 'pool%'")).rows[0].n;
await pool.end();

// COPY both ways (pg-copy-streams).
await pipeline(Readable.from(["20\tcopied\n", "21\talso copied\n"]), client.query(copyFrom("COPY things (id, name) FROM STDIN")));
let copied = "";
await pipeline(client.query(copyTo("COPY (SELECT id, name FROM things WHERE id >= 20 ORDER BY id) TO STDOUT")),
  new Writable({ write(chunk, _enc, done) { copied += chunk; done(); } }));
out.copied = copied;
out.temp = await failure(() => client.query("CREATE TEMP TABLE scratch (a int)"));
await other.end();
await client.end();

// postgres.js: its own protocol use (named statements, pipelining).
const sql = postgres({ ...config, username: "app", max: 2, onnotice: () => {} });
out.postgresJs = await sql`SELECT id, name, tags FROM things WHERE id = ${2} OR name = ${"ada2"} ORDER BY id`;
out.postgresJs = out.postgresJs.map((r) => ({ ...r }));
await sql.begin(async (tx) => {
  await tx`INSERT INTO things (id, name) VALUES (30, 'txn')`;
  await tx`UPDATE things SET big = 7 WHERE id = 30`;
});
out.postgresJsRollback = await failure(() => sql.begin(async (tx) => {
  await tx`INSERT INTO things (id, name) VALUES (31, 'never')`;
  await tx`INSERT INTO things (id, name) VALUES (31, 'twice')`;
}));
out.postgresJsCount = (await sql`SELECT count(*)::int AS n FROM things WHERE id IN (30, 31)`)[0].n;
await sql.end();

// Drizzle on node-postgres: its schema, a join, a transaction.
const dpool = new pg.Pool(config);
const db = drizzle(dpool);
await dpool.query("CREATE TABLE shelves (id serial PRIMARY KEY, label text NOT NULL)");
await dpool.query("CREATE TABLE placed (id serial PRIMARY KEY, shelf_id integer NOT NULL REFERENCES shelves(id), thing text NOT NULL)");
const shelves = pgTable("shelves", { id: serial("id").primaryKey(), label: text("label").notNull() });
const placed = pgTable("placed", { id: serial("id").primaryKey(), shelfId: integer("shelf_id").notNull(), thing: text("thing").notNull() });
const [top] = await db.insert(shelves).values({ label: "top" }).returning();
await db.transaction(async (tx) => {
  await tx.insert(placed).values([{ shelfId: top.id, thing: "ada2" }, { shelfId: top.id, thing: "bob" }]);
});
out.drizzleRolledBack = await failure(() => db.transaction(async (tx) => {
  await tx.insert(placed).values({ shelfId: top.id, thing: "never" });
  await tx.insert(placed).values({ shelfId: 999, thing: "no shelf" });
}));
out.drizzleJoin = await db.select({ shelf: shelves.label, thing: placed.thing }).from(placed)
  .innerJoin(shelves, eq(placed.shelfId, shelves.id)).orderBy(placed.id);
await dpool.end();

console.log(JSON.stringify(out));
