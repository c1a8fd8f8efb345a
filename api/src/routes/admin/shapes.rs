//! Request and response shapes of the admin endpoints, and how a partial
//! update's fields map to the domain's patches.

use super::*;

/// Absent → keep; `null` → clear when `nulls_clear` (PATCH), else keep; value → set.
pub(super) fn patch<T>(m: MaybeUndefined<T>, nulls_clear: bool) -> Patch<Option<T>> {
    match m {
        MaybeUndefined::Undefined => Patch::Keep,
        MaybeUndefined::Null if nulls_clear => Patch::Set(None),
        MaybeUndefined::Null => Patch::Keep,
        MaybeUndefined::Value(v) => Patch::Set(Some(v)),
    }
}

/// A non-nullable field: only a value changes it.
pub(super) fn value<T>(m: MaybeUndefined<T>) -> Option<T> {
    match m {
        MaybeUndefined::Value(v) => Some(v),
        _ => None,
    }
}

#[derive(Object, Debug)]
#[oai(rename = "AdminMessage")]
pub struct MessageOut {
    pub message: String,
}

pub(super) fn message(m: &str) -> Json<MessageOut> {
    Json(MessageOut { message: m.into() })
}

#[derive(Object, Debug)]
#[oai(rename = "AdminStats")]
pub struct StatsOut {
    pub total_users: i64,
    pub total_submissions: i64,
    pub pending_submissions: i64,
}

#[derive(Object, Debug)]
#[oai(rename = "AdminStudent")]
pub struct StudentOut {
    pub id: Uuid,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub xp: i32,
    pub level: i32,
    pub streak_count: i32,
    pub created_at: String,
    pub role: String,
}

/// WorldCreate: a new course.
#[derive(Object, Debug)]
#[oai(rename = "WorldCreate")]
pub struct WorldCreateIn {
    pub title: String,
    pub description: Option<String>,
    pub slug: String,
    pub order_index: i32,
    pub is_free: Option<bool>,
    pub image_url: Option<String>,
    pub thumbnail_url: Option<String>,
    /// BEGINNER, INTERMEDIATE, ADVANCED or OPEN (case-insensitive)
    pub difficulty: String,
    /// course (default), choreo or topic
    pub course_type: Option<String>,
    pub is_published: Option<bool>,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub total_duration_minutes: Option<i32>,
    pub objectives: Option<Vec<String>>,
}

/// WorldUpdate: every field optional.
#[derive(Object, Debug, Default)]
#[oai(rename = "WorldUpdate")]
pub struct WorldUpdateIn {
    pub title: MaybeUndefined<String>,
    pub description: MaybeUndefined<String>,
    pub slug: MaybeUndefined<String>,
    pub order_index: MaybeUndefined<i32>,
    pub is_free: MaybeUndefined<bool>,
    pub image_url: MaybeUndefined<String>,
    pub thumbnail_url: MaybeUndefined<String>,
    pub difficulty: MaybeUndefined<String>,
    pub course_type: MaybeUndefined<String>,
    pub is_published: MaybeUndefined<bool>,
    pub mux_preview_playback_id: MaybeUndefined<String>,
    pub mux_preview_asset_id: MaybeUndefined<String>,
    pub total_duration_minutes: MaybeUndefined<i32>,
    pub objectives: MaybeUndefined<Vec<String>>,
}

impl WorldUpdateIn {
    pub(super) fn into_core(self, nulls_clear: bool) -> core_admin::WorldUpdate {
        core_admin::WorldUpdate {
            title: value(self.title),
            description: patch(self.description, nulls_clear),
            slug: value(self.slug),
            order_index: value(self.order_index),
            is_free: value(self.is_free),
            image_url: patch(self.image_url, nulls_clear),
            thumbnail_url: patch(self.thumbnail_url, nulls_clear),
            difficulty: value(self.difficulty),
            course_type: value(self.course_type),
            is_published: value(self.is_published),
            mux_preview_playback_id: patch(self.mux_preview_playback_id, nulls_clear),
            mux_preview_asset_id: patch(self.mux_preview_asset_id, nulls_clear),
            total_duration_minutes: value(self.total_duration_minutes),
            objectives: value(self.objectives),
        }
    }
}

