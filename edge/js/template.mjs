// Build-time preparation of the edge engine, under Node (scripts/edge):
//
// 1. the template: a PGlite data directory made by initdb, with tidelake's
//    change capture installed (the server's own capture.sql) and cleanly
//    shut down — every new edge tenant starts from it (no initdb at the edge);
// 2. the sandbox: where this PGlite build keeps the session's authenticated
//    user (PostgreSQL's static `AuthenticatedUserId`), found and proven here
//    (tenant SQL must not be able to return to the superuser), so the edge
//    can switch sessions as the server does;
// 3. the modules PGlite compiles at run time (Emscripten's function
//    trampolines, side modules such as plpgsql), which workerd forbids:
//    captured while booting exactly as the edge boots, and served to it
//    precompiled by a generated shim.
//
// Usage: node template.mjs <out-dir> <capture.sql>

import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import crypto from "node:crypto";
import { PGlite, MemoryFS } from "@electric-sql/pglite";

const [outDir, captureSqlPath] = process.argv.slice(2);
// The edge's settings change nothing of what is captured or found here.
const settings = { gucs: [] };
const DATA = "/pglite/data";
const BOOTSTRAP_SUPERUSER = 10;
fs.mkdirSync(path.join(outDir, "modules"), { recursive: true });

// Modules compiled at run time, by a hash of their bytes.
const compiled = new Map();
const Module = WebAssembly.Module;
function CapturingModule(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
  compiled.set(fnv(u8), u8.slice());
  return new Module(bytes);
}
CapturingModule.prototype = Module.prototype;
for (const k of ["imports", "exports", "customSections"]) CapturingModule[k] = Module[k];

// This PGlite build declares 128 MiB as the least memory it may be given,
// though its static data and stack end at about 11 MiB and its heap grows
// on demand: a Worker isolate has 128 MB. The declared minimum of its
// memory import is lowered to the engine's initial memory (engine.js,
// INITIAL_MEMORY) in a copy of the module, the same length in the binary
// (both minimums take two LEB128 bytes); the static data's end is checked
// to fit.
function lowerMemoryMinimum(original) {
  const bytes = new Uint8Array(original);
  let p = 8;
  const leb = () => {
    let r = 0, s = 0, b;
    do { b = bytes[p++]; r += (b & 0x7f) * 2 ** s; s += 7; } while (b & 0x80);
    return r;
  };
  const name = () => { const n = leb(); const text = Buffer.from(bytes.subarray(p, p + n)).toString("utf8"); p += n; return text; };
  let patched = false;
  let heapBase = null;
  let importedGlobals = 0;
  const globals = [];
  let heapBaseIndex = null;
  while (p < bytes.length) {
    const id = bytes[p++];
    const size = leb();
    const end = p + size;
    if (id === 2) {
      for (let n = leb(), i = 0; i < n; i++) {
        const module = name();
        const field = name();
        const kind = bytes[p++];
        if (kind === 0) leb();
        else if (kind === 1) { p++; const flags = bytes[p++]; leb(); if (flags & 1) leb(); }
        else if (kind === 2) {
          const flags = bytes[p++];
          const at = p;
          const min = leb();
          if (module === "env" && field === "memory") {
            const pages = engine_INITIAL_MEMORY / 65536;
            if (p - at !== 2 || min < pages || pages < 128 || pages >= 16384) throw new Error(`unexpected memory import: min ${min} pages`);
            bytes[at] = 0x80 | (pages & 0x7f);
            bytes[at + 1] = pages >> 7;
            patched = true;
          }
          if (flags & 1) leb();
        } else if (kind === 3) { p += 2; importedGlobals++; }
        else if (kind === 4) { p++; leb(); }
      }
    } else if (id === 6) {
      for (let n = leb(), i = 0; i < n; i++) {
        p += 2;
        const op = bytes[p++];
        globals.push(op === 0x41 ? leb() : null); // i32.const (the values here are small and positive)
        p++;
      }
    } else if (id === 7) {
      for (let n = leb(), i = 0; i < n; i++) {
        const field = name();
        const kind = bytes[p++];
        const index = leb();
        if (kind === 3 && field === "__heap_base") heapBaseIndex = index;
      }
    }
    p = end;
  }
  if (heapBaseIndex !== null) heapBase = globals[heapBaseIndex - importedGlobals];
  if (!patched || !(heapBase > 0) || heapBase >= engine_INITIAL_MEMORY) {
    throw new Error(`cannot lower PGlite's memory minimum (patched ${patched}, heap base ${heapBase})`);
  }
  return bytes;
}

