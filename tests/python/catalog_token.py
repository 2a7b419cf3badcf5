"""PyIceberg's RestCatalog with a token, as a data team reads its tenant.

Usage: catalog_token.py CATALOG_URL TOKEN READABLE_TABLE FORBIDDEN_TABLE
Prints one JSON object with what PyIceberg saw; the Rust test asserts on it.
"""
import json
import sys

from pyiceberg.catalog.rest import RestCatalog

uri, token, readable, forbidden = sys.argv[1:5]
seen = {}

catalog = RestCatalog("tidelake", uri=uri, token=token)
seen["namespaces"] = sorted(".".join(n) for n in catalog.list_namespaces())
table = catalog.load_table(readable)
seen["rows"] = sorted(table.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
try:
    catalog.load_table(forbidden)
    seen["forbidden"] = "loaded"
except Exception as e:  # PyIceberg raises ForbiddenError for a 403
    seen["forbidden"] = type(e).__name__

try:
    RestCatalog("tidelake", uri=uri, token="tlk_000000000000_not-a-key").list_namespaces()
    seen["bad_token"] = "listed"
except Exception as e:
    seen["bad_token"] = type(e).__name__

print(json.dumps(seen, default=str))
