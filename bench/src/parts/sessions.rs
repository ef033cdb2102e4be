//! Parts 3 and 4: memory as sessions accumulate, and the session lookup as
//! the session table grows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};

use super::{Ctx, measure, start, with_store};
use crate::bulk::{PgBuffers, Postgres, Sqlite, Template};
use crate::client::{COOKIE_NAME, Client, login_many, visit_all};
use crate::report::{Memory, Scale, thousands};
use crate::server::{Server, Store, temp_dir};
use crate::wrk;

/// Part 3: RSS idle, after real logins, and after many more sessions; then,
/// to show what the session cache holds, the same without it.
pub async fn memory(ctx: &mut Ctx) -> Result<()> {
    let (real, total) = ctx.plan.memory;
    let server = start(ctx, &Store::Sqlite, temp_dir("memory")?, &[])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let row = |ctx: &mut Ctx, sessions, what: String, server: &Server, diagnostic| -> Result<()> {
        let rss_kib = server.stats()?.rss_kib;
        ctx.report.memory.push(Memory {
            sessions,
            what,
            rss_kib,
            diagnostic,
        });
        Ok(())
    };
    row(ctx, 0, "idle, one second after start".into(), &server, false)?;
    let client = Client::new(&server.url(""))?;
    let (mut ids, elapsed) = login_many(&client, real, 16, 0)
        .await
        .map_err(|e| e.context(server.log_tail()))?;
    let what = format!(
        "real logins, 16 at a time ({:.0} s), each ending on `/secret`",
        elapsed.as_secs_f64()
    );
    row(ctx, real, what, &server, false)?;
    let mut db = Sqlite::open(&server.dir).await?;
    let templates = db.templates(&ids).await?;
    ids.extend(db.insert_copies(&templates, total - real).await?);
    let count = db.count().await? as usize;
    ensure!(count >= total, "{count} sessions in the store, expected {total}");
    let ids = Arc::new(ids);
    let elapsed = visit_all(&client, Arc::new(ids[real..].to_vec()), 32)
        .await
        .map_err(|e| e.context(server.log_tail()))?;
    let what = format!(
        "those, plus {} copies of them under new ids, each then requested once ({:.0} s)",
        thousands(total - real),
        elapsed.as_secs_f64()
    );
    row(ctx, total, what, &server, false)?;
    let dir = server.stop_keep_dir();
    let server = start(ctx, &Store::Sqlite, dir, &[("SESSION_CACHE_SIZE", "0")])?;
    let client = Client::new(&server.url(""))?;
    let elapsed = visit_all(&client, ids, 32)
        .await
        .map_err(|e| e.context(server.log_tail()))?;
    let what = format!(
        "diagnostic: the same database after a restart with `SESSION_CACHE_SIZE=0`, each session requested once ({:.0} s)",
        elapsed.as_secs_f64()
    );
    row(ctx, total, what, &server, true)
}

