"""Drive tidelake's Iceberg REST catalog with PyIceberg, as a data team would.

Usage: catalog_roundtrip.py CATALOG_URL
Prints one JSON object with what PyIceberg saw; the Rust test asserts on it.
"""
import json
import os
import sys

import pyarrow as pa
from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.exceptions import NamespaceNotEmptyError, NoSuchNamespaceError, NoSuchTableError

# A reader brings its own storage credentials (the catalog vends none).
catalog = RestCatalog("tidelake", uri=sys.argv[1], **json.loads(os.environ.get("TIDELAKE_CATALOG_PROPERTIES", "{}")))
seen = {}

catalog.create_namespace("acme", {"owner": "ops"})
catalog.update_namespace_properties("acme", removals={"owner"}, updates={"tier": "gold"})
seen["namespaces"] = [list(n) for n in catalog.list_namespaces()]
seen["properties"] = catalog.load_namespace_properties("acme")

rows = pa.table({"id": pa.array([1, 2], pa.int64()), "name": pa.array(["a", None], pa.string())})
table = catalog.create_table("acme.items", schema=rows.schema)
table.append(rows)
first = table.current_snapshot().snapshot_id
table.append(pa.table({"id": pa.array([3], pa.int64()), "name": pa.array(["c"], pa.string())}))

table = catalog.load_table("acme.items")
by_id = lambda r: r["id"]
seen["rows"] = sorted(table.scan().to_arrow().to_pylist(), key=by_id)
seen["rows_at_first_snapshot"] = sorted(table.scan(snapshot_id=first).to_arrow().to_pylist(), key=by_id)
seen["snapshots"] = len(table.metadata.snapshots)

# Two writers from the same starting point: the second commit conflicts
# (409); PyIceberg refreshes and retries, and neither append is lost.
a = catalog.load_table("acme.items")
b = catalog.load_table("acme.items")
a.append(pa.table({"id": pa.array([10], pa.int64()), "name": pa.array(["a"], pa.string())}))
b.append(pa.table({"id": pa.array([20], pa.int64()), "name": pa.array(["b"], pa.string())}))
seen["ids_after_concurrent_appends"] = sorted(r["id"] for r in catalog.load_table("acme.items").scan().to_arrow().to_pylist())

try:
    catalog.drop_namespace("acme")
    seen["drop_non_empty"] = "dropped"
except NamespaceNotEmptyError:
    seen["drop_non_empty"] = "NamespaceNotEmptyError"

catalog.rename_table("acme.items", "acme.things")
seen["tables"] = [list(t) for t in catalog.list_tables("acme")]
try:
    catalog.load_table("acme.items")
    seen["old_name"] = "found"
except NoSuchTableError:
    seen["old_name"] = "NoSuchTableError"

catalog.drop_table("acme.things")
catalog.drop_namespace("acme")
seen["namespaces_after_drop"] = [list(n) for n in catalog.list_namespaces()]
try:
    catalog.load_namespace_properties("acme")
    seen["dropped_namespace"] = "found"
except NoSuchNamespaceError:
    seen["dropped_namespace"] = "NoSuchNamespaceError"

print(json.dumps(seen))
