// The edge's tenant engine: PGlite (PostgreSQL 17 compiled to WebAssembly)
// inside a Durable Object, its data directory kept page by page in the
// object's SQLite storage.
//
// PGlite keeps its files in Emscripten's in-memory file system (MEMFS). Every
// write, truncation, creation, rename and removal PostgreSQL makes there is
// tracked from the moment the data directory is in place (before PostgreSQL
// starts, so its crash recovery is tracked too); `persist` writes the pages
// and entries touched since the last call into SQLite. The Rust side calls
// it after every request that reached the engine, before the answer leaves:
// a Durable Object's output gate holds the answer until those writes are
// durable, so an acknowledged commit survives eviction, restart or a move.
// A restart rebuilds the directory from the prepared template (shipped with
// the Worker) with the stored entries laid over it, and PostgreSQL recovers
// from its WAL as after a crash.
//
// Platform-neutral: the heavy modules come from `globalThis.__tidelakeEngine`
// (set by the Worker's entry module, or by scripts/edge-template.mjs under
// Node), so this file runs in workerd and in Node alike.

const DATA = "/pglite/data";
export const PAGE = 8192;
/** The engine's WebAssembly memory at start (it grows on demand); the
 * template builder lowers the module's declared minimum to it. */
export const INITIAL_MEMORY = 16 * 1024 * 1024;

// ---- the stored data directory --------------------------------------------