/// A level inside AdminCourseFull, with its lessons.
#[derive(Object, Debug)]
#[oai(rename = "AdminCourseLevel")]
pub struct CourseLevelOut {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub x_position: f64,
    pub y_position: f64,
    pub outcome: Option<String>,
    pub duration_minutes: i32,
    pub total_xp: i32,
    pub status: String,
    pub order_index: i32,
    pub lessons: Vec<AdminLessonOut>,
}

#[derive(Object, Debug)]
#[oai(rename = "AdminCourseFull")]
pub struct CourseFullOut {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub slug: String,
    pub order_index: i32,
    pub is_free: bool,
    pub image_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub difficulty: String,
    pub course_type: String,
    pub is_published: bool,
    pub total_duration_minutes: i32,
    pub objectives: Vec<String>,
    pub levels: Vec<CourseLevelOut>,
}

/// AdminLevel.
#[derive(Object, Debug)]
#[oai(rename = "AdminLevel")]
pub struct AdminLevelOut {
    pub id: Uuid,
    pub world_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub x_position: f64,
    pub y_position: f64,
    pub outcome: Option<String>,
    pub duration_minutes: i32,
    pub total_xp: i32,
    pub status: String,
    pub order_index: i32,
}

impl From<core_admin::AdminLevel> for AdminLevelOut {
    fn from(l: core_admin::AdminLevel) -> Self {
        Self {
            id: l.id,
            world_id: l.world_id,
            title: l.title,
            description: l.description,
            thumbnail_url: l.thumbnail_url,
            mux_preview_playback_id: l.mux_preview_playback_id,
            mux_preview_asset_id: l.mux_preview_asset_id,
            x_position: l.x_position,
            y_position: l.y_position,
            outcome: l.outcome,
            duration_minutes: l.duration_minutes,
            total_xp: l.total_xp,
            status: l.status,
            order_index: l.order_index,
        }
    }
}

/// A lesson as the course builder sees it.
#[derive(Object, Debug)]
#[oai(rename = "AdminLesson")]
pub struct AdminLessonOut {
    pub id: Uuid,
    pub level_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub video_url: String,
    pub xp_value: i32,
    pub order_index: i32,
    pub is_boss_battle: bool,
    pub duration_minutes: Option<i32>,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub thumbnail_url: Option<String>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub lesson_type: String,
}

impl From<core_admin::AdminLesson> for AdminLessonOut {
    fn from(l: core_admin::AdminLesson) -> Self {
        Self {
            id: l.id,
            level_id: l.level_id,
            title: l.title,
            description: l.description,
            video_url: l.video_url,
            xp_value: l.xp_value,
            order_index: l.order_index,
            is_boss_battle: l.is_boss_battle,
            duration_minutes: l.duration_minutes,
            week_number: l.week_number,
            day_number: l.day_number,
            content_json: l.content_json,
            thumbnail_url: l.thumbnail_url,
            mux_playback_id: l.mux_playback_id,
            mux_asset_id: l.mux_asset_id,
            lesson_type: l.lesson_type,
        }
    }
}

/// `POST /api/admin/courses/{id}/levels`.
#[derive(Object, Debug)]
#[oai(rename = "CourseLevelCreate")]
pub struct CourseLevelCreateIn {
    /// Ignored: the path wins.
    pub world_id: Option<String>,
    pub title: String,
    pub order_index: i32,
    pub description: Option<String>,
    pub x_position: Option<f64>,
    pub y_position: Option<f64>,
}

#[derive(Object, Debug)]
#[oai(rename = "CourseLevelCreated")]
pub struct CourseLevelCreatedOut {
    pub id: Uuid,
    pub title: String,
    pub order_index: i32,
}

/// `POST /api/admin/worlds/{world_id}/levels`.
#[derive(Object, Debug)]
#[oai(rename = "WorldLevelCreate")]
pub struct WorldLevelCreateIn {
    pub title: Option<String>,
    pub description: Option<String>,
    pub x_position: Option<f64>,
    pub y_position: Option<f64>,
}

#[derive(Object, Debug)]
#[oai(rename = "WorldLevelCreated")]
pub struct WorldLevelCreatedOut {
    pub id: Uuid,
    pub world_id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub order_index: i32,
    pub x_position: f64,
    pub y_position: f64,
}

/// `PUT /api/admin/levels/{id}`: null or absent means unchanged.
#[derive(Object, Debug)]
#[oai(rename = "LevelUpdate")]
pub struct LevelUpdateIn {
    pub title: Option<String>,
    pub description: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub mux_preview_asset_id: Option<String>,
    pub outcome: Option<String>,
    pub duration_minutes: Option<i32>,
    pub total_xp: Option<i32>,
    /// `active`, `coming_soon` or `locked` by convention
    pub status: Option<String>,
    pub order_index: Option<i32>,
    pub x_position: Option<f64>,
    pub y_position: Option<f64>,
}

