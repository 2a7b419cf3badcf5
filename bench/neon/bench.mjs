// The same statements through Neon's serverless driver (POST /neon/sql)
// and through tidelake's own JSON API (POST /t/{tenant}/query), against one
// running `tidelake serve`, interleaved so both see the same machine:
//   node bench.mjs <base url> <iterations>
// Prints a Markdown table of per-request latencies and the ratio.
import { neon, neonConfig } from "@neondatabase/serverless";

const [base, iterationsArg] = process.argv.slice(2);
const iterations = Number(iterationsArg ?? 500);
const host = new URL(base).host;
neonConfig.fetchEndpoint = `${base}/neon/sql`;
const sql = neon(`postgresql://bench@${host}/neonbench`);

async function api(query, params) {
  const response = await fetch(`${base}/t/neonbench/query`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ sql: query, params }),
  });
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  return (await response.json()).rows;
}

await api("CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[])");
await api("INSERT INTO items SELECT g, 'item ' || g, g * 1.5, ARRAY['a', 'b'] FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING");

const statements = [
  // (each with its parameters for request i of client c: 0 Neon, 1 the API)
  ["primary-key lookup", "SELECT * FROM items WHERE id = $1", (i) => [1 + (i * 7919) % 10000]],
  ["insert", "INSERT INTO items (id, name, price) VALUES ($1, $2, $3)", (i, c) => [100000 + i * 2 + c, `new ${i}`, "9.99"]],
  ["100-row range", "SELECT id, name, price FROM items WHERE id BETWEEN $1 AND $1 + 99 ORDER BY id", (i) => [1 + (i * 31) % 9900]],
];

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))];
}

const lines = [
  `| statement | Neon driver p50 (ms) | JSON API p50 (ms) | ratio p50 | Neon driver p95 (ms) | JSON API p95 (ms) |`,
  `|---|---|---|---|---|---|`,
];
for (const [name, query, params] of statements) {
  const times = { neon: [], api: [] };
  for (let i = 0; i < 20; i++) {
    await sql.query("SELECT * FROM items WHERE id = $1", [i + 1]);
    await api("SELECT * FROM items WHERE id = $1", [i + 1]);
  }
  for (let i = 0; i < iterations; i++) {
    let t = performance.now();
    await sql.query(query, params(i, 0));
    times.neon.push(performance.now() - t);
    t = performance.now();
    await api(query, params(i, 1));
    times.api.push(performance.now() - t);
  }
  const n = times.neon.sort((a, b) => a - b);
  const a = times.api.sort((a, b) => a - b);
  const fmt = (x) => x.toFixed(2);
  lines.push(`| ${name} | ${fmt(percentile(n, 50))} | ${fmt(percentile(a, 50))} | ${(percentile(n, 50) / percentile(a, 50)).toFixed(2)}× | ${fmt(percentile(n, 95))} | ${fmt(percentile(a, 95))} |`);
}
console.log(lines.join("\n"));
console.log(`\n(${iterations} requests per statement and client, interleaved; Node ${process.version}, @neondatabase/serverless 1.2.0)`);