// Entries: path (relative to the data directory) → kind `d` (directory), `f`
// (file) or `x` (removed); a file's size; `base` 1 if its pages lie over the
// template's file of that path, 0 if over zeros. Archives: the tenant's
// archives in R2 (each one's pointer: key, sizes, SHA-256), `current` 1 for
// the one its data is in while it is warm or cold (the two tables above are
// then empty), 0 for older ones, removed when the next archive is made.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS pg_entries (path TEXT PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL, base INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pg_pages (path TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (path, n));
CREATE TABLE IF NOT EXISTS pg_archives (key TEXT PRIMARY KEY, pointer TEXT NOT NULL, current INTEGER NOT NULL);
`;

/** The tables above, made if missing (one statement at a time: a cursor
 * runs its last statement only when read). */
function ensureSchema(sql) {
  for (const statement of SCHEMA.split(";")) if (statement.trim()) sql.exec(statement).toArray();
}

/** A data directory store over a Durable Object's `ctx.storage.sql`. */
export function sqlStore(sql) {
  ensureSchema(sql);
  return {
    entries: () => sql.exec("SELECT path, kind, size, base FROM pg_entries").toArray(),
    pages: (path) => sql.exec("SELECT n, data FROM pg_pages WHERE path = ? ORDER BY n", path).toArray(),
    putEntry: (path, kind, size, base) =>
      sql.exec("INSERT OR REPLACE INTO pg_entries (path, kind, size, base) VALUES (?, ?, ?, ?)", path, kind, size, base),
    putPage: (path, n, data) => sql.exec("INSERT OR REPLACE INTO pg_pages (path, n, data) VALUES (?, ?, ?)", path, n, data),
    dropPages: (path, from) => sql.exec("DELETE FROM pg_pages WHERE path = ? AND n >= ?", path, from),
    bytes: () => sql.exec("SELECT coalesce(sum(length(data)), 0) AS b FROM pg_pages").one().b,
  };
}

/** The same store in memory (for building and checking under Node). */
export function memoryStore() {
  const entries = new Map();
  const pages = new Map();
  return {
    entries: () => [...entries.values()],
    pages: (path) => [...(pages.get(path) ?? new Map()).entries()].sort((a, b) => a[0] - b[0]).map(([n, data]) => ({ n, data })),
    putEntry: (path, kind, size, base) => entries.set(path, { path, kind, size, base }),
    putPage: (path, n, data) => {
      if (!pages.has(path)) pages.set(path, new Map());
      pages.get(path).set(n, data.slice());
    },
    dropPages: (path, from) => {
      for (const n of [...(pages.get(path)?.keys() ?? [])]) if (n >= from) pages.get(path).delete(n);
    },
    bytes: () => [...pages.values()].reduce((s, m) => s + [...m.values()].reduce((t, d) => t + d.length, 0), 0),
  };
}

// ---- the template -----------------------------------------------------------

/**
 * The prepared data directory, as scripts/edge-template.mjs writes it: a
 * gzip of a little-endian u32 header length, a JSON header
 * `{"entries":[["path","d"] | ["path","f",size]…]}` and the files' bytes in
 * header order.
 */
export async function readTemplate(gz) {
  const raw = new Uint8Array(await new Response(new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer());
  const headerLen = new DataView(raw.buffer, raw.byteOffset).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(raw.subarray(4, 4 + headerLen)));
  const files = new Map();
  let at = 4 + headerLen;
  for (const [path, kind, size] of header.entries) {
    if (kind === "f") {
      files.set(path, { kind, data: raw.subarray(at, at + size) });
      at += size;
    } else {
      files.set(path, { kind });
    }
  }
  return files;
}

// ---- tracking MEMFS ---------------------------------------------------------

class Tracker {
  constructor(FS) {
    this.FS = FS;
    this.on = false;
    this.dirty = new Map(); // path → Set of page numbers, or null for "entry only"
    this.removed = new Set();
  }

  rel(node) {
    return this.relPath(this.FS.getPath(node));
  }

  /** A path relative to the data directory ("" for itself), or null if outside it. */
  relPath(path) {
    if (path === DATA) return "";
    return path.startsWith(DATA + "/") ? path.slice(DATA.length + 1) : null;
  }

  touch(path, from, to) {
    if (path === null) return;
    let pages = this.dirty.get(path);
    if (!pages) this.dirty.set(path, (pages = new Set()));
    for (let n = Math.floor(from / PAGE); n * PAGE < to; n++) pages.add(n);
  }

  remove(path) {
    if (path === null) return;
    this.dirty.delete(path);
    this.removed.add(path);
  }

  /** `node` and everything under it, as [path suffix, node] (from MEMFS's own tree:
   * during a rename the node is out of the lookup table). */
  under(node, suffix, out) {
    out.push([suffix, node]);
    if (this.FS.isDir(node.mode)) {
      for (const [name, child] of Object.entries(node.contents)) this.under(child, suffix + "/" + name, out);
    }
    return out;
  }

  /** Wrap MEMFS's shared operation tables (one object for all its files, one for its directories). */
  install() {
    const FS = this.FS;
    const t = this;
    FS.writeFile("/tmp/.tidelake-probe", "");
    const file = FS.lookupPath("/tmp/.tidelake-probe").node;
    const dir = FS.lookupPath("/tmp").node;
    const fileStream = file.stream_ops;
    const fileNode = file.node_ops;
    const dirNode = dir.node_ops;
    FS.unlink("/tmp/.tidelake-probe");

    const write = fileStream.write;
    fileStream.write = function (stream, buffer, offset, length, position, canOwn) {
      const n = write.call(this, stream, buffer, offset, length, position, canOwn);
      if (t.on && n > 0) t.touch(t.rel(stream.node), position, position + n);
      return n;
    };
    if (fileStream.allocate) {
      const allocate = fileStream.allocate;
      fileStream.allocate = function (stream, offset, length) {
        const before = stream.node.usedBytes;
        allocate.call(this, stream, offset, length);
        if (t.on && stream.node.usedBytes !== before) t.touch(t.rel(stream.node), before, stream.node.usedBytes);
      };
    }
    const setattr = fileNode.setattr;
    fileNode.setattr = function (node, attr) {
      const before = node.usedBytes;
      setattr.call(this, node, attr);
      if (t.on && attr.size !== undefined && attr.size !== before) {
        // Shrunk: the entry's size says so; grown: the new pages are zeros.
        t.touch(t.rel(node), Math.min(before, attr.size), Math.max(before, attr.size));
      }
    };
    const mknod = dirNode.mknod;
    dirNode.mknod = function (parent, name, mode, dev) {
      const node = mknod.call(this, parent, name, mode, dev);
      if (t.on) t.touch(t.rel(node), 0, 0);
      return node;
    };
    const rename = dirNode.rename;
    dirNode.rename = function (oldNode, newDir, newName) {
      const from = t.on ? t.rel(oldNode) : null;
      const into = t.on ? t.rel(newDir) : null;
      rename.call(this, oldNode, newDir, newName);
      if (from === null && into === null) return;
      const to = into === null ? null : into === "" ? newName : into + "/" + newName;
      const moved = t.under(oldNode, "", []);
      if (from !== null) for (const [suffix] of moved) t.remove(from + suffix);
      // The moved entries are written again in full under their new names.
      if (to !== null) {
        for (const [suffix, node] of moved) {
          t.remove(to + suffix);
          t.touch(to + suffix, 0, FS.isDir(node.mode) ? 0 : node.usedBytes);
        }
      }
    };
    for (const op of ["unlink", "rmdir"]) {
      const original = dirNode[op];
      dirNode[op] = function (parent, name) {
        const path = t.on ? t.rel(parent) : null;
        original.call(this, parent, name);
        if (path !== null) t.remove(path === "" ? name : path + "/" + name);
      };
    }
  }
}

// ---- engines, one per Durable Object ----------------------------------------

const engines = new Map();

/**
 * Start the object's engine if it is not running; resolves when it answers.
 * A tenant whose data is in an archive (warm or cold) is brought back first.
 */
export function engineStart(key, storage, settings, bucket) {
  let engine = engines.get(key);
  if (!engine) {
    engine = { state: "loading", error: null };
    engine.ready = promote(engine, storage, bucket).then(() => boot(engine, sqlStore(storage.sql), JSON.parse(settings))).then(
      () => { engine.state = "loaded"; },
      (err) => { engines.delete(key); throw err; },
    );
    engines.set(key, engine);
  }
  return engine.ready;
}

/** `loaded`, `loading` or `hibernated` (no engine in this isolate). */
export function engineState(key) {
  return engines.get(key)?.state ?? "hibernated";
}

/**
 * One round trip of protocol messages; the backend's raw answer. With caps
 * (`maxBytes`, `maxRows`; 0: none), an answer that passes `maxBytes` has
 * its statement cancelled where it is — as a client's cancel would, the
 * backend stops at its next interrupt check — and its remaining rows
 * dropped as they come, so memory stays bounded; one with more rows than
 * `maxRows` is refused at its end. `engineOver` then names the cap.
 */
export function engineExchange(key, message, maxBytes, maxRows) {
  const engine = running(key);
  try {
    return exchange(engine, message, maxBytes, maxRows);
  } catch (err) {
    // The engine failed under the statement (an abort): it is dropped, and
    // the next request starts it again from the stored pages.
    engines.delete(key);
    throw err;
  }
}

function exchange(engine, message, maxBytes, maxRows) {
  engine.over = null;
  if (!(maxBytes > 0) && !(maxRows > 0)) return engine.pg.execProtocolRawSync(message);
  const mod = engine.pg.mod;
  const flag = (address, value) => {
    new Int32Array(mod.HEAPU8.buffer)[address >>> 2] = value;
  };
  const out = [];
  let outLength = 0;
  const head = new Uint8Array(5);
  let headLength = 0;
  let remaining = 0;
  let keep = true;
  let rows = 0;
  let bytes = 0;
  let tooManyRows = false;
  const onRawData = (data) => {
    bytes += data.length;
    let at = 0;
    while (at < data.length) {
      if (remaining === 0) {
        // A message's header: its type and length.
        const n = Math.min(5 - headLength, data.length - at);
        head.set(data.subarray(at, at + n), headLength);
        headLength += n;
        at += n;
        if (headLength < 5) break;
        headLength = 0;
        const type = head[0];
        remaining = new DataView(head.buffer).getUint32(1) - 4;
        if (type === 68 /* DataRow */) rows++;
        // Too many rows is known at the end, as on the server (the byte
        // cap keeps memory bounded meanwhile); too many bytes stops it now.
        if (maxRows > 0 && rows > maxRows) tooManyRows = true;
        if (!engine.over && maxBytes > 0 && bytes > maxBytes) engine.over = { bytes: maxBytes };
        if (engine.over && !engine.cancelled) {
          engine.cancelled = true;
          flag(mod._QueryCancelPending, 1);
          flag(mod._InterruptPending, 1);
        }
        keep = !(engine.over && type === 68);
        if (keep) {
          out.push(head.slice());
          outLength += 5;
        }
        continue;
      }
      const n = Math.min(remaining, data.length - at);
      if (keep) {
        out.push(data.slice(at, at + n));
        outLength += n;
      }
      remaining -= n;
      at += n;
    }
  };
  engine.cancelled = false;
  try {
    // Runs at once (nothing to await without a sync to the file system).
    engine.pg.execProtocolRawStream(message, { syncToFs: false, onRawData }).catch((err) => {
      console.error("a capped round trip failed:", err);
    });
  } finally {
    // A cancel the backend had no interrupt check left to take must not
    // reach the next statement.
    if (engine.cancelled) {
      flag(mod._QueryCancelPending, 0);
      flag(mod._InterruptPending, 0);
    }
  }
  if (!engine.over && tooManyRows) engine.over = { rows: maxRows };
  const answer = new Uint8Array(outLength);
  let at = 0;
  for (const part of out) {
    answer.set(part, at);
    at += part.length;
  }
  return answer;
}

/** The cap the last round trip passed (JSON `{"rows": n}` or `{"bytes": n}`), or "". */
export function engineOver(key) {
  const over = engines.get(key)?.over;
  return over ? JSON.stringify(over) : "";
}

/** Write what changed since the last call to the object's storage; pages written. */
export function enginePersist(key) {
  return persist(running(key));
}

export function engineReadI32(key, address) {
  return new Int32Array(running(key).pg.mod.HEAPU8.buffer)[address >>> 2];
}

export function engineWriteI32(key, address, value) {
  new Int32Array(running(key).pg.mod.HEAPU8.buffer)[address >>> 2] = value;
}

/** The engine's WebAssembly memory in bytes; where its data came from when
 * it woke (`cache`, `r2`) and how long that took. */
export function engineSizes(key) {
  const engine = running(key);
  const sizes = { memoryBytes: engine.pg.mod.HEAPU8.length };
  if (engine.promoted) Object.assign(sizes, engine.promoted);
  return JSON.stringify(sizes);
}

/** Close the engine (its state is already stored). */
export async function engineClose(key) {
  const engine = engines.get(key);
  engines.delete(key);
  if (engine?.pg) await engine.pg.close();
}

function running(key) {
  const engine = engines.get(key);
  if (!engine || engine.state !== "loaded") throw new Error("the engine is not running");
  return engine;
}

/**
 * Boot from the template and the store (exported for the template builder,
 * which boots the same way under Node).
 */
export async function boot(engine, store, settings) {
  const deps = globalThis.__tidelakeEngine;
  const template = await readTemplate(deps.template);
  const stored = store.entries();
  let tracker;
  class StoredFS extends deps.MemoryFS {
    async initialSyncFs() {
      await super.initialSyncFs();
      const FS = this.pg.mod.FS;
      lay(FS, template, stored, store);
      tracker = new Tracker(FS);
      tracker.install();
      tracker.on = true;
    }
  }
  const started = Date.now();
  const pg = await deps.PGlite.create({
    fs: new StoredFS(),
    pgliteWasmModule: deps.pgliteWasm,
    initdbWasmModule: deps.initdbWasm,
    initialMemory: INITIAL_MEMORY,
    fsBundle: new Blob([deps.pgliteData]),
    ...(settings.debug ? { debug: settings.debug } : {}),
    startParams: [...deps.PGlite.defaultStartParams, ...settings.gucs.flatMap(([k, v]) => ["-c", `${k}=${v}`])],
  });
  if (settings.memoryCap) capMemory(pg.mod.wasmMemory, settings.memoryCap);
  Object.assign(engine, { pg, store, tracker, bootMs: Date.now() - started });
  // What PostgreSQL wrote while starting (its recovery) is stored at once.
  persist(engine);
}

/**
 * The engine's memory may not grow past `cap` bytes: the growth PostgreSQL's
 * allocator asks for (Emscripten's `emscripten_resize_heap`, through this
 * memory's `grow`) is refused, so the allocation fails and the statement
 * with it (SQLSTATE 53200), before the isolate runs out of memory.
 */
function capMemory(memory, cap) {
  const grow = memory.grow.bind(memory);
  memory.grow = (pages) => {
    if (memory.buffer.byteLength + pages * 65536 > cap) throw new RangeError(`the engine's memory cap of ${cap} bytes`);
    return grow(pages);
  };
}

