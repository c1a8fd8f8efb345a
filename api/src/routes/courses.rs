//! Courses and progress (API.md §3.2): the catalogue, lesson lists and details,
//! the skill tree and lesson completion. Logic lives in `mambo_core::courses`.

use crate::auth::{AuthUser, OptionalAuth, UserAuth};
use crate::conditional::{Cached, Validator};
use crate::error::ApiResult;
use crate::fast_json::FastJson;
use crate::state::AppState;
use crate::types::parse_id;
use mambo_core::courses::{self, LESSON_NOT_FOUND, LEVEL_NOT_FOUND, Viewer, WORLD_NOT_FOUND};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde_json::Value;
use uuid::Uuid;

pub struct CoursesApi;

pub(crate) fn viewer(u: &AuthUser) -> Viewer {
    Viewer {
        id: u.id,
        role: u.role.clone(),
    }
}

/// A world (course) in the catalogue.
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "WorldItem")]
pub struct WorldItemOut {
    pub id: Uuid,
    pub title: String,
    pub slug: String,
    pub description: Option<String>,
    pub image_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    /// `Beginner`, `Intermediate`, `Advanced` or `Open`
    pub difficulty: String,
    /// `course`, `choreo` or `topic`
    pub course_type: String,
    pub progress_percentage: f64,
    pub is_locked: bool,
    pub total_duration_minutes: i64,
    pub objectives: Vec<String>,
    pub module_count: i64,
    pub lesson_count: i64,
}

impl From<courses::WorldItem> for WorldItemOut {
    fn from(w: courses::WorldItem) -> Self {
        Self {
            id: w.id,
            title: w.title,
            slug: w.slug,
            description: w.description,
            image_url: w.image_url,
            thumbnail_url: w.thumbnail_url,
            mux_preview_playback_id: w.mux_preview_playback_id,
            difficulty: w.difficulty,
            course_type: w.course_type,
            progress_percentage: w.progress_percentage,
            is_locked: w.is_locked,
            total_duration_minutes: w.total_duration_minutes,
            objectives: w.objectives,
            module_count: w.module_count,
            lesson_count: w.lesson_count,
        }
    }
}

/// A lesson in a list. Content fields are empty for callers who cannot open it.
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "LessonItem")]
pub struct LessonItemOut {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub video_url: String,
    pub xp_value: i32,
    pub is_completed: bool,
    pub is_locked: bool,
    pub is_boss_battle: bool,
    pub order_index: i32,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub duration_minutes: Option<i32>,
    pub thumbnail_url: Option<String>,
    /// `video`, `quiz` or `history`
    pub lesson_type: String,
}

impl From<courses::LessonItem> for LessonItemOut {
    fn from(l: courses::LessonItem) -> Self {
        Self {
            id: l.id,
            title: l.title,
            description: l.description,
            video_url: l.video_url,
            xp_value: l.xp_value,
            is_completed: l.is_completed,
            is_locked: l.is_locked,
            is_boss_battle: l.is_boss_battle,
            order_index: l.order_index,
            week_number: l.week_number,
            day_number: l.day_number,
            content_json: l.content_json,
            mux_playback_id: l.mux_playback_id,
            mux_asset_id: l.mux_asset_id,
            duration_minutes: l.duration_minutes,
            thumbnail_url: l.thumbnail_url,
            lesson_type: l.lesson_type,
        }
    }
}

pub(crate) fn lesson_list(items: Vec<courses::LessonItem>) -> FastJson<Vec<LessonItemOut>> {
    FastJson(items.into_iter().map(Into::into).collect())
}

/// One lesson with its neighbours in the world's order.
#[derive(Object, serde::Serialize, Debug, Clone)]
#[oai(rename = "LessonDetail")]
pub struct LessonDetailOut {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub video_url: String,
    pub xp_value: i32,
    pub next_lesson_id: Option<Uuid>,
    pub prev_lesson_id: Option<Uuid>,
    /// Always empty.
    pub comments: Vec<Value>,
    pub week_number: Option<i32>,
    pub day_number: Option<i32>,
    pub content_json: Option<Value>,
    pub mux_playback_id: Option<String>,
    pub mux_asset_id: Option<String>,
    pub thumbnail_url: Option<String>,
    pub lesson_type: String,
    pub level_id: Option<Uuid>,
    pub level_title: Option<String>,
}

