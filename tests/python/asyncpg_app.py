"""A small app on asyncpg against one tenant over the tenant wire front:
DDL, typed parameters in and out (asyncpg's binary codecs), executemany, a
transaction rolled back and one committed, a pool of connections inserting
at once, COPY of records. Prints one JSON object.

    python asyncpg_app.py postgresql://app@127.0.0.1:PORT/TENANT
"""

import asyncio
import datetime
import decimal
import json
import sys
import uuid


async def main(dsn):
    import asyncpg

    out = {}
    conn = await asyncpg.connect(dsn)
    await conn.execute(
        "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL, score numeric(6,2), done boolean,"
        " at timestamptz, ref uuid, tags text[], doc jsonb, blob bytea)"
    )
    insert = "INSERT INTO notes VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    at = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.timezone.utc)
    await conn.execute(
        insert, 1, "first", decimal.Decimal("12.50"), True, at,
        uuid.UUID(int=42), ["a", "b"], json.dumps({"k": 1}), b"\x01\xff",
    )
    await conn.executemany(insert, [(i, f"many {i}", None, False, None, None, None, None, None) for i in range(10, 13)])
    try:
        async with conn.transaction():
            await conn.execute("UPDATE notes SET score = 0 WHERE id = 1")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    async with conn.transaction():
        await conn.execute("UPDATE notes SET score = score + 1 WHERE id = 1")

    row = await conn.fetchrow("SELECT * FROM notes WHERE id = $1", 1)
    out["row"] = [
        row["id"], row["body"], str(row["score"]), row["done"], row["at"].isoformat(),
        str(row["ref"]), row["tags"], json.loads(row["doc"]), list(row["blob"]),
    ]
    # A pool: concurrent connections to the one tenant.
    pool = await asyncpg.create_pool(dsn, min_size=4, max_size=4)
    await asyncio.gather(*(pool.execute(insert, i, f"pooled {i}", None, None, None, None, None, None, None) for i in range(20, 28)))
    await pool.close()
    # COPY of records (binary COPY FROM STDIN).
    await conn.copy_records_to_table("notes", records=[(30, "copied", decimal.Decimal("3.00"), True, None, None, None, None, None)])
    out["count"] = await conn.fetchval("SELECT count(*) FROM notes")
    out["copied"] = await conn.fetchval("SELECT body FROM notes WHERE id = 30")
    await conn.close()
    print(json.dumps(out))


asyncio.run(main(sys.argv[1]))
