//! Authorization matrix (issue 11): every operation in the served OpenAPI
//! document is called anonymously, as a student (the owner of the fixtures), as
//! another student and as an admin, and the outcome must match ONE table kept
//! here, keyed by "METHOD path". An operation missing from the table fails the
//! test, so every new route has to be classified.
//!
//! Each (operation, caller) pair gets fresh fixtures (a published course with
//! three levels, an edge and two boss-battle lessons; a lab post of the owner
//! with a Mux asset and a reply by the other student; a boss submission and a
//! recorded Mux upload of the owner), so destructive calls do not affect one
//! another. Mux, Stripe, Gemini and Google are fakes (wiremock).
//!
//! Ownership cases covered by the table: editing, deleting and accepting on
//! another user's post; checking uploads of another user's post; polling
//! another user's Mux upload; deleting another user's Mux asset; and reading
//! another user's submissions or wallet (the other student's responses must not
//! contain any of the owner's private ids).

use mambo_tests::{StatusCode, TestApp, TestUser, UserSpec, json};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

// Expected outcome per caller: anonymous, student (owner), other student, admin.
// "2xx", "3xx", "4xx" are classes; a number is an exact status.
const ADMIN: [&str; 4] = ["401", "403", "403", "2xx"];
const USER: [&str; 4] = ["401", "2xx", "2xx", "2xx"];
const PUBLIC: [&str; 4] = ["2xx", "2xx", "2xx", "2xx"];
/// Only the owner (or an admin) may do it.
const OWNER_OR_ADMIN: [&str; 4] = ["401", "2xx", "403", "2xx"];
/// Only the owner may do it (admins included in the refusal).
const OWNER_ONLY: [&str; 4] = ["401", "2xx", "403", "403"];

