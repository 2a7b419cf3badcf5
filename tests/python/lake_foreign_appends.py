"""Append rows to a changelog table from outside for SECONDS seconds, the
way another Iceberg writer would, retrying its own commit conflicts.

Usage: lake_foreign_appends.py CATALOG_URL TABLE SECONDS
Prints {"appended": n, "conflicts": k}. Its rows have _op = 'external'.
"""
import datetime
import json
import sys
import time

import pyarrow as pa
from pyiceberg.catalog import load_catalog
from pyiceberg.exceptions import CommitFailedException


def main():
    url, name, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    catalog = load_catalog("tidelake", type="rest", uri=url)
    appended = conflicts = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        table = catalog.load_table(name)
        schema = table.schema().as_arrow()
        row = {f.name: None for f in schema}
        row.update({"_op": "external", "_lsn": -1, "_xid": 0,
                    "_commit_ts": datetime.datetime.now(datetime.timezone.utc)})
        try:
            table.append(pa.Table.from_pylist([row], schema=schema))
            appended += 1
        except CommitFailedException:
            conflicts += 1
    print(json.dumps({"appended": appended, "conflicts": conflicts}))


main()
