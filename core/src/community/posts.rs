//! Posts: create, edit, delete, and the detail page.

use super::replies::{AUDIT_POST_DELETE, ReplyRow, snapshot, thread_json_sql};
use super::rows::{POST_JOINS, PostRow, load_post, post_columns};
use super::slots::slot_status_conn;
use super::tags::{bump_tags, check_tags, dedup_tags};
use super::validation::{Field, Validation};
use super::visibility::visible_sql;
use super::write::{
    LockedPost, after_post_write, badge_check, fail, insufficient, lock_post, lock_profiles,
    post_not_found,
};
use super::{Done, FEEDBACK_TYPES, POST_TYPES, PostDetail, PostWritten, VIDEO_TYPES, Viewer};
use crate::audit::{self, Actor};
use crate::economy::{self, Amounts, reason};
use crate::jobs::{self, MuxSyncAction, MuxSyncJob};
use crate::{Context, Error, Result};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// What deleting or hiding a post needs to take its reward back (N6.4).
#[derive(Clone, Copy)]
pub(super) struct Clawback<'a> {
    pub settings: &'a crate::settings::Settings,
    pub now: chrono::DateTime<chrono::Utc>,
}

/// `POST /api/community/posts`.
#[derive(Debug, Clone, Default)]
pub struct NewPost {
    pub post_type: String,
    pub title: String,
    pub body: Field<String>,
    pub tags: Vec<String>,
    pub is_wip: bool,
    pub feedback_type: String,
    pub mux_asset_id: Option<String>,
    pub mux_playback_id: Option<String>,
    pub video_duration_seconds: Option<i32>,
    /// The Stage's kind of video (N5.4): one of [`VIDEO_TYPES`] or `None`;
    /// lab posts store `None` whatever they send. Not editable.
    pub video_type: Option<String>,
}

/// `PUT /api/community/posts/{id}`: absent or null fields are left alone.
#[derive(Debug, Clone, Default)]
pub struct PostUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    pub tags: Option<Vec<String>>,
    pub is_wip: Option<bool>,
    pub feedback_type: Option<String>,
}

impl NewPost {
    /// Schema validation (422 list), in the order of the reference's fields.
    pub fn validate(&self) -> Result<()> {
        let mut v = Validation::new();
        v.literal(&["body", "post_type"], &self.post_type, POST_TYPES);
        v.string_len(&["body", "title"], &self.title, 3, 200);
        match &self.body {
            Field::Value(b) => v.no_nul(&["body", "body"], b),
            Field::Absent | Field::Null => {}
        }
        // `@validator('body')`: runs when the field is given (even as null).
        if self.post_type == "lab" {
            let input = match &self.body {
                Field::Absent => None,
                Field::Null => Some(Value::Null),
                Field::Value(b) if b.is_empty() => Some(json!(b)),
                Field::Value(_) => None,
            };
            if let Some(input) = input {
                v.push(
                    &["body", "body"],
                    "value_error",
                    "Value error, Body is required for Lab questions".into(),
                    input,
                    Some(json!({ "error": {} })),
                );
            }
        }
        v.list_len(&["body", "tags"], &self.tags, 1, 5);
        v.literal(
            &["body", "feedback_type"],
            &self.feedback_type,
            FEEDBACK_TYPES,
        );
        if let Some(vt) = &self.video_type {
            v.literal(&["body", "video_type"], vt, VIDEO_TYPES);
        }
        v.optional_len(&["body", "mux_asset_id"], &self.mux_asset_id, 100);
        v.optional_len(&["body", "mux_playback_id"], &self.mux_playback_id, 100);
        v.finish()
    }
}

impl PostUpdate {
    pub fn validate(&self) -> Result<()> {
        let mut v = Validation::new();
        if let Some(t) = &self.title {
            v.string_len(&["body", "title"], t, 3, 200);
        }
        if let Some(b) = &self.body {
            v.no_nul(&["body", "body"], b);
        }
        if let Some(tags) = &self.tags {
            v.list_len(&["body", "tags"], tags, 1, 5);
        }
        if let Some(f) = &self.feedback_type {
            v.literal(&["body", "feedback_type"], f, FEEDBACK_TYPES);
        }
        v.finish()
    }
}