/// THE table. Keys are "METHOD path" exactly as in the spec.
fn table() -> BTreeMap<&'static str, [&'static str; 4]> {
    BTreeMap::from([
        ("GET /", PUBLIC),
        ("GET /health", PUBLIC),
        // --- admin course builder: admin only
        ("GET /api/admin/courses", ADMIN),
        ("GET /api/admin/moderation/reports", ADMIN),
        (
            "POST /api/admin/moderation/reports/{report_id}/resolve",
            ADMIN,
        ),
        ("POST /api/admin/courses", ADMIN),
        ("DELETE /api/admin/courses/{course_id}", ADMIN),
        ("GET /api/admin/courses/{course_id}", ADMIN),
        ("PATCH /api/admin/courses/{course_id}", ADMIN),
        ("PUT /api/admin/courses/{course_id}", ADMIN),
        ("GET /api/admin/courses/{course_id}/full", ADMIN),
        ("POST /api/admin/courses/{course_id}/lessons", ADMIN),
        ("POST /api/admin/courses/{course_id}/levels", ADMIN),
        ("DELETE /api/admin/edges/{edge_id}", ADMIN),
        ("DELETE /api/admin/lessons/{lesson_id}", ADMIN),
        ("GET /api/admin/lessons/{lesson_id}", ADMIN),
        ("PATCH /api/admin/lessons/{lesson_id}", ADMIN),
        ("PUT /api/admin/lessons/{lesson_id}", ADMIN),
        ("DELETE /api/admin/levels/{level_id}", ADMIN),
        ("GET /api/admin/levels/{level_id}", ADMIN),
        ("PUT /api/admin/levels/{level_id}", ADMIN),
        ("GET /api/admin/levels/{level_id}/lessons", ADMIN),
        ("POST /api/admin/levels/{level_id}/lessons", ADMIN),
        ("PUT /api/admin/levels/{level_id}/position", ADMIN),
        ("GET /api/admin/stats", ADMIN),
        ("GET /api/admin/students", ADMIN),
        ("GET /api/admin/submissions", ADMIN),
        ("POST /api/admin/submissions/{submission_id}/grade", ADMIN),
        ("POST /api/admin/worlds/{world_id}/edges", ADMIN),
        ("POST /api/admin/worlds/{world_id}/levels", ADMIN),
        // --- admin tools: the audit log, clave grants
        ("GET /api/admin/audit", ADMIN),
        ("POST /api/admin/users/{user_id}/claves", ADMIN),
        // --- AI concierge: open to everyone (rate-limited per client)
        ("POST /api/ai/chat", PUBLIC),
        ("GET /api/ai/rate-limit", PUBLIC),
        ("GET /api/ai/status", PUBLIC),
        ("POST /api/ai_chat/chat", PUBLIC),
        ("GET /api/ai_chat/rate-limit", PUBLIC),
        ("GET /api/ai_chat/status", PUBLIC),
        // --- identity
        // A forged state is refused by redirecting to the frontend with ?error=.
        (
            "GET /api/auth/callback/google",
            ["3xx", "3xx", "3xx", "3xx"],
        ),
        ("POST /api/auth/forgot-password", PUBLIC),
        (
            "GET /api/auth/login/{provider}",
            ["307", "307", "307", "307"],
        ),
        ("POST /api/auth/logout", PUBLIC),
        // Signs the caller out everywhere (the matrix restores their tokens).
        ("POST /api/auth/logout-all", USER),
        // The callers' own password, unchanged (the matrix restores their tokens).
        ("POST /api/auth/change-password", USER),
        // The callers are verified already.
        (
            "POST /api/auth/resend-verification",
            ["401", "400", "400", "400"],
        ),
        // The callers are verified already: 200 `is_verified: true` (N5.1).
        ("POST /api/auth/send-verification", USER),
        // A made-up verification token.
        ("POST /api/auth/verify-email", ["400", "400", "400", "400"]),
        ("GET /api/auth/me", USER),
        // Only the refresh cookie counts; none is sent here.
        ("POST /api/auth/refresh", ["401", "401", "401", "401"]),
        ("POST /api/auth/register", ["201", "201", "201", "201"]),
        // A made-up reset token.
        (
            "POST /api/auth/reset-password",
            ["400", "400", "400", "400"],
        ),
        ("POST /api/auth/token", PUBLIC),
        ("POST /api/auth/waitlist", ["201", "201", "201", "201"]),
        // --- badges
        ("GET /api/badges", USER),
        ("GET /api/badges/", USER),
        ("POST /api/badges/check", USER),
        ("GET /api/badges/stats/{user_id}", PUBLIC),
        ("GET /api/badges/user/{user_id}", PUBLIC),
        // --- claves: always the caller's own wallet
        ("GET /api/claves/balance-check/{amount}", USER),
        ("POST /api/claves/daily-claim", USER),
        ("GET /api/claves/slot-status", USER),
        ("GET /api/claves/wallet", USER),
        // --- community
        ("GET /api/community/feed", USER),
        ("POST /api/community/posts", USER),
        ("DELETE /api/community/posts/{post_id}", OWNER_OR_ADMIN),
        ("GET /api/community/posts/{post_id}", USER),
        ("PUT /api/community/posts/{post_id}", OWNER_ONLY),
        // The owner may not react to their own post (400); the others may.
        (
            "POST /api/community/posts/{post_id}/react",
            ["401", "400", "2xx", "2xx"],
        ),
        // Removing a reaction that was never given: 404 for everyone signed in.
        (
            "DELETE /api/community/posts/{post_id}/react",
            ["401", "4xx", "4xx", "4xx"],
        ),
        ("POST /api/community/posts/{post_id}/replies", USER),
        (
            "POST /api/community/posts/{post_id}/replies/{reply_id}/accept",
            OWNER_ONLY,
        ),
        // The fixture's reply is the other student's: its author or an admin.
        (
            "PUT /api/community/posts/{post_id}/replies/{reply_id}",
            ["401", "403", "2xx", "2xx"],
        ),
        (
            "DELETE /api/community/posts/{post_id}/replies/{reply_id}",
            ["401", "403", "2xx", "2xx"],
        ),
        ("POST /api/community/posts/{post_id}/save", USER),
        ("DELETE /api/community/posts/{post_id}/save", USER),
        ("GET /api/community/saved", USER),
        // The owner may not report their own post, nor the other student their reply.
        (
            "POST /api/community/posts/{post_id}/report",
            ["401", "400", "2xx", "2xx"],
        ),
        (
            "POST /api/community/posts/{post_id}/replies/{reply_id}/report",
            ["401", "2xx", "400", "2xx"],
        ),
        ("GET /api/community/search", USER),
        ("GET /api/community/stats", PUBLIC),
        ("GET /api/community/tags", PUBLIC),
        ("GET /api/community/upload-check", USER),
        // --- learning (a free, published course)
        ("GET /api/courses/lessons/{lesson_id}", USER),
        ("POST /api/courses/lessons/{lesson_id}/complete", USER),
        // `opt`: anonymous callers see the lessons locked.
        ("GET /api/courses/levels/{level_id}/lessons", PUBLIC),
        ("GET /api/courses/worlds", PUBLIC),
        ("GET /api/courses/worlds/{world_id}/lessons", PUBLIC),
        ("GET /api/courses/worlds/{world_id}/skill-tree", PUBLIC),
        ("POST /api/progress/lessons/{lesson_id}/complete", USER),
        // --- media: the owner's post carries the asset and the recorded upload
        ("DELETE /api/mux/asset/{asset_id}", OWNER_OR_ADMIN),
        ("GET /api/mux/asset/{asset_id}/exists", ADMIN),
        ("POST /api/mux/check-upload-status", OWNER_OR_ADMIN),
        ("GET /api/mux/download-available/{playback_id}", PUBLIC),
        ("GET /api/mux/download-url/{playback_id}", USER),
        ("GET /api/mux/upload-status/{upload_id}", OWNER_OR_ADMIN),
        // An upload for a post: its owner (or an admin).
        ("POST /api/mux/upload-url", OWNER_OR_ADMIN),
        // Unsigned webhooks are refused whoever calls.
        ("POST /api/mux/webhook", ["401", "401", "401", "401"]),
        ("POST /api/webhook", ["401", "401", "401", "401"]),
        ("POST /api/webhooks", ["401", "401", "401", "401"]),
        ("POST /api/payments/webhook", ["400", "400", "400", "400"]),
        // --- notifications: always the caller's own
        ("GET /api/notifications", USER),
        ("GET /api/notifications/unread-count", USER),
        ("POST /api/notifications/read-all", USER),
        // No notification with that id for anybody: 404.
        (
            "POST /api/notifications/{notification_id}/read",
            ["401", "4xx", "4xx", "4xx"],
        ),
        ("GET /api/notifications/preferences", USER),
        ("PUT /api/notifications/preferences", USER),
        // The digest's unsubscribe link needs no sign-in; a made-up token is 400.
        (
            "GET /api/notifications/unsubscribe",
            ["400", "400", "400", "400"],
        ),
        (
            "POST /api/notifications/unsubscribe",
            ["400", "400", "400", "400"],
        ),
        // An endless event stream: `read` takes its first event.
        ("GET /api/notifications/stream", USER),
        // --- payments: the caller's own subscription
        ("POST /api/payments/create-checkout-session", USER),
        // Rookie/incomplete subscriptions: nothing to update or cancel.
        (
            "POST /api/payments/cancel-subscription",
            ["401", "400", "400", "400"],
        ),
        (
            "POST /api/payments/update-subscription",
            ["401", "400", "400", "400"],
        ),
        ("GET /api/payments/subscription", USER),
        (
            "POST /api/payments/resume-subscription",
            ["401", "404", "404", "404"],
        ),
        (
            "POST /api/payments/cancel-scheduled-downgrade",
            ["401", "400", "400", "400"],
        ),
        // The body's return_url is on another origin: refused, after auth.
        (
            "POST /api/payments/create-portal-session",
            ["401", "400", "400", "400"],
        ),
        // --- submissions: the caller's own
        ("GET /api/submissions/my-submissions", USER),
        ("POST /api/submissions/submit", USER),
        // --- uploads, users
        ("POST /api/uploads/presigned-url", USER),
        ("GET /api/users/leaderboard", PUBLIC),
        ("GET /api/users/me", USER),
        ("PATCH /api/users/me", USER),
        ("PUT /api/users/me/badges/reorder", USER),
        ("GET /api/users/public/{username}", PUBLIC),
        ("GET /api/users/search", USER),
        // --- privacy: the caller's own export (a fresh one for each caller)
        ("POST /api/users/me/export", USER),
        ("GET /api/users/me/exports", USER),
        // A wrong password (the callers are not deleted): 400, after the auth check.
        ("DELETE /api/users/me", ["401", "400", "400", "400"]),
        // An unknown user (the fixtures' owner is not deleted): 404 for the admin.
        (
            "DELETE /api/admin/users/{user_id}",
            ["401", "403", "403", "404"],
        ),
    ])
}

