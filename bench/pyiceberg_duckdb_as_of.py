"""The AS OF baseline: the state of a changelog table at an instant,
computed by PyIceberg (scan filtered on _commit_ts) and DuckDB (latest change
per key, deletes dropped, nothing before the latest truncate).

Usage: pyiceberg_duckdb_as_of.py CATALOG_URL TABLE INSTANT_MICROS REPEAT
Prints {"count": n, "sum": s, "ms": [..]} (count and sum of qty).
"""
import datetime
import json
import sys
import time

import duckdb
from pyiceberg.catalog import load_catalog
from pyiceberg.expressions import LessThanOrEqual

QUERY = """
WITH within AS (SELECT * FROM changes),
cut AS (SELECT coalesce(max(_lsn), 0) AS lsn FROM within WHERE _op = 'truncate'),
latest AS (
  SELECT *, row_number() OVER (PARTITION BY id ORDER BY _lsn DESC) AS rn
  FROM within WHERE _lsn > (SELECT lsn FROM cut)
)
SELECT count(*) AS n, sum(qty) AS s FROM latest WHERE rn = 1 AND _op <> 'delete'
"""


def main():
    url, name, micros, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    at = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=micros)
    catalog = load_catalog("baseline", type="rest", uri=url)
    con = duckdb.connect()
    timings, answer = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        table = catalog.load_table(name)
        changes = table.scan(row_filter=LessThanOrEqual("_commit_ts", at.isoformat()),
                             selected_fields=("id", "qty", "_op", "_lsn")).to_arrow()
        con.register("changes", changes)
        answer = con.execute(QUERY).fetchall()[0]
        con.unregister("changes")
        timings.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"count": answer[0], "sum": int(answer[1] or 0), "ms": timings}))


main()
