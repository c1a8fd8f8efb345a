//! Broadcast emails (the waitlist launch mail, newsletters): `mambo broadcast`.
//!
//! [`prepare`] checks the template against every recipient (a missing variable
//! fails here, before anything is recorded or sent), records one
//! `broadcast_recipients` row per recipient in batches of [`BATCH_SIZE`] and
//! queues one [`BroadcastJob`] per batch that still has pending recipients.
//! The worker's [`send_batch`] sends a batch with one call to Resend's batch
//! endpoint and records each recipient's outcome.
//!
//! Nobody gets a broadcast twice:
//! - a broadcast is found again by its key (audience + template + variables),
//!   so rerunning the command resumes it; `UNIQUE (broadcast_id, user_id)`
//!   keeps each recipient to one row, and only `pending` rows are sent;
//! - a batch is sent while its rows are locked (`FOR UPDATE SKIP LOCKED`), so
//!   two runs of the same job cannot both send it;
//! - the batch's `Idempotency-Key` names the broadcast, the batch and its
//!   recipients, so a send that Resend accepted but we failed to record (a crash
//!   at the wrong moment) is answered from Resend's idempotency cache on retry.
//!
//! Users with `email_unsubscribed` are never recorded, and are skipped at send
//! time if they unsubscribed after the broadcast was prepared. A send that fails
//! for good (a 4xx, or [`MAX_ATTEMPTS`] failed attempts) is recorded as `failed`
//! per recipient; nothing is retried forever.
//!
//! ## The template file
//!
//! A minijinja file with three blocks: `subject`, `html` and `text`. The HTML
//! block escapes variables; the subject and text blocks do not. The result is
//! wrapped in the `broadcast` email layout (`core/templates/email/broadcast.*`).
//!
//! ```jinja
//! {% block subject %}The doors are open, {{ first_name }}{% endblock %}
//! {% block html %}<p>Hi {{ first_name }}, your username @{{ username }} is waiting.</p>{% endblock %}
//! {% block text %}Hi {{ first_name }}, your username @{{ username }} is waiting.{% endblock %}
//! ```
//!
//! Variables: see [`RECIPIENT_VARIABLES`], plus any `--var NAME=VALUE`. Values a
//! recipient lacks (no username, no referral code) are `null`: they print as
//! nothing and are false in `{% if %}`.

