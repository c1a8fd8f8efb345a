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
    assert_eq!(
        audit_count(app).await,
        n + 1,
        "{method} {path}: one audit row"
    );
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
        (
            format!("/api/admin/edges/{edge}"),
            "edge.delete",
            "edge",
            &edge,
        ),
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
        (
            Method::DELETE,
            format!("/api/admin/courses/{missing}"),
            None,
        ),
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
    assert_eq!(
        audit_count(&app).await,
        n,
        "no audit row for a failed action"
    );
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

// ---------------------------------------------------------------------------
// The audit list
// ---------------------------------------------------------------------------

fn actions(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_audit_list_filters_pages_and_names_the_actor() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let other_admin = app.admin().await;
    let student = app.student().await;
    sqlx::query("UPDATE user_profiles SET username = 'boss_one' WHERE user_id = $1")
        .bind(admin.id)
        .execute(app.db())
        .await
        .unwrap();

    // admin: course.create, course.update, level.create; other: course.create.
    let slug = format!("a-{}", Uuid::new_v4().simple());
    let (_, course) = call(
        &app,
        Method::POST,
        "/api/admin/courses",
        &admin,
        Some(json!({"title": "One", "slug": slug, "order_index": 0, "difficulty": "OPEN"})),
    )
    .await;
    let course = id_of(&course);
    call(
        &app,
        Method::PUT,
        &format!("/api/admin/courses/{course}"),
        &admin,
        Some(json!({"title": "One!"})),
    )
    .await;
    let (_, level) = call(
        &app,
        Method::POST,
        &format!("/api/admin/worlds/{course}/levels"),
        &admin,
        Some(json!({"title": "L"})),
    )
    .await;
    let level = id_of(&level);
    let slug2 = format!("b-{}", Uuid::new_v4().simple());
    let (_, course2) = call(
        &app,
        Method::POST,
        "/api/admin/courses",
        &other_admin,
        Some(json!({"title": "Two", "slug": slug2, "order_index": 1, "difficulty": "OPEN"})),
    )
    .await;
    let course2 = id_of(&course2);
    // A system row (no actor).
    let mut conn = app.db().acquire().await.unwrap();
    mambo_core::audit::record(
        &mut conn,
        mambo_core::audit::Entry {
            actor_id: None,
            action: "user.delete",
            target_type: "user",
            target_id: Some(Uuid::new_v4().to_string()),
            before: None,
            after: None,
            ip: None,
            at: app.ctx.clock.now(),
        },
    )
    .await
    .unwrap();
    drop(conn);

    // Everything, newest first.
    let (s, all) = call(&app, Method::GET, "/api/admin/audit", &admin, None).await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(
        actions(&all),
        [
            "user.delete",
            "course.create",
            "level.create",
            "course.update",
            "course.create"
        ]
    );
    let system = &all[0];
    assert_eq!(system["actor"], Value::Null);
    assert_eq!(system["actor_id"], Value::Null);
    let first = &all[4];
    assert_eq!(first["actor"]["id"], json!(admin.id.to_string()));
    assert_eq!(first["actor"]["username"], "boss_one");
    assert_eq!(first["actor"]["email"], json!(admin.email));
    assert_eq!(first["target_type"], "course");
    assert_eq!(first["target_id"], json!(course));
    assert_eq!(first["before"], Value::Null);
    assert_eq!(first["after"]["title"], "One");
    assert!(first["ip"].is_string(), "{first}");
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));
    let second = &all[1];
    assert_eq!(second["actor"]["id"], json!(other_admin.id.to_string()));

    // Each filter.
    let q = |path: String| {
        let app = &app;
        let admin = &admin;
        async move {
            let (s, v) = call(app, Method::GET, &path, admin, None).await;
            assert_eq!(s, StatusCode::OK, "{path}: {v}");
            actions(&v)
        }
    };
    assert_eq!(
        q(format!("/api/admin/audit?actor_id={}", admin.id)).await,
        ["level.create", "course.update", "course.create"]
    );
    assert_eq!(
        q(format!("/api/admin/audit?actor_id={}", other_admin.id)).await,
        ["course.create"]
    );
    assert_eq!(
        q("/api/admin/audit?action=course.create".into()).await,
        ["course.create", "course.create"]
    );
    assert_eq!(
        q("/api/admin/audit?target_type=level".into()).await,
        ["level.create"]
    );
    assert_eq!(
        q(format!("/api/admin/audit?target_id={course}")).await,
        ["course.update", "course.create"]
    );
    assert_eq!(
        q(format!(
            "/api/admin/audit?target_type=course&target_id={course2}"
        ))
        .await,
        ["course.create"]
    );
    assert_eq!(
        q(format!(
            "/api/admin/audit?actor_id={}&action=course.update&target_type=course&target_id={course}",
            admin.id
        ))
        .await,
        ["course.update"]
    );
    assert_eq!(
        q(format!(
            "/api/admin/audit?target_id={level}&action=level.update"
        ))
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        q(format!("/api/admin/audit?actor_id={}", student.id)).await,
        Vec::<String>::new()
    );

    // Paging.
    assert_eq!(
        q("/api/admin/audit?skip=1&limit=2".into()).await,
        ["course.create", "level.create"]
    );
    assert_eq!(
        q("/api/admin/audit?skip=4&limit=2".into()).await,
        ["course.create"]
    );
    assert!(q("/api/admin/audit?skip=5".into()).await.is_empty());
    assert_eq!(q("/api/admin/audit?limit=100".into()).await.len(), 5);

    // Bad parameters: 422 in FastAPI's shape.
    for (path, field) in [
        ("/api/admin/audit?limit=0", "limit"),
        ("/api/admin/audit?limit=101", "limit"),
        ("/api/admin/audit?limit=x", "limit"),
        ("/api/admin/audit?skip=-1", "skip"),
        ("/api/admin/audit?actor_id=not-a-uuid", "actor_id"),
    ] {
        let (s, v) = call(&app, Method::GET, path, &admin, None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {v}");
        assert_eq!(v["detail"][0]["loc"], json!(["query", field]), "{path}");
    }

    // Admins only, before the parameters are looked at.
    let (s, _) = call(
        &app,
        Method::GET,
        "/api/admin/audit?limit=0",
        &student,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let s = app
        .client
        .get(app.url("/api/admin/audit?limit=0"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Clave grants
// ---------------------------------------------------------------------------

async fn ledger_rows(app: &TestApp, user: Uuid) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT amount, reason FROM clave_transactions WHERE user_id = $1
         ORDER BY created_at, id",
    )
    .bind(user)
    .fetch_all(app.db())
    .await
    .unwrap()
}

#[tokio::test]
async fn admins_grant_and_deduct_claves_through_the_ledger() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let student = app.student().await; // 15 claves
    let path = format!("/api/admin/users/{}/claves", student.id);

    // A grant.
    let (v, row) = audited(
        &app,
        &admin,
        Method::POST,
        &path,
        Some(json!({"amount": 100, "reason": "Workshop helper"})),
    )
    .await;
    assert_eq!(v, json!({"success": true, "new_balance": 115}));
    assert_eq!(row.action, "claves.grant");
    assert_eq!(row.target_type, "user");
    assert_eq!(row.target_id, student.id.to_string());
    assert_eq!(row.before, Some(json!({"current_claves": 15})));
    assert_eq!(
        row.after,
        Some(json!({"current_claves": 115, "amount": 100, "reason": "Workshop helper"}))
    );

    // A deduction.
    let (v, row) = audited(
        &app,
        &admin,
        Method::POST,
        &path,
        Some(json!({"amount": -40, "reason": "Refund reversed"})),
    )
    .await;
    assert_eq!(v, json!({"success": true, "new_balance": 75}));
    assert_eq!(row.before, Some(json!({"current_claves": 115})));
    assert_eq!(row.after.as_ref().unwrap()["current_claves"], 75);
    assert_eq!(row.after.as_ref().unwrap()["amount"], -40);

    // To exactly zero is fine; below zero is refused with nothing written.
    let (v, _) = audited(
        &app,
        &admin,
        Method::POST,
        &path,
        Some(json!({"amount": -75, "reason": "Reset"})),
    )
    .await;
    assert_eq!(v["new_balance"], 0);
    let audits = audit_count(&app).await;
    let ledger = ledger_rows(&app, student.id).await;
    let (s, v) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"amount": -1, "reason": "Too far"})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v, json!({"detail": "Insufficient claves"}));
    assert_eq!(audit_count(&app).await, audits);
    assert_eq!(ledger_rows(&app, student.id).await, ledger);

    // The ledger: the bonus and three admin_grant rows; it equals the balance.
    assert_eq!(
        ledger_rows(&app, student.id).await,
        [
            (15, "new_user_bonus".to_string()),
            (100, "admin_grant".to_string()),
            (-40, "admin_grant".to_string()),
            (-75, "admin_grant".to_string()),
        ]
    );
    assert_eq!(app.balance_and_ledger(student.id).await, (0, 0));

    // Bounds and the body: 422, nothing written.
    for (body, field, kind) in [
        (json!({"amount": 0, "reason": "x"}), "amount", "value_error"),
        (
            json!({"amount": 10001, "reason": "x"}),
            "amount",
            "less_than_equal",
        ),
        (
            json!({"amount": -10001, "reason": "x"}),
            "amount",
            "greater_than_equal",
        ),
        (
            json!({"amount": 5, "reason": ""}),
            "reason",
            "string_too_short",
        ),
        (
            json!({"amount": 5, "reason": "   "}),
            "reason",
            "string_too_short",
        ),
        (
            json!({"amount": 5, "reason": "r".repeat(201)}),
            "reason",
            "string_too_long",
        ),
    ] {
        let (s, v) = call(&app, Method::POST, &path, &admin, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
        assert_eq!(v["detail"][0]["loc"], json!(["body", field]), "{body}");
        assert_eq!(v["detail"][0]["type"], kind, "{body}");
    }
    for body in [
        json!({"reason": "x"}),
        json!({"amount": "ten", "reason": "x"}),
    ] {
        let (s, v) = call(&app, Method::POST, &path, &admin, Some(body.clone())).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {v}");
    }
    // The edges of the range are accepted.
    for amount in [10_000, -10_000] {
        let (s, v) = call(
            &app,
            Method::POST,
            &path,
            &admin,
            Some(json!({"amount": amount, "reason": "edge"})),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{amount}: {v}");
    }
    let r = "é".repeat(200);
    let (s, _) = call(
        &app,
        Method::POST,
        &path,
        &admin,
        Some(json!({"amount": 1, "reason": r})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(audit_count(&app).await, audits + 3);
    let (b, l) = app.balance_and_ledger(student.id).await;
    assert_eq!((b, l), (1, 1));

    // Unknown or malformed user: 404.
    for id in [Uuid::new_v4().to_string(), "nope".to_string()] {
        let (s, v) = call(
            &app,
            Method::POST,
            &format!("/api/admin/users/{id}/claves"),
            &admin,
            Some(json!({"amount": 5, "reason": "x"})),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{id}");
        assert_eq!(v, json!({"detail": "User not found"}));
    }

    // Admins only, before the body is looked at.
    let (s, _) = call(
        &app,
        Method::POST,
        &path,
        &student,
        Some(json!({"amount": 0})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(audit_count(&app).await, audits + 3);
    assert_eq!(app.balance_and_ledger(student.id).await, (1, 1));
    app.stop().await;
}

#[tokio::test]
async fn concurrent_deductions_never_overdraw() {
    let app = TestApp::spawn_api_only().await;
    let admin = app.admin().await;
    let student = app.student().await; // 15 claves
    let path = format!("/api/admin/users/{}/claves", student.id);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let client = app.client.clone();
        let url = app.url(&path);
        let bearer = admin.bearer();
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .header("Authorization", bearer)
                .json(&json!({"amount": -4, "reason": "race"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            StatusCode::OK => ok += 1,
            StatusCode::BAD_REQUEST => {}
            s => panic!("unexpected {s}"),
        }
    }
    assert_eq!(ok, 3, "15 claves pay three deductions of 4");
    assert_eq!(app.balance_and_ledger(student.id).await, (3, 3));
    assert_eq!(audit_count(&app).await, 3);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// People search
// ---------------------------------------------------------------------------

#[tokio::test]
async fn people_search_is_a_literal_case_insensitive_prefix() {
    let app = TestApp::spawn_api_only().await;
    let me = app.student().await;
    let mk = |name: &'static str| {
        let app = &app;
        async move {
            app.create_user(mambo_tests::UserSpec {
                username: Some(name.to_string()),
                ..Default::default()
            })
            .await
        }
    };
    let salsa = mk("salsa_queen").await;
    mk("salsafan").await;
    mk("SALSERO").await;
    mk("sa%lsa").await;
    mk("sa_lsa").await;
    mk("saXlsa").await;
    mk("back\\slash").await;
    mk("mambo").await;
    for i in 0..12 {
        app.create_user(mambo_tests::UserSpec {
            username: Some(format!("zz{i:02}")),
            ..Default::default()
        })
        .await;
    }
    sqlx::query(
        "UPDATE user_profiles SET avatar_url = 'https://x/a.png', level = 4 WHERE user_id = $1",
    )
    .bind(salsa.id)
    .execute(app.db())
    .await
    .unwrap();

    let search = |q: &str| {
        let req = app
            .client
            .get(app.url("/api/users/search"))
            .query(&[("q", q)])
            .header("Authorization", me.bearer());
        async move { json(req.send().await.unwrap()).await }
    };
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["username"].as_str().unwrap().to_lowercase())
            .collect()
    };

    let (s, v) = search("SALS").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(names(&v), ["salsa_queen", "salsafan", "salsero"]);
    let hit = &v[0];
    assert_eq!(hit["id"], json!(salsa.id.to_string()));
    assert_eq!(hit["avatar_url"], "https://x/a.png");
    assert_eq!(hit["level"], 4);
    assert!(hit["first_name"].is_string() && hit["last_name"].is_string());
    assert_eq!(v[1]["avatar_url"], Value::Null);

    // Wildcards are literal.
    assert_eq!(names(&search("sa%").await.1), ["sa%lsa"]);
    assert_eq!(names(&search("sa_").await.1), ["sa_lsa"]);
    assert_eq!(names(&search("salsa_").await.1), ["salsa_queen"]);
    assert_eq!(names(&search("%a").await.1), Vec::<String>::new());
    assert_eq!(names(&search("__").await.1), Vec::<String>::new());
    assert_eq!(names(&search("back\\").await.1), ["back\\slash"]);
    // A prefix, not a substring.
    assert_eq!(names(&search("ambo").await.1), Vec::<String>::new());
    assert_eq!(names(&search("Mambo").await.1), ["mambo"]);

    // At most 10.
    let (_, v) = search("zz").await;
    assert_eq!(v.as_array().unwrap().len(), 10);
    assert_eq!(names(&v)[0], "zz00");

    // 2–50 characters, else 422.
    for q in ["s", "", &"s".repeat(51)] {
        let (s, v) = search(q).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q:?}: {v}");
        assert_eq!(v["detail"][0]["loc"], json!(["query", "q"]));
    }
    let (s, _) = search(&"s".repeat(50)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, Method::GET, "/api/users/search", &me, None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["detail"][0]["type"], "missing");

    // Signed-in users only; the neighbouring routes still answer.
    let s = app
        .client
        .get(app.url("/api/users/search?q=sa"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, Method::GET, "/api/users/me", &me, None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = call(&app, Method::GET, "/api/users/public/mambo", &me, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn people_search_uses_the_prefix_index() {
    let app = TestApp::spawn_api_only().await;
    let mut conn = app.db().acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    // The plan PostgreSQL may reuse for any prefix (a generic plan).
    for sql in [
        "SET plan_cache_mode = force_generic_plan".to_string(),
        format!(
            "PREPARE people(text, bigint) AS {}",
            mambo_core::profiles::SEARCH_SQL
        ),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN EXECUTE people('ab', 10)")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("user_profiles_username_prefix_idx"), "{plan}");
    drop(conn);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Admin video actions (Mux)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn admin_video_actions_are_audited_and_a_students_own_are_not() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let mux = MockServer::start().await;
    let app = TestApp::spawn_with_vars(&[
        ("MUX_TOKEN_ID", "id"),
        ("MUX_TOKEN_SECRET", "secret"),
        ("MUX_BASE_URL", &mux.uri()),
        ("MUX_STREAM_BASE_URL", &mux.uri()),
    ])
    .await;
    let admin = app.admin().await;
    let student = app.student().await;
    let slug = format!("m-{}", Uuid::new_v4().simple());
    let (_, course) = call(
        &app,
        Method::POST,
        "/api/admin/courses",
        &admin,
        Some(json!({"title": "Media", "slug": slug, "order_index": 0, "difficulty": "OPEN"})),
    )
    .await;
    let course = id_of(&course);
    let (_, level) = call(
        &app,
        Method::POST,
        &format!("/api/admin/worlds/{course}/levels"),
        &admin,
        Some(json!({"title": "L"})),
    )
    .await;
    let level = id_of(&level);
    let (_, lesson) = call(
        &app,
        Method::POST,
        &format!("/api/admin/levels/{level}/lessons"),
        &admin,
        Some(json!({"title": "Video", "order_index": 0})),
    )
    .await;
    let lesson = id_of(&lesson);
    Mock::given(method("GET"))
        .and(path("/video/v1/assets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [{
            "id": "asset-1", "status": "ready",
            "playback_ids": [{"id": "play-1", "policy": "public"}],
            "passthrough": json!({"lesson_id": lesson, "type": "lesson"}).to_string(),
        }]})))
        .mount(&mux)
        .await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mux)
        .await;

    // Attaching the found video to the lesson.
    let (_, row) = audited(
        &app,
        &admin,
        Method::POST,
        &format!("/api/mux/check-upload-status?lesson_id={lesson}"),
        None,
    )
    .await;
    assert_eq!(row.action, "media.attach");
    assert_eq!(row.target_type, "lesson");
    assert_eq!(row.target_id, lesson);
    assert_eq!(
        row.before,
        Some(json!({"mux_playback_id": null, "mux_asset_id": null}))
    );
    assert_eq!(
        row.after,
        Some(json!({"mux_playback_id": "play-1", "mux_asset_id": "asset-1"}))
    );
    // Already there: nothing changes, nothing is audited.
    let n = audit_count(&app).await;
    let (s, v) = call(
        &app,
        Method::POST,
        &format!("/api/mux/check-upload-status?lesson_id={lesson}"),
        &admin,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(audit_count(&app).await, n);

    // An admin deleting the video.
    let (_, row) = audited(&app, &admin, Method::DELETE, "/api/mux/asset/asset-1", None).await;
    assert_eq!(row.action, "media.delete");
    assert_eq!(row.target_type, "mux_asset");
    assert_eq!(row.target_id, "asset-1");
    assert_eq!(row.before, Some(json!({"asset_id": "asset-1"})));
    let after = row.after.unwrap();
    assert_eq!(after["deleted_at_mux"], true);
    assert_eq!(after["cleared"]["lessons"], 1);

    // A student deleting the video of their own post is not an admin action.
    let post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags, mux_asset_id, mux_playback_id)
         VALUES ($1, 'stage', 'Mine', 'b', ARRAY['mambo'], 'own-asset', 'own-play') RETURNING id",
    )
    .bind(student.id)
    .fetch_one(app.db())
    .await
    .unwrap();
    let n = audit_count(&app).await;
    let (s, v) = call(
        &app,
        Method::DELETE,
        "/api/mux/asset/own-asset",
        &student,
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(audit_count(&app).await, n);
    let cleared: Option<String> =
        sqlx::query_scalar("SELECT mux_asset_id FROM posts WHERE id = $1")
            .bind(post)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(cleared, None);
    app.stop().await;
}

// ---------------------------------------------------------------------------
// Role changes from the command line
// ---------------------------------------------------------------------------

#[tokio::test]
async fn role_changes_by_the_command_line_are_audited_as_the_system() {
    let app = TestApp::spawn_api_only().await;
    let n = Uuid::new_v4().simple().to_string();
    let email = format!("boss{}@example.com", &n[..10]);
    let id = mambo_core::users::create_admin(app.db(), &email, "Passw0rd123", "Big", "Boss")
        .await
        .unwrap();
    assert_eq!(audit_count(&app).await, 1);
    let row = newest_audit(&app).await;
    assert_eq!(row.actor_id, None);
    assert_eq!(row.action, "user.role");
    assert_eq!(row.target_type, "user");
    assert_eq!(row.target_id, id.to_string());
    assert_eq!(row.before, None);
    assert_eq!(row.after, Some(json!({"role": "admin"})));
    assert_eq!(row.ip, None);

    // Again: the role does not change, nothing is audited.
    mambo_core::users::create_admin(app.db(), &email, "Passw0rd123", "Big", "Boss")
        .await
        .unwrap();
    assert_eq!(audit_count(&app).await, 1);

    // A student promoted.
    let student = app.student().await;
    let got = mambo_core::users::create_admin(app.db(), &student.email, "Passw0rd123", "S", "T")
        .await
        .unwrap();
    assert_eq!(got, student.id);
    assert_eq!(audit_count(&app).await, 2);
    let row = newest_audit(&app).await;
    assert_eq!(row.target_id, student.id.to_string());
    assert_eq!(row.before, Some(json!({"role": "student"})));
    assert_eq!(row.after, Some(json!({"role": "admin"})));
    app.stop().await;
}

#[tokio::test]
async fn broadcasts_from_the_command_line_are_audited_as_the_system() {
    use mambo_core::broadcast::{self, Audience, BroadcastRequest};
    let app = TestApp::spawn_api_only().await;
    let req = BroadcastRequest {
        name: "launch.html".into(),
        source: "{% block subject %}Hi {{ first_name }}{% endblock %}\n\
                 {% block html %}<p>Hi</p>{% endblock %}\n\
                 {% block text %}Hi{% endblock %}\n"
            .into(),
        audience: Audience::Students,
        vars: Default::default(),
    };
    app.student().await;
    // A dry run records nothing.
    broadcast::prepare(&app.ctx, &req, true).await.unwrap();
    assert_eq!(audit_count(&app).await, 0);
    let plan = broadcast::prepare(&app.ctx, &req, false).await.unwrap();
    let id = plan.broadcast_id.unwrap();
    assert_eq!(audit_count(&app).await, 1);
    let row = newest_audit(&app).await;
    assert_eq!(row.actor_id, None);
    assert_eq!(row.action, "broadcast.send");
    assert_eq!(row.target_type, "broadcast");
    assert_eq!(row.target_id, id.to_string());
    assert_eq!(row.before, None);
    let after = row.after.unwrap();
    assert_eq!(after["name"], "launch.html");
    assert_eq!(after["audience"], "students");
    assert_eq!(after["resumed"], false);
    assert_eq!(after["new_recipients"], 1);
    // Resumed: another row.
    broadcast::prepare(&app.ctx, &req, false).await.unwrap();
    assert_eq!(audit_count(&app).await, 2);
    assert_eq!(newest_audit(&app).await.after.unwrap()["resumed"], true);
    app.stop().await;
}

#[tokio::test]
async fn each_audit_filter_has_an_index() {
    let app = TestApp::spawn_api_only().await;
    let mut conn = app.db().acquire().await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for (filter, index) in [
        ("true", "audit_log_newest_idx"),
        (
            "actor_id = '00000000-0000-0000-0000-000000000001'",
            "audit_log_actor_idx",
        ),
        ("action = 'course.update'", "audit_log_action_idx"),
        ("target_type = 'lesson'", "audit_log_target_idx"),
        ("target_id = 'x'", "audit_log_target_id_idx"),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "EXPLAIN SELECT * FROM audit_log WHERE {filter}
             ORDER BY created_at DESC, id DESC LIMIT 50"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains(index), "{filter}: {plan}");
    }
    drop(conn);
    app.stop().await;
}