const MUX_ID: &str = "mux-id";
const MUX_SECRET: &str = "mux-secret";
const GEMINI_KEY: &str = "gemini-key";

/// Fresh objects for one call.
struct Fix {
    world: Uuid,
    level: Uuid,
    level2: Uuid,
    level3: Uuid,
    edge: Uuid,
    lesson: Uuid,
    lesson2: Uuid,
    post: Uuid,
    reply: Uuid,
    submission: Uuid,
    /// A resolved report by the other student on the owner's post.
    report: Uuid,
    asset: String,
    playback: String,
    upload: String,
}

async fn fixtures(app: &TestApp, owner: &TestUser, other: &TestUser) -> Fix {
    let n = Uuid::new_v4().simple().to_string();
    let db = app.db();
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ('Authz course', $1, 1, 'Beginner', true, true) RETURNING id",
    )
    .bind(format!("authz-{n}"))
    .fetch_one(db)
    .await
    .unwrap();
    let level: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'One', 0) RETURNING id",
    )
    .bind(world)
    .fetch_one(db)
    .await
    .unwrap();
    let level2: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'Two', 1) RETURNING id",
    )
    .bind(world)
    .fetch_one(db)
    .await
    .unwrap();
    let level3: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'Three', 2) RETURNING id",
    )
    .bind(world)
    .fetch_one(db)
    .await
    .unwrap();
    let edge: Uuid = sqlx::query_scalar(
        "INSERT INTO level_edges (world_id, from_level_id, to_level_id) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(world)
    .bind(level)
    .bind(level2)
    .fetch_one(db)
    .await
    .unwrap();
    let mut lessons = vec![];
    for i in 0..2 {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO lessons (level_id, title, order_index, is_boss_battle)
             VALUES ($1, 'Boss', $2, true) RETURNING id",
        )
        .bind(level)
        .bind(i)
        .fetch_one(db)
        .await
        .unwrap();
        lessons.push(id);
    }
    let asset = format!("asset-{n}");
    let playback = format!("pb-{n}");
    let post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, mux_asset_id, mux_playback_id, tags)
         VALUES ($1, 'lab', 'My routine', 'body', $2, $3, '{}') RETURNING id",
    )
    .bind(owner.id)
    .bind(&asset)
    .bind(&playback)
    .fetch_one(db)
    .await
    .unwrap();
    let reply: Uuid = sqlx::query_scalar(
        "INSERT INTO post_replies (post_id, user_id, content) VALUES ($1, $2, 'Nice') RETURNING id",
    )
    .bind(post)
    .bind(other.id)
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query("UPDATE posts SET reply_count = 1 WHERE id = $1")
        .bind(post)
        .execute(db)
        .await
        .unwrap();
    let submission: Uuid = sqlx::query_scalar(
        "INSERT INTO boss_submissions (user_id, lesson_id, video_url)
         VALUES ($1, $2, 'https://video.example/mine.mp4') RETURNING id",
    )
    .bind(owner.id)
    .bind(lessons[0])
    .fetch_one(db)
    .await
    .unwrap();
    let report: Uuid = sqlx::query_scalar(
        "INSERT INTO content_reports (target_type, target_id, post_id, reporter_id, reason,
                                      status, resolution, resolved_at)
         VALUES ('post', $1, $1, $2, 'spam', 'resolved', 'dismiss', now()) RETURNING id",
    )
    .bind(post)
    .bind(other.id)
    .fetch_one(db)
    .await
    .unwrap();
    let upload = format!("up-{n}");
    sqlx::query(
        "INSERT INTO mux_uploads (upload_id, user_id, target_type, target_id)
         VALUES ($1, $2, 'post', $3)",
    )
    .bind(&upload)
    .bind(owner.id)
    .bind(post)
    .execute(db)
    .await
    .unwrap();
    Fix {
        world,
        level,
        level2,
        level3,
        edge,
        lesson: lessons[0],
        lesson2: lessons[1],
        post,
        reply,
        submission,
        report,
        asset,
        playback,
        upload,
    }
}

