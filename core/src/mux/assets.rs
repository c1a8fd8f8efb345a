//! Attaching and clearing asset ids on every table that holds them.

use super::*;

/// Stores `asset_id`/`playback_id` on the target. Returns false when the target
/// no longer exists. A Stage post that gains a video queues the `videos_posted`
/// badge check (D8); call [`jobs::wake_relay`] after the commit.
/// What attaching knows of the video, for a Stage post's reward (N6.4).
#[derive(Clone, Copy)]
pub struct Video<'a> {
    pub settings: &'a crate::settings::Settings,
    /// The asset's duration as Mux reports it, if it does.
    pub duration: Option<f64>,
}

/// What [`attach`] did: whether the target exists, and the posting reward
/// the video earned (the first video the server attaches to a Stage post).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attached {
    pub found: bool,
    pub reward: Option<crate::community::Reward>,
}

pub async fn attach(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    target: Target,
    asset_id: &str,
    playback_id: &str,
    video: Video<'_>,
) -> Result<Attached> {
    let id = target.id();
    let found = match target {
        Target::Lesson(_) => sqlx::query(
            "UPDATE lessons SET mux_asset_id = $2, mux_playback_id = $3, updated_at = $4
             WHERE id = $1",
        ),
        Target::Course(_) => sqlx::query(
            "UPDATE worlds SET mux_preview_asset_id = $2, mux_preview_playback_id = $3,
                               updated_at = $4
             WHERE id = $1",
        ),
        Target::Level(_) => sqlx::query(
            "UPDATE levels SET mux_preview_asset_id = $2, mux_preview_playback_id = $3,
                               updated_at = $4
             WHERE id = $1",
        ),
        Target::Reply(_) => sqlx::query(
            "UPDATE post_replies SET mux_asset_id = $2, mux_playback_id = $3
             WHERE id = $1 AND $4::timestamptz IS NOT NULL",
        ),
        Target::Post(_) => {
            let row: Option<(Uuid, String, Option<String>)> = sqlx::query_as(
                "WITH old AS (SELECT id, mux_asset_id FROM posts WHERE id = $1 FOR UPDATE)
                 UPDATE posts p SET mux_asset_id = $2, mux_playback_id = $3
                 FROM old WHERE p.id = old.id
                 RETURNING p.user_id, p.post_type, old.mux_asset_id",
            )
            .bind(id)
            .bind(asset_id)
            .bind(playback_id)
            .fetch_optional(&mut *conn)
            .await?;
            let Some((user_id, post_type, old)) = row else {
                return Ok(Attached::default());
            };
            let reward = if post_type == "stage" {
                crate::community::rewards::judge_stage_video(
                    conn,
                    video.settings,
                    id,
                    user_id,
                    video.duration,
                    now,
                )
                .await?
            } else {
                None
            };
            if post_type == "stage" && old.as_deref() != Some(asset_id) {
                jobs::enqueue(
                    conn,
                    &BadgeCheckJob {
                        user_id,
                        stat: "videos_posted".into(),
                    },
                )
                .await?;
            }
            return Ok(Attached {
                found: true,
                reward,
            });
        }
    }
    .bind(id)
    .bind(asset_id)
    .bind(playback_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0;
    Ok(Attached {
        found,
        reward: None,
    })
}

/// How many rows lost an asset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cleared {
    pub lessons: u64,
    pub courses: u64,
    pub levels: u64,
    pub posts: u64,
    pub replies: u64,
}

impl Cleared {
    pub fn total(&self) -> u64 {
        self.lessons + self.courses + self.levels + self.posts + self.replies
    }
    /// `1 lesson(s), 1 course preview(s)`, or `database` when nothing was cleared.
    pub fn describe(&self) -> String {
        let mut parts = vec![];
        if self.lessons > 0 {
            parts.push(format!("{} lesson(s)", self.lessons));
        }
        if self.courses > 0 {
            parts.push(format!("{} course preview(s)", self.courses));
        }
        if self.levels > 0 {
            parts.push(format!("{} level preview(s)", self.levels));
        }
        if self.posts > 0 {
            parts.push(format!("{} post(s)", self.posts));
        }
        if self.replies > 0 {
            parts.push(format!("{} reply(ies)", self.replies));
        }
        if parts.is_empty() {
            "database".into()
        } else {
            parts.join(", ")
        }
    }
}

/// Clears `asset_id` from every lesson (with `video_url = ""`), course preview,
/// level preview, post and reply. With `owner`, only that user's posts and
/// replies are cleared (a non-admin deleting their own video).
pub async fn clear_asset(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    asset_id: &str,
    owner: Option<Uuid>,
) -> Result<Cleared> {
    let lessons = sqlx::query(
        "UPDATE lessons SET mux_asset_id = NULL, mux_playback_id = NULL, video_url = '',
                            updated_at = $2
         WHERE mux_asset_id = $1",
    )
    .bind(asset_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let courses = sqlx::query(
        "UPDATE worlds SET mux_preview_asset_id = NULL, mux_preview_playback_id = NULL,
                           updated_at = $2
         WHERE mux_preview_asset_id = $1",
    )
    .bind(asset_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let levels = sqlx::query(
        "UPDATE levels SET mux_preview_asset_id = NULL, mux_preview_playback_id = NULL,
                           updated_at = $2
         WHERE mux_preview_asset_id = $1",
    )
    .bind(asset_id)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let posts = sqlx::query(
        "UPDATE posts SET mux_asset_id = NULL, mux_playback_id = NULL
         WHERE mux_asset_id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
    )
    .bind(asset_id)
    .bind(owner)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let replies = sqlx::query(
        "UPDATE post_replies SET mux_asset_id = NULL, mux_playback_id = NULL
         WHERE mux_asset_id = $1 AND ($2::uuid IS NULL OR user_id = $2)",
    )
    .bind(asset_id)
    .bind(owner)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(Cleared {
        lessons,
        courses,
        levels,
        posts,
        replies,
    })
}

pub(super) async fn mark_upload(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
    upload_id: &str,
    status: &str,
    asset_id: Option<&str>,
    playback_id: Option<&str>,
    error: Option<&str>,
) -> Result<()> {
    sqlx::query(
        "UPDATE mux_uploads
         SET status = $2,
             asset_id = COALESCE($3, asset_id),
             playback_id = COALESCE($4, playback_id),
             error = COALESCE($5, error),
             updated_at = $6
         WHERE upload_id = $1",
    )
    .bind(upload_id)
    .bind(status)
    .bind(asset_id)
    .bind(playback_id)
    .bind(error)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn recorded_upload(
    conn: &mut PgConnection,
    upload_id: &str,
) -> Result<Option<(Option<Uuid>, Option<Target>)>> {
    let row: Option<(Option<Uuid>, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT user_id, target_type, target_id FROM mux_uploads WHERE upload_id = $1",
    )
    .bind(upload_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(user, kind, id)| (user, Target::from_parts(&kind, id))))
}
