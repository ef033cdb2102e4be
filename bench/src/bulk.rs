//! Many sessions fast: copies of real logged-in sessions under fresh random
//! ids, written straight into oidc-gate's session table (SQLite or
//! PostgreSQL). Each copy is the real record with its id replaced, encoded
//! as `tower-sessions-sqlx-store` encodes it, so oidc-gate loads it like any
//! session it created itself. Also: a PostgreSQL schema per run, and probes
//! for the optional services.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use sqlx::{Connection, PgConnection, SqliteConnection};
use tower_sessions::session::{Id, Record};

/// Rows per SQLite insert statement (3 bound values each).
const SQLITE_BATCH: usize = 500;
/// Rows per PostgreSQL insert statement (arrays, so no bind limit).
const PG_BATCH: usize = 10_000;
/// Rows per transaction.
const TX_ROWS: usize = 100_000;

/// A real session to copy: its record and the raw expiry column.
pub struct Template {
    record: Record,
    expiry: Expiry,
}

/// The expiry column as stored (SQLite may hold text or an integer).
#[derive(Clone)]
enum Expiry {
    Int(i64),
    Text(String),
}

/// A copy of `t` under a fresh id: (id, encoded record).
fn copy(t: &Template) -> Result<(String, Vec<u8>)> {
    let mut record = t.record.clone();
    record.id = Id::default();
    Ok((record.id.to_string(), rmp_serde::to_vec(&record)?))
}

/// The SQLite database of an oidc-gate data directory.
pub struct Sqlite(SqliteConnection);

impl Sqlite {
    /// Opens `DATA_DIR/oidc-gate.sqlite3` (WAL, so oidc-gate keeps reading meanwhile).
    pub async fn open(data_dir: &Path) -> Result<Self> {
        let url = format!("sqlite://{}", data_dir.join("oidc-gate.sqlite3").display());
        let mut conn = SqliteConnection::connect(&url)
            .await
            .context("open the SQLite database")?;
        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut conn).await?;
        Ok(Self(conn))
    }

    /// The sessions `ids` as templates.
    pub async fn templates(&mut self, ids: &[String]) -> Result<Vec<Template>> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (data, kind, text): (Vec<u8>, String, String) = sqlx::query_as(
                "SELECT data, typeof(expiry_date), CAST(expiry_date AS TEXT) FROM tower_sessions WHERE id = ?",
            )
            .bind(id)
            .fetch_optional(&mut self.0)
            .await?
            .with_context(|| format!("session {id} is not in tower_sessions"))?;
            let expiry = if kind == "integer" {
                Expiry::Int(text.parse()?)
            } else {
                Expiry::Text(text)
            };
            out.push(Template {
                record: rmp_serde::from_slice(&data).context("decode a session record")?,
                expiry,
            });
        }
        Ok(out)
    }

    /// Inserts `n` copies of `templates` (round robin); returns their ids.
    pub async fn insert_copies(&mut self, templates: &[Template], n: usize) -> Result<Vec<String>> {
        ensure!(!templates.is_empty(), "no session to copy");
        let mut ids = Vec::with_capacity(n);
        let mut done = 0;
        while done < n {
            let tx_end = (done + TX_ROWS).min(n);
            let mut tx = self.0.begin().await?;
            while done < tx_end {
                let rows = SQLITE_BATCH.min(tx_end - done);
                let sql = format!(
                    "INSERT INTO tower_sessions (id, data, expiry_date) VALUES {}",
                    vec!["(?, ?, ?)"; rows].join(", ")
                );
                let mut q = sqlx::query(&sql);
                for i in done..done + rows {
                    let t = &templates[i % templates.len()];
                    let (id, data) = copy(t)?;
                    q = q.bind(id.clone()).bind(data);
                    q = match &t.expiry {
                        Expiry::Int(v) => q.bind(*v),
                        Expiry::Text(v) => q.bind(v.clone()),
                    };
                    ids.push(id);
                }
                q.execute(&mut *tx).await?;
                done += rows;
            }
            tx.commit().await?;
        }
        Ok(ids)
    }

    /// Writes the WAL back into the database file, as SQLite does by itself
    /// after a while, so that a measurement that follows writes does not
    /// pay for them.
    pub async fn settle(&mut self) -> Result<()> {
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut self.0)
            .await?;
        Ok(())
    }

    /// Rows in the session table.
    pub async fn count(&mut self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tower_sessions")
            .fetch_one(&mut self.0)
            .await?)
    }
}

/// One lookup's pages in PostgreSQL: from its buffer cache (`hit`) or read
/// from the operating system (`read`).
#[derive(Debug, Clone)]
pub struct PgBuffers {
    /// The plan's top node, e.g. `Index Scan using session_pkey on session`.
    pub node: String,
    /// Sessions looked up.
    pub ids: usize,
    /// Pages found in shared buffers.
    pub hit: u64,
    /// Pages read into shared buffers.
    pub read: u64,
    /// The session table with its indexes.
    pub table_bytes: u64,
    /// `shared_buffers`.
    pub shared_buffers_bytes: u64,
}

/// A PostgreSQL schema of this run; [`Postgres::drop_schema`] removes it.
pub struct Postgres {
    conn: PgConnection,
    /// The schema (`DATABASE_SCHEMA`).
    pub schema: String,
}

