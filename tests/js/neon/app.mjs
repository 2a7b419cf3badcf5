// A small app on Neon's serverless driver and on drizzle-orm/neon-http,
// pointed at tidelake by `neonConfig.fetchEndpoint` alone:
//   node app.mjs <fetch endpoint> <connection string>
// Prints what it got, as JSON, for tests/tests/neon.rs to check.
import { neon, neonConfig } from "@neondatabase/serverless";
import { drizzle } from "drizzle-orm/neon-http";
import { pgTable, serial, integer, text } from "drizzle-orm/pg-core";
import { eq, sql as raw } from "drizzle-orm";

const [endpoint, connection] = process.argv.slice(2);
neonConfig.fetchEndpoint = endpoint;
const sql = neon(connection);
const out = {};

const failure = async (promise) => {
  try {
    await promise;
    return null;
  } catch (e) {
    return { code: e.code ?? null, message: e.message, position: e.position ?? null, detail: e.detail ?? null };
  }
};

// The driver: DDL, parameterized inserts and selects of common types.
await sql`CREATE TABLE authors (
  id serial PRIMARY KEY, name text NOT NULL, born date, rating double precision, tags text[],
  meta jsonb, active boolean NOT NULL DEFAULT true, balance numeric(10,2), big bigint,
  created timestamptz NOT NULL DEFAULT '2026-12-02 10:00:00+00')`;
await sql`CREATE TABLE books (id serial PRIMARY KEY, author_id int NOT NULL REFERENCES authors, title text NOT NULL, pages int)`;
out.inserted = await sql`INSERT INTO authors (name, born, rating, tags, meta, balance, big)
  VALUES (${"Ada"}, ${"1815-12-10"}, ${4.5}, ${["math", "poetry, too"]}, ${{ k: [1, null] }}, ${"12.34"}, ${"9007199254740993"})
  RETURNING *`;
const ada = out.inserted[0].id;
await sql.query("INSERT INTO books (author_id, title, pages) VALUES ($1, $2, $3), ($1, $4, $5)", [ada, "Notes", 120, "Sketch", 12]);
out.full = await sql.query("SELECT a.name, b.title, b.pages FROM books b JOIN authors a ON a.id = b.author_id WHERE b.pages > $1 ORDER BY b.id",
  [100], { fullResults: true });
out.arrays = await sql.query("SELECT title, pages FROM books ORDER BY id", [], { arrayMode: true });
out.nulls = await sql`SELECT NULL::int AS nothing, ${null}::text AS given`;

// sql.transaction: all or nothing.
out.transaction = await sql.transaction(
  [sql`INSERT INTO books (author_id, title, pages) VALUES (${ada}, ${"Letters"}, ${300}) RETURNING title`, sql`SELECT count(*)::int AS n FROM books`],
  { isolationLevel: "Serializable" },
);
out.rolledBack = await failure(sql.transaction([
  sql`INSERT INTO books (author_id, title) VALUES (${ada}, ${"Never"})`,
  sql`INSERT INTO books (author_id, title) VALUES (${999}, ${"Orphan"})`,
]));
out.readOnly = await failure(sql.transaction([sql`INSERT INTO books (author_id, title) VALUES (${ada}, ${"Nope"})`], { readOnly: true }));
out.error = await failure(sql`SELECT * FROM nowhere`);
out.countAfter = await sql`SELECT count(*)::int AS n FROM books`;

// drizzle-orm on the driver: its own schema, inserts, a join, a batch (one transaction).
const db = drizzle({ client: sql });
await db.execute(raw`CREATE TABLE shelves (id serial PRIMARY KEY, label text NOT NULL)`);
await db.execute(raw`CREATE TABLE placements (id serial PRIMARY KEY, shelf_id integer NOT NULL REFERENCES shelves, book_id integer NOT NULL REFERENCES books)`);
const shelves = pgTable("shelves", { id: serial("id").primaryKey(), label: text("label").notNull() });
const placements = pgTable("placements", {
  id: serial("id").primaryKey(),
  shelfId: integer("shelf_id").notNull().references(() => shelves.id),
  bookId: integer("book_id").notNull(),
});
const books = pgTable("books", { id: serial("id").primaryKey(), title: text("title").notNull(), pages: integer("pages") });
const [shelf] = await db.insert(shelves).values({ label: "top" }).returning();
await db.insert(placements).values([{ shelfId: shelf.id, bookId: 1 }, { shelfId: shelf.id, bookId: 3 }]);
out.drizzleJoin = await db
  .select({ shelf: shelves.label, title: books.title })
  .from(placements)
  .innerJoin(shelves, eq(placements.shelfId, shelves.id))
  .innerJoin(books, eq(placements.bookId, books.id))
  .orderBy(placements.id);
out.drizzleBatch = await db.batch([
  db.insert(shelves).values({ label: "bottom" }).returning({ label: shelves.label }),
  db.select({ n: raw`count(*)::int` }).from(shelves),
]);
console.log(JSON.stringify(out));