/** Lay the template and the stored entries over it into MEMFS. */
function lay(FS, template, stored, store) {
  FS.mkdirTree(DATA);
  const entries = new Map(stored.map((e) => [e.path, e]));
  const paths = [...new Set([...template.keys(), ...entries.keys()])].sort();
  for (const path of paths) {
    const full = DATA + "/" + path;
    const entry = entries.get(path);
    const kind = entry ? entry.kind : template.get(path).kind;
    if (kind === "x") continue;
    if (kind === "d") {
      FS.mkdirTree(full);
      continue;
    }
    const parent = full.slice(0, full.lastIndexOf("/"));
    FS.mkdirTree(parent);
    const base = template.get(path)?.data;
    if (!entry) {
      FS.writeFile(full, base);
      continue;
    }
    const data = new Uint8Array(entry.size);
    if (entry.base && base) data.set(base.subarray(0, Math.min(base.length, entry.size)));
    for (const { n, data: page } of store.pages(path)) {
      const bytes = page instanceof Uint8Array ? page : new Uint8Array(page);
      if (n * PAGE < entry.size) data.set(bytes.subarray(0, Math.min(bytes.length, entry.size - n * PAGE)), n * PAGE);
    }
    FS.writeFile(full, data);
  }
}

export function persist(engine) {
  const { tracker, store } = engine;
  const FS = tracker.FS;
  let written = 0;
  // Nothing touched (a read): nothing to store.
  if (tracker.dirty.size === 0 && tracker.removed.size === 0) return written;
  const known = new Map(store.entries().map((e) => [e.path, e]));
  // A path removed since the last call, whether or not made again since:
  // what is there now lies over zeros, not over what was there before.
  for (const path of tracker.removed) {
    store.dropPages(path, 0);
    store.putEntry(path, "x", 0, 0);
    known.set(path, { path, kind: "x", size: 0, base: 0 });
  }
  for (const [path, pages] of tracker.dirty) {
    const found = FS.analyzePath(DATA + "/" + path);
    if (!found.exists) continue;
    const node = found.object;
    if (FS.isDir(node.mode)) {
      store.putEntry(path, "d", 0, 0);
      continue;
    }
    const size = node.usedBytes;
    const before = known.get(path);
    // Over the template's file of that path, unless that was removed.
    const base = before ? (before.kind === "x" ? 0 : before.base) : 1;
    store.putEntry(path, "f", size, base);
    store.dropPages(path, Math.ceil(size / PAGE));
    for (const n of pages) {
      if (n * PAGE >= size) continue;
      const page = node.contents.subarray(n * PAGE, Math.min(size, (n + 1) * PAGE));
      store.putPage(path, n, page.slice());
      written++;
    }
  }
  tracker.dirty.clear();
  tracker.removed.clear();
  return written;
}

