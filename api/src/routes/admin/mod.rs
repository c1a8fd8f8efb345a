//! Admin endpoints (API.md §3.3): the course builder (worlds, levels, lessons,
//! skill-tree edges, with the seed's aliases next to the frontend's paths), the
//! students list and stats. Every route is `admin` (401, then 403).
//! Submissions grading lives with the submissions area.
//!
//! Partial updates: a field that is absent is left alone. An explicit `null`
//! is also "unchanged" on the frontend's `PUT` routes (the reference's rule),
//! while the seed's `PATCH` aliases use it to clear a nullable field (D36).

use crate::auth::{AdminAuth, AuthUser};
use crate::error::{ApiError, ApiResult};
use crate::routes::courses::{EdgeOut, LessonItemOut, WorldItemOut, lesson_list};
use crate::state::AppState;
use crate::types::{parse_id, ts};
use mambo_core::admin::{self as core_admin, COURSE_NOT_FOUND, EDGE_NOT_FOUND, Patch};
use mambo_core::audit::Actor;
use mambo_core::courses::{LESSON_NOT_FOUND, LEVEL_NOT_FOUND, WORLD_NOT_FOUND};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{Object, OpenApi};
use serde_json::{Value, json};
use uuid::Uuid;

mod shapes;
pub use shapes::*;

pub struct AdminApi;

/// The acting admin for the audit log (N4.5): who, from which address (behind
/// a trusted proxy, the forwarded one), and the clock's now.
pub(crate) fn audit_actor(state: &AppState, req: &Request, admin: &AuthUser) -> Actor {
    Actor::new(
        admin.id,
        crate::middleware::client_ip(req, &state.ctx.config),
        state.ctx.clock.now(),
    )
}

impl AdminApi {
    async fn update_course(
        state: &AppState,
        req: &Request,
        auth: AdminAuth,
        course_id: &str,
        body: WorldUpdateIn,
        nulls_clear: bool,
    ) -> ApiResult<Json<WorldItemOut>> {
        let actor = audit_actor(state, req, auth.user());
        let id = parse_id(course_id, COURSE_NOT_FOUND)?;
        let w =
            core_admin::update_world(&state.ctx, &actor, id, body.into_core(nulls_clear)).await?;
        Ok(Json(w.into()))
    }

    async fn course_full(
        state: &AppState,
        _admin: AdminAuth,
        course_id: &str,
    ) -> ApiResult<Json<CourseFullOut>> {
        let id = parse_id(course_id, COURSE_NOT_FOUND)?;
        let f = core_admin::course_full(&state.ctx.db, id).await?;
        let w = f.world;
        Ok(Json(CourseFullOut {
            id: w.id,
            title: w.title,
            description: w.description,
            slug: w.slug,
            order_index: w.order_index,
            is_free: w.is_free,
            image_url: w.image_url,
            thumbnail_url: w.thumbnail_url,
            mux_preview_playback_id: w.mux_preview_playback_id,
            mux_preview_asset_id: w.mux_preview_asset_id,
            difficulty: w.difficulty,
            course_type: w.course_type,
            is_published: w.is_published,
            total_duration_minutes: w.total_duration_minutes,
            objectives: mambo_core::courses::objectives_from_json(&w.objectives),
            levels: f
                .levels
                .into_iter()
                .map(|lf| {
                    let l = lf.level;
                    CourseLevelOut {
                        id: l.id,
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
                        lessons: lf.lessons.into_iter().map(Into::into).collect(),
                    }
                })
                .collect(),
        }))
    }

    async fn create_lesson_in(
        state: &AppState,
        actor: &Actor,
        level_id: Uuid,
        body: LessonCreateIn,
    ) -> ApiResult<Json<LessonCreatedOut>> {
        let c = core_admin::create_lesson(&state.ctx.db, actor, level_id, body.into_core()).await?;
        Ok(Json(LessonCreatedOut {
            id: c.id,
            title: c.title,
            order_index: c.order_index,
            xp_value: c.xp_value,
            is_boss_battle: c.is_boss_battle,
        }))
    }

    async fn update_lesson(
        state: &AppState,
        req: &Request,
        auth: AdminAuth,
        lesson_id: &str,
        body: LessonUpdateIn,
        nulls_clear: bool,
    ) -> ApiResult<Json<LessonUpdatedOut>> {
        let actor = audit_actor(state, req, auth.user());
        let id = parse_id(lesson_id, LESSON_NOT_FOUND)?;
        let u = core_admin::update_lesson(&state.ctx.db, &actor, id, body.into_core(nulls_clear))
            .await?;
        Ok(Json(LessonUpdatedOut {
            id: u.id,
            title: u.title,
            order_index: u.order_index,
        }))
    }
}