/// [`post_detail_as`] for a signed-in viewer under the seed's Guild Master
/// rule (`includes_trialing` off); routes call [`post_detail_as`] with the
/// request's settings.
pub async fn post_detail(db: &PgPool, viewer: Uuid, post_id: Uuid) -> Result<Option<PostDetail>> {
    let who = Viewer {
        id: Some(viewer),
        gm_includes_trialing: false,
    };
    post_detail_as(db, &who, post_id).await
}

/// A post with its replies (N4.1 order: each top-level reply, the accepted
/// answer first then by `created_at`, followed by its children): one query,
/// the replies as one JSON column of it.
pub async fn post_detail_as(
    db: &PgPool,
    who: &Viewer,
    post_id: Uuid,
) -> Result<Option<PostDetail>> {
    let sql = format!(
        "SELECT {}, {} AS replies {POST_JOINS}
         WHERE p.id = $1 AND {}",
        post_columns(who, "$2"),
        thread_json_sql(who.gm_includes_trialing),
        visible_sql("p", "$2")
    );
    #[derive(sqlx::FromRow)]
    struct Row {
        #[sqlx(flatten)]
        post: PostRow,
        replies: sqlx::types::Json<Vec<ReplyRow>>,
    }
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(post_id)
        .bind(who.id)
        .fetch_optional(db)
        .await?;
    Ok(row.map(|r| PostDetail {
        post: r.post.into_item(),
        replies: r.replies.0.into_iter().map(ReplyRow::into_item).collect(),
    }))
}

/// Creates a post, in the order of §4.9. Schema validation is the caller's
/// ([`NewPost::validate`]); it is repeated here for direct callers.
pub async fn create_post(ctx: &Context, user_id: Uuid, input: NewPost) -> Result<PostWritten> {
    input.validate()?;
    // One revision of the settings decides the charge and the reward.
    let snap = ctx.settings_now().await?;
    let amounts = Amounts::from_settings(&ctx.config, &snap.settings);
    let tags = dedup_tags(&input.tags);
    let is_stage = input.post_type == "stage";
    let mut tx = ctx.db.begin().await?;
    // 1-2. Tags.
    check_tags(&mut tx, &tags, 422).await?;
    // 2b. The Stage's video type, when the settings require one (N5.4).
    let video_type = if is_stage {
        input.video_type.clone()
    } else {
        None
    };
    if is_stage && snap.settings.community.video_type_required && video_type.is_none() {
        return Err(fail(
            422,
            "video_type is required for Stage posts (motw, original, or guild)",
        ));
    }
    // Serialize this user's writes so the slot count cannot race.
    lock_profiles(&mut tx, &[user_id]).await?;
    // 3. Slots (stage posts, and any post that carries a video).
    if is_stage || input.mux_asset_id.is_some() {
        let status = slot_status_conn(&mut tx, &amounts, user_id).await?;
        if !status.allowed {
            return Err(fail(422, status.message));
        }
    }
    // 3b. The Lab question limit (N5.4), counted under the profile's lock.
    if !is_stage
        && let Some(limit) = super::slots::question_limit(&mut tx, &snap.settings, user_id).await?
        && super::slots::questions_used(&mut tx, user_id).await? >= limit
    {
        return Err(fail(422, super::slots::question_limit_reached(limit)));
    }
    // 4. Lab body.
    let body = input.body.clone().into_option();
    if !is_stage && body.as_deref().is_none_or(|b| b.trim().is_empty()) {
        return Err(fail(422, "Question body is required for Lab posts"));
    }
    // 5. Charge.
    let (cost, why) = if is_stage {
        (amounts.post_stage, reason::POST_STAGE)
    } else {
        (amounts.post_lab, reason::POST_LAB)
    };
    if let Err(i) = economy::spend(&mut tx, user_id, cost, why, None).await? {
        return Err(insufficient(
            400,
            format!(
                "Insufficient claves. You need {cost} 🥢 but have {} 🥢",
                i.balance
            ),
            i,
        ));
    }
    // 6. The post.
    let now = ctx.clock.now();
    let post_id: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, mux_asset_id, mux_playback_id,
             video_duration_seconds, tags, is_wip, feedback_type, created_at, updated_at,
             video_type)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[]::varchar(50)[], $9, $10, $11, $11, $12)
         RETURNING id",
    )
    .bind(user_id)
    .bind(&input.post_type)
    .bind(&input.title)
    .bind(&body)
    .bind(&input.mux_asset_id)
    .bind(&input.mux_playback_id)
    .bind(input.video_duration_seconds)
    .bind(&tags)
    .bind(input.is_wip)
    .bind(&input.feedback_type)
    .bind(now)
    .bind(&video_type)
    .fetch_one(&mut *tx)
    .await?;
    // 7. Tag usage.
    bump_tags(&mut tx, &tags, 1).await?;
    // The posting reward (N6.4): a lab post is judged now; a stage post when
    // the server attaches its video, unless the client named one (never paid).
    let reward = if !is_stage {
        let eligible = super::rewards::lab_body_eligible(&snap.settings, body.as_deref());
        super::rewards::judge(&mut tx, &snap.settings, post_id, now, eligible).await?
    } else if input.mux_asset_id.is_some() || input.mux_playback_id.is_some() {
        super::rewards::judge(&mut tx, &snap.settings, post_id, now, false).await?
    } else {
        None
    };
    // 8. Badge checks.
    if !is_stage {
        badge_check(&mut tx, user_id, "questions_posted").await?;
    } else if input.mux_asset_id.is_some() {
        badge_check(&mut tx, user_id, "videos_posted").await?;
    }
    let who = Viewer::user(user_id, &snap.settings);
    let post = load_post(&mut tx, &who, post_id)
        .await?
        .ok_or_else(|| Error::internal("created post vanished"))?;
    tx.commit().await?;
    after_post_write(ctx).await;
    Ok(PostWritten {
        post,
        message: economy::charged_message("Post created!", cost),
        reward,
    })
}

