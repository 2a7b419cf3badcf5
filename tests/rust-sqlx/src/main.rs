//! A ledger app on sqlx: typed values through parameters and back, a
//! transaction rolled back and one committed, concurrent statements over a
//! pool. `DATABASE_URL` names the tenant; prints what it read, as JSON.

use sqlx::Row;
use sqlx::postgres::PgPoolOptions;

#[tokio::main]
async fn main() -> Result<(), sqlx::Error> {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await?;
    sqlx::query("CREATE TABLE entries (id bigint PRIMARY KEY, name text NOT NULL, amount float8, paid bool, note bytea, at timestamptz)")
        .execute(&pool)
        .await?;
    for (id, name, amount, paid) in [(1i64, "rent", 1200.5f64, true), (2, "coffee", 3.25, false)] {
        sqlx::query("INSERT INTO entries (id, name, amount, paid, note, at) VALUES ($1, $2, $3, $4, $5, '2026-12-03T10:00:00Z')")
            .bind(id)
            .bind(name)
            .bind(amount)
            .bind(paid)
            .bind(vec![id as u8, 0xff])
            .execute(&pool)
            .await?;
    }
    let rows = sqlx::query("SELECT id, name, amount, paid, note, extract(epoch FROM at)::float8 AS at FROM entries ORDER BY id")
        .fetch_all(&pool)
        .await?;
    let found: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let note: Vec<u8> = r.get(4);
            serde_json::json!([r.get::<i64, _>(0), r.get::<String, _>(1), r.get::<f64, _>(2), r.get::<bool, _>(3), note, r.get::<f64, _>(5)])
        })
        .collect();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM entries").execute(&mut *tx).await?;
    tx.rollback().await?;
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE entries SET paid = true WHERE id = $1").bind(2i64).execute(&mut *tx).await?;
    tx.commit().await?;
    let inserts = (10..18i64).map(|id| sqlx::query("INSERT INTO entries (id, name) VALUES ($1, 'pooled')").bind(id).execute(&pool));
    for done in futures_util::future::join_all(inserts).await {
        done?;
    }
    let (n, paid): (i64, i64) = sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE paid) FROM entries").fetch_one(&pool).await?;
    pool.close().await;
    println!("{}", serde_json::json!({ "found": found, "count": n, "paid": paid }));
    Ok(())
}