/// Part 4: `/secret` with a small and a large session table, SQLite and
/// PostgreSQL; SQLite also without its session cache, to show the store itself.
pub async fn store_scale(ctx: &mut Ctx) -> Result<()> {
    with_store(ctx, "sqlite", async |ctx, store, _| {
        let variants: [(&'static str, &[(&str, &str)]); 2] = [
            ("default", &[]),
            ("`SESSION_CACHE_SIZE=0`", &[("SESSION_CACHE_SIZE", "0")]),
        ];
        scale_on(ctx, &store, &variants, None).await
    })
    .await?;
    if ctx.pg_url.is_some() {
        with_store(ctx, "postgres", async |ctx, store, pg| {
            scale_on(ctx, &store, &[("default", &[])], pg).await
        })
        .await?;
    }
    Ok(())
}

/// Logs in once, then for each table size: fills the table with copies of
/// that session, and measures each configuration on a fresh server.
async fn scale_on(
    ctx: &mut Ctx,
    store: &Store,
    variants: &[(&'static str, &[(&str, &str)])],
    pg: Option<&mut Postgres>,
) -> Result<()> {
    let server = start(ctx, store, temp_dir("scale")?, &[])?;
    let client = Client::new(&server.url(""))?;
    let id = client.login("Ada Lovelace", "ada@example.com").await?;
    let (_, _, body) = client.fetch("/secret", &id).await?;
    let mut dir = server.stop_keep_dir();
    let result = async {
        let mut db = match pg {
            Some(pg) => SessionTable::Postgres(pg),
            None => SessionTable::Sqlite(Sqlite::open(&dir).await?),
        };
        let templates = db.templates(std::slice::from_ref(&id)).await?;
        let mut ids = vec![id.clone()];
        let (small, large) = ctx.plan.scale;
        for size in [small, large] {
            let t = Instant::now();
            ids.extend(db.insert_copies(&templates, size - ids.len()).await?);
            let count = db.count().await? as usize;
            ensure!(count >= size, "{count} sessions in the store, expected {size}");
            ctx.report.notes.push(format!(
                "Store scale, {}: {} sessions written in {:.1} s.",
                store.label(),
                thousands(count),
                t.elapsed().as_secs_f64()
            ));
            db.settle().await?;
            // Distinct sessions spread evenly over the whole table.
            let step = ids.len().div_ceil(ctx.plan.spread_max);
            let spread_ids: Arc<Vec<String>> = Arc::new(ids.iter().step_by(step).cloned().collect());
            let script = dir.join("cookies.lua");
            std::fs::write(&script, wrk::rotating_cookies_script(&spread_ids))?;
            for (variant, env) in variants {
                let server = start(ctx, store, dir.clone(), env)?;
                let client = Client::new(&server.url(""))?;
                let cookie = format!("{COOKIE_NAME}={id}");
                let (hot, _) = measure(ctx, &server, Some(&cookie), None, body.len(), true).await?;
                // Each session once first: a session last seen a minute ago
                // or more records its activity (a write) at its next request,
                // and the copies of a large table are that old by now. The
                // measured run that follows is within the minute: lookups only.
                visit_all(&client, spread_ids.clone(), 32).await?;
                db.settle().await?;
                let (spread, _) = measure(ctx, &server, None, Some(&script), body.len(), false).await?;
                let buffers = db.buffers(&spread_ids).await?;
                if let Some(b) = &buffers {
                    ctx.report.notes.push(format!(
                        "Store scale, {}, {} sessions: right after the spread run, a lookup of {} of its sessions \
                         found {} of its {} pages in PostgreSQL's buffer cache and read {} from the operating \
                         system; the table with its indexes takes {:.1} MB, `shared_buffers` {:.0} MB; plan `{}`.",
                        store.label(),
                        thousands(count),
                        b.ids,
                        b.hit,
                        b.hit + b.read,
                        b.read,
                        b.table_bytes as f64 / 1e6,
                        b.shared_buffers_bytes as f64 / 1e6,
                        b.node
                    ));
                }
                client.check_secret(&id).await?;
                ctx.report.scale.push(Scale {
                    store: store.label(),
                    variant,
                    sessions: count,
                    hot,
                    spread_over: spread_ids.len(),
                    spread,
                    buffers,
                });
                dir = server.stop_keep_dir();
            }
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The session table of either SQL store.
enum SessionTable<'a> {
    Sqlite(Sqlite),
    Postgres(&'a mut Postgres),
}

impl SessionTable<'_> {
    async fn templates(&mut self, ids: &[String]) -> Result<Vec<Template>> {
        match self {
            SessionTable::Sqlite(db) => db.templates(ids).await,
            SessionTable::Postgres(db) => db.templates(ids).await,
        }
    }

    async fn insert_copies(&mut self, templates: &[Template], n: usize) -> Result<Vec<String>> {
        match self {
            SessionTable::Sqlite(db) => db.insert_copies(templates, n).await,
            SessionTable::Postgres(db) => db.insert_copies(templates, n).await,
        }
    }

    async fn count(&mut self) -> Result<i64> {
        match self {
            SessionTable::Sqlite(db) => db.count().await,
            SessionTable::Postgres(db) => db.count().await,
        }
    }

    /// For PostgreSQL: where one batch of the spread sessions' lookups
    /// finds its pages right after the spread run.
    async fn buffers(&mut self, spread: &[String]) -> Result<Option<PgBuffers>> {
        match self {
            SessionTable::Sqlite(_) => Ok(None),
            SessionTable::Postgres(db) => {
                // As many as oidc-gate puts in one query, from all over the table.
                let sample: Vec<String> = spread
                    .iter()
                    .step_by(spread.len().div_ceil(128).max(1))
                    .cloned()
                    .collect();
                db.buffers(&sample).await.map(Some)
            }
        }
    }

    async fn settle(&mut self) -> Result<()> {
        match self {
            SessionTable::Sqlite(db) => db.settle().await,
            SessionTable::Postgres(db) => db.settle().await,
        }
    }
}
