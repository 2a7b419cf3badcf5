// The Worker's entry module (wrangler.toml `main`). It imports what
// workerd cannot make at run time — PGlite's WebAssembly modules (its main
// one with its declared memory minimum lowered, by js/template.mjs) and file
// bundle, the prepared template, the precompiled run-time modules — and
// hands them to js/engine.js; the Worker and its Durable Object class are
// the Rust crate's (wasm-bindgen output in edge/build/worker, made by
// scripts/edge build).
import "../build/engine-shim.js";
import { PGlite, MemoryFS } from "@electric-sql/pglite";
import pgliteWasm from "../build/pglite.wasm";
import initdbWasm from "@electric-sql/pglite/initdb.wasm";
import pgliteData from "@electric-sql/pglite/pglite.data";
import template from "../build/template.data";
import facts from "../build/engine.json";
import * as worker from "../build/worker/index.js";

globalThis.__tidelakeEngine = { PGlite, MemoryFS, pgliteWasm, initdbWasm, pgliteData, template, facts };

export default {
  fetch: (request, env, ctx) => worker.fetch(request, env, ctx),
};
export const TenantObject = worker.TenantObject;
export const TenantDirectory = worker.TenantDirectory;