/** What the template builder found and proved of this PGlite build (engine.json). */
export function engineFacts() {
  return JSON.stringify(globalThis.__tidelakeEngine.facts);
}

// ---- tiers: the stored directory moved to R2 and back -----------------------
//
// An idle tenant's pages leave the object's storage: packed into one archive
// (gzip of a little-endian u32 header length, a JSON header of the entries,
// then each page as u32 entry index, u32 page number, u32 length and its
// bytes), stored in R2 with its SHA-256 (R2 checks it on upload), a copy put
// in this location's cache, and only then, in one storage transaction, the
// pointer recorded and the pages removed. Waking reads the cache's copy, or
// R2's, checks size and SHA-256 before anything is written, lays the pages
// back, and only then clears the pointer: a crash at any step leaves the
// pages or a pointer to a complete archive, never neither.

const ARCHIVE_FORMAT = 1;
/** Pages read from storage at a time while packing. */
const PACK_BATCH = 256;

function cacheUrl(archiveKey) {
  return "https://archive.tidelake.invalid/" + archiveKey;
}

async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function tierError(code, message) {
  const err = new Error(`${code}: ${message}`);
  err.code = code;
  return err;
}

/**
 * What the object stores, without waking anything (JSON): whether the
 * tenant exists (it has pages, or an archive holds them), the bytes of its
 * pages if `measure` (a scan: only `health` asks), and the pointer of the
 * archive its data is in while warm or cold.
 */
