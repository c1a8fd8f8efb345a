//! Boss-battle submissions (API.md §3.10) and their grading by admins
//! (§3.3 `GET /api/admin/submissions`, `POST /api/admin/submissions/{id}/grade`).

use crate::auth::{AdminAuth, UserAuth};
use crate::error::ApiResult;
use crate::routes::badges::{self, BadgeItemOut};
use crate::state::AppState;
use crate::types::{parse_id, ts, ts_opt};
use mambo_core::submissions::{self, AdminSubmission, Caller, Grade, Submission};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

pub struct SubmissionsApi;

#[derive(Object, Debug, Clone)]
pub struct SubmitRequest {
    pub lesson_id: String,
    /// An https URL or a Mux playback id
    pub video_url: String,
}

/// A submission (Submission of §3.0, plus additive fields).
#[derive(Object, Debug, Clone)]
pub struct SubmissionOut {
    pub id: String,
    /// `pending`, `approved` or `rejected`
    pub status: String,
    /// The instructor's written feedback
    pub feedback: Option<String>,
    pub submitted_at: String,
    pub lesson_id: String,
    pub video_url: String,
    pub feedback_video_url: Option<String>,
    pub reviewed_at: Option<String>,
}

impl From<Submission> for SubmissionOut {
    fn from(s: Submission) -> Self {
        Self {
            id: s.id.to_string(),
            status: s.status,
            feedback: s.instructor_feedback,
            submitted_at: ts(&s.submitted_at),
            lesson_id: s.lesson_id.to_string(),
            video_url: s.video_url,
            feedback_video_url: s.instructor_video_url,
            reviewed_at: ts_opt(&s.reviewed_at),
        }
    }
}

/// A submission in the grading queue, with the student and the lesson (D29).
#[derive(Object, Debug, Clone)]
pub struct AdminSubmissionOut {
    pub id: String,
    pub status: String,
    pub feedback: Option<String>,
    pub submitted_at: String,
    pub user_id: String,
    pub lesson_id: String,
    pub video_url: String,
    pub feedback_video_url: Option<String>,
    pub reviewed_at: Option<String>,
    /// First and last name of the student
    pub student_name: String,
    pub student_first_name: String,
    pub student_last_name: String,
    pub student_email: String,
    pub lesson_title: String,
}

impl From<AdminSubmission> for AdminSubmissionOut {
    fn from(a: AdminSubmission) -> Self {
        let s = a.submission;
        let student_name = format!("{} {}", a.student_first_name, a.student_last_name)
            .trim()
            .to_string();
        Self {
            id: s.id.to_string(),
            status: s.status,
            feedback: s.instructor_feedback,
            submitted_at: ts(&s.submitted_at),
            user_id: s.user_id.to_string(),
            lesson_id: s.lesson_id.to_string(),
            video_url: s.video_url,
            feedback_video_url: s.instructor_video_url,
            reviewed_at: ts_opt(&s.reviewed_at),
            student_name,
            student_first_name: a.student_first_name,
            student_last_name: a.student_last_name,
            student_email: a.student_email,
            lesson_title: a.lesson_title,
        }
    }
}

#[derive(Object, Debug, Clone)]
pub struct GradeRequest {
    /// `approved` or `rejected`
    pub status: String,
    pub feedback_text: Option<String>,
    pub feedback_video_url: Option<String>,
}

#[derive(Object, Debug, Clone)]
pub struct MessageOut {
    pub message: String,
}

#[OpenApi(tag = "crate::routes::Tag::Submissions")]
impl SubmissionsApi {
    /// Submit a boss-battle video for a lesson
    #[oai(path = "/api/submissions/submit", method = "post")]
    async fn submit(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
        body: Json<SubmitRequest>,
    ) -> ApiResult<Json<SubmissionOut>> {
        let user = auth.user();
        let caller = Caller {
            id: user.id,
            role: &user.role,
        };
        let s = submissions::submit(&state.ctx, caller, &body.lesson_id, &body.video_url).await?;
        Ok(Json(s.into()))
    }

    /// The caller's submissions, newest first
    #[oai(path = "/api/submissions/my-submissions", method = "get")]
    async fn my_submissions(
        &self,
        state: Data<&AppState>,
        auth: UserAuth,
    ) -> ApiResult<Json<Vec<SubmissionOut>>> {
        let rows = submissions::my_submissions(&state.ctx, auth.user().id).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// The grading queue (pending by default), oldest first
    #[oai(
        path = "/api/admin/submissions",
        method = "get",
        tag = "crate::routes::Tag::Admin"
    )]
    async fn admin_submissions(
        &self,
        state: Data<&AppState>,
        _admin: AdminAuth,
        /// `pending` (default), `approved`, `rejected` or `all`
        status: Query<Option<String>>,
    ) -> ApiResult<Json<Vec<AdminSubmissionOut>>> {
        let rows = submissions::admin_list(&state.ctx, status.0.as_deref()).await?;
        Ok(Json(rows.into_iter().map(Into::into).collect()))
    }

    /// Every badge definition with the caller's earned status (`GET /api/badges`
    /// without the slash; see `routes::badges` for why it is declared here)
    #[oai(
        path = "/api/badges",
        method = "get",
        tag = "crate::routes::Tag::Badges"
    )]
    async fn list_badges_no_slash(
        &self,
        auth: UserAuth,
        state: Data<&AppState>,
        req: &poem::Request,
    ) -> ApiResult<crate::conditional::Cached<crate::fast_json::FastJson<Vec<BadgeItemOut>>>> {
        badges::list_all_for(&state, auth.user().id, req).await
    }

    /// Approve or reject a submission
    #[oai(
        path = "/api/admin/submissions/:submission_id/grade",
        method = "post",
        tag = "crate::routes::Tag::Admin"
    )]
    async fn grade_submission(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: AdminAuth,
        submission_id: Path<String>,
        body: Json<GradeRequest>,
    ) -> ApiResult<Json<MessageOut>> {
        let actor = crate::routes::admin::audit_actor(&state, req, auth.user());
        let id = parse_id(&submission_id, "Submission not found")?;
        let body = body.0;
        submissions::grade(
            &state.ctx,
            &actor,
            id,
            Grade {
                status: body.status,
                feedback_text: body.feedback_text,
                feedback_video_url: body.feedback_video_url,
            },
        )
        .await?;
        Ok(Json(MessageOut {
            message: "Submission graded successfully".into(),
        }))
    }
}
