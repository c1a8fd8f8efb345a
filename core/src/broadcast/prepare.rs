//! Preparing a broadcast (the CLI): recipients recorded in batches, jobs queued.

use super::*;

/// What to broadcast.
#[derive(Debug, Clone)]
pub struct BroadcastRequest {
    /// For people: usually the template's file name.
    pub name: String,
    pub source: String,
    pub audience: Audience,
    /// Extra template variables (`--var NAME=VALUE`).
    pub vars: Map<String, Value>,
}

impl BroadcastRequest {
    /// The identity of the broadcast: the same request resumes the same broadcast.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.audience.as_str().as_bytes());
        h.update([0]);
        h.update(self.source.as_bytes());
        h.update([0]);
        // serde_json's maps are sorted, so this is canonical.
        h.update(Value::Object(self.vars.clone()).to_string().as_bytes());
        hex::encode(h.finalize())
    }
}

/// The outcome of [`prepare`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// `None` for a dry run of a broadcast never prepared before.
    pub broadcast_id: Option<Uuid>,
    /// True when an earlier run had prepared this broadcast (this run resumes it).
    pub resumed: bool,
    /// Users in the audience, subscribed or not.
    pub audience_size: usize,
    /// Audience members left out because they unsubscribed.
    pub unsubscribed: usize,
    /// Recipients recorded by this run (a dry run: that would be recorded).
    pub new_recipients: usize,
    /// Batches queued by this run (a dry run: that would be queued).
    pub batches_queued: usize,
    /// The first recipient's email, to show.
    pub sample: Option<(String, Rendered)>,
    /// Counts by status after this run.
    pub counts: Counts,
}

/// Recipients of a broadcast by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pending: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.pending + self.sent + self.failed + self.skipped
    }
    /// Recipients whose outcome is final.
    pub fn done(&self) -> u64 {
        self.sent + self.failed + self.skipped
    }
}

/// Checks the template against every recipient, then (unless `dry_run`)
/// records the broadcast and its new recipients and queues every batch that
/// has pending recipients, in one transaction. Nothing is written when any
/// recipient's email cannot be rendered.
pub async fn prepare(ctx: &Context, req: &BroadcastRequest, dry_run: bool) -> Result<Plan> {
    let template = BroadcastTemplate::parse(&req.source, &req.vars)?;
    let members = audience_members(ctx, req.audience).await?;
    let audience_size = members.len();
    let subscribed: Vec<&Recipient> = members.iter().filter(|r| !r.email_unsubscribed).collect();
    let unsubscribed = audience_size - subscribed.len();

    // Every recipient's email must render before anything is recorded.
    let frontend = ctx.config.frontend_url.as_str();
    let mut sample = None;
    for r in &subscribed {
        let rendered = template
            .render(&template_vars(r, frontend, &req.vars))
            .map_err(|e| match e {
                Error::Http { status, detail, .. } => Error::http(
                    status,
                    format!(
                        "{} (recipient {})",
                        detail.as_str().unwrap_or_default(),
                        r.user_id
                    ),
                ),
                other => other,
            })?;
        if sample.is_none() {
            sample = Some((r.email.clone(), rendered));
        }
    }
    let ids: Vec<Uuid> = subscribed.iter().map(|r| r.user_id).collect();
    let key = req.key();

    if dry_run {
        let existing: Option<Uuid> = sqlx::query_scalar("SELECT id FROM broadcasts WHERE key = $1")
            .bind(&key)
            .fetch_optional(&ctx.db)
            .await?;
        let (already, counts) = match existing {
            Some(id) => {
                let already: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM broadcast_recipients
                     WHERE broadcast_id = $1 AND user_id = ANY($2)",
                )
                .bind(id)
                .bind(&ids)
                .fetch_one(&ctx.db)
                .await?;
                (already as usize, counts(ctx, id).await?)
            }
            None => (0, Counts::default()),
        };
        let new_recipients = ids.len() - already;
        let pending_after = counts.pending as usize + new_recipients;
        return Ok(Plan {
            broadcast_id: existing,
            resumed: existing.is_some(),
            audience_size,
            unsubscribed,
            new_recipients,
            // New recipients start new batches; old pending ones keep theirs.
            batches_queued: pending_after.div_ceil(BATCH_SIZE),
            sample,
            counts,
        });
    }

    let now = ctx.clock.now();
    let mut tx = ctx.db.begin().await?;
    let (broadcast_id, inserted): (Uuid, bool) = sqlx::query_as(
        "INSERT INTO broadcasts (key, name, audience, template, vars, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6)
         ON CONFLICT (key) DO UPDATE SET updated_at = EXCLUDED.updated_at
         RETURNING id, (xmax = 0)",
    )
    .bind(&key)
    .bind(&req.name)
    .bind(req.audience.as_str())
    .bind(&req.source)
    .bind(Value::Object(req.vars.clone()))
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    // One run at a time per broadcast (the upsert above already locks the row).
    sqlx::query("SELECT 1 FROM broadcasts WHERE id = $1 FOR UPDATE")
        .bind(broadcast_id)
        .execute(&mut *tx)
        .await?;

    let new_recipients = sqlx::query(
        "WITH base AS (
             SELECT COALESCE(MAX(batch), -1) + 1 AS first
             FROM broadcast_recipients WHERE broadcast_id = $1
         ),
         fresh AS (
             SELECT t.id, row_number() OVER (ORDER BY t.ord) - 1 AS n
             FROM unnest($2::uuid[]) WITH ORDINALITY AS t(id, ord)
             WHERE NOT EXISTS (
                 SELECT 1 FROM broadcast_recipients r
                 WHERE r.broadcast_id = $1 AND r.user_id = t.id
             )
         )
         INSERT INTO broadcast_recipients (broadcast_id, user_id, batch, created_at, updated_at)
         SELECT $1, fresh.id, base.first + (fresh.n / $3)::int, $4, $4
         FROM fresh, base
         ON CONFLICT (broadcast_id, user_id) DO NOTHING",
    )
    .bind(broadcast_id)
    .bind(&ids)
    .bind(BATCH_SIZE as i64)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected() as usize;

    let batches: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT batch FROM broadcast_recipients
         WHERE broadcast_id = $1 AND status = 'pending'
         ORDER BY batch",
    )
    .bind(broadcast_id)
    .fetch_all(&mut *tx)
    .await?;
    enqueue_batches(&mut tx, broadcast_id, &batches).await?;
    // Sending to an audience is an admin action of the system (the command
    // line): one audit row per run that records or resumes the broadcast.
    crate::audit::record(
        &mut tx,
        crate::audit::Entry {
            actor_id: None,
            action: crate::audit::action::BROADCAST_SEND,
            target_type: crate::audit::target::BROADCAST,
            target_id: Some(broadcast_id.to_string()),
            before: None,
            after: Some(serde_json::json!({
                "name": req.name,
                "audience": req.audience.as_str(),
                "resumed": !inserted,
                "new_recipients": new_recipients,
                "batches_queued": batches.len(),
            })),
            ip: None,
            at: now,
        },
    )
    .await?;
    tx.commit().await?;
    crate::jobs::wake_relay(ctx);

    let counts = counts(ctx, broadcast_id).await?;
    tracing::info!(
        %broadcast_id,
        name = req.name,
        audience = %req.audience,
        resumed = !inserted,
        new_recipients,
        batches = batches.len(),
        unsubscribed,
        "broadcast prepared"
    );
    Ok(Plan {
        broadcast_id: Some(broadcast_id),
        resumed: !inserted,
        audience_size,
        unsubscribed,
        new_recipients,
        batches_queued: batches.len(),
        sample,
        counts,
    })
}