/// XP awarded by a completion.
#[derive(Object, Debug, Clone)]
#[oai(rename = "XPGain")]
pub struct XpGainOut {
    pub xp_gained: i64,
    pub new_total_xp: i64,
    pub leveled_up: bool,
    pub new_level: i64,
}

/// A skill-tree node.
#[derive(Object, Debug, Clone)]
#[oai(rename = "LevelNode")]
pub struct LevelNodeOut {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub order_index: i32,
    pub x_position: f64,
    pub y_position: f64,
    pub thumbnail_url: Option<String>,
    pub mux_preview_playback_id: Option<String>,
    pub is_unlocked: bool,
    pub completion_percentage: f64,
    pub lesson_count: i64,
    /// Every lesson of the level, boss battles included.
    pub total_lesson_count: i64,
    /// `topic` worlds: the `## TL;DR` section of the level's first lesson's
    /// notes, in the requested locale when translated; null elsewhere. Shown
    /// to every caller.
    pub tldr: Option<String>,
    pub outcome: Option<String>,
    pub duration_minutes: i64,
    pub total_xp: i64,
    pub status: String,
}

/// A prerequisite edge: `from_level_id` must be completed before `to_level_id`.
#[derive(Object, Debug, Clone)]
#[oai(rename = "LevelEdge")]
pub struct EdgeOut {
    pub id: Uuid,
    pub from_level_id: Uuid,
    pub to_level_id: Uuid,
    pub world_id: Uuid,
}

impl From<courses::Edge> for EdgeOut {
    fn from(e: courses::Edge) -> Self {
        Self {
            id: e.id,
            from_level_id: e.from_level_id,
            to_level_id: e.to_level_id,
            world_id: e.world_id,
        }
    }
}

/// A world's skill tree.
#[derive(Object, Debug, Clone)]
#[oai(rename = "SkillTree")]
pub struct SkillTreeOut {
    pub id: Uuid,
    pub title: String,
    pub description: Option<String>,
    pub difficulty: String,
    pub course_type: String,
    pub is_free: bool,
    pub is_published: bool,
    pub thumbnail_url: Option<String>,
    /// The caller's lock on the world, as in the worlds list.
    pub is_locked: bool,
    pub levels: Vec<LevelNodeOut>,
    pub edges: Vec<EdgeOut>,
}

impl CoursesApi {
    async fn complete(state: &AppState, user: &AuthUser, raw: &str) -> ApiResult<Json<XpGainOut>> {
        let id = parse_id(raw, LESSON_NOT_FOUND)?;
        let g = courses::complete_lesson(&state.ctx, &viewer(user), id).await?;
        Ok(Json(XpGainOut {
            xp_gained: g.xp_gained,
            new_total_xp: g.new_total_xp,
            leveled_up: g.leveled_up,
            new_level: g.new_level,
        }))
    }
}

#[OpenApi(tag = "crate::routes::Tag::Courses")]
impl CoursesApi {
    /// Published worlds with the caller's progress and lock state
    #[oai(path = "/api/courses/worlds", method = "get")]
    async fn worlds(
        &self,
        auth: OptionalAuth,
        state: Data<&AppState>,
        req: &Request,
    ) -> ApiResult<Cached<FastJson<Vec<WorldItemOut>>>> {
        let v = auth.user().map(viewer);
        let head = courses::head(&state.ctx, v.as_ref()).await?;
        let validator = Validator::new("worlds", &head.state_tag(), v.is_none());
        Cached::answer(req, validator, || async {
            Ok(FastJson(
                courses::worlds_in(&head)
                    .into_iter()
                    .map(Into::into)
                    .collect(),
            ))
        })
        .await
    }

    /// Every lesson of a world, sorted by week, day and order
    #[oai(path = "/api/courses/worlds/:world_id/lessons", method = "get")]
    async fn world_lessons(
        &self,
        auth: OptionalAuth,
        state: Data<&AppState>,
        world_id: Path<String>,
        req: &Request,
    ) -> ApiResult<Cached<FastJson<Vec<LessonItemOut>>>> {
        let id = parse_id(&world_id, WORLD_NOT_FOUND)?;
        let v = auth.user().map(viewer);
        let head = courses::head(&state.ctx, v.as_ref()).await?;
        let validator = Validator::new(
            &format!("world-lessons:{id}"),
            &head.state_tag(),
            v.is_none(),
        );
        if validator.matches(req) && courses::world_lessons_in(&head, id).is_some() {
            return Ok(Cached::NotModified(validator));
        }
        match courses::world_lessons_in(&head, id) {
            Some(items) => Ok(Cached::Fresh(lesson_list(items), validator)),
            // Outside the published catalogue (staff, or a 404).
            None => Ok(Cached::Uncached(lesson_list(
                courses::world_lessons(&state.ctx, v.as_ref(), id).await?,
            ))),
        }
    }