export function engineStored(storage, measure) {
  const sql = storage.sql;
  const store = sqlStore(sql);
  const row = sql.exec("SELECT pointer FROM pg_archives WHERE current = 1").toArray()[0];
  const archive = row ? JSON.parse(row.pointer) : null;
  const hasPages = sql.exec("SELECT EXISTS (SELECT 1 FROM pg_entries) AS e").one().e === 1;
  return JSON.stringify({ exists: hasPages || archive !== null, storedBytes: measure ? store.bytes() : null, archive });
}

/** Whether this location's cache holds the archive (the tenant is warm). */
export async function engineCached(archiveKey) {
  try {
    return (await caches.default.match(cacheUrl(archiveKey))) !== undefined;
  } catch {
    return false;
  }
}

/**
 * Move the tenant's stored pages to an archive in R2 (`bucket`, key
 * `archiveKey`), a copy in this location's cache for `warmSeconds`. The
 * pointer (JSON), or "" if the tenant woke meanwhile (nothing moved).
 */
export async function engineDemote(key, storage, bucket, archiveKey, warmSeconds, meta) {
  const sql = storage.sql;
  ensureSchema(sql);
  if (engines.get(key)?.state === "loading") return "";
  // Its pages are stored after every request: the engine holds nothing more.
  engines.delete(key);
  const packed = await pack(sql);
  const sha256 = await sha256Hex(packed.bytes);
  const pointer = {
    key: archiveKey,
    format: ARCHIVE_FORMAT,
    bytes: packed.bytes.length,
    sha256,
    pages: packed.pages,
    rawBytes: packed.rawBytes,
    archivedAtMs: Date.now(),
    ...JSON.parse(meta),
  };
  await bucket.put(archiveKey, packed.bytes, {
    sha256,
    httpMetadata: { contentType: "application/gzip" },
    customMetadata: { pointer: JSON.stringify(pointer) },
  });
  let cached = false;
  try {
    await caches.default.put(
      cacheUrl(archiveKey),
      new Response(packed.bytes, { headers: { "cache-control": `max-age=${warmSeconds}`, "content-type": "application/gzip" } }),
    );
    cached = true;
  } catch {
    // No cache here (a workers.dev host, or none at all): the tenant is cold.
  }
  // A request woke the engine during the upload: the tenant stays hot.
  if (engines.has(key) || packed.pages !== countPages(sql)) {
    await bucket.delete(archiveKey).catch(() => {});
    return "";
  }
  const older = sql.exec("SELECT key FROM pg_archives").toArray().map((r) => r.key);
  storage.transactionSync(() => {
    sql.exec("INSERT OR REPLACE INTO pg_archives (key, pointer, current) VALUES (?, ?, 1)", archiveKey, JSON.stringify(pointer));
    sql.exec("DELETE FROM pg_pages");
    sql.exec("DELETE FROM pg_entries");
  });
  // Older archives are copies of older states: the newest one is the tenant.
  for (const old of older) {
    if (old === archiveKey) continue;
    try {
      await bucket.delete(old);
      sql.exec("DELETE FROM pg_archives WHERE key = ?", old);
    } catch {
      // Removed with the next archive.
    }
  }
  return JSON.stringify({ ...pointer, cached });
}

