//! Upload targets, passthrough and metadata (§4.14), and video slots (§4.3).

use super::*;

/// What an upload's video belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Lesson(Uuid),
    Course(Uuid),
    Level(Uuid),
    Post(Uuid),
    Reply(Uuid),
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Lesson(_) => "lesson",
            Self::Course(_) => "course",
            Self::Level(_) => "level",
            Self::Post(_) => "post",
            Self::Reply(_) => "reply",
        }
    }
    pub fn id(&self) -> Uuid {
        match *self {
            Self::Lesson(id)
            | Self::Course(id)
            | Self::Level(id)
            | Self::Post(id)
            | Self::Reply(id) => id,
        }
    }
    pub(super) fn from_parts(kind: &str, id: Option<Uuid>) -> Option<Self> {
        let id = id?;
        Some(match kind {
            "lesson" => Self::Lesson(id),
            "course" => Self::Course(id),
            "level" => Self::Level(id),
            "post" => Self::Post(id),
            "reply" => Self::Reply(id),
            _ => return None,
        })
    }
    /// The passthrough `type` we write for this kind of target.
    fn passthrough_type(&self) -> &'static str {
        match self {
            Self::Lesson(_) => "lesson",
            Self::Course(_) => "course-preview",
            Self::Level(_) => "level-preview",
            Self::Post(_) => "community-post",
            Self::Reply(_) => "community-reply",
        }
    }
    fn passthrough_key(&self) -> &'static str {
        match self {
            Self::Lesson(_) => "lesson_id",
            Self::Course(_) => "course_id",
            Self::Level(_) => "level_id",
            Self::Post(_) => "post_id",
            Self::Reply(_) => "reply_id",
        }
    }
}

/// A passthrough value as an object: a JSON string holding an object, or an object.
pub fn parse_passthrough(v: &Value) -> Option<serde_json::Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn id_field(p: &serde_json::Map<String, Value>, key: &str) -> Option<Uuid> {
    p.get(key)
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s.trim()).ok())
}

/// Where a passthrough routes: by its `type` first (a level preview also names
/// its course), then by the first id key present.
pub fn target_from_passthrough(p: &serde_json::Map<String, Value>) -> Option<Target> {
    let by_type = match p.get("type").and_then(Value::as_str) {
        Some("lesson") => id_field(p, "lesson_id").map(Target::Lesson),
        Some("course-preview") => id_field(p, "course_id").map(Target::Course),
        Some("level-preview") => id_field(p, "level_id").map(Target::Level),
        Some("community-post") => id_field(p, "post_id").map(Target::Post),
        Some("community-reply") => id_field(p, "reply_id").map(Target::Reply),
        _ => None,
    };
    by_type.or_else(|| {
        id_field(p, "lesson_id")
            .map(Target::Lesson)
            .or_else(|| id_field(p, "level_id").map(Target::Level))
            .or_else(|| id_field(p, "course_id").map(Target::Course))
            .or_else(|| id_field(p, "post_id").map(Target::Post))
            .or_else(|| id_field(p, "reply_id").map(Target::Reply))
    })
}

/// True when an asset's passthrough names `target` (and, if it has a `type`,
/// the same kind of target).
pub(super) fn passthrough_matches(p: &serde_json::Map<String, Value>, target: Target) -> bool {
    if id_field(p, target.passthrough_key()) != Some(target.id()) {
        return false;
    }
    match p.get("type").and_then(Value::as_str) {
        Some(t) => t == target.passthrough_type(),
        None => true,
    }
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// `meta` and `passthrough` of a new asset (§4.14).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AssetLabels {
    pub external_id: Option<String>,
    pub title: Option<String>,
    pub creator_id: Option<String>,
    pub passthrough: Option<Value>,
}

impl AssetLabels {
    pub(super) fn new(
        external_id: String,
        title: String,
        creator_id: &str,
        passthrough: Value,
    ) -> Self {
        Self {
            external_id: Some(truncate(&external_id, 128)),
            title: Some(truncate(&title, 512)),
            creator_id: Some(truncate(creator_id, 128)),
            passthrough: Some(passthrough),
        }
    }
}

/// `lesson-{course_slug}[-w{week}][-d{day}][-l{order}]`: falsy parts are left out.
pub fn lesson_external_id(
    course_slug: &str,
    week: Option<i32>,
    day: Option<i32>,
    order: i32,
) -> String {
    let mut parts = vec![course_slug.to_string()];
    if let Some(w) = week.filter(|w| *w != 0) {
        parts.push(format!("w{w}"));
    }
    if let Some(d) = day.filter(|d| *d != 0) {
        parts.push(format!("d{d}"));
    }
    if order != 0 {
        parts.push(format!("l{order}"));
    }
    format!("lesson-{}", parts.join("-"))
}

/// `level-preview-{course_slug}-{level title lowercased, spaces→-, first 30}`.
pub fn level_external_id(course_slug: &str, level_title: &str) -> String {
    let slug: String = level_title.to_lowercase().replace(' ', "-");
    format!("level-preview-{course_slug}-{}", truncate(&slug, 30))
}

/// The body of `POST /video/v1/uploads` (§4.14): public playback, not a test
/// asset, `cors_origin` = `FRONTEND_URL`, 1080p cap for community videos and
/// capped-1080p MP4 renditions (for downloads) for everything else.
pub fn direct_upload_body(cors_origin: &str, community: bool, labels: &AssetLabels) -> Value {
    let mut settings = json!({
        "playback_policies": ["public"],
        "test": false,
    });
    if community {
        settings["max_resolution_tier"] = json!("1080p");
    } else {
        settings["mp4_support"] = json!("capped-1080p");
    }
    if let Some(p) = &labels.passthrough {
        settings["passthrough"] = Value::String(p.to_string());
    }
    let mut meta = serde_json::Map::new();
    if let Some(v) = &labels.title {
        meta.insert("title".into(), json!(v));
    }
    if let Some(v) = &labels.creator_id {
        meta.insert("creator_id".into(), json!(v));
    }
    if let Some(v) = &labels.external_id {
        meta.insert("external_id".into(), json!(v));
    }
    if !meta.is_empty() {
        settings["meta"] = Value::Object(meta);
    }
    json!({
        "cors_origin": cors_origin,
        "new_asset_settings": settings,
    })
}

// ---------------------------------------------------------------------------
// Video slots (§4.3)
// ---------------------------------------------------------------------------

/// `(used, limit)` video slots of a user: posts with an asset plus non-accepted
/// replies with an asset; 5 base, 20 pro. One query.
pub async fn slot_usage(
    ctx: &Context,
    conn: &mut PgConnection,
    user_id: Uuid,
) -> Result<(i64, i64)> {
    let (used, pro): (i64, bool) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT
            (SELECT COUNT(*) FROM posts WHERE user_id = $1 AND mux_asset_id IS NOT NULL)
          + (SELECT COUNT(*) FROM post_replies
             WHERE user_id = $1 AND mux_asset_id IS NOT NULL AND NOT is_accepted_answer),
            COALESCE((SELECT {PRO_SQL} FROM subscriptions s WHERE s.user_id = $1), false)"
    )))
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((used, Amounts::from_config(&ctx.config).slot_limit(pro)))
}

pub(super) fn slot_full_error(limit: i64, used: i64) -> Error {
    Error::with_object(
        422,
        json!({
            "success": false,
            "message": format!(
                "You've reached your {limit} video limit. Delete an old video to post a new one."
            ),
            "current_slots": used,
            "max_slots": limit,
        }),
    )
}
