//! The notification email digest, its one-click unsubscribe link, the
//! `course_published` fan-out through the worker and the retention of
//! notifications (API-NEXT.md N1).

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc, Weekday};
use mambo_core::notifications::digest::{self, Period};
use mambo_core::notifications::{self, New, Pending};
use mambo_tests::{Options, StatusCode, TestApp, TestUser, eventually, json};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn fake_resend() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "em_1"})))
        .mount(&server)
        .await;
    server
}

/// The bodies of the emails the fake Resend received.
async fn sent(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/emails")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

/// Waits until the fake Resend has `n` emails, then a little longer so that a
/// duplicate would show up, and returns them all.
async fn wait_for_emails(server: &MockServer, n: usize) -> Vec<Value> {
    let got = eventually(20, || async {
        let got = sent(server).await;
        (got.len() >= n).then_some(())
    })
    .await;
    assert!(
        got.is_some(),
        "{n} email(s) expected, got {:#?}",
        sent(server).await
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    sent(server).await
}

fn to(email: &Value) -> String {
    email["to"][0].as_str().unwrap().to_string()
}

async fn app_with_resend() -> (TestApp, MockServer) {
    let resend = fake_resend().await;
    let app = TestApp::spawn_with(Options {
        worker: true,
        vars: vec![
            ("RESEND_API_KEY".into(), "re_test".into()),
            ("RESEND_BASE_URL".into(), resend.uri()),
            ("BACKEND_URL".into(), "https://api.mamboguild.test".into()),
        ],
    })
    .await;
    (app, resend)
}

/// Creates notifications for `user` through the one door, `at` each.
async fn notify_at(app: &TestApp, items: &[(New, DateTime<Utc>)]) {
    let mut conn = app.db().acquire().await.unwrap();
    let mut pending = Pending::default();
    for (n, at) in items {
        notifications::notify(&mut conn, *at, n, &mut pending)
            .await
            .unwrap()
            .expect("created");
    }
}

fn badge(user: Uuid, i: usize) -> New {
    New::badge(user, &format!("badge_{i}"), &format!("Badge {i}"))
}

async fn set_digest(app: &TestApp, user: &TestUser, value: &str) {
    let (s, v) = json(
        app.put("/api/notifications/preferences")
            .header(
                "Authorization",
                format!("Bearer {}", app.token_for(user.id)),
            )
            .json(&json!({"email_digest": value}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["email_digest"], value);
}

async fn digest_setting(app: &TestApp, user: &TestUser) -> String {
    let (s, v) = json(
        app.get("/api/notifications/preferences")
            .header(
                "Authorization",
                format!("Bearer {}", app.token_for(user.id)),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["email_digest"].as_str().unwrap().to_string()
}

/// A Monday, 12:00 UTC, in the future (tokens made at this time stay valid).
fn monday_noon() -> DateTime<Utc> {
    let t = Utc.with_ymd_and_hms(2030, 1, 7, 12, 0, 0).unwrap();
    assert_eq!(t.weekday(), Weekday::Mon);
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_emails_unread_notifications_once_per_period_with_unsubscribe_headers() {
    let (app, resend) = app_with_resend().await;
    app.ctx.clock.set(monday_noon());
    let now = app.ctx.clock.now();

    let reader = app.student().await;
    let actor = app.student().await;
    let actor_name: String =
        sqlx::query_scalar("SELECT username FROM user_profiles WHERE user_id = $1")
            .bind(actor.id)
            .fetch_one(app.db())
            .await
            .unwrap();
    // 12 unread badges, a minute apart (badge_11 newest), one reaction by
    // `actor` (the newest of all) and an old read notification.
    let mut items: Vec<(New, DateTime<Utc>)> = (0..12)
        .map(|i| (badge(reader.id, i), now - Duration::minutes(60 - i as i64)))
        .collect();
    let post = Uuid::new_v4();
    items.push((
        New::reaction(reader.id, actor.id, post, "My <b>shines</b>"),
        now - Duration::minutes(1),
    ));
    items.push((badge(reader.id, 99), now - Duration::minutes(90)));
    notify_at(&app, &items).await;
    sqlx::query(
        "UPDATE notifications SET is_read = true WHERE user_id = $1 AND reference_id = 'badge_99'",
    )
    .bind(reader.id)
    .execute(app.db())
    .await
    .unwrap();

    // Users who get no daily digest: off, weekly, unsubscribed from email,
    // nothing unread.
    let off = app.student().await;
    let weekly = app.student().await;
    let unsubscribed = app.student().await;
    let all_read = app.student().await;
    set_digest(&app, &off, "off").await;
    set_digest(&app, &weekly, "weekly").await;
    sqlx::query("UPDATE users SET email_unsubscribed = true WHERE id = $1")
        .bind(unsubscribed.id)
        .execute(app.db())
        .await
        .unwrap();
    notify_at(
        &app,
        &[
            (badge(off.id, 1), now),
            (badge(weekly.id, 1), now),
            (badge(unsubscribed.id, 1), now),
            (badge(all_read.id, 1), now),
        ],
    )
    .await;
    sqlx::query("UPDATE notifications SET is_read = true WHERE user_id = $1")
        .bind(all_read.id)
        .execute(app.db())
        .await
        .unwrap();

    // The daily run: one email, to the reader.
    let report = digest::run(&app.ctx, Period::Daily).await.unwrap();
    assert_eq!((report.queued, report.already_sent), (1, 0), "{report:?}");
    assert_eq!(report.period_key, "2030-01-07");
    let emails = wait_for_emails(&resend, 1).await;
    assert_eq!(emails.len(), 1, "{emails:#?}");
    let email = &emails[0];
    assert_eq!(to(email), reader.email);
    assert_eq!(
        email["subject"],
        "You have 13 new notifications - The Mambo Guild"
    );

    // RFC 8058 headers with the signed link on BACKEND_URL.
    let token = digest::unsubscribe_token(&app.ctx.config, reader.id);
    assert_eq!(
        email["headers"]["List-Unsubscribe"],
        format!("<https://api.mamboguild.test/api/notifications/unsubscribe?token={token}>")
    );
    assert_eq!(
        email["headers"]["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );

    // Ten listed, newest first (the reaction, then badges 11 down to 3); the
    // other three counted; the read one nowhere.
    let text = email["text"].as_str().unwrap();
    let html = email["html"].as_str().unwrap();
    let reaction =
        format!("🔥 New Reaction: {actor_name} reacted to your post \"My <b>shines</b>\"");
    let first = text.find(&reaction).unwrap_or_else(|| panic!("{text}"));
    let mut last = first;
    for i in (3..12).rev() {
        let at = text
            .find(&format!("🏆 Badge Earned: You earned Badge {i} ("))
            .unwrap_or_else(|| panic!("badge {i} missing: {text}"));
        assert!(at > last, "newest first: {text}");
        last = at;
    }
    for i in [0, 1, 2, 99] {
        assert!(!text.contains(&format!("Badge {i} (")), "{text}");
    }
    assert!(text.contains("...and 3 more."), "{text}");
    assert!(text.contains(&format!("unsubscribe?token={token}")));
    assert!(html.contains("My &lt;b&gt;shines&lt;/b&gt;"), "{html}");
    assert!(html.contains("...and 3 more."));

    // Running it again sends nothing: the digest covered everything unread.
    let again = digest::run(&app.ctx, Period::Daily).await.unwrap();
    assert_eq!((again.queued, again.already_sent), (0, 0), "{again:?}");

    // The scheduled run on a Monday also sends the weekly digests.
    let reports = digest::run_scheduled(&app.ctx, now).await.unwrap();
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].period, Period::Daily);
    assert_eq!(reports[0].queued, 0);
    assert_eq!(reports[1].period, Period::Weekly);
    assert_eq!(reports[1].period_key, "2030-W02");
    assert_eq!(reports[1].queued, 1);
    let emails = wait_for_emails(&resend, 2).await;
    assert_eq!(emails.len(), 2, "{emails:#?}");
    assert_eq!(to(&emails[1]), weekly.email);
    assert_eq!(
        emails[1]["subject"],
        "You have 1 new notification - The Mambo Guild"
    );
    // On a Tuesday only the daily one runs.
    let tuesday = digest::run_scheduled(&app.ctx, now + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(tuesday.len(), 1);
    assert_eq!(tuesday[0].period, Period::Daily);

    // A notification after today's digest waits for tomorrow's, however
    // often (and however concurrently) the digest runs today.
    notify_at(&app, &[(badge(reader.id, 50), app.ctx.clock.now())]).await;
    let (a, b) = tokio::join!(
        digest::run(&app.ctx, Period::Daily),
        digest::run(&app.ctx, Period::Daily)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.queued + b.queued, a.already_sent + b.already_sent),
        (0, 2)
    );
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(sent(&resend).await.len(), 2, "no second daily digest");

    app.ctx.clock.advance(Duration::days(1));
    let (a, b) = tokio::join!(
        digest::run(&app.ctx, Period::Daily),
        digest::run(&app.ctx, Period::Daily)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.period_key, "2030-01-08");
    assert_eq!(a.queued + b.queued, 1, "{a:?} {b:?}");
    let emails = wait_for_emails(&resend, 3).await;
    assert_eq!(emails.len(), 3, "{emails:#?}");
    assert_eq!(to(&emails[2]), reader.email);
    assert_eq!(
        emails[2]["subject"],
        "You have 1 new notification - The Mambo Guild"
    );
    assert!(emails[2]["text"].as_str().unwrap().contains("Badge 50"));

    // Nobody else got anything.
    for u in [&off, &weekly, &unsubscribed, &all_read, &actor] {
        let n = emails.iter().filter(|e| to(e) == u.email).count();
        assert_eq!(n, usize::from(u.id == weekly.id), "{}", u.email);
    }

    // The link of the email works (POST, as a mail client's one click) and
    // turns the digest off: no digest the day after.
    let (s, v) = json(
        app.post(&format!("/api/notifications/unsubscribe?token={token}"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(digest_setting(&app, &reader).await, "off");
    notify_at(&app, &[(badge(reader.id, 51), app.ctx.clock.now())]).await;
    app.ctx.clock.advance(Duration::days(1));
    let r = digest::run(&app.ctx, Period::Daily).await.unwrap();
    assert_eq!(r.queued, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_link_works_with_post_and_get_and_refuses_forged_tokens() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let other = app.student().await;
    let token = digest::unsubscribe_token(&app.ctx.config, user.id);
    assert_eq!(digest_setting(&app, &user).await, "daily");

    // One-click POST (RFC 8058 body), no sign-in.
    for _ in 0..2 {
        let (s, v) = json(
            app.post(&format!("/api/notifications/unsubscribe?token={token}"))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body("List-Unsubscribe=One-Click")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v,
            json!({"message": "You have been unsubscribed from notification emails"})
        );
        assert_eq!(digest_setting(&app, &user).await, "off");
    }

    // GET does the same, also idempotent.
    set_digest(&app, &user, "weekly").await;
    for _ in 0..2 {
        let (s, v) = json(
            app.get(&format!("/api/notifications/unsubscribe?token={token}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v["message"],
            "You have been unsubscribed from notification emails"
        );
        assert_eq!(digest_setting(&app, &user).await, "off");
    }
    assert_eq!(digest_setting(&app, &other).await, "daily");

    // Forged, tampered, other purpose, missing: 400, nothing changes.
    let (_, sig) = token.split_once('.').unwrap();
    let mut other_key = app.ctx.config.as_ref().clone();
    other_key.secret_key = mambo_core::config::Secret::new("another-key");
    let bad = [
        format!("?token={}.{sig}", other.id),
        format!("?token={}", digest::unsubscribe_token(&other_key, other.id)),
        format!("?token={}.{}", other.id, "A".repeat(43)),
        format!("?token={}", other.id),
        "?token=".to_string(),
        "?token=not-a-token".to_string(),
        String::new(),
    ];
    for q in &bad {
        for m in ["GET", "POST"] {
            let req = app.client.request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                app.url(&format!("/api/notifications/unsubscribe{q}")),
            );
            let (s, v) = json(req.send().await.unwrap()).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{m} {q}: {v}");
            assert_eq!(v, json!({"detail": "Invalid unsubscribe link"}), "{m} {q}");
        }
    }
    assert_eq!(digest_setting(&app, &other).await, "daily");
    app.stop().await;
}

/// user, title, message, actor, reference type, reference id
type CourseRow = (
    Uuid,
    String,
    String,
    Option<Uuid>,
    Option<String>,
    Option<String>,
);

async fn course_notifications(app: &TestApp, world: &str) -> Vec<(Uuid, Value)> {
    let rows: Vec<CourseRow> = sqlx::query_as(
        "SELECT user_id, title, message, actor_id, reference_type, reference_id
             FROM notifications WHERE type = 'course_published' AND reference_id = $1
             ORDER BY user_id",
    )
    .bind(world)
    .fetch_all(app.db())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(u, t, m, a, rt, ri)| {
            (
                u,
                json!({"title": t, "message": m, "actor_id": a, "reference_type": rt, "reference_id": ri}),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn course_published_reaches_every_user_but_the_publisher_once_through_the_worker() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    let students = [
        app.student().await,
        app.student().await,
        app.student().await,
    ];
    let admin_auth = format!("Bearer {}", admin.token);

    // Published at creation.
    let slug = format!("fanout-{}", Uuid::new_v4().simple());
    let (s, v) = json(
        app.post("/api/admin/courses")
            .header("Authorization", &admin_auth)
            .json(
                &json!({"title": "Shines <1>", "slug": slug, "order_index": 0,
                          "difficulty": "BEGINNER", "is_published": true}),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s.is_success(), "{v}");
    let world = v["id"].as_str().unwrap().to_string();
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(app.db())
        .await
        .unwrap();
    let got = eventually(20, || async {
        let rows = course_notifications(&app, &world).await;
        (rows.len() as i64 == users - 1).then_some(rows)
    })
    .await
    .expect("the worker fanned out to every user but the publisher");
    assert!(got.iter().all(|(u, _)| *u != admin.id), "not the publisher");
    for s in &students {
        let (_, n) = got.iter().find(|(u, _)| *u == s.id).expect("each student");
        assert_eq!(
            *n,
            json!({"title": "🎉 New Course", "message": "\"Shines <1>\" is now available",
                   "actor_id": admin.id, "reference_type": "world", "reference_id": world})
        );
    }

    // Unpublish and publish again: nothing new, not even for a user who
    // joined in between.
    let newcomer = app.student().await;
    for published in [false, true] {
        let (s, v) = json(
            app.patch(&format!("/api/admin/courses/{world}"))
                .header("Authorization", &admin_auth)
                .json(&json!({"is_published": published}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(s.is_success(), "{v}");
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = course_notifications(&app, &world).await;
    assert_eq!(after.len(), got.len(), "republishing sends nothing");
    assert!(after.iter().all(|(u, _)| *u != newcomer.id));
    let fanouts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'notification_fanout' AND payload->>'world_id' = $1",
    )
    .bind(&world)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(fanouts, 1);

    // A course created unpublished fans out when first published with PATCH.
    let slug = format!("later-{}", Uuid::new_v4().simple());
    let (s, v) = json(
        app.post("/api/admin/courses")
            .header("Authorization", &admin_auth)
            .json(&json!({"title": "Later", "slug": slug, "order_index": 1,
                          "difficulty": "BEGINNER"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s.is_success(), "{v}");
    let later = v["id"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert!(course_notifications(&app, &later).await.is_empty());
    let (s, v) = json(
        app.patch(&format!("/api/admin/courses/{later}"))
            .header("Authorization", &admin_auth)
            .json(&json!({"is_published": true}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s.is_success(), "{v}");
    let got = eventually(20, || async {
        let rows = course_notifications(&app, &later).await;
        (rows.len() as i64 == users).then_some(rows)
    })
    .await
    .expect("fanned out on the first publication");
    assert!(got.iter().any(|(u, _)| *u == newcomer.id));
    assert!(got.iter().all(|(u, _)| *u != admin.id));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_read_notifications_after_90_days_and_all_after_365() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let now = app.ctx.clock.now();
    let days = |d: i64| now - Duration::days(d);
    // (badge, age in days, read)
    let rows = [
        ("read_89", 89, true),
        ("read_91", 91, true),
        ("unread_91", 91, false),
        ("unread_364", 364, false),
        ("unread_366", 366, false),
        ("read_366", 366, true),
        ("read_today", 0, true),
    ];
    let items: Vec<(New, DateTime<Utc>)> = rows
        .iter()
        .map(|(name, age, _)| (New::badge(user.id, name, name), days(*age)))
        .collect();
    notify_at(&app, &items).await;
    let read: Vec<String> = rows
        .iter()
        .filter(|r| r.2)
        .map(|r| r.0.to_string())
        .collect();
    sqlx::query(
        "UPDATE notifications SET is_read = true WHERE user_id = $1 AND reference_id = ANY($2)",
    )
    .bind(user.id)
    .bind(&read)
    .execute(app.db())
    .await
    .unwrap();
    let left = || async {
        let v: Vec<String> = sqlx::query_scalar(
            "SELECT reference_id FROM notifications WHERE user_id = $1 ORDER BY reference_id",
        )
        .bind(user.id)
        .fetch_all(app.db())
        .await
        .unwrap();
        v
    };

    let deleted = notifications::prune(app.db(), app.ctx.clock.now())
        .await
        .unwrap();
    assert_eq!(deleted, 3);
    assert_eq!(
        left().await,
        ["read_89", "read_today", "unread_364", "unread_91"]
    );
    // Pruning again changes nothing.
    assert_eq!(
        notifications::prune(app.db(), app.ctx.clock.now())
            .await
            .unwrap(),
        0
    );

    // Two days later the worker's daily maintenance takes the next ones.
    app.ctx.clock.advance(Duration::days(2));
    mambo_worker::daily_maintenance(&app.ctx).await.unwrap();
    assert_eq!(left().await, ["read_today", "unread_91"]);
    app.stop().await;
}