/// Writes one outbox row per batch, in one statement.
pub(super) async fn enqueue_batches(
    conn: &mut sqlx::PgConnection,
    broadcast_id: Uuid,
    batches: &[i32],
) -> Result<()> {
    if batches.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = batches.iter().map(|_| Uuid::now_v7()).collect();
    let payloads: Vec<Value> = batches
        .iter()
        .map(|&batch| {
            serde_json::to_value(BroadcastJob {
                broadcast_id,
                batch,
            })
            .map_err(|e| Error::internal(format!("serializing a broadcast job: {e}")))
        })
        .collect::<Result<_>>()?;
    sqlx::query(
        "INSERT INTO job_outbox (id, queue, payload)
         SELECT t.id, $3, t.payload FROM unnest($1::uuid[], $2::jsonb[]) AS t(id, payload)",
    )
    .bind(&ids)
    .bind(&payloads)
    .bind(BroadcastJob::QUEUE)
    .execute(conn)
    .await?;
    Ok(())
}

/// Recipients of `broadcast_id` by status.
pub async fn counts(ctx: &Context, broadcast_id: Uuid) -> Result<Counts> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM broadcast_recipients
         WHERE broadcast_id = $1 GROUP BY status",
    )
    .bind(broadcast_id)
    .fetch_all(&ctx.db)
    .await?;
    let mut c = Counts::default();
    for (status, n) in rows {
        let n = n as u64;
        match status.as_str() {
            "pending" => c.pending = n,
            "sent" => c.sent = n,
            "failed" => c.failed = n,
            "skipped" => c.skipped = n,
            _ => {}
        }
    }
    Ok(c)
}

/// The most common failure reasons of a broadcast (for the CLI's summary).
pub async fn failure_reasons(ctx: &Context, broadcast_id: Uuid) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(error, 'unknown'), count(*) FROM broadcast_recipients
         WHERE broadcast_id = $1 AND status = 'failed'
         GROUP BY 1 ORDER BY 2 DESC LIMIT 5",
    )
    .bind(broadcast_id)
    .fetch_all(&ctx.db)
    .await?)
}