/// Edits a post (owner only; §4.9 "Update post").
/// 404 `Post not found` or 403 `You can only edit your own posts` unless
/// `user_id` wrote the post. The edit route asks this before it reads the
/// body; [`update_post`] asks again under the row lock.
pub async fn ensure_post_author(ctx: &Context, user_id: Uuid, post_id: Uuid) -> Result<()> {
    let author: Option<Uuid> = sqlx::query_scalar("SELECT user_id FROM posts WHERE id = $1")
        .bind(post_id)
        .fetch_optional(&ctx.db)
        .await?;
    match author {
        None => Err(post_not_found()),
        Some(a) if a != user_id => Err(not_the_author()),
        Some(_) => Ok(()),
    }
}

pub(super) fn not_the_author() -> Error {
    fail(403, "You can only edit your own posts")
}

pub async fn update_post(
    ctx: &Context,
    user_id: Uuid,
    post_id: Uuid,
    input: PostUpdate,
) -> Result<PostWritten> {
    let snap = ctx.settings_now().await?;
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.user_id != user_id {
        return Err(not_the_author());
    }
    // The author's rights first, then the input (a stranger learns nothing).
    input.validate()?;
    if let Some(b) = &input.body
        && post.post_type == "lab"
        && b.trim().is_empty()
    {
        return Err(fail(400, "Question body is required for Lab posts"));
    }
    let new_tags = match &input.tags {
        Some(t) => {
            let tags = dedup_tags(t);
            check_tags(&mut tx, &tags, 400).await?;
            let removed: Vec<String> = post
                .tags
                .iter()
                .filter(|t| !tags.contains(t))
                .cloned()
                .collect();
            let added: Vec<String> = tags
                .iter()
                .filter(|t| !post.tags.contains(t))
                .cloned()
                .collect();
            bump_tags(&mut tx, &removed, -1).await?;
            bump_tags(&mut tx, &added, 1).await?;
            Some(tags)
        }
        None => None,
    };
    sqlx::query(
        "UPDATE posts SET
             title = COALESCE($2, title),
             body = COALESCE($3, body),
             tags = COALESCE($4::text[]::varchar(50)[], tags),
             is_wip = COALESCE($5, is_wip),
             feedback_type = COALESCE($6, feedback_type),
             updated_at = $7
         WHERE id = $1",
    )
    .bind(post_id)
    .bind(&input.title)
    .bind(&input.body)
    .bind(&new_tags)
    .bind(input.is_wip)
    .bind(&input.feedback_type)
    .bind(ctx.clock.now())
    .execute(&mut *tx)
    .await?;
    let item = load_post(&mut tx, &Viewer::user(user_id, &snap.settings), post_id)
        .await?
        .ok_or_else(post_not_found)?;
    tx.commit().await?;
    after_post_write(ctx).await;
    Ok(PostWritten {
        post: item,
        message: "Post updated successfully".into(),
        reward: None,
    })
}