    /// One lesson with next/prev
    #[oai(path = "/api/courses/lessons/:lesson_id", method = "get")]
    async fn lesson(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        lesson_id: Path<String>,
        req: &Request,
    ) -> ApiResult<Cached<FastJson<LessonDetailOut>>> {
        let id = parse_id(&lesson_id, LESSON_NOT_FOUND)?;
        let v = viewer(auth.user());
        // The lesson, its level and its neighbours are catalogue rows; what
        // the caller may open is their access: both are in the tag. A
        // conditional request reads the tag alone first; any other request
        // gets it from the lesson's own query.
        let route = format!("lesson:{id}");
        if req
            .headers()
            .contains_key(poem::http::header::IF_NONE_MATCH)
        {
            let validator =
                Validator::new(&route, &courses::access_tag(&state.ctx, &v).await?, false);
            if validator.matches(req) {
                return Ok(Cached::NotModified(validator));
            }
        }
        let d = courses::lesson_detail(&state.ctx, &v, id).await?;
        let validator = Validator::new(&route, &d.state_tag, false);
        Ok(Cached::Fresh(lesson_body(d), validator))
    }

    /// Complete a lesson (the seed's path)
    #[oai(path = "/api/courses/lessons/:lesson_id/complete", method = "post")]
    async fn complete_seed(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        lesson_id: Path<String>,
    ) -> ApiResult<Json<XpGainOut>> {
        Self::complete(&state, auth.user(), &lesson_id).await
    }

    /// Complete a lesson: XP once per lesson, level, streak, badge check
    #[oai(path = "/api/progress/lessons/:lesson_id/complete", method = "post")]
    async fn complete_progress(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        lesson_id: Path<String>,
    ) -> ApiResult<Json<XpGainOut>> {
        Self::complete(&state, auth.user(), &lesson_id).await
    }

    /// One level's lessons, sorted by week, day and order
    #[oai(path = "/api/courses/levels/:level_id/lessons", method = "get")]
    async fn level_lessons(
        &self,
        state: Data<&AppState>,
        auth: OptionalAuth,
        level_id: Path<String>,
    ) -> ApiResult<FastJson<Vec<LessonItemOut>>> {
        let id = parse_id(&level_id, LEVEL_NOT_FOUND)?;
        let v = auth.user().map(viewer);
        Ok(lesson_list(
            courses::level_lessons(&state.ctx.db, v.as_ref(), id).await?,
        ))
    }

    /// A world's levels, edges, completion and unlock state
    #[oai(path = "/api/courses/worlds/:world_id/skill-tree", method = "get")]
    async fn skill_tree(
        &self,
        auth: OptionalAuth,
        state: Data<&AppState>,
        world_id: Path<String>,
        /// The language of topic levels' `tldr` (`^[a-z]{2}$`, default `en`)
        locale: Query<Option<String>>,
        req: &Request,
    ) -> ApiResult<Cached<Json<SkillTreeOut>>> {
        let locale = courses::Locale::parse(locale.0.as_deref())?;
        let id = parse_id(&world_id, WORLD_NOT_FOUND)?;
        let v = auth.user().map(viewer);
        // Levels, edges and lessons (their notes too) are catalogue rows;
        // unlocks follow the caller's completions and the lock their access:
        // all are in the head's tag.
        let head = courses::head(&state.ctx, v.as_ref()).await?;
        let validator = Validator::new(
            &format!("skill-tree:{id}:{}", locale.as_str()),
            &head.state_tag(),
            v.is_none(),
        );
        Cached::answer(req, validator, || skill_tree_body(&state, v, id, &locale)).await
    }
}

