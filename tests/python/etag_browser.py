"""Headless Chromium reading a tenant by URL (`GET /t/{tenant}/query`) as a
browser application would: the same `fetch` three times, a write between
the second and the third. The browser's own cache keeps the answer and
revalidates it with its ETag; the Resource Timing entries say how many
bytes each fetch took from the network. Prints what it saw, as JSON.

Usage: etag_browser.py <server-base-url> <tenant>
"""

import json
import sys

from browser import chromium

base, tenant = sys.argv[1:3]

SCRIPT = """
const [tenant, done] = arguments;
(async () => {
  const url = new URL(`/t/${tenant}/query?sql=${encodeURIComponent("SELECT id, body FROM notes ORDER BY id")}`, location.href).href;
  const read = async () => {
    const resp = await fetch(url);
    const body = await resp.json();
    return { status: resp.status, etag: resp.headers.get("etag"), rows: body.rows.length, first: body.rows[0] };
  };
  const write = async (sql) => (await fetch(`/t/${tenant}/query`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ sql }),
  })).status;
  const out = { reads: [] };
  out.reads.push(await read());
  out.reads.push(await read());
  out.write = await write("UPDATE notes SET body = 'changed' WHERE id = 1");
  out.reads.push(await read());
  out.timing = performance.getEntriesByName(url).map((e) => ({ transfer: e.transferSize, body: e.encodedBodySize }));
  done(out);
})().catch((err) => done({ failed: String(err) }));
"""

driver = chromium()
try:
    driver.set_script_timeout(60)
    driver.get(f"{base}/t/{tenant}/liveness")
    seen = driver.execute_async_script(SCRIPT, tenant)
finally:
    driver.quit()
print(json.dumps(seen))