fn fill_path(p: &str, f: &Fix, owner: &TestUser, username: &str) -> String {
    if p == "/api/admin/users/{user_id}" {
        // Deleting the shared owner would end every later call.
        return format!("/api/admin/users/{}", Uuid::new_v4());
    }
    p.replace("{course_id}", &f.world.to_string())
        .replace("{world_id}", &f.world.to_string())
        .replace("{level_id}", &f.level.to_string())
        .replace("{lesson_id}", &f.lesson.to_string())
        .replace("{edge_id}", &f.edge.to_string())
        .replace("{submission_id}", &f.submission.to_string())
        .replace("{report_id}", &f.report.to_string())
        .replace("{post_id}", &f.post.to_string())
        .replace("{reply_id}", &f.reply.to_string())
        .replace("{user_id}", &owner.id.to_string())
        .replace("{amount}", "5")
        .replace("{asset_id}", &f.asset)
        .replace("{playback_id}", &f.playback)
        .replace("{upload_id}", &f.upload)
        .replace("{provider}", "google")
        .replace("{username}", username)
        .replace("{notification_id}", &Uuid::new_v4().to_string())
}

fn query(key: &str, f: &Fix) -> String {
    match key {
        "GET /api/community/search" => "?q=routine".into(),
        "GET /api/users/search" => "?q=us".into(),
        "GET /api/admin/audit" => "?action=course.update&limit=10".into(),
        "POST /api/mux/check-upload-status" => format!("?post_id={}", f.post),
        "POST /api/mux/upload-url" => format!("?post_id={}", f.post),
        "GET /api/auth/callback/google" => "?code=abc&state=forged".into(),
        "GET /api/notifications/unsubscribe" | "POST /api/notifications/unsubscribe" => {
            format!("?token={}.forged", Uuid::nil())
        }
        _ => String::new(),
    }
}