#[OpenApi(tag = "crate::routes::Tag::Admin")]
impl AdminApi {
    /// Counts for the admin dashboard
    #[oai(path = "/api/admin/stats", method = "get")]
    async fn stats(&self, state: Data<&AppState>, _admin: AdminAuth) -> ApiResult<Json<StatsOut>> {
        let s = core_admin::stats(&state.ctx.db).await?;
        Ok(Json(StatsOut {
            total_users: s.total_users,
            total_submissions: s.total_submissions,
            pending_submissions: s.pending_submissions,
        }))
    }

    /// Users with a profile, newest first, optionally filtered
    #[oai(path = "/api/admin/students", method = "get")]
    async fn students(
        &self,
        state: Data<&AppState>,
        _admin: AdminAuth,
        search: Query<Option<String>>,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
    ) -> ApiResult<Json<Vec<StudentOut>>> {
        let skip = skip.0.unwrap_or(0);
        if skip < 0 {
            return Err(mambo_core::Error::validation(
                &["query", "skip"],
                "Input should be greater than or equal to 0",
                "greater_than_equal",
                json!(skip.to_string()),
            )
            .into());
        }
        let rows = core_admin::students(&state.ctx.db, search.0.as_deref(), skip, limit.0).await?;
        Ok(Json(
            rows.into_iter()
                .map(|s| StudentOut {
                    id: s.id,
                    email: s.email,
                    first_name: s.first_name,
                    last_name: s.last_name,
                    xp: s.xp,
                    level: s.level,
                    streak_count: s.streak_count,
                    created_at: ts(&s.created_at),
                    role: s.role,
                })
                .collect(),
        ))
    }

    /// Every course, published or not
    #[oai(path = "/api/admin/courses", method = "get")]
    async fn courses(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
    ) -> ApiResult<Json<Vec<WorldItemOut>>> {
        let admin = auth.into_user();
        let items = core_admin::list_courses(&state.ctx.db, admin.id).await?;
        Ok(Json(items.into_iter().map(Into::into).collect()))
    }

    /// Create a course
    #[oai(path = "/api/admin/courses", method = "post")]
    async fn create_course(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        body: Json<WorldCreateIn>,
    ) -> ApiResult<Json<WorldItemOut>> {
        let admin = auth.into_user();
        let actor = audit_actor(&state, req, &admin);
        let b = body.0;
        let w = core_admin::create_world(
            &state.ctx,
            &actor,
            core_admin::WorldCreate {
                title: b.title,
                description: b.description,
                slug: b.slug,
                order_index: b.order_index,
                is_free: b.is_free.unwrap_or(false),
                image_url: b.image_url,
                thumbnail_url: b.thumbnail_url,
                difficulty: b.difficulty,
                course_type: b.course_type,
                is_published: b.is_published.unwrap_or(false),
                mux_preview_playback_id: b.mux_preview_playback_id,
                mux_preview_asset_id: b.mux_preview_asset_id,
                total_duration_minutes: b.total_duration_minutes,
                objectives: b.objectives,
            },
        )
        .await?;
        Ok(Json(w.into()))
    }

    /// Update a course (the frontend's PUT: null means unchanged)
    #[oai(path = "/api/admin/courses/:course_id", method = "put")]
    async fn put_course(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        course_id: Path<String>,
        body: Json<WorldUpdateIn>,
    ) -> ApiResult<Json<WorldItemOut>> {
        Self::update_course(&state, req, auth, &course_id, body.0, false).await
    }

    /// Update a course (the seed's PATCH: null clears a nullable field)
    #[oai(path = "/api/admin/courses/:course_id", method = "patch")]
    async fn patch_course(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        course_id: Path<String>,
        body: Json<WorldUpdateIn>,
    ) -> ApiResult<Json<WorldItemOut>> {
        Self::update_course(&state, req, auth, &course_id, body.0, true).await
    }

