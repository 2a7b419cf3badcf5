"""Read every tenant's changelog tables through the REST catalog with
PyIceberg, as an independent reader of what tidelake wrote.

Usage: lake_read.py CATALOG_URL [--snapshot-rows] [NAMESPACE ...]
Prints one JSON object: per table its schemas, properties, rows (current
snapshot, by _lsn) and every snapshot's summary and _lsn list (and rows,
read with the snapshot's own schema, with --snapshot-rows), oldest first.
"""
import datetime
import decimal
import json
import os
import sys
import uuid

from pyiceberg.catalog import load_catalog


def plain(value):
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
            return (value - epoch) // datetime.timedelta(microseconds=1)
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def rows_of(arrow):
    rows = [{k: plain(v) for k, v in r.items()} for r in arrow.to_pylist()]
    return sorted(rows, key=lambda r: r["_lsn"])


def main():
    url = sys.argv[1]
    args = sys.argv[2:]
    snapshot_rows = "--snapshot-rows" in args
    args = [a for a in args if a != "--snapshot-rows"]
    catalog = load_catalog("tidelake", type="rest", uri=url, **json.loads(os.environ.get("TIDELAKE_CATALOG_PROPERTIES", "{}")))
    namespaces = args or [ns[0] for ns in catalog.list_namespaces()]
    out = {"namespaces": sorted(ns[0] for ns in catalog.list_namespaces()), "tables": {}}
    for ns in namespaces:
        for ident in catalog.list_tables(ns):
            table = catalog.load_table(ident)
            meta = table.metadata
            snapshots = []
            for snap in sorted(table.snapshots(), key=lambda s: s.sequence_number):
                at = table.scan(snapshot_id=snap.snapshot_id).to_arrow()
                if snapshot_rows:
                    extra = {"rows": rows_of(at)}
                else:
                    extra = {}
                snapshots.append({
                    **extra,
                    "id": snap.snapshot_id,
                    "schema_id": snap.schema_id,
                    "summary": {k: v for k, v in snap.summary.additional_properties.items()
                                if k.startswith("tidelake.")},
                    "lsns": sorted(at.column("_lsn").to_pylist()),
                })
            out["tables"][".".join(ident)] = {
                "schema": [{"id": f.field_id, "name": f.name, "type": str(f.field_type)}
                           for f in table.schema().fields],
                "schemas": {str(s.schema_id): [{"id": f.field_id, "name": f.name, "type": str(f.field_type)}
                                               for f in s.fields] for s in meta.schemas},
                "properties": dict(table.properties),
                "partition": [str(f.transform) for f in table.spec().fields],
                "rows": rows_of(table.scan().to_arrow()),
                "snapshots": snapshots,
            }
    print(json.dumps(out))


main()