/// A valid body for each operation that takes one.
fn body(key: &str, f: &Fix, owner: &TestUser, n: &str) -> Option<Value> {
    Some(match key {
        "POST /api/admin/courses" => json!({
            "title": "New course", "slug": format!("new-{n}"), "order_index": 3, "difficulty": "Beginner"
        }),
        "PATCH /api/admin/courses/{course_id}" | "PUT /api/admin/courses/{course_id}" => {
            json!({"title": "Renamed"})
        }
        "POST /api/admin/courses/{course_id}/lessons" => {
            json!({"title": "New lesson", "order_index": 5, "level_id": f.level})
        }
        "POST /api/admin/courses/{course_id}/levels" => {
            json!({"title": "New level", "order_index": 4})
        }
        "PATCH /api/admin/lessons/{lesson_id}" | "PUT /api/admin/lessons/{lesson_id}" => {
            json!({"title": "Renamed"})
        }
        "PUT /api/admin/levels/{level_id}" => json!({"title": "Renamed"}),
        "POST /api/admin/levels/{level_id}/lessons" => {
            json!({"title": "New lesson", "order_index": 5})
        }
        "PUT /api/admin/levels/{level_id}/position" => {
            json!({"x_position": 10.0, "y_position": 20.0})
        }
        "POST /api/admin/submissions/{submission_id}/grade" => {
            json!({"status": "approved", "feedback_text": "Great"})
        }
        "POST /api/admin/worlds/{world_id}/edges" => {
            json!({"from_level_id": f.level2, "to_level_id": f.level3})
        }
        "POST /api/admin/worlds/{world_id}/levels" => json!({"title": "Free level"}),
        "POST /api/admin/users/{user_id}/claves" => json!({"amount": 5, "reason": "Helper"}),
        "POST /api/ai/chat" | "POST /api/ai_chat/chat" => {
            json!({"messages": [{"role": "user", "content": "Hola"}], "stream": false})
        }
        "POST /api/auth/forgot-password" => json!({"email": owner.email}),
        "POST /api/auth/register" => json!({
            "email": format!("new{n}@example.com"), "username": format!("n{}", &n[..12]),
            "password": "Passw0rd123", "confirm_password": "Passw0rd123",
            "first_name": "New", "last_name": "Dancer"
        }),
        "POST /api/auth/reset-password" => json!({
            "token": "made-up", "new_password": "Passw0rd123", "confirm_password": "Passw0rd123"
        }),
        "POST /api/auth/token" => json!({"email": owner.email, "password": owner.password}),
        // Every caller of the matrix has the same password.
        "POST /api/auth/change-password" => json!({
            "current_password": owner.password, "new_password": owner.password,
            "confirm_password": owner.password
        }),
        "POST /api/auth/verify-email" => json!({"token": "made-up"}),
        "POST /api/auth/waitlist" => json!({
            "email": format!("wait{n}@example.com"), "username": format!("w{}", &n[..12])
        }),
        "POST /api/community/posts" => json!({
            "post_type": "lab", "title": "How to spin?", "body": "Help", "tags": ["mambo"]
        }),
        "PUT /api/community/posts/{post_id}" => json!({"title": "Renamed routine"}),
        "POST /api/community/posts/{post_id}/react" => json!({"reaction_type": "fire"}),
        "POST /api/community/posts/{post_id}/replies" => json!({"content": "Me too"}),
        "POST /api/community/posts/{post_id}/report"
        | "POST /api/community/posts/{post_id}/replies/{reply_id}/report" => {
            json!({"reason": "spam"})
        }
        "POST /api/admin/moderation/reports/{report_id}/resolve" => json!({"action": "dismiss"}),
        "PUT /api/community/posts/{post_id}/replies/{reply_id}" => json!({"content": "Edited"}),
        "POST /api/payments/create-checkout-session" => json!({
            "price_id": "price_perf", "success_url": "http://localhost:3000/ok",
            "cancel_url": "http://localhost:3000/no"
        }),
        "POST /api/payments/update-subscription" => json!({"new_price_id": "price_adv"}),
        "POST /api/payments/create-portal-session" => {
            json!({"return_url": "https://elsewhere.example/billing"})
        }
        "POST /api/submissions/submit" => json!({
            "lesson_id": f.lesson2, "video_url": "https://video.example/boss.mp4"
        }),
        "POST /api/uploads/presigned-url" => {
            json!({"file_type": "image/png", "folder": "avatars"})
        }
        "PATCH /api/users/me" => json!({"avatar_url": "https://www.gravatar.com/avatar/x"}),
        "PUT /api/notifications/preferences" => {
            json!({"in_app": {"reaction_received": false}, "email_digest": "weekly"})
        }
        "PUT /api/users/me/badges/reorder" => json!({"badge_ids": []}),
        "DELETE /api/users/me" => json!({"password": "not-the-password"}),
        "POST /api/mux/webhook"
        | "POST /api/webhook"
        | "POST /api/webhooks"
        | "POST /api/payments/webhook" => json!({"type": "video.asset.ready", "data": {}}),
        _ => return None,
    })
}