use crate::email_templates::{self, Rendered};
use crate::jobs::{BroadcastJob, Job};
use crate::{Context, Error, Result};
use minijinja::Environment;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Recipients per Resend batch call (Resend's maximum).
pub const BATCH_SIZE: usize = 100;
/// Failed sends of one batch (rate limits aside) before its recipients are
/// recorded as `failed`.
pub const MAX_ATTEMPTS: i32 = 5;

/// The variables every recipient has.
pub const RECIPIENT_VARIABLES: &[&str] = &[
    "email",
    "first_name",
    "last_name",
    "username",
    "referral_code",
    "referral_link",
    "frontend_url",
];

/// Functions a template may call (minijinja's globals), not variables.
const GLOBAL_FUNCTIONS: &[&str] = &["range", "dict", "namespace", "debug"];

/// Who receives a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Everyone who joined the waitlist (`auth_provider = 'waitlist'`).
    Waitlist,
    /// Every user.
    All,
    /// Students with a real account (role `student`, not waitlist-only).
    Students,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Waitlist => "waitlist",
            Audience::All => "all",
            Audience::Students => "students",
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Audience {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "waitlist" => Ok(Audience::Waitlist),
            "all" => Ok(Audience::All),
            "students" => Ok(Audience::Students),
            other => Err(format!(
                "unknown audience {other:?} (expected waitlist, all or students)"
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// The template
// ---------------------------------------------------------------------------

/// A compiled broadcast template.
pub struct BroadcastTemplate {
    env: Environment<'static>,
    source: String,
}

impl fmt::Debug for BroadcastTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastTemplate")
            .field("len", &self.source.len())
            .finish_non_exhaustive()
    }
}

const HTML_NAME: &str = "broadcast-file.html";
const TEXT_NAME: &str = "broadcast-file.txt";

impl BroadcastTemplate {
    /// Compiles `source` and checks that it has the three blocks and uses no
    /// variable outside [`RECIPIENT_VARIABLES`] and `extra` (the `--var`s).
    pub fn parse(source: &str, extra: &Map<String, Value>) -> Result<Self> {
        let bad = |msg: String| Error::unprocessable(format!("broadcast template: {msg}"));
        let mut env = email_templates::environment();
        // The same source twice: HTML escaping for the html block, none for the rest.
        env.add_template_owned(HTML_NAME, source.to_string())
            .map_err(|e| bad(format!("{e}")))?;
        env.add_template_owned(TEXT_NAME, source.to_string())
            .map_err(|e| bad(format!("{e}")))?;
        let tpl = Self {
            env,
            source: source.to_string(),
        };

        let used = tpl
            .env
            .get_template(TEXT_NAME)
            .map_err(|e| bad(format!("{e}")))?
            .undeclared_variables(false);
        let mut missing: BTreeSet<String> = used
            .into_iter()
            .filter(|v| {
                !RECIPIENT_VARIABLES.contains(&v.as_str())
                    && !GLOBAL_FUNCTIONS.contains(&v.as_str())
                    && !extra.contains_key(v)
            })
            .collect();
        if let Some(first) = missing.pop_first() {
            let mut names = vec![first];
            names.extend(missing);
            return Err(bad(format!(
                "missing variable(s): {} (recipients have {}; pass others with --var NAME=VALUE)",
                names.join(", "),
                RECIPIENT_VARIABLES.join(", ")
            )));
        }

        // Render once with a made-up recipient: missing blocks and type errors
        // show up now rather than for the first real recipient.
        let mut sample = sample_recipient().vars("http://localhost:3000");
        sample.extend(extra.clone());
        tpl.render(&Value::Object(sample))?;
        Ok(tpl)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the email of one recipient (`vars`: recipient variables and extras).
    pub fn render(&self, vars: &Value) -> Result<Rendered> {
        let bad = |msg: String| Error::unprocessable(format!("broadcast template: {msg}"));
        let block = |name: &str, block: &str| -> Result<String> {
            let tpl = self
                .env
                .get_template(name)
                .map_err(|e| bad(format!("{e}")))?;
            let mut captured = tpl
                .render_captured(minijinja::Value::from(minijinja::value::Serde(vars)))
                .map_err(|e| bad(format!("{e}")))?;
            captured
                .with_state_mut(|state| state.render_block(block))
                .map_err(|e| {
                    if e.kind() == minijinja::ErrorKind::UnknownBlock {
                        bad(format!("the template has no `{{% block {block} %}}`"))
                    } else {
                        bad(format!("{e}"))
                    }
                })
        };
        let subject = block(TEXT_NAME, "subject")?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if subject.is_empty() {
            return Err(bad("the subject block renders empty".into()));
        }
        let content_html = block(HTML_NAME, "html")?;
        let content_text = block(TEXT_NAME, "text")?;
        email_templates::render(
            "broadcast",
            &json!({
                "subject": subject,
                "content_html": content_html.trim(),
                "content_text": content_text.trim(),
            }),
        )
    }
}

/// What the template knows about one recipient.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recipient {
    pub user_id: Uuid,
    pub email: String,
    pub email_unsubscribed: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub referral_code: Option<String>,
}

impl Recipient {
    /// The recipient variables ([`RECIPIENT_VARIABLES`]).
    pub fn vars(&self, frontend_url: &str) -> Map<String, Value> {
        let frontend = frontend_url.trim_end_matches('/');
        let referral_link = self
            .referral_code
            .as_ref()
            .map(|c| format!("{frontend}/waitlist?ref={c}"));
        let mut m = Map::new();
        m.insert("email".into(), json!(self.email));
        m.insert("first_name".into(), json!(self.first_name));
        m.insert("last_name".into(), json!(self.last_name));
        m.insert("username".into(), json!(self.username));
        m.insert("referral_code".into(), json!(self.referral_code));
        m.insert("referral_link".into(), json!(referral_link));
        m.insert("frontend_url".into(), json!(frontend));
        m
    }
}

fn sample_recipient() -> Recipient {
    Recipient {
        user_id: Uuid::nil(),
        email: "dancer@example.com".into(),
        email_unsubscribed: false,
        first_name: Some("Ana".into()),
        last_name: Some("Dancer".into()),
        username: Some("ana_on2".into()),
        referral_code: Some("ABCD1234".into()),
    }
}

fn template_vars(r: &Recipient, frontend_url: &str, extra: &Map<String, Value>) -> Value {
    let mut vars = r.vars(frontend_url);
    for (k, v) in extra {
        vars.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(vars)
}

const RECIPIENT_COLUMNS: &str = "u.id AS user_id, u.email, u.email_unsubscribed,
     p.first_name, p.last_name, p.username, p.referral_code";

/// Everyone in `audience`, subscribed or not, oldest account first.
async fn audience_members(ctx: &Context, audience: Audience) -> Result<Vec<Recipient>> {
    let sql = format!(
        "SELECT {RECIPIENT_COLUMNS}
         FROM users u
         LEFT JOIN user_profiles p ON p.user_id = u.id
         WHERE $1 = 'all'
            OR ($1 = 'waitlist' AND u.auth_provider = 'waitlist')
            OR ($1 = 'students' AND u.role = 'student' AND u.auth_provider <> 'waitlist')
         ORDER BY u.created_at, u.id"
    );
    Ok(sqlx::query_as::<_, Recipient>(sqlx::AssertSqlSafe(sql))
        .bind(audience.as_str())
        .fetch_all(&ctx.db)
        .await?)
}

// ---------------------------------------------------------------------------
// Preparing a broadcast (the CLI)
// ---------------------------------------------------------------------------

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
            target_id: broadcast_id.to_string(),
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
async fn enqueue_batches(
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

// ---------------------------------------------------------------------------
// Sending a batch (the worker)
// ---------------------------------------------------------------------------

/// What one run of a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub sent: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(sqlx::FromRow)]
struct BroadcastRow {
    template: String,
    vars: Value,
}

/// Sends the pending recipients of one batch. Returns an error only when a
/// retry can help (then the recipients stay pending, with the error recorded);
/// final failures are recorded per recipient and return `Ok`.
pub async fn send_batch(ctx: &Context, job: &BroadcastJob) -> Result<BatchOutcome> {
    let mut tx = ctx.db.begin().await?;
    let Some(b) =
        sqlx::query_as::<_, BroadcastRow>("SELECT template, vars FROM broadcasts WHERE id = $1")
            .bind(job.broadcast_id)
            .fetch_optional(&mut *tx)
            .await?
    else {
        tracing::warn!(?job, "broadcast batch of an unknown broadcast; ignored");
        return Ok(BatchOutcome::default());
    };

    // Rows locked by another run of this batch are being sent right now: skip them.
    let sql = format!(
        "SELECT r.attempts, {RECIPIENT_COLUMNS}
         FROM broadcast_recipients r
         JOIN users u ON u.id = r.user_id
         LEFT JOIN user_profiles p ON p.user_id = r.user_id
         WHERE r.broadcast_id = $1 AND r.batch = $2 AND r.status = 'pending'
         ORDER BY r.user_id
         FOR UPDATE OF r SKIP LOCKED"
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        attempts: i32,
        #[sqlx(flatten)]
        recipient: Recipient,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(job.broadcast_id)
        .bind(job.batch)
        .fetch_all(&mut *tx)
        .await?;
    if rows.is_empty() {
        tx.commit().await?;
        tracing::debug!(?job, "broadcast batch: nothing pending");
        return Ok(BatchOutcome::default());
    }
    let attempts = rows.iter().map(|r| r.attempts).max().unwrap_or(0);
    let now = ctx.clock.now();
    let mut outcome = BatchOutcome::default();

    // Unsubscribed since the broadcast was prepared.
    let (unsubscribed, rows): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| r.recipient.email_unsubscribed);
    if !unsubscribed.is_empty() {
        let ids: Vec<Uuid> = unsubscribed.iter().map(|r| r.recipient.user_id).collect();
        outcome.skipped = ids.len();
        set_status(
            &mut tx,
            job.broadcast_id,
            &ids,
            "skipped",
            Some("unsubscribed"),
            now,
        )
        .await?;
    }

    // Render every email; a recipient whose email cannot be rendered fails alone.
    let extra = match b.vars {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let frontend = ctx.config.frontend_url.as_str();
    let mut emails: Vec<(Uuid, String, Rendered)> = Vec::with_capacity(rows.len());
    match BroadcastTemplate::parse(&b.template, &extra) {
        Ok(template) => {
            let mut broken: Vec<(Uuid, String)> = Vec::new();
            for r in &rows {
                match template.render(&template_vars(&r.recipient, frontend, &extra)) {
                    Ok(rendered) => {
                        emails.push((r.recipient.user_id, r.recipient.email.clone(), rendered))
                    }
                    Err(e) => broken.push((r.recipient.user_id, e.to_string())),
                }
            }
            for (reason, ids) in group_by_reason(broken) {
                outcome.failed += ids.len();
                set_status(
                    &mut tx,
                    job.broadcast_id,
                    &ids,
                    "failed",
                    Some(&reason),
                    now,
                )
                .await?;
            }
        }
        Err(e) => {
            let ids: Vec<Uuid> = rows.iter().map(|r| r.recipient.user_id).collect();
            outcome.failed += ids.len();
            set_status(
                &mut tx,
                job.broadcast_id,
                &ids,
                "failed",
                Some(&e.to_string()),
                now,
            )
            .await?;
        }
    }
    if emails.is_empty() {
        tx.commit().await?;
        return Ok(outcome);
    }

    let ids: Vec<Uuid> = emails.iter().map(|(id, _, _)| *id).collect();
    let Some(api_key) = &ctx.config.resend_api_key else {
        if ctx.config.is_development() {
            for (_, to, r) in &emails {
                tracing::info!(
                    to,
                    subject = r.subject,
                    text = r.text,
                    "broadcast email (RESEND_API_KEY is not set: logged instead of sent)"
                );
            }
            let provider: Vec<Option<String>> = vec![Some("log".into()); emails.len()];
            let to: Vec<String> = emails.iter().map(|(_, to, _)| to.clone()).collect();
            mark_sent(&mut tx, job.broadcast_id, &ids, &to, &provider, now).await?;
            outcome.sent += ids.len();
        } else {
            set_status(
                &mut tx,
                job.broadcast_id,
                &ids,
                "failed",
                Some("Resend is not configured"),
                now,
            )
            .await?;
            outcome.failed += ids.len();
        }
        tx.commit().await?;
        return Ok(outcome);
    };

    // The key names exactly this set of recipients: a retry of the same set is
    // deduplicated by Resend; a different set (someone unsubscribed) is a new send.
    let mut h = Sha256::new();
    for id in &ids {
        h.update(id.as_bytes());
    }
    let idempotency_key = format!(
        "broadcast/{}/{}/{}",
        job.broadcast_id,
        job.batch,
        &hex::encode(h.finalize())[..16]
    );

    match send_to_resend(ctx, api_key.expose(), &emails, &idempotency_key).await {
        Ok(resp) => {
            let rejected: HashMap<usize, String> = resp
                .errors
                .iter()
                .map(|e| (e.index.max(0) as usize, e.message.clone()))
                .collect();
            let mut provider_ids = resp.data.iter().map(|d| d.id.to_string());
            let mut sent_ids = Vec::new();
            let mut sent_to = Vec::new();
            let mut sent_provider = Vec::new();
            let mut refused: Vec<(Uuid, String)> = Vec::new();
            for (i, (id, to, _)) in emails.iter().enumerate() {
                match rejected.get(&i) {
                    Some(msg) => refused.push((*id, format!("Resend refused it: {msg}"))),
                    None => {
                        sent_ids.push(*id);
                        sent_to.push(to.clone());
                        sent_provider.push(provider_ids.next());
                    }
                }
            }
            mark_sent(
                &mut tx,
                job.broadcast_id,
                &sent_ids,
                &sent_to,
                &sent_provider,
                now,
            )
            .await?;
            outcome.sent += sent_ids.len();
            for (reason, ids) in group_by_reason(refused) {
                outcome.failed += ids.len();
                set_status(
                    &mut tx,
                    job.broadcast_id,
                    &ids,
                    "failed",
                    Some(&reason),
                    now,
                )
                .await?;
            }
            tx.commit().await?;
            tracing::info!(?job, ?outcome, "broadcast batch sent");
            Ok(outcome)
        }
        Err(e) => {
            let rate_limited = matches!(e, resend_rs::Error::RateLimit { .. })
                || matches!(&e, resend_rs::Error::Resend(r) if r.status_code == 429);
            let message = e.to_string();
            let err = Error::Internal(anyhow::Error::new(e).context("sending a broadcast batch"));
            let retryable = crate::email::is_retryable(&err);
            let attempt = if rate_limited { attempts } else { attempts + 1 };
            if retryable && attempt < MAX_ATTEMPTS {
                sqlx::query(
                    "UPDATE broadcast_recipients SET attempts = $3, error = $4, updated_at = $5
                     WHERE broadcast_id = $1 AND user_id = ANY($2)",
                )
                .bind(job.broadcast_id)
                .bind(&ids)
                .bind(attempt)
                .bind(&message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::warn!(
                    ?job,
                    attempt,
                    error = message,
                    "broadcast batch failed; will retry"
                );
                Err(err)
            } else {
                sqlx::query(
                    "UPDATE broadcast_recipients
                     SET status = 'failed', attempts = $3, error = $4, updated_at = $5
                     WHERE broadcast_id = $1 AND user_id = ANY($2)",
                )
                .bind(job.broadcast_id)
                .bind(&ids)
                .bind(attempt)
                .bind(&message)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::warn!(
                    ?job,
                    attempt,
                    error = message,
                    "broadcast batch failed for good"
                );
                outcome.failed += ids.len();
                Ok(outcome)
            }
        }
    }
}

async fn send_to_resend(
    ctx: &Context,
    api_key: &str,
    emails: &[(Uuid, String, Rendered)],
    idempotency_key: &str,
) -> std::result::Result<resend_rs::types::SendEmailBatchPermissiveResponse, resend_rs::Error> {
    use resend_rs::idempotent::IdempotentTrait;
    use resend_rs::types::{BatchValidation, CreateEmailBaseOptions};
    let base_url = ctx
        .config
        .resend_base_url
        .parse::<reqwest::Url>()
        .map_err(|e| {
            resend_rs::Error::Other(format!(
                "RESEND_BASE_URL {:?} is not a URL: {e}",
                ctx.config.resend_base_url
            ))
        })?;
    let resend = resend_rs::Resend::with_config(
        resend_rs::Config::builder(api_key)
            .base_url(base_url)
            .client(ctx.http.clone())
            .build(),
    );
    let batch: Vec<CreateEmailBaseOptions> = emails
        .iter()
        .map(|(_, to, r)| {
            CreateEmailBaseOptions::new(&ctx.config.from_email, [to.as_str()], &r.subject)
                .with_html(&r.html)
                .with_text(&r.text)
        })
        .collect();
    resend
        .batch
        .send_with_batch_validation(
            batch.with_idempotency_key(idempotency_key),
            BatchValidation::Permissive,
        )
        .await
}

fn group_by_reason(items: Vec<(Uuid, String)>) -> Vec<(String, Vec<Uuid>)> {
    let mut groups: Vec<(String, Vec<Uuid>)> = Vec::new();
    for (id, reason) in items {
        match groups.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, ids)) => ids.push(id),
            None => groups.push((reason, vec![id])),
        }
    }
    groups
}

async fn set_status(
    conn: &mut sqlx::PgConnection,
    broadcast_id: Uuid,
    user_ids: &[Uuid],
    status: &str,
    error: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    sqlx::query(
        "UPDATE broadcast_recipients SET status = $3, error = $4, updated_at = $5
         WHERE broadcast_id = $1 AND user_id = ANY($2) AND status = 'pending'",
    )
    .bind(broadcast_id)
    .bind(user_ids)
    .bind(status)
    .bind(error)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

async fn mark_sent(
    conn: &mut sqlx::PgConnection,
    broadcast_id: Uuid,
    user_ids: &[Uuid],
    emails: &[String],
    provider_ids: &[Option<String>],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    if user_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE broadcast_recipients r
         SET status = 'sent', email = t.email, provider_id = t.provider_id,
             error = NULL, sent_at = $5, updated_at = $5, attempts = r.attempts + 1
         FROM unnest($2::uuid[], $3::text[], $4::text[]) AS t(user_id, email, provider_id)
         WHERE r.broadcast_id = $1 AND r.user_id = t.user_id AND r.status = 'pending'",
    )
    .bind(broadcast_id)
    .bind(user_ids)
    .bind(emails)
    .bind(provider_ids)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra() -> Map<String, Value> {
        Map::new()
    }

    const GOOD: &str = "{% block subject %}Doors open, {{ first_name }}{% endblock %}\n\
        {% block html %}<p>Hi {{ first_name }} &amp; @{{ username }}</p>{% endblock %}\n\
        {% block text %}Hi {{ first_name }} & @{{ username }}{% endblock %}\n";

    #[test]
    fn renders_the_three_blocks_with_escaping_only_in_html() {
        let t = BroadcastTemplate::parse(GOOD, &extra()).unwrap();
        let mut r = sample_recipient();
        r.first_name = Some("<Ana>".into());
        let out = t.render(&template_vars(&r, "http://x", &extra())).unwrap();
        assert_eq!(out.subject, "Doors open, <Ana>");
        assert!(
            out.html.contains("<p>Hi &lt;Ana&gt; &amp; @ana_on2</p>"),
            "{}",
            out.html
        );
        assert!(
            out.text.starts_with("Hi <Ana> & @ana_on2\n"),
            "{}",
            out.text
        );
    }

    #[test]
    fn null_values_print_as_nothing() {
        let t = BroadcastTemplate::parse(GOOD, &extra()).unwrap();
        let mut r = sample_recipient();
        r.username = None;
        let out = t.render(&template_vars(&r, "http://x", &extra())).unwrap();
        assert!(out.text.starts_with("Hi Ana & @\n"), "{}", out.text);
    }

    #[test]
    fn missing_variables_and_blocks_are_rejected() {
        let src = "{% block subject %}{{ launch_date }}{% endblock %}{% block html %}{{ frist_name }}{% endblock %}{% block text %}x{% endblock %}";
        let err = BroadcastTemplate::parse(src, &extra())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("frist_name") && err.contains("launch_date"),
            "{err}"
        );
        let mut vars = extra();
        vars.insert("launch_date".into(), json!("Monday"));
        vars.insert("frist_name".into(), json!("x"));
        BroadcastTemplate::parse(src, &vars).unwrap();

        let err = BroadcastTemplate::parse(
            "{% block subject %}Hi{% endblock %}{% block html %}x{% endblock %}",
            &extra(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("block text"), "{err}");
        assert!(BroadcastTemplate::parse("{% block subject %}", &extra()).is_err());
        let err = BroadcastTemplate::parse(
            "{% block subject %} {% endblock %}{% block html %}x{% endblock %}{% block text %}x{% endblock %}",
            &extra(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn the_key_depends_on_audience_template_and_vars() {
        let req = BroadcastRequest {
            name: "a".into(),
            source: GOOD.into(),
            audience: Audience::Waitlist,
            vars: extra(),
        };
        let mut other = req.clone();
        other.name = "b".into();
        assert_eq!(req.key(), other.key());
        other.audience = Audience::All;
        assert_ne!(req.key(), other.key());
        let mut other = req.clone();
        other.vars.insert("x".into(), json!("1"));
        assert_ne!(req.key(), other.key());
    }

    #[test]
    fn audiences_parse() {
        assert_eq!("Waitlist".parse::<Audience>().unwrap(), Audience::Waitlist);
        assert_eq!("students".parse::<Audience>().unwrap(), Audience::Students);
        assert!("everyone".parse::<Audience>().is_err());
    }
}
