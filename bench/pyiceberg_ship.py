"""The lake pipeline a user would write by hand, as the benchmark's
baseline: page through a tenant's change log with GET /t/{tenant}/changes
and append each batch to an Iceberg table with PyIceberg (same catalog,
same columns, same day partitioning as tidelake's changelog tables).

Usage: pyiceberg_ship.py BASE_URL TENANT BATCH
Prints {"changes": n, "seconds": s, "cpu": client CPU seconds}.
"""
import datetime
import decimal
import json
import sys
import time
import urllib.request

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.transforms import DayTransform
from pyiceberg.types import (DecimalType, LongType, NestedField, StringType, TimestamptzType)


def ts(text):
    return None if text is None else datetime.datetime.fromisoformat(text)


def main():
    base, tenant, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    catalog = load_catalog("baseline", type="rest", uri=base + "/catalog")
    namespace = "baseline-" + tenant
    catalog.create_namespace_if_not_exists(namespace)
    schema = Schema(
        NestedField(1, "id", LongType()), NestedField(2, "kind", StringType()),
        NestedField(3, "amount", DecimalType(12, 2)), NestedField(4, "at", TimestamptzType()),
        NestedField(5, "payload", StringType()), NestedField(6, "_op", StringType(), required=True),
        NestedField(7, "_lsn", LongType(), required=True), NestedField(8, "_xid", LongType(), required=True),
        NestedField(9, "_commit_ts", TimestamptzType(), required=True),
    )
    spec = PartitionSpec(PartitionField(source_id=9, field_id=1000, transform=DayTransform(), name="_commit_ts_day"))
    table = catalog.create_table(f"{namespace}.events", schema=schema, partition_spec=spec)
    arrow_schema = table.schema().as_arrow()

    def append(changes):
        rows = [c["new"] if c["op"] != "delete" else c["old"] for c in changes]
        columns = {
            "id": [r["id"] for r in rows],
            "kind": [r["kind"] for r in rows],
            "amount": [None if r["amount"] is None else decimal.Decimal(r["amount"]) for r in rows],
            "at": [ts(r["at"]) for r in rows],
            "payload": [None if r["payload"] is None else json.dumps(r["payload"]) for r in rows],
            "_op": [c["op"] for c in changes],
            "_lsn": [c["lsn"] for c in changes],
            "_xid": [c["xid"] for c in changes],
            "_commit_ts": [ts(c["commitTs"]) for c in changes],
        }
        table.append(pa.Table.from_pydict(columns, schema=arrow_schema))

    started, cpu = time.monotonic(), time.process_time()
    since, pending, shipped = 0, [], 0
    while True:
        with urllib.request.urlopen(f"{base}/t/{tenant}/changes?since={since}&limit=10000") as resp:
            page = json.load(resp)
        changes = page["changes"]
        if not changes:
            break
        since = page["nextLsn"]
        pending.extend(changes)
        if len(pending) >= batch:
            append(pending)
            shipped += len(pending)
            pending = []
    if pending:
        append(pending)
        shipped += len(pending)
    print(json.dumps({"changes": shipped, "seconds": time.monotonic() - started,
                      "cpu": time.process_time() - cpu}))


main()