impl Postgres {
    /// Connects to `url` for a schema named `bench_<pid>_<n>` (not created
    /// here: oidc-gate creates it); drops a leftover of the same name.
    pub async fn connect(url: &str, n: u32) -> Result<Self> {
        let conn = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url))
            .await
            .context("PostgreSQL did not answer within 5 s")??;
        let mut pg = Self {
            conn,
            schema: format!("bench_{}_{n}", std::process::id()),
        };
        pg.drop_schema().await?;
        Ok(pg)
    }

    /// Drops the schema and everything in it.
    pub async fn drop_schema(&mut self) -> Result<()> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema))
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    fn table(&self) -> String {
        format!("\"{}\".\"session\"", self.schema)
    }

    /// The sessions `ids` as templates.
    pub async fn templates(&mut self, ids: &[String]) -> Result<Vec<Template>> {
        let sql = format!("SELECT data, expiry_date::text FROM {} WHERE id = $1", self.table());
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let (data, expiry): (Vec<u8>, String) = sqlx::query_as(&sql)
                .bind(id)
                .fetch_optional(&mut self.conn)
                .await?
                .with_context(|| format!("session {id} is not in {}", self.table()))?;
            out.push(Template {
                record: rmp_serde::from_slice(&data).context("decode a session record")?,
                expiry: Expiry::Text(expiry),
            });
        }
        Ok(out)
    }

    /// Inserts `n` copies of `templates` (round robin); returns their ids.
    pub async fn insert_copies(&mut self, templates: &[Template], n: usize) -> Result<Vec<String>> {
        ensure!(!templates.is_empty(), "no session to copy");
        let sql = format!(
            "INSERT INTO {} (id, data, expiry_date) \
             SELECT id, data, expiry::timestamptz FROM UNNEST($1::text[], $2::bytea[], $3::text[]) AS t(id, data, expiry)",
            self.table()
        );
        let mut ids = Vec::with_capacity(n);
        let mut done = 0;
        while done < n {
            let rows = PG_BATCH.min(n - done);
            let (mut b_ids, mut b_data, mut b_exp) = (Vec::new(), Vec::new(), Vec::new());
            for i in done..done + rows {
                let t = &templates[i % templates.len()];
                let (id, data) = copy(t)?;
                b_ids.push(id);
                b_data.push(data);
                b_exp.push(match &t.expiry {
                    Expiry::Text(v) => v.clone(),
                    Expiry::Int(v) => v.to_string(),
                });
            }
            sqlx::query(&sql)
                .bind(&b_ids)
                .bind(&b_data)
                .bind(&b_exp)
                .execute(&mut self.conn)
                .await?;
            ids.extend(b_ids);
            done += rows;
        }
        sqlx::query(&format!("ANALYZE {}", self.table()))
            .execute(&mut self.conn)
            .await?;
        Ok(ids)
    }

    /// Where one batched lookup of `ids` (as oidc-gate sends it) found its
    /// pages, just after a measured run, and the table's size against
    /// PostgreSQL's buffer cache.
    pub async fn buffers(&mut self, ids: &[String]) -> Result<PgBuffers> {
        let sql = format!(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT id, data FROM {} WHERE id = ANY($1) AND expiry_date > now()",
            self.table()
        );
        let lines: Vec<String> = sqlx::query_scalar(&sql).bind(ids).fetch_all(&mut self.conn).await?;
        // The plan's first `Buffers: shared hit=H read=R` line is its top node's.
        let buffers = lines
            .iter()
            .find_map(|l| l.trim().strip_prefix("Buffers: shared "))
            .unwrap_or_default();
        let node = lines
            .first()
            .and_then(|l| l.split("  (").next())
            .unwrap_or_default()
            .trim()
            .to_owned();
        let blocks = |key: &str| {
            buffers
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let (table_bytes, shared_buffers_bytes): (i64, i64) = sqlx::query_as(&format!(
            "SELECT pg_total_relation_size('{}'), \
                    (SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers')",
            self.table().replace('\'', "''")
        ))
        .fetch_one(&mut self.conn)
        .await?;
        Ok(PgBuffers {
            node,
            ids: ids.len(),
            hit: blocks("hit"),
            read: blocks("read"),
            table_bytes: table_bytes as u64,
            shared_buffers_bytes: shared_buffers_bytes as u64,
        })
    }

    /// Vacuums the session table and writes every dirty page out, as
    /// autovacuum and the checkpointer do by themselves after a while: a
    /// measurement that follows a million inserts (or a hundred thousand
    /// updates) then does not evict their dirty pages from PostgreSQL's
    /// buffers on every read, or compete with autovacuum for the cores.
    pub async fn settle(&mut self) -> Result<()> {
        for sql in [format!("VACUUM (ANALYZE) {}", self.table()), "CHECKPOINT".into()] {
            sqlx::query(&sql).execute(&mut self.conn).await?;
        }
        Ok(())
    }

    /// Rows in the session table.
    pub async fn count(&mut self) -> Result<i64> {
        Ok(sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", self.table()))
            .fetch_one(&mut self.conn)
            .await?)
    }
}

/// `host:port` of a `redis://host:port[/db]` URL.
pub fn redis_addr(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(6379)
    ))
}

/// Whether a Redis server answers `PING` at `url` (`redis://host:port[/db]`).
pub async fn redis_answers(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(addr) = redis_addr(url) else { return false };
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"PING\r\n").await?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await?;
        Ok::<bool, std::io::Error>(buf[..n].starts_with(b"+PONG"))
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), probe).await, Ok(Ok(true)))
}