/// (status, body) of a response; an event stream (which never ends) is
/// read up to its first event.
async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let is_stream = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if !is_stream {
        return json(resp).await;
    }
    let status = resp.status();
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !text.contains("data:") || !text.ends_with("\n\n") {
        match tokio::time::timeout_at(deadline, futures::StreamExt::next(&mut body)).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    (status, Value::String(text))
}

fn matches(expect: &str, status: StatusCode) -> bool {
    let s = status.as_u16();
    match expect {
        "2xx" => (200..300).contains(&s),
        "3xx" => (300..400).contains(&s),
        "4xx" => (400..500).contains(&s) && s != 401 && s != 403,
        code => code.parse::<u16>().unwrap() == s,
    }
}

async fn fakes() -> (MockServer, MockServer, MockServer) {
    let mux = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/video/v1/uploads"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "data": {"id": "up-new", "url": "https://storage.example/up-new", "status": "waiting"}
        })))
        .mount(&mux)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/video/v1/uploads/[^/]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"id": "up", "status": "waiting"}
        })))
        .mount(&mux)
        .await;
    Mock::given(method("GET"))
        .and(path("/video/v1/assets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": []})))
        .mount(&mux)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/video/v1/assets/[^/]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"id": "a", "status": "ready", "playback_ids": [{"id": "pb", "policy": "public"}]}
        })))
        .mount(&mux)
        .await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/video/v1/assets/[^/]+$"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mux)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/[^/]+/(high|medium|low)\.mp4$"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("content-type", "video/mp4")
                .set_body_bytes(vec![0u8]),
        )
        .mount(&mux)
        .await;

    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1", "object": "customer"})),
        )
        .mount(&stripe)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/checkout/sessions"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "cs_1", "object": "checkout.session", "url": "https://checkout.example/cs_1"
        })))
        .mount(&stripe)
        .await;

    let gemini = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.0-flash:generateContent"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": "Hola"}]}, "index": 0}]
        })))
        .mount(&gemini)
        .await;
    (mux, stripe, gemini)
}