pub(super) fn set_if<T>(v: Option<T>) -> Patch<Option<T>> {
    match v {
        Some(v) => Patch::Set(Some(v)),
        None => Patch::Keep,
    }
}

#[derive(Object, Debug)]
#[oai(rename = "LevelPosition")]
pub struct PositionIn {
    pub x_position: Option<f64>,
    pub y_position: Option<f64>,
}

/// LessonCreate.
#[derive(Object, Debug)]
#[oai(rename = "LessonCreate")]
pub struct LessonCreateIn {
    /// Optional on `/levels/{id}/lessons` (the path wins); required on
    /// `/courses/{id}/lessons`.
    pub level_id: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub video_url: Option<String>,
    pub xp_value: Option<i32>,
    pub order_index: i32,
    pub is_boss_battle: Option<bool>,
    pub duration_minutes: Option<i32>,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub thumbnail_url: Option<String>,
    /// video (default), quiz or history
    pub lesson_type: Option<String>,
}

impl LessonCreateIn {
    pub(super) fn into_core(self) -> core_admin::LessonCreate {
        core_admin::LessonCreate {
            title: self.title,
            description: self.description,
            video_url: self.video_url,
            xp_value: self.xp_value,
            order_index: self.order_index,
            is_boss_battle: self.is_boss_battle,
            duration_minutes: self.duration_minutes,
            week_number: self.week_number,
            day_number: self.day_number,
            content_json: self.content_json,
            mux_playback_id: self.mux_playback_id,
            mux_asset_id: self.mux_asset_id,
            thumbnail_url: self.thumbnail_url,
            lesson_type: self.lesson_type,
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "LessonCreated")]
pub struct LessonCreatedOut {
    pub id: Uuid,
    pub title: String,
    pub order_index: i32,
    pub xp_value: i32,
    pub is_boss_battle: bool,
}

/// LessonUpdate: every field optional. `mux_*` values are ignored.
#[derive(Object, Debug, Default)]
#[oai(rename = "LessonUpdate")]
pub struct LessonUpdateIn {
    pub title: MaybeUndefined<String>,
    pub description: MaybeUndefined<String>,
    pub video_url: MaybeUndefined<String>,
    pub xp_value: MaybeUndefined<i32>,
    pub order_index: MaybeUndefined<i32>,
    pub is_boss_battle: MaybeUndefined<bool>,
    pub duration_minutes: MaybeUndefined<i32>,
    pub week_number: MaybeUndefined<i32>,
    pub day_number: MaybeUndefined<i32>,
    pub content_json: MaybeUndefined<Value>,
    pub mux_playback_id: MaybeUndefined<String>,
    pub mux_asset_id: MaybeUndefined<String>,
    pub thumbnail_url: MaybeUndefined<String>,
    pub lesson_type: MaybeUndefined<String>,
    pub delete_video: Option<bool>,
    /// Ignored (the path names the lesson).
    pub level_id: MaybeUndefined<String>,
}

impl LessonUpdateIn {
    pub(super) fn into_core(self, nulls_clear: bool) -> core_admin::LessonUpdate {
        core_admin::LessonUpdate {
            title: value(self.title),
            description: patch(self.description, nulls_clear),
            video_url: value(self.video_url),
            xp_value: value(self.xp_value),
            order_index: value(self.order_index),
            is_boss_battle: value(self.is_boss_battle),
            duration_minutes: patch(self.duration_minutes, nulls_clear),
            week_number: patch(self.week_number, nulls_clear),
            day_number: patch(self.day_number, nulls_clear),
            content_json: patch(self.content_json, nulls_clear),
            thumbnail_url: patch(self.thumbnail_url, nulls_clear),
            lesson_type: value(self.lesson_type),
            delete_video: self.delete_video.unwrap_or(false),
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "LessonUpdated")]
pub struct LessonUpdatedOut {
    pub id: Uuid,
    pub title: String,
    pub order_index: i32,
}

#[derive(Object, Debug)]
#[oai(rename = "EdgeCreate")]
pub struct EdgeCreateIn {
    pub from_level_id: String,
    pub to_level_id: String,
}