function countPages(sql) {
  return sql.exec("SELECT count(*) AS n FROM pg_pages").one().n;
}

/** The stored pages as one gzip archive; its page count and raw bytes. */
async function pack(sql) {
  const entries = sql.exec("SELECT path, kind, size, base FROM pg_entries ORDER BY path").toArray();
  const index = new Map(entries.map((e, i) => [e.path, i]));
  const header = new TextEncoder().encode(
    JSON.stringify({ format: ARCHIVE_FORMAT, entries: entries.map((e) => [e.path, e.kind, e.size, e.base]) }),
  );
  const gzip = new CompressionStream("gzip");
  const out = new Response(gzip.readable).arrayBuffer();
  const writer = gzip.writable.getWriter();
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, header.length, true);
  await writer.write(length);
  await writer.write(header);
  let pages = 0;
  let rawBytes = 0;
  let after = ["", -1];
  for (;;) {
    const batch = sql
      .exec("SELECT path, n, data FROM pg_pages WHERE (path, n) > (?, ?) ORDER BY path, n LIMIT ?", after[0], after[1], PACK_BATCH)
      .toArray();
    if (batch.length === 0) break;
    for (const { path, n, data } of batch) {
      const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
      const record = new Uint8Array(12 + bytes.length);
      const view = new DataView(record.buffer);
      view.setUint32(0, index.get(path) ?? 0xffffffff, true);
      view.setUint32(4, n, true);
      view.setUint32(8, bytes.length, true);
      record.set(bytes, 12);
      await writer.write(record);
      pages++;
      rawBytes += bytes.length;
    }
    const last = batch[batch.length - 1];
    after = [last.path, last.n];
  }
  await writer.close();
  return { bytes: new Uint8Array(await out), pages, rawBytes };
}