/// Deletes a post (owner or admin). Replies and reactions cascade, tag usage
/// goes down, and the post's videos are removed at Mux by a queued job.
/// `admin` is the acting admin when the caller is one: an admin's delete of
/// someone else's post writes an audit row (`post.delete`).
pub async fn delete_post(
    ctx: &Context,
    user_id: Uuid,
    admin: Option<Actor>,
    post_id: Uuid,
) -> Result<Done> {
    let mut tx = ctx.db.begin().await?;
    let post = lock_post(&mut tx, post_id)
        .await?
        .ok_or_else(post_not_found)?;
    if post.user_id != user_id && admin.is_none() {
        return Err(fail(403, "You can only delete your own posts"));
    }
    let audited = admin.filter(|_| post.user_id != user_id);
    let before = match audited {
        Some(_) => snapshot(&mut tx, "posts", post_id).await?,
        None => None,
    };
    let snap = ctx.settings_now().await?;
    let claw = Clawback {
        settings: &snap.settings,
        now: ctx.clock.now(),
    };
    remove_post(&mut tx, post_id, &post, claw).await?;
    if let Some(actor) = audited {
        audit::record(
            &mut tx,
            actor
                .entry(AUDIT_POST_DELETE, "post", post_id)
                .before(before),
        )
        .await?;
    }
    tx.commit().await?;
    after_post_write(ctx).await;
    Ok(Done {
        message: "Post deleted".into(),
    })
}

/// Deletes a locked post (the rights already checked): replies, reactions,
/// saves and reports cascade, tag usage goes down, and the videos are
/// removed at Mux by queued jobs. Shared with moderation.
pub(super) async fn remove_post(
    tx: &mut PgConnection,
    post_id: Uuid,
    post: &LockedPost,
    claw: Clawback<'_>,
) -> Result<()> {
    // A rewarded post deleted within the window gives its reward back (N6.4).
    super::rewards::claw_back(tx, claw.settings, post_id, claw.now).await?;
    let reply_assets: Vec<String> = sqlx::query_scalar(
        "DELETE FROM post_replies WHERE post_id = $1 AND mux_asset_id IS NOT NULL
         RETURNING mux_asset_id::text",
    )
    .bind(post_id)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM posts WHERE id = $1")
        .bind(post_id)
        .execute(&mut *tx)
        .await?;
    bump_tags(tx, &dedup_tags(&post.tags), -1).await?;
    let assets = post.mux_asset_id.iter().chain(reply_assets.iter());
    for asset_id in assets {
        jobs::enqueue(
            tx,
            &MuxSyncJob {
                action: MuxSyncAction::DeleteAsset {
                    asset_id: asset_id.clone(),
                },
            },
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_body_schema() {
        let mut p = NewPost {
            post_type: "lab".into(),
            title: "How?".into(),
            body: Field::Value(String::new()),
            tags: vec!["mambo".into()],
            feedback_type: "coach".into(),
            ..Default::default()
        };
        let e = p.validate().unwrap_err();
        match e {
            Error::Http { status, detail, .. } => {
                assert_eq!(status, 422);
                assert_eq!(
                    detail[0]["msg"],
                    "Value error, Body is required for Lab questions"
                );
                assert_eq!(detail[0]["loc"], json!(["body", "body"]));
            }
            _ => panic!(),
        }
        p.body = Field::Absent;
        assert!(p.validate().is_ok());
        p.body = Field::Value("  ".into());
        assert!(p.validate().is_ok());
    }
}
