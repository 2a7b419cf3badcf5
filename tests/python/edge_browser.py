"""A page in headless Chromium using a tenant at the edge, as a browser
application would: `fetch` for queries, a WebSocket for a change
subscription and a query on it. Prints what it saw, as JSON.

Usage: edge_browser.py <edge-base-url> <tenant>

The page is the Worker's own origin (its tenant's `liveness`), so its
requests carry that Origin, which the Worker allows.
"""

import json
import sys

from browser import chromium

base, tenant = sys.argv[1:3]

SCRIPT = """
const [base, tenant, done] = arguments;
(async () => {
  const post = async (sql, params) => {
    const resp = await fetch(`/t/${tenant}/query`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(params ? { sql, params } : { sql }),
    });
    return { status: resp.status, body: await resp.json() };
  };
  const out = {};
  out.create = await post("CREATE TABLE notes (id int PRIMARY KEY, body text, at timestamptz DEFAULT now())");
  const ws = new WebSocket(base.replace(/^http/, "ws") + `/t/${tenant}/ws`);
  const messages = [];
  const waiters = [];
  ws.onmessage = (event) => {
    messages.push(JSON.parse(event.data));
    for (const w of waiters.splice(0)) w();
  };
  const until = (test) => new Promise((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error("timed out waiting: " + JSON.stringify(messages))), 30000);
    const check = () => {
      const found = messages.find(test);
      if (found) { clearTimeout(deadline); resolve(found); } else waiters.push(check);
    };
    check();
  });
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = () => reject(new Error("WebSocket failed")); });
  ws.send(JSON.stringify({ type: "subscribe", id: "s", since: 0, tables: ["notes"] }));
  out.subscribed = await until((m) => m.type === "subscribed");
  out.insert = await post("INSERT INTO notes (id, body) VALUES ($1, $2), ($3, $4)", [1, "from the browser", 2, "é ✓"]);
  out.update = await post("UPDATE notes SET body = 'edited' WHERE id = 2");
  await until((m) => m.type === "change" && m.change.op === "update");
  ws.send(JSON.stringify({ type: "query", id: "q", sql: "SELECT id, body FROM notes ORDER BY id" }));
  out.result = await until((m) => m.type === "result" && m.id === "q");
  ws.send(JSON.stringify({ type: "query", id: "bad", sql: "SELECT * FROM missing" }));
  out.error = await until((m) => m.type === "error" && m.id === "bad");
  out.changes = messages.filter((m) => m.type === "change").map((m) => m.change);
  ws.close();
  done(out);
})().catch((err) => done({ failed: String(err) }));
"""

driver = chromium()
try:
    driver.set_script_timeout(90)
    driver.get(f"{base}/t/{tenant}/liveness")
    seen = driver.execute_async_script(SCRIPT, base, tenant)
finally:
    driver.quit()
print(json.dumps(seen))
