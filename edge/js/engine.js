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

// ---- the stored data directory --------------------------------------------

// Entries: path (relative to the data directory) → kind `d` (directory), `f`
// (file) or `x` (removed); a file's size; `base` 1 if its pages lie over the
// template's file of that path, 0 if over zeros.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS pg_entries (path TEXT PRIMARY KEY, kind TEXT NOT NULL, size INTEGER NOT NULL, base INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pg_pages (path TEXT NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (path, n));
`;

/** A data directory store over a Durable Object's `ctx.storage.sql`. */
export function sqlStore(sql) {
  sql.exec(SCHEMA);
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

/** Start the object's engine if it is not running; resolves when it answers. */
export function engineStart(key, sql, settings) {
  let engine = engines.get(key);
  if (!engine) {
    engine = { state: "loading", error: null };
    engine.ready = boot(engine, sqlStore(sql), JSON.parse(settings)).then(
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

/** One round trip of protocol messages; the backend's raw answer. */
export function engineExchange(key, message) {
  return running(key).pg.execProtocolRawSync(message);
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

/** The engine's WebAssembly memory and what the object stores, in bytes. */
export function engineSizes(key) {
  const engine = running(key);
  return JSON.stringify({ memoryBytes: engine.pg.mod.HEAPU8.length, storedBytes: engine.store.bytes() });
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
    fsBundle: new Blob([deps.pgliteData]),
    ...(settings.debug ? { debug: settings.debug } : {}),
    startParams: [...deps.PGlite.defaultStartParams, ...settings.gucs.flatMap(([k, v]) => ["-c", `${k}=${v}`])],
  });
  Object.assign(engine, { pg, store, tracker, bootMs: Date.now() - started });
  // What PostgreSQL wrote while starting (its recovery) is stored at once.
  persist(engine);
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