/** Bytes arriving in chunks, taken in exact lengths. */
class Chunks {
  constructor(reader) {
    this.reader = reader;
    this.parts = [];
    this.length = 0;
  }

  /** Exactly `n` bytes, or null at the end of the stream (before any of them). */
  async take(n) {
    while (this.length < n) {
      const { done, value } = await this.reader.read();
      if (done) {
        if (this.length === 0) return null;
        throw tierError("archive_corrupt", "the archive ends inside a record");
      }
      this.parts.push(value);
      this.length += value.length;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const part = this.parts[0];
      const used = Math.min(part.length, n - at);
      out.set(part.subarray(0, used), at);
      at += used;
      if (used === part.length) this.parts.shift();
      else this.parts[0] = part.subarray(used);
    }
    this.length -= n;
    return out;
  }
}

/** If the tenant's data is in an archive, lay it back into the object's storage. */
async function promote(engine, storage, bucket) {
  const sql = storage.sql;
  ensureSchema(sql);
  const row = sql.exec("SELECT pointer FROM pg_archives WHERE current = 1").toArray()[0];
  if (!row) return;
  const pointer = JSON.parse(row.pointer);
  const started = Date.now();
  let bytes = null;
  let from = "cache";
  try {
    const hit = await caches.default.match(cacheUrl(pointer.key));
    if (hit) {
      const candidate = new Uint8Array(await hit.arrayBuffer());
      if (candidate.length === pointer.bytes && (await sha256Hex(candidate)) === pointer.sha256) bytes = candidate;
    }
  } catch {
    // No cache here: R2.
  }
  if (!bytes) {
    from = "r2";
    if (!bucket) throw tierError("archive_unavailable", `the tenant's data is in archive ${pointer.key} and this Worker has no ARCHIVE bucket`);
    const object = await bucket.get(pointer.key);
    if (!object) throw tierError("archive_missing", `archive ${pointer.key} is not in the ARCHIVE bucket`);
    bytes = new Uint8Array(await object.arrayBuffer());
    if (bytes.length !== pointer.bytes || (await sha256Hex(bytes)) !== pointer.sha256) {
      throw tierError("archive_corrupt", `archive ${pointer.key} does not match its SHA-256 (${bytes.length} bytes, ${pointer.bytes} expected)`);
    }
  }
  // A wake that stopped half-way left pages of its own: start over.
  sql.exec("DELETE FROM pg_pages");
  sql.exec("DELETE FROM pg_entries");
  const chunks = new Chunks(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip")).getReader());
  const length = await chunks.take(4);
  const header = JSON.parse(new TextDecoder().decode(await chunks.take(new DataView(length.buffer).getUint32(0, true))));
  if (header.format !== ARCHIVE_FORMAT) throw tierError("archive_corrupt", `archive ${pointer.key} has format ${header.format}`);
  for (const [path, kind, size, base] of header.entries) {
    sql.exec("INSERT INTO pg_entries (path, kind, size, base) VALUES (?, ?, ?, ?)", path, kind, size, base);
  }
  let pages = 0;
  let rawBytes = 0;
  for (;;) {
    const head = await chunks.take(12);
    if (head === null) break;
    const view = new DataView(head.buffer);
    const entry = header.entries[view.getUint32(0, true)];
    if (!entry) throw tierError("archive_corrupt", `archive ${pointer.key} names an entry it does not have`);
    const data = await chunks.take(view.getUint32(8, true));
    sql.exec("INSERT INTO pg_pages (path, n, data) VALUES (?, ?, ?)", entry[0], view.getUint32(4, true), data);
    pages++;
    rawBytes += data.length;
  }
  if (pages !== pointer.pages || rawBytes !== pointer.rawBytes) {
    throw tierError("archive_corrupt", `archive ${pointer.key} holds ${pages} pages (${rawBytes} bytes), its pointer says ${pointer.pages} (${pointer.rawBytes})`);
  }
  // The data is back: the archive is now an older copy.
  sql.exec("UPDATE pg_archives SET current = 0 WHERE key = ?", pointer.key);
  engine.promoted = { wokeFrom: from, wakeMs: Date.now() - started, wokeArchive: pointer.key, wokeArchiveBytes: pointer.bytes };
}