// The same hash as the shim's (below).
function fnv(u8) {
  let h = 0x811c9dc5;
  for (let i = 0; i < u8.length; i++) {
    h ^= u8[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return u8.length + ":" + h.toString(16);
}

// ---- 1. the template ----------------------------------------------------------
// Every edge tenant holds its whole data directory in memory (MEMFS), so
// the template is made small: WAL segments of 1 MB, not 16 (a segment is a
// whole file in memory however little of it is written), and no template
// databases (tenant SQL cannot create databases; they were 14 MB).
const pg = await PGlite.create({
  initDbStartParams: ["--wal-segsize=1"],
  // Old segments removed at checkpoints, not kept for reuse (as the engine runs).
  startParams: [...PGlite.defaultStartParams, "-c", "wal_recycle=off", "-c", "min_wal_size=2MB"],
});
for (const db of ["template1", "template0"]) {
  await pg.exec(`ALTER DATABASE ${db} IS_TEMPLATE false`);
  await pg.exec(`DROP DATABASE ${db}`);
}
await pg.exec(fs.readFileSync(captureSqlPath, "utf8"));
// As the server does after installing capture (oltp-do capture.rs, CAPTURE_ON_SQL).
await pg.exec("SELECT tidelake.reinstall_all(); SELECT tidelake.sync_schema()");
const { rows: [roles] } = await pg.query(
  `SELECT (SELECT rolname FROM pg_roles WHERE oid = ${BOOTSTRAP_SUPERUSER}) AS owner,
          (SELECT oid::int FROM pg_roles WHERE rolname = 'tenant') AS tenant`);
await pg.exec("CHECKPOINT");
// The WAL segment the checkpoint is in; the shutdown checkpoint goes there
// or, at a segment's end, into the next. Segments before it are no longer
// needed, those after the next were made ahead of use by initdb: neither
// is kept (each is 1 MB of every tenant's memory).
const { rows: [{ segment }] } = await pg.query("SELECT pg_walfile_name(pg_current_wal_insert_lsn()) AS segment");
const nextSegment = (BigInt("0x" + segment) + 1n).toString(16).toUpperCase().padStart(24, "0");
const FS = pg.mod.FS;
await pg.close();
const entries = [];
const chunks = [];
(function walk(rel) {
  for (const name of FS.readdir(DATA + (rel ? "/" + rel : "")).sort()) {
    if (name === "." || name === "..") continue;
    const p = rel ? rel + "/" + name : name;
    const node = FS.lookupPath(DATA + "/" + p).node;
    if (FS.isDir(node.mode)) {
      entries.push([p, "d"]);
      walk(p);
    } else if (/^pg_wal\/[0-9A-F]{24}$/.test(p) && p.slice(7) !== segment && p.slice(7) !== nextSegment) {
      continue;
    } else if (FS.isFile(node.mode) && !p.endsWith("postmaster.pid")) {
      const data = FS.readFile(DATA + "/" + p);
      entries.push([p, "f", data.length]);
      chunks.push(data);
    }
  }
})("");
const header = Buffer.from(JSON.stringify({ entries }));
const len = Buffer.alloc(4);
len.writeUInt32LE(header.length);
const template = zlib.gzipSync(Buffer.concat([len, header, ...chunks]), { level: 9 });
fs.writeFileSync(path.join(outDir, "template.data"), template);

// ---- 2 and 3: boot as the edge does, capturing what is compiled at run time ----
const { INITIAL_MEMORY: engine_INITIAL_MEMORY } = await import("./engine.js");
const pgliteBytes = lowerMemoryMinimum(fs.readFileSync(new URL(import.meta.resolve("@electric-sql/pglite/pglite.wasm"))));
fs.writeFileSync(path.join(outDir, "pglite.wasm"), pgliteBytes);
const pgliteWasm = await WebAssembly.compile(pgliteBytes);
const initdbWasm = await WebAssembly.compile(fs.readFileSync(new URL(import.meta.resolve("@electric-sql/pglite/initdb.wasm"))));
const pgliteData = fs.readFileSync(new URL(import.meta.resolve("@electric-sql/pglite/pglite.data")));
globalThis.__tidelakeEngine = { PGlite, MemoryFS, pgliteWasm, initdbWasm, pgliteData, template };
WebAssembly.Module = CapturingModule;
const engine = await import("./engine.js");
const store = engine.memoryStore();
const booted = {};
await engine.boot(booted, store, settings);
const db = booted.pg;
const q = async (sql) => (await db.query(sql)).rows;

// Find AuthenticatedUserId: the user ids PostgreSQL keeps together
// (miscinit.c) follow SET SESSION AUTHORIZATION; the authenticated one
// stays the bootstrap superuser. Candidates are the words near the ones
// that follow, holding 10; the proof is that with the tenant's id written
// there the tenant can no longer become the superuser.
await q("CREATE ROLE tidelake_probe NOLOGIN");
const probe = (await q("SELECT oid::int AS oid FROM pg_roles WHERE rolname = 'tidelake_probe'"))[0].oid;
const heap = () => new Int32Array(db.mod.HEAPU8.buffer);
const holding = (value) => { const h = heap(); const out = []; for (let i = 0; i < h.length; i++) if (h[i] === value) out.push(i); return out; };
await q(`SET SESSION AUTHORIZATION tenant`);
const asTenant = new Set(holding(roles.tenant));
await q(`RESET SESSION AUTHORIZATION`);
await q(`SET SESSION AUTHORIZATION tidelake_probe`);
const following = holding(probe).filter((i) => asTenant.has(i));
await q(`RESET SESSION AUTHORIZATION`);
const candidates = new Set();
for (const i of following) for (let d = -16; d <= 16; d++) if (heap()[i + d] === BOOTSTRAP_SUPERUSER) candidates.add(i + d);
let address = null;
for (const i of [...candidates].sort((a, b) => a - b)) {
  await q(`SET SESSION AUTHORIZATION tenant`);
  heap()[i] = roles.tenant;
  let escaped = true;
  try {
    await q(`SET SESSION AUTHORIZATION ${roles.owner}`);
  } catch (e) {
    escaped = !/permission denied/.test(e.message);
  }
  heap()[i] = BOOTSTRAP_SUPERUSER;
  await q(`SET SESSION AUTHORIZATION ${roles.owner}`);
  if (!escaped) {
    address = i * 4;
    break;
  }
}
if (address === null) throw new Error("could not find where this PGlite build keeps the authenticated user: the edge cannot sandbox tenant SQL");
await q("DROP ROLE tidelake_probe");

// Exercise what the edge runs: both protocols, errors, DDL with capture,
// triggers, PL/pgSQL, transactions, row locks, notices.
await db.exec(`
  CREATE TABLE tidelake_probe_t (id int PRIMARY KEY, v text, j jsonb, a int[]);
  INSERT INTO tidelake_probe_t VALUES (1, 'a', '{"x":1}', '{1,2}');
  UPDATE tidelake_probe_t SET v = 'b'; DELETE FROM tidelake_probe_t;
  BEGIN; INSERT INTO tidelake_probe_t VALUES (2, 'c', null, null); SELECT * FROM tidelake_probe_t FOR UPDATE; COMMIT;
  DO $$ BEGIN RAISE NOTICE 'n'; END $$;
  CREATE FUNCTION tidelake_probe_f(x int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN x + 1; END $$;
  SELECT tidelake_probe_f(1); TRUNCATE tidelake_probe_t; ALTER TABLE tidelake_probe_t ADD COLUMN w int;
  DROP TABLE tidelake_probe_t; DROP FUNCTION tidelake_probe_f;
`);
await db.query("SELECT $1::int + 1 AS n, now(), '1 day'::interval, 1.5::numeric", [1]);
try { await db.query("SELECT * FROM nowhere"); } catch { /* an error's path */ }
await db.transaction(async (tx) => { await tx.query("SELECT 1"); });
await db.close();
WebAssembly.Module = Module;

// The shim: every module compiled at run time, served precompiled.
for (const f of fs.readdirSync(path.join(outDir, "modules"))) fs.rmSync(path.join(outDir, "modules", f));
const known = [...compiled.entries()];
let shim = "// Generated by edge/js/template.mjs: workerd forbids compiling WebAssembly at run time,\n" +
  "// so the modules PGlite compiles at run time are served precompiled from the Worker's upload.\n";
known.forEach(([key, bytes], i) => {
  const name = `m${i}-${crypto.createHash("sha256").update(bytes).digest("hex").slice(0, 12)}.wasm`;
  fs.writeFileSync(path.join(outDir, "modules", name), bytes);
  shim += `import m${i} from "./modules/${name}";\n`;
});
shim += `const fnv = ${fnv.toString()};\n`;
shim += `const precompiled = new Map([\n${known.map(([key], i) => `  [${JSON.stringify(key)}, m${i}],`).join("\n")}\n]);\n`;
shim += `const Module = WebAssembly.Module;
function PrecompiledModule(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : ArrayBuffer.isView(bytes) ? new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) : new Uint8Array(bytes);
  return precompiled.get(fnv(u8)) ?? new Module(bytes);
}
PrecompiledModule.prototype = Module.prototype;
for (const k of ["imports", "exports", "customSections"]) PrecompiledModule[k] = Module[k];
WebAssembly.Module = PrecompiledModule;
`;
fs.writeFileSync(path.join(outDir, "engine-shim.js"), shim);
const facts = { authenticatedUserIdAddress: address, bootstrapSuperuser: BOOTSTRAP_SUPERUSER, tenantRole: roles.tenant, owner: roles.owner, templateBytes: template.length, modules: known.length };
fs.writeFileSync(path.join(outDir, "engine.json"), JSON.stringify(facts, null, 2) + "\n");
console.log(JSON.stringify(facts));
