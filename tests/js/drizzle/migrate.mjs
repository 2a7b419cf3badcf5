// Apply a Drizzle Kit folder with drizzle-orm's own migrator to PGlite (in
// memory) and print what it recorded and the schema it made, as JSON:
//   node drizzle/migrate.mjs <folder>
import { PGlite } from "@electric-sql/pglite";
import { drizzle } from "drizzle-orm/pglite";
import { migrate } from "drizzle-orm/pglite/migrator";

const folder = process.argv[2];
const client = new PGlite();
const db = drizzle(client);
await migrate(db, { migrationsFolder: folder });
const recorded = await client.query(
  "SELECT id, hash, created_at::text AS created_at FROM drizzle.__drizzle_migrations ORDER BY id",
);
const columns = await client.query(
  `SELECT table_name, column_name, data_type, is_nullable, column_default
   FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position`,
);
console.log(JSON.stringify({ recorded: recorded.rows, columns: columns.rows }));
await client.close();