/// The body of `GET /api/courses/worlds/{id}/skill-tree`.
async fn skill_tree_body(
    state: &AppState,
    v: Option<Viewer>,
    id: Uuid,
    locale: &courses::Locale,
) -> ApiResult<Json<SkillTreeOut>> {
    let t = courses::skill_tree_in(&state.ctx.db, v.as_ref(), id, locale).await?;
    Ok(Json(SkillTreeOut {
        id: t.id,
        title: t.title,
        description: t.description,
        difficulty: t.difficulty,
        course_type: t.course_type,
        is_free: t.is_free,
        is_published: t.is_published,
        thumbnail_url: t.thumbnail_url,
        is_locked: t.is_locked,
        levels: t
            .levels
            .into_iter()
            .map(|l| LevelNodeOut {
                id: l.id,
                title: l.title,
                description: l.description,
                order_index: l.order_index,
                x_position: l.x_position,
                y_position: l.y_position,
                thumbnail_url: l.thumbnail_url,
                mux_preview_playback_id: l.mux_preview_playback_id,
                is_unlocked: l.is_unlocked,
                completion_percentage: l.completion_percentage,
                lesson_count: l.lesson_count,
                total_lesson_count: l.total_lesson_count,
                tldr: l.tldr,
                outcome: l.outcome,
                duration_minutes: l.duration_minutes,
                total_xp: l.total_xp,
                status: l.status,
            })
            .collect(),
        edges: t.edges.into_iter().map(Into::into).collect(),
    }))
}

/// The body of `GET /api/courses/lessons/{id}`.
fn lesson_body(d: courses::LessonDetail) -> FastJson<LessonDetailOut> {
    FastJson(LessonDetailOut {
        id: d.id,
        title: d.title,
        description: d.description,
        video_url: d.video_url,
        xp_value: d.xp_value,
        next_lesson_id: d.next_lesson_id,
        prev_lesson_id: d.prev_lesson_id,
        comments: vec![],
        week_number: d.week_number,
        day_number: d.day_number,
        content_json: d.content_json,
        mux_playback_id: d.mux_playback_id,
        mux_asset_id: d.mux_asset_id,
        thumbnail_url: d.thumbnail_url,
        lesson_type: d.lesson_type,
        level_id: d.level_id,
        level_title: d.level_title,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fast_json::assert_same_json;

    #[test]
    fn fast_json_matches_the_openapi_serialization() {
        let id = Uuid::new_v4();
        for some in [false, true] {
            let opt = |s: &str| some.then(|| s.to_string());
            assert_same_json(&vec![WorldItemOut {
                id,
                title: "Mambo \"101\" — ñ".into(),
                slug: "mambo-101".into(),
                description: opt("d"),
                image_url: opt("https://x/i.png"),
                thumbnail_url: opt("t"),
                mux_preview_playback_id: opt("m"),
                difficulty: "Beginner".into(),
                course_type: "course".into(),
                progress_percentage: if some { 33.333333333333336 } else { 0.0 },
                is_locked: some,
                total_duration_minutes: 95,
                objectives: vec!["a".into(), "b".into()],
                module_count: 3,
                lesson_count: 12,
            }]);
            assert_same_json(&vec![LessonItemOut {
                id,
                title: "L".into(),
                description: opt("d"),
                video_url: String::new(),
                xp_value: 50,
                is_completed: some,
                is_locked: !some,
                is_boss_battle: some,
                order_index: 2,
                week_number: some.then_some(1),
                day_number: some.then_some(3),
                content_json: some.then(|| serde_json::json!({"blocks": [1, "x", null, 2.5]})),
                mux_playback_id: opt("p"),
                mux_asset_id: opt("a"),
                duration_minutes: some.then_some(7),
                thumbnail_url: opt("t"),
                lesson_type: "video".into(),
            }]);
            assert_same_json(&LessonDetailOut {
                id,
                title: "L".into(),
                description: opt("d"),
                video_url: "v".into(),
                xp_value: 10,
                next_lesson_id: some.then_some(id),
                prev_lesson_id: None,
                comments: vec![],
                week_number: some.then_some(1),
                day_number: None,
                content_json: some.then(|| serde_json::json!({"k": "v"})),
                mux_playback_id: opt("p"),
                mux_asset_id: opt("a"),
                thumbnail_url: opt("t"),
                lesson_type: "quiz".into(),
                level_id: some.then_some(id),
                level_title: opt("Level"),
            });
        }
    }
}