    /// Delete a course with everything in it
    #[oai(path = "/api/admin/courses/:course_id", method = "delete")]
    async fn delete_course(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        course_id: Path<String>,
    ) -> ApiResult<Json<MessageOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&course_id, COURSE_NOT_FOUND)?;
        core_admin::delete_world(&state.ctx.db, &actor, id).await?;
        Ok(message("Course deleted successfully"))
    }

    /// A course with its levels and lessons (the frontend's path)
    #[oai(path = "/api/admin/courses/:course_id/full", method = "get")]
    async fn course_full_path(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        course_id: Path<String>,
    ) -> ApiResult<Json<CourseFullOut>> {
        Self::course_full(&state, auth, &course_id).await
    }

    /// A course with its levels and lessons (the seed's path)
    #[oai(path = "/api/admin/courses/:course_id", method = "get")]
    async fn course_get(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        course_id: Path<String>,
    ) -> ApiResult<Json<CourseFullOut>> {
        Self::course_full(&state, auth, &course_id).await
    }

    /// Add a level at a given position
    #[oai(path = "/api/admin/courses/:course_id/levels", method = "post")]
    async fn create_course_level(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        course_id: Path<String>,
        body: Json<CourseLevelCreateIn>,
    ) -> ApiResult<Json<CourseLevelCreatedOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&course_id, COURSE_NOT_FOUND)?;
        let b = body.0;
        let l = core_admin::create_level(
            &state.ctx.db,
            &actor,
            id,
            core_admin::LevelCreate {
                title: b.title,
                description: b.description,
                order_index: Some(b.order_index),
                x_position: b.x_position.unwrap_or(50.0),
                y_position: b.y_position.unwrap_or(50.0),
            },
            COURSE_NOT_FOUND,
        )
        .await?;
        Ok(Json(CourseLevelCreatedOut {
            id: l.id,
            title: l.title,
            order_index: l.order_index,
        }))
    }

    /// Append a level to a world's skill tree
    #[oai(path = "/api/admin/worlds/:world_id/levels", method = "post")]
    async fn create_world_level(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        world_id: Path<String>,
        body: Json<WorldLevelCreateIn>,
    ) -> ApiResult<Json<WorldLevelCreatedOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&world_id, WORLD_NOT_FOUND)?;
        let b = body.0;
        let l = core_admin::create_level(
            &state.ctx.db,
            &actor,
            id,
            core_admin::LevelCreate {
                title: b.title.unwrap_or_else(|| "New Level".into()),
                description: Some(b.description.unwrap_or_default()),
                order_index: None,
                x_position: b.x_position.unwrap_or(50.0),
                y_position: b.y_position.unwrap_or(50.0),
            },
            WORLD_NOT_FOUND,
        )
        .await?;
        Ok(Json(WorldLevelCreatedOut {
            id: l.id,
            world_id: l.world_id,
            title: l.title,
            description: l.description,
            order_index: l.order_index,
            x_position: l.x_position,
            y_position: l.y_position,
        }))
    }

    /// One level
    #[oai(path = "/api/admin/levels/:level_id", method = "get")]
    async fn get_level(
        &self,
        state: Data<&AppState>,
        _admin: AdminAuth,
        level_id: Path<String>,
    ) -> ApiResult<Json<AdminLevelOut>> {
        let id = parse_id(&level_id, LEVEL_NOT_FOUND)?;
        Ok(Json(core_admin::get_level(&state.ctx.db, id).await?.into()))
    }

    /// Update a level (null or absent means unchanged)
    #[oai(path = "/api/admin/levels/:level_id", method = "put")]
    async fn update_level(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        level_id: Path<String>,
        body: Json<LevelUpdateIn>,
    ) -> ApiResult<Json<AdminLevelOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&level_id, LEVEL_NOT_FOUND)?;
        let b = body.0;
        let l = core_admin::update_level(
            &state.ctx.db,
            &actor,
            id,
            core_admin::LevelUpdate {
                title: b.title,
                description: set_if(b.description),
                thumbnail_url: set_if(b.thumbnail_url),
                mux_preview_playback_id: set_if(b.mux_preview_playback_id),
                mux_preview_asset_id: set_if(b.mux_preview_asset_id),
                outcome: set_if(b.outcome),
                duration_minutes: b.duration_minutes,
                total_xp: b.total_xp,
                status: b.status,
                order_index: b.order_index,
                x_position: b.x_position,
                y_position: b.y_position,
            },
        )
        .await?;
        Ok(Json(l.into()))
    }

    /// Delete a level with its edges and lessons
    #[oai(path = "/api/admin/levels/:level_id", method = "delete")]
    async fn delete_level(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        level_id: Path<String>,
    ) -> ApiResult<Json<MessageOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&level_id, LEVEL_NOT_FOUND)?;
        core_admin::delete_level(&state.ctx.db, &actor, id).await?;
        Ok(message("Level deleted successfully"))
    }

    /// Move a level on the skill-tree canvas
    #[oai(path = "/api/admin/levels/:level_id/position", method = "put")]
    async fn level_position(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        level_id: Path<String>,
        body: Json<PositionIn>,
    ) -> ApiResult<Json<MessageOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&level_id, LEVEL_NOT_FOUND)?;
        core_admin::set_level_position(
            &state.ctx.db,
            &actor,
            id,
            body.0.x_position,
            body.0.y_position,
        )
        .await?;
        Ok(message("Position updated successfully"))
    }

    /// A level's lessons by order_index
    #[oai(path = "/api/admin/levels/:level_id/lessons", method = "get")]
    async fn level_lessons(
        &self,
        state: Data<&AppState>,
        auth: AdminAuth,
        level_id: Path<String>,
    ) -> ApiResult<crate::fast_json::FastJson<Vec<LessonItemOut>>> {
        let admin = auth.into_user();
        let id = parse_id(&level_id, LEVEL_NOT_FOUND)?;
        Ok(lesson_list(
            core_admin::level_lessons(&state.ctx.db, admin.id, id).await?,
        ))
    }

    /// Add a lesson to a level (the frontend's path; body level_id optional)
    #[oai(path = "/api/admin/levels/:level_id/lessons", method = "post")]
    async fn create_level_lesson(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        level_id: Path<String>,
        body: Json<LessonCreateIn>,
    ) -> ApiResult<Json<LessonCreatedOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&level_id, LEVEL_NOT_FOUND)?;
        Self::create_lesson_in(&state, &actor, id, body.0).await
    }

    /// Add a lesson to a course (the seed's path; body level_id required)
    #[oai(path = "/api/admin/courses/:course_id/lessons", method = "post")]
    async fn create_course_lesson(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        course_id: Path<String>,
        body: Json<LessonCreateIn>,
    ) -> ApiResult<Json<LessonCreatedOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let course = parse_id(&course_id, COURSE_NOT_FOUND)?;
        let Some(raw_level) = body.0.level_id.clone() else {
            return Err(mambo_core::Error::validation(
                &["body", "level_id"],
                "Field required",
                "missing",
                Value::Null,
            )
            .into());
        };
        let level = Uuid::parse_str(raw_level.trim()).ok();
        let level = match level {
            Some(l) => core_admin::level_in_course(&state.ctx.db, course, Some(l)).await?,
            None => {
                // Still report a missing course first.
                core_admin::level_in_course(&state.ctx.db, course, None).await?;
                return Err(ApiError::msg(404, LEVEL_NOT_FOUND));
            }
        };
        Self::create_lesson_in(&state, &actor, level, body.0).await
    }

    /// One lesson with everything the editor needs
    #[oai(path = "/api/admin/lessons/:lesson_id", method = "get")]
    async fn get_lesson(
        &self,
        state: Data<&AppState>,
        _admin: AdminAuth,
        lesson_id: Path<String>,
    ) -> ApiResult<Json<AdminLessonOut>> {
        let id = parse_id(&lesson_id, LESSON_NOT_FOUND)?;
        Ok(Json(
            core_admin::get_lesson(&state.ctx.db, id).await?.into(),
        ))
    }

    /// Update a lesson (the frontend's PUT: null means unchanged)
    #[oai(path = "/api/admin/lessons/:lesson_id", method = "put")]
    async fn put_lesson(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        lesson_id: Path<String>,
        body: Json<LessonUpdateIn>,
    ) -> ApiResult<Json<LessonUpdatedOut>> {
        Self::update_lesson(&state, req, auth, &lesson_id, body.0, false).await
    }

    /// Update a lesson (the seed's PATCH: null clears a nullable field)
    #[oai(path = "/api/admin/lessons/:lesson_id", method = "patch")]
    async fn patch_lesson(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        lesson_id: Path<String>,
        body: Json<LessonUpdateIn>,
    ) -> ApiResult<Json<LessonUpdatedOut>> {
        Self::update_lesson(&state, req, auth, &lesson_id, body.0, true).await
    }

    /// Delete a lesson with its progress, submissions and comments
    #[oai(path = "/api/admin/lessons/:lesson_id", method = "delete")]
    async fn delete_lesson(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        lesson_id: Path<String>,
    ) -> ApiResult<Json<MessageOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&lesson_id, LESSON_NOT_FOUND)?;
        core_admin::delete_lesson(&state.ctx.db, &actor, id).await?;
        Ok(message("Lesson deleted successfully"))
    }

    /// Add a prerequisite edge (no cross-world edges, self-loops or cycles)
    #[oai(path = "/api/admin/worlds/:world_id/edges", method = "post")]
    async fn create_edge(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        world_id: Path<String>,
        body: Json<EdgeCreateIn>,
    ) -> ApiResult<Json<EdgeOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let world = parse_id(&world_id, WORLD_NOT_FOUND)?;
        let from = parse_id(&body.0.from_level_id, LEVEL_NOT_FOUND)?;
        let to = parse_id(&body.0.to_level_id, LEVEL_NOT_FOUND)?;
        let e = core_admin::create_edge(&state.ctx.db, &actor, world, from, to).await?;
        Ok(Json(e.into()))
    }

    /// Delete an edge
    #[oai(path = "/api/admin/edges/:edge_id", method = "delete")]
    async fn delete_edge(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        edge_id: Path<String>,
    ) -> ApiResult<Json<MessageOut>> {
        let actor = audit_actor(&state, req, auth.user());
        let id = parse_id(&edge_id, EDGE_NOT_FOUND)?;
        core_admin::delete_edge(&state.ctx.db, &actor, id).await?;
        Ok(message("Edge deleted successfully"))
    }
}
