//! The admin's tools (API-NEXT.md N4.5, N4.6) and people search (N4.3): the
//! audit log written by every admin action, its list, clave grants.

use mambo_tests::{StatusCode, TestApp, TestUser, json};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    who: &TestUser,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("Authorization", who.bearer());
    if let Some(b) = body {
        req = req.json(&b);
    }
    json(req.send().await.unwrap()).await
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}

#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    actor_id: Option<Uuid>,
    action: String,
    target_type: String,
    target_id: String,
    before: Option<Value>,
    after: Option<Value>,
    ip: Option<String>,
}

async fn audit_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn newest_audit(app: &TestApp) -> AuditRow {
    sqlx::query_as(
        "SELECT actor_id, action, target_type, target_id, before, after, host(ip) AS ip
         FROM audit_log ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .fetch_one(app.db())
    .await
    .unwrap()
}

/// Runs one admin request, expects 200 and exactly one new audit row, and
/// returns the response and that row.
async fn audited(
    app: &TestApp,
    admin: &TestUser,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (Value, AuditRow) {
    let n = audit_count(app).await;
    let (s, v) = call(app, method.clone(), path, admin, body).await;
    assert_eq!(s, StatusCode::OK, "{method} {path}: {v}");
    assert_eq!(audit_count(app).await, n + 1, "{method} {path}: one audit row");
    let row = newest_audit(app).await;
    assert_eq!(row.actor_id, Some(admin.id), "{method} {path}");
    assert!(row.ip.is_some(), "{method} {path}: the client address");
    (v, row)
}

fn check(row: &AuditRow, action: &str, target_type: &str, target_id: &str) {
    assert_eq!(row.action, action);
    assert_eq!(row.target_type, target_type, "{action}");
    assert_eq!(row.target_id, target_id, "{action}");
    match action.rsplit('.').next().unwrap() {
        "create" => {
            assert!(row.before.is_none(), "{action}: no before");
            assert_eq!(row.after.as_ref().unwrap()["id"], json!(target_id));
        }
        "delete" => {
            assert_eq!(row.before.as_ref().unwrap()["id"], json!(target_id));
            assert!(row.after.is_none(), "{action}: no after");
        }
        _ => {
            assert_eq!(row.before.as_ref().unwrap()["id"], json!(target_id));
            assert_eq!(row.after.as_ref().unwrap()["id"], json!(target_id));
        }
    }
}

// ---------------------------------------------------------------------------
// The audit log: every admin action
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_course_builder_route_writes_one_audit_row_with_before_and_after() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let slug = format!("audit-{}", Uuid::new_v4().simple());

    let (course, row) = audited(
        &app,
        &admin,
        Method::POST,
        "/api/admin/courses",
        Some(json!({"title": "Audited", "slug": slug, "order_index": 0,
                    "difficulty": "BEGINNER"})),
    )
    .await;
    let course = id_of(&course);
    check(&row, "course.create", "course", &course);
    assert_eq!(row.after.as_ref().unwrap()["title"], "Audited");

    let (_, row) = audited(
        &app,
        &admin,
        Method::PUT,
        &format!("/api/admin/courses/{course}"),
        Some(json!({"title": "Renamed"})),
    )
    .await;
    check(&row, "course.update", "course", &course);
    assert_eq!(row.before.as_ref().unwrap()["title"], "Audited");
    assert_eq!(row.after.as_ref().unwrap()["title"], "Renamed");

    let (_, row) = audited(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/admin/courses/{course}"),
        Some(json!({"description": "Now with words"})),
    )
    .await;
    check(&row, "course.update", "course", &course);
    assert_eq!(row.before.as_ref().unwrap()["description"], Value::Null);
    assert_eq!(row.after.as_ref().unwrap()["description"], "Now with words");

    let (level_a, row) = audited(
        &app,
        &admin,
        Method::POST,
        &format!("/api/admin/courses/{course}/levels"),
        Some(json!({"title": "A", "order_index": 0})),
    )
    .await;
    let level_a = id_of(&level_a);
    check(&row, "level.create", "level", &level_a);

    let (level_b, row) = audited(
        &app,
        &admin,
        Method::POST,
        &format!("/api/admin/worlds/{course}/levels"),
        Some(json!({"title": "B"})),
    )
    .await;
    let level_b = id_of(&level_b);
    check(&row, "level.create", "level", &level_b);

    let (_, row) = audited(
        &app,
        &admin,
        Method::PUT,
        &format!("/api/admin/levels/{level_a}"),
        Some(json!({"title": "A2", "total_xp": 7})),
    )
    .await;
    check(&row, "level.update", "level", &level_a);
    assert_eq!(row.before.as_ref().unwrap()["title"], "A");
    assert_eq!(row.after.as_ref().unwrap()["total_xp"], 7);

    let (_, row) = audited(
        &app,
        &admin,
        Method::PUT,
        &format!("/api/admin/levels/{level_a}/position"),
        Some(json!({"x_position": 12.5, "y_position": 80.0})),
    )
    .await;
    check(&row, "level.position", "level", &level_a);
    assert_eq!(row.after.as_ref().unwrap()["x_position"], 12.5);

    let (lesson_a, row) = audited(
        &app,
        &admin,
        Method::POST,
        &format!("/api/admin/levels/{level_a}/lessons"),
        Some(json!({"title": "L1", "order_index": 0, "is_boss_battle": true})),
    )
    .await;
    let lesson_a = id_of(&lesson_a);
    check(&row, "lesson.create", "lesson", &lesson_a);

    let (lesson_b, row) = audited(
        &app,
        &admin,
        Method::POST,
        &format!("/api/admin/courses/{course}/lessons"),
        Some(json!({"level_id": level_b, "title": "L2", "order_index": 0})),
    )
    .await;
    let lesson_b = id_of(&lesson_b);
    check(&row, "lesson.create", "lesson", &lesson_b);

    let (_, row) = audited(
        &app,
        &admin,
        Method::PUT,
        &format!("/api/admin/lessons/{lesson_a}"),
        Some(json!({"xp_value": 70})),
    )
    .await;
    check(&row, "lesson.update", "lesson", &lesson_a);
    assert_eq!(row.before.as_ref().unwrap()["xp_value"], 50);
    assert_eq!(row.after.as_ref().unwrap()["xp_value"], 70);

    let (_, row) = audited(
        &app,
        &admin,
        Method::PATCH,
        &format!("/api/admin/lessons/{lesson_a}"),
        Some(json!({"description": "patched"})),
    )
    .await;
    check(&row, "lesson.update", "lesson", &lesson_a);

    let (edge, row) = audited(
        &app,
        &admin,
        Method::POST,
        &format!("/api/admin/worlds/{course}/edges"),
        Some(json!({"from_level_id": level_a, "to_level_id": level_b})),
    )
    .await;
    let edge = id_of(&edge);
    check(&row, "edge.create", "edge", &edge);

    // Grading: a student's submission on the boss battle.
    let student = app.student().await;
    sqlx::query("UPDATE worlds SET is_free = true, is_published = true WHERE id = $1::uuid")
        .bind(&course)
        .execute(app.db())
        .await
        .unwrap();
    let (s, sub) = call(
        &app,
        Method::POST,
        "/api/submissions/submit",
        &student,
        Some(json!({"lesson_id": lesson_a, "video_url": "https://example.com/v.mp4"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{sub}");
    let sub = id_of(&sub);
    let (_, row) = audited(
        &app,
        &admin,
        Method::POST,
        &format!("/api/admin/submissions/{sub}/grade"),
        Some(json!({"status": "approved", "feedback_text": "Great"})),
    )
    .await;
    check(&row, "submission.grade", "submission", &sub);
    assert_eq!(row.before.as_ref().unwrap()["status"], "pending");
    assert_eq!(row.after.as_ref().unwrap()["status"], "approved");
    assert_eq!(row.after.as_ref().unwrap()["instructor_feedback"], "Great");

    // Deletes: the row as it was.
    for (path, action, target, id) in [
        (format!("/api/admin/edges/{edge}"), "edge.delete", "edge", &edge),
        (
            format!("/api/admin/lessons/{lesson_b}"),
            "lesson.delete",
            "lesson",
            &lesson_b,
        ),
        (
            format!("/api/admin/levels/{level_b}"),
            "level.delete",
            "level",
            &level_b,
        ),
        (
            format!("/api/admin/courses/{course}"),
            "course.delete",
            "course",
            &course,
        ),
    ] {
        let (_, row) = audited(&app, &admin, Method::DELETE, &path, None).await;
        check(&row, action, target, id);
    }

    // A refused or failed admin action leaves no audit row.
    let n = audit_count(&app).await;
    let missing = Uuid::new_v4();
    for (method, path, body) in [
        (Method::DELETE, format!("/api/admin/courses/{missing}"), None),
        (
            Method::PUT,
            format!("/api/admin/levels/{missing}"),
            Some(json!({"title": "x"})),
        ),
        (
            Method::PUT,
            format!("/api/admin/lessons/{missing}"),
            Some(json!({"title": "x"})),
        ),
        (
            Method::POST,
            "/api/admin/courses".to_string(),
            Some(json!({"title": "", "slug": "s", "order_index": 0, "difficulty": "OPEN"})),
        ),
    ] {
        let (s, _) = call(&app, method.clone(), &path, &admin, body).await;
        assert!(s.is_client_error(), "{method} {path}: {s}");
    }
    let (s, _) = call(
        &app,
        Method::DELETE,
        &format!("/api/admin/lessons/{lesson_a}"),
        &student,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&app).await, n, "no audit row for a failed action");
    app.stop().await;
}

#[tokio::test]
async fn the_audit_table_refuses_update_delete_and_truncate() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let slug = format!("audit-{}", Uuid::new_v4().simple());
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/admin/courses",
        &admin,
        Some(json!({"title": "T", "slug": slug, "order_index": 0, "difficulty": "OPEN"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(audit_count(&app).await, 1);
    for sql in [
        "UPDATE audit_log SET action = 'forged'",
        "UPDATE audit_log SET after = NULL WHERE false",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE false",
        "TRUNCATE audit_log",
    ] {
        let err = sqlx::query(sql).execute(app.db()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let row = newest_audit(&app).await;
    assert_eq!(row.action, "course.create");
    assert_eq!(audit_count(&app).await, 1);
    app.stop().await;
}