/// Ids of the owner's that no other student may ever see.
async fn private_ids(app: &TestApp, owner: &TestUser, f: &Fix) -> Vec<String> {
    let mut ids: Vec<String> =
        sqlx::query_scalar::<_, Uuid>("SELECT id FROM clave_transactions WHERE user_id = $1")
            .bind(owner.id)
            .fetch_all(app.db())
            .await
            .unwrap()
            .into_iter()
            .map(|u| u.to_string())
            .collect();
    ids.push(f.submission.to_string());
    ids.push(owner.email.clone());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_classified_and_authorized() {
    let (mux, stripe, gemini) = fakes().await;
    let (mux_uri, stripe_uri, gemini_uri) = (mux.uri(), stripe.uri(), gemini.uri());
    let app = TestApp::spawn_with_vars(&[
        ("MUX_TOKEN_ID", MUX_ID),
        ("MUX_TOKEN_SECRET", MUX_SECRET),
        ("MUX_WEBHOOK_SECRET", "mux-webhook-secret"),
        ("MUX_BASE_URL", &mux_uri),
        ("MUX_STREAM_BASE_URL", &mux_uri),
        ("STRIPE_SECRET_KEY", "sk_test_1"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_1"),
        ("STRIPE_BASE_URL", &stripe_uri),
        ("ADVANCED_PRICE_ID", "price_adv"),
        ("PERFORMER_PRICE_ID", "price_perf"),
        ("GEMINI_API_KEY", GEMINI_KEY),
        ("GEMINI_BASE_URL", &gemini_uri),
        ("GOOGLE_CLIENT_ID", "google-client"),
        ("GOOGLE_CLIENT_SECRET", "google-secret"),
        ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
        ("AWS_BUCKET_NAME", "mambo-media"),
        ("AWS_ENDPOINT_URL", "https://r2.example.com"),
        ("AI_RATE_LIMIT_REQUESTS", "1000"),
    ])
    .await;

    let (status, spec) = json(app.get("/openapi.json").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    let owner = app
        .create_user(UserSpec {
            claves: 100,
            ..Default::default()
        })
        .await;
    let other = app
        .create_user(UserSpec {
            claves: 100,
            ..Default::default()
        })
        .await;
    let admin = app.admin().await;
    let username: String =
        sqlx::query_scalar("SELECT username FROM user_profiles WHERE user_id=$1")
            .bind(owner.id)
            .fetch_one(app.db())
            .await
            .unwrap();

    let table = table();
    let mut seen = BTreeSet::new();
    let mut failures = vec![];
    let mut calls = 0;
    let methods = ["get", "post", "put", "patch", "delete"];
    for (p, ops) in spec["paths"].as_object().unwrap() {
        for (m, _op) in ops.as_object().unwrap() {
            if !methods.contains(&m.as_str()) {
                continue;
            }
            let key = format!("{} {p}", m.to_uppercase());
            let Some(expect) = table.get(key.as_str()) else {
                failures.push(format!("{key}: not in the authorization table"));
                continue;
            };
            seen.insert(key.clone());
            let callers: [(&str, Option<&TestUser>); 4] = [
                ("anonymous", None),
                ("student", Some(&owner)),
                ("other", Some(&other)),
                ("admin", Some(&admin)),
            ];
            for (i, (who, user)) in callers.iter().enumerate() {
                let f = fixtures(&app, &owner, &other).await;
                let n = Uuid::new_v4().simple().to_string();
                let url = format!("{}{}", fill_path(p, &f, &owner, &username), query(&key, &f));
                let method = reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
                let mut req = app.client.request(method, app.url(&url));
                if let Some(u) = user {
                    req = req.header("Authorization", u.bearer());
                }
                if let Some(b) = body(&key, &f, &owner, &n) {
                    req = req.json(&b);
                }
                let resp = req.send().await.unwrap();
                calls += 1;
                let www = resp.headers().get("www-authenticate").cloned();
                let (status, value) = read(resp).await;
                if key == "POST /api/auth/logout-all" || key == "POST /api/auth/change-password" {
                    // The callers are shared by every operation: undo the revocation.
                    sqlx::query("UPDATE users SET tokens_valid_after = NULL")
                        .execute(app.db())
                        .await
                        .unwrap();
                }
                let text = value.to_string();
                if !matches(expect[i], status) {
                    failures.push(format!(
                        "{key} as {who}: expected {}, got {status} {}",
                        expect[i],
                        &text[..text.len().min(300)]
                    ));
                    continue;
                }
                if status.is_client_error() && value.get("detail").is_none() {
                    failures.push(format!("{key} as {who}: {status} without detail: {text}"));
                }
                if status == StatusCode::UNAUTHORIZED
                    && value["detail"] == "Could not validate credentials"
                    && www.is_none()
                {
                    failures.push(format!("{key} as {who}: 401 without WWW-Authenticate"));
                }
                if status == StatusCode::FORBIDDEN && value["detail"].is_null() {
                    failures.push(format!("{key} as {who}: 403 without a reason"));
                }
                // A caller who may not use the operation learns nothing about
                // its input rules: an empty body, a malformed body and
                // malformed query parameters get the same refusal (issue 15).
                if expect[i] == "401" || expect[i] == "403" {
                    for (what, payload) in [
                        ("empty body", Some("{}")),
                        ("malformed body", Some("{\"title\": [1, ")),
                        ("malformed query", None),
                    ] {
                        let sep = if url.contains('?') { '&' } else { '?' };
                        let u = match payload {
                            Some(_) => url.clone(),
                            None => format!(
                                "{url}{sep}skip=abc&limit=-x&page=%ZZ&status=42&post_id=nope"
                            ),
                        };
                        let method =
                            reqwest::Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
                        let mut req = app.client.request(method, app.url(&u));
                        if let Some(u) = user {
                            req = req.header("Authorization", u.bearer());
                        }
                        if let Some(p) = payload {
                            req = req.header("content-type", "application/json").body(p);
                        } else if let Some(b) = body(&key, &f, &owner, &n) {
                            req = req.json(&b);
                        }
                        let resp = req.send().await.unwrap();
                        calls += 1;
                        let (s2, v2) = json(resp).await;
                        if s2 != status {
                            let t = v2.to_string();
                            failures.push(format!(
                                "{key} as {who} with {what}: expected {status} as with a valid request, got {s2} {}",
                                &t[..t.len().min(300)]
                            ));
                        }
                    }
                }
                // The other student never sees the owner's private data.
                if *who == "other" {
                    for secret in private_ids(&app, &owner, &f).await {
                        if text.contains(&secret) {
                            failures.push(format!("{key} as other: leaks {secret}"));
                        }
                    }
                }
            }
        }
    }
    for key in table.keys() {
        if !seen.contains(*key) {
            failures.push(format!("{key}: in the table but not in the spec"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    println!("authz matrix: {} operations, {calls} calls", seen.len());
}

/// The ownership cases in detail: the other student's attempts change nothing,
/// and the owner's own data is what the owner's endpoints return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_post_asset_submissions_and_wallet_are_out_of_reach() {
    let (mux, _stripe, _gemini) = fakes().await;
    let mux_uri = mux.uri();
    let app = TestApp::spawn_with_vars(&[
        ("MUX_TOKEN_ID", MUX_ID),
        ("MUX_TOKEN_SECRET", MUX_SECRET),
        ("MUX_BASE_URL", &mux_uri),
        ("MUX_STREAM_BASE_URL", &mux_uri),
    ])
    .await;
    let owner = app.student().await;
    let other = app.student().await;
    let f = fixtures(&app, &owner, &other).await;
    let as_other = |r: reqwest::RequestBuilder| r.header("Authorization", other.bearer());

    let post = format!("/api/community/posts/{}", f.post);
    let (s, _) = json(
        as_other(app.put(&post))
            .json(&json!({"title": "Hijacked title"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = json(as_other(app.delete(&post)).send().await.unwrap()).await;
    assert_eq!(s, 403);
    let (s, _) = json(
        as_other(app.post(&format!("{post}/replies/{}/accept", f.reply)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = json(
        as_other(app.post(&format!("/api/mux/check-upload-status?post_id={}", f.post)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v),
        (403, json!({"detail": "You can only check your own posts"}))
    );
    let (s, v) = json(
        as_other(app.delete(&format!("/api/mux/asset/{}", f.asset)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s.as_u16(), v),
        (
            403,
            json!({"detail": "You can only delete videos from your own posts"})
        )
    );
    let (s, _) = json(
        as_other(app.get(&format!("/api/mux/upload-status/{}", f.upload)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);

    // Nothing changed: title, existence, accepted answer, Mux ids, and Mux
    // was never asked to delete anything.
    let row: (String, bool, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT title, is_solved, mux_asset_id, mux_playback_id FROM posts WHERE id = $1",
    )
    .bind(f.post)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "My routine".to_string(),
            false,
            Some(f.asset.clone()),
            Some(f.playback.clone())
        )
    );
    let deletes = mux
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .count();
    assert_eq!(deletes, 0);

    // Submissions and wallet are always the caller's own.
    let (s, v) = json(
        as_other(app.get("/api/submissions/my-submissions"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s.as_u16(), v), (200, json!([])));
    let (s, v) = json(
        app.get("/api/submissions/my-submissions")
            .header("Authorization", owner.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v[0]["id"], f.submission.to_string());
    let (_, mine) = json(
        as_other(app.get("/api/claves/wallet"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let owner_tx: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM clave_transactions WHERE user_id = $1")
            .bind(owner.id)
            .fetch_all(app.db())
            .await
            .unwrap();
    assert!(!owner_tx.is_empty());
    for t in mine["recent_transactions"].as_array().unwrap() {
        assert!(!owner_tx.contains(&t["id"].as_str().unwrap().parse().unwrap()));
    }
    // A user id smuggled in the query changes nothing.
    let (_, again) = json(
        as_other(app.get(&format!("/api/claves/wallet?user_id={}", owner.id)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again["recent_transactions"], mine["recent_transactions"]);
}
