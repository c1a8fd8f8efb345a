//! Media (API.md §3.5, §3.6, §4.14): R2 presigned uploads against a real local
//! S3 server, Mux uploads/checks/deletes against a fake Mux (wiremock) that
//! checks method, path, basic auth and body, and the signed webhook.

use mambo_tests::s3::LocalS3;
use mambo_tests::{StatusCode, TestApp, UserSpec, eventually, json};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{basic_auth, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const MUX_ID: &str = "mux-token-id";
const MUX_SECRET: &str = "mux-token-secret";
const WEBHOOK_SECRET: &str = "mux-webhook-signing-secret";
const FRONTEND: &str = "https://app.mambo.test";

async fn spawn(vars: Vec<(&'static str, String)>) -> TestApp {
    let pairs: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn_with_vars(&pairs).await
}

/// An app whose Mux API and stream host are `mux`.
async fn mux_app(mux: &MockServer) -> TestApp {
    spawn(vec![
        ("MUX_TOKEN_ID", MUX_ID.into()),
        ("MUX_TOKEN_SECRET", MUX_SECRET.into()),
        ("MUX_WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("MUX_BASE_URL", mux.uri()),
        ("MUX_STREAM_BASE_URL", mux.uri()),
        ("FRONTEND_URL", FRONTEND.into()),
    ])
    .await
}

struct Course {
    world: Uuid,
    level: Uuid,
    lesson: Uuid,
}

async fn course(app: &TestApp, slug: &str, is_free: bool) -> Course {
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ($1, $2, 1, 'Beginner', $3, true) RETURNING id",
    )
    .bind(format!("Course {slug}"))
    .bind(slug)
    .bind(is_free)
    .fetch_one(app.db())
    .await
    .unwrap();
    let level: Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'Basic Steps', 0) RETURNING id",
    )
    .bind(world)
    .fetch_one(app.db())
    .await
    .unwrap();
    let lesson: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, order_index, video_url, week_number, day_number)
         VALUES ($1, 'The Basic', 3, 'https://example.com/v.mp4', 1, 2) RETURNING id",
    )
    .bind(level)
    .fetch_one(app.db())
    .await
    .unwrap();
    Course {
        world,
        level,
        lesson,
    }
}

async fn post(
    app: &TestApp,
    user: Uuid,
    post_type: &str,
    asset: Option<&str>,
    playback: Option<&str>,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags, mux_asset_id, mux_playback_id)
         VALUES ($1, $2, 'My shines', 'body', ARRAY['mambo'], $3, $4) RETURNING id",
    )
    .bind(user)
    .bind(post_type)
    .bind(asset)
    .bind(playback)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn reply(
    app: &TestApp,
    post: Uuid,
    user: Uuid,
    asset: Option<&str>,
    playback: Option<&str>,
) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO post_replies (post_id, user_id, content, mux_asset_id, mux_playback_id)
         VALUES ($1, $2, 'nice', $3, $4) RETURNING id",
    )
    .bind(post)
    .bind(user)
    .bind(asset)
    .bind(playback)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn lesson_ids(app: &TestApp, id: Uuid) -> (Option<String>, Option<String>, String) {
    sqlx::query_as("SELECT mux_asset_id, mux_playback_id, video_url FROM lessons WHERE id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn post_ids(app: &TestApp, id: Uuid) -> (Option<String>, Option<String>) {
    sqlx::query_as("SELECT mux_asset_id, mux_playback_id FROM posts WHERE id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn badge_jobs(app: &TestApp, user: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_outbox
         WHERE queue = 'badge_check' AND payload->>'user_id' = $1
           AND payload->>'stat' = 'videos_posted'",
    )
    .bind(user.to_string())
    .fetch_one(app.db())
    .await
    .unwrap()
}

fn asset_json(id: &str, playback: &str, passthrough: Option<Value>) -> Value {
    let mut a = json!({
        "id": id,
        "status": "ready",
        "playback_ids": [{"id": playback, "policy": "public"}],
    });
    if let Some(p) = passthrough {
        a["passthrough"] = Value::String(p.to_string());
    }
    a
}

/// The JSON bodies of the requests the fake received at `p`.
async fn bodies(mux: &MockServer, m: &str, p: &str) -> Vec<Value> {
    mux.received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == m && r.url.path() == p)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or(Value::Null))
        .collect()
}

async fn mount_create_upload(mux: &MockServer, upload_id: &str) {
    Mock::given(method("POST"))
        .and(path("/video/v1/uploads"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "data": {
                "id": upload_id,
                "url": format!("https://storage.googleapis.com/video-storage/{upload_id}"),
                "status": "waiting",
                "timeout": 3600,
                "cors_origin": FRONTEND,
            }
        })))
        .mount(mux)
        .await;
}

// ---------------------------------------------------------------------------
// R2 presigned uploads
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_uploads_to_a_real_s3_server_and_reads_back() {
    let s3 = LocalS3::start("mambo-media").await;
    let app = spawn(s3.vars()).await;
    let student = app.student().await;

    let (status, body) = json(
        app.post("/api/uploads/presigned-url")
            .header("Authorization", student.bearer())
            .json(&json!({"file_type": "image/png", "folder": "avatars"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let upload_url = body["upload_url"].as_str().unwrap().to_string();
    let public_url = body["public_url"].as_str().unwrap().to_string();

    // Path style on the configured endpoint, key `{folder}/{uuid}{ext}`, 1 hour.
    let prefix = format!("{}/mambo-media/avatars/", s3.endpoint);
    assert!(upload_url.starts_with(&prefix), "{upload_url}");
    let u = reqwest::Url::parse(&upload_url).unwrap();
    let key = u.path().trim_start_matches("/mambo-media/").to_string();
    let file = key.trim_start_matches("avatars/");
    assert!(file.ends_with(".png"));
    assert!(
        Uuid::parse_str(file.trim_end_matches(".png")).is_ok(),
        "{key}"
    );
    let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
    assert_eq!(q["X-Amz-Expires"], "3600");
    assert!(q["X-Amz-Credential"].contains("/auto/s3/aws4_request"));
    assert!(
        q["X-Amz-SignedHeaders"]
            .split(';')
            .any(|h| h == "content-type")
    );
    assert_eq!(public_url, format!("{}/mambo-media/{key}", s3.endpoint));

    let http = reqwest::Client::new();
    let png: Vec<u8> = b"\x89PNG\r\n\x1a\nnot really a png but bytes all the same".to_vec();

    // A different Content-Type breaks the signature: refused, nothing stored.
    let r = http
        .put(&upload_url)
        .header("Content-Type", "image/jpeg")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "{}",
        r.text().await.unwrap()
    );
    assert!(!s3.object_path(&key).exists());

    // A tampered signature is refused too.
    let sig = &q["X-Amz-Signature"];
    let flipped = if sig.starts_with('0') { "1" } else { "0" };
    let tampered = upload_url.replace(sig.as_str(), &format!("{flipped}{}", &sig[1..]));
    let r = http
        .put(&tampered)
        .header("Content-Type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The real upload: a plain HTTP PUT with the same Content-Type.
    let r = http
        .put(&upload_url)
        .header("Content-Type", "image/png")
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(std::fs::read(s3.object_path(&key)).unwrap(), png);

    // Read it back through the S3 API (signed GET), with its content type.
    let r2 = app.ctx.config.r2.clone().unwrap();
    let client = mambo_core::uploads::s3_client(&r2);
    let got = client
        .get_object()
        .bucket("mambo-media")
        .key(&key)
        .send()
        .await
        .expect("get object");
    assert_eq!(got.content_type(), Some("image/png"));
    let data = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(data.as_ref(), png.as_slice());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_urls_expire_and_can_pin_the_size() {
    let s3 = LocalS3::start("bucket").await;
    let app = spawn(s3.vars()).await;
    let student = app.student().await;
    let http = reqwest::Client::new();

    // Signed two hours ago: expired after one.
    app.ctx
        .clock
        .set(chrono::Utc::now() - chrono::Duration::hours(2));
    let (_, body) = json(
        app.post("/api/uploads/presigned-url")
            .header("Authorization", student.bearer())
            .json(&json!({"file_type": "image/jpeg", "folder": "thumbnails"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let url = body["upload_url"].as_str().unwrap();
    assert!(
        url.contains("/bucket/thumbnails/") && url.contains(".jpg?"),
        "{url}"
    );
    let r = http
        .put(url)
        .header("Content-Type", "image/jpeg")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    app.ctx.clock.set(chrono::Utc::now());

    // A stated size is signed: another length is refused, the stated one works.
    let (status, body) = json(
        app.post("/api/uploads/presigned-url")
            .header("Authorization", student.bearer())
            .json(&json!({"file_type": "image/webp", "folder": "avatars", "file_size": 16}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["max_size_bytes"], 10 * 1024 * 1024);
    let url = body["upload_url"].as_str().unwrap();
    let r = http
        .put(url)
        .header("Content-Type", "image/webp")
        .body(vec![7u8; 17])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = http
        .put(url)
        .header("Content-Type", "image/webp")
        .body(vec![7u8; 16])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Too big up front: 422.
    let (status, body) = json(
        app.post("/api/uploads/presigned-url")
            .header("Authorization", student.bearer())
            .json(&json!({"file_type": "image/png", "folder": "avatars", "file_size": 50_000_000}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_url_rules_and_public_domain() {
    let s3 = LocalS3::start("b").await;
    let mut vars = s3.vars();
    vars.push(("R2_PUBLIC_DOMAIN", "https://pub-abc.r2.dev".into()));
    let app = spawn(vars).await;
    let student = app.student().await;
    let call = |body: Value, auth: Option<String>| {
        let mut rb = app.post("/api/uploads/presigned-url").json(&body);
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        async move { json(rb.send().await.unwrap()).await }
    };

    let (status, body) = call(
        json!({"file_type": "image/gif", "folder": "avatars"}),
        Some(student.bearer()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let public = body["public_url"].as_str().unwrap();
    assert!(
        public.starts_with("https://pub-abc.r2.dev/avatars/") && public.ends_with(".gif"),
        "{public}"
    );

    let (status, _) = call(json!({"file_type": "image/png", "folder": "avatars"}), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = call(
        json!({"file_type": "image/png", "folder": "videos"}),
        Some(student.bearer()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"], "Folder must be 'avatars' or 'thumbnails'");

    let (status, body) = call(
        json!({"file_type": "video/mp4", "folder": "avatars"}),
        Some(student.bearer()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["detail"],
        "File type must be an image (e.g., image/png, image/jpeg)"
    );

    let (status, body) = call(json!({"folder": "avatars"}), Some(student.bearer())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["detail"][0]["loc"][0], "body", "{body}");

    // No R2 configured: 503 with a clear detail.
    let bare = TestApp::spawn_api_only().await;
    let s = bare.student().await;
    let (status, body) = json(
        bare.post("/api/uploads/presigned-url")
            .header("Authorization", s.bearer())
            .json(&json!({"file_type": "image/png", "folder": "avatars"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["detail"], "R2 is not configured");
}

// ---------------------------------------------------------------------------
// Mux uploads
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lesson_upload_url_sends_metadata_and_both_formats() {
    let mux = MockServer::start().await;
    mount_create_upload(&mux, "up-lesson").await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let c = course(&app, "mambo-101", false).await;

    // JSON body: the API client's format.
    let (status, body) = json(
        app.post("/api/mux/upload-url")
            .header("Authorization", admin.bearer())
            .json(&json!({"lesson_id": c.lesson.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"upload_id": "up-lesson", "upload_url": "https://storage.googleapis.com/video-storage/up-lesson", "status": "success"})
    );
    let sent = bodies(&mux, "POST", "/video/v1/uploads").await;
    assert_eq!(sent.len(), 1);
    let b = &sent[0];
    assert_eq!(b["cors_origin"], FRONTEND);
    let s = &b["new_asset_settings"];
    assert_eq!(s["playback_policies"], json!(["public"]));
    assert_eq!(s["test"], json!(false));
    assert_eq!(s["mp4_support"], "capped-1080p");
    assert!(s.get("max_resolution_tier").is_none());
    assert_eq!(
        s["meta"],
        json!({"external_id": "lesson-mambo-101-w1-d2-l3", "title": "Course mambo-101 - The Basic", "creator_id": "lesson"})
    );
    let pt: Value = serde_json::from_str(s["passthrough"].as_str().unwrap()).unwrap();
    assert_eq!(
        pt,
        json!({"lesson_id": c.lesson.to_string(), "type": "lesson", "course_slug": "mambo-101", "week": 1, "day": 2, "lesson_order": 3})
    );

    // MuxUploader: query values, `?token=`, `{url, uploadId}`.
    let (status, body) = json(
        app.post(&format!(
            "/api/mux/upload-url?lesson_id={}&token={}",
            c.lesson, admin.token
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"url": "https://storage.googleapis.com/video-storage/up-lesson", "uploadId": "up-lesson"})
    );

    // Course and level previews.
    let (status, _) = json(
        app.post("/api/mux/upload-url")
            .header("Authorization", admin.bearer())
            .json(&json!({"course_id": c.world.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = json(
        app.post("/api/mux/upload-url")
            .header("Authorization", admin.bearer())
            .json(&json!({"level_id": c.level.to_string(), "filename": "x.mp4"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let sent = bodies(&mux, "POST", "/video/v1/uploads").await;
    assert_eq!(sent.len(), 4);
    assert_eq!(
        sent[2]["new_asset_settings"]["meta"]["external_id"],
        "course-preview-mambo-101"
    );
    assert_eq!(
        sent[2]["new_asset_settings"]["meta"]["title"],
        "Course mambo-101 - Preview"
    );
    let pt: Value = serde_json::from_str(
        sent[2]["new_asset_settings"]["passthrough"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        pt,
        json!({"course_id": c.world.to_string(), "type": "course-preview", "course_slug": "mambo-101"})
    );
    assert_eq!(
        sent[3]["new_asset_settings"]["meta"]["external_id"],
        "level-preview-mambo-101-basic-steps"
    );
    assert_eq!(
        sent[3]["new_asset_settings"]["meta"]["creator_id"],
        "level-preview"
    );
    let pt: Value = serde_json::from_str(
        sent[3]["new_asset_settings"]["passthrough"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pt["type"], "level-preview");
    assert_eq!(pt["level_id"], c.level.to_string());
    assert_eq!(pt["course_id"], c.world.to_string());

    // Recorded for reconciliation.
    let n: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM mux_uploads WHERE upload_id = 'up-lesson'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(n, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_url_authorization() {
    let mux = MockServer::start().await;
    mount_create_upload(&mux, "up-x").await;
    let app = mux_app(&mux).await;
    let student = app.student().await;
    let other = app.student().await;
    let c = course(&app, "c1", false).await;
    let p = post(&app, student.id, "stage", None, None).await;

    let send = |body: Value, auth: Option<String>| {
        let mut rb = app.post("/api/mux/upload-url").json(&body);
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        async move { json(rb.send().await.unwrap()).await }
    };
    let (s, b) = send(
        json!({"lesson_id": c.lesson.to_string()}),
        Some(student.bearer()),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        b["detail"],
        "Admin access required for lesson/course video uploads"
    );
    let (s, _) = send(json!({"course_id": c.world.to_string()}), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A student's token in `?token=` is no admin either.
    let (s, _) = json(
        app.post(&format!(
            "/api/mux/upload-url?lesson_id={}&token={}",
            c.lesson, student.token
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = send(json!({"post_id": p.to_string()}), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(
        b["detail"],
        "Authentication required for community post uploads"
    );
    let (s, b) = send(json!({}), Some(student.bearer())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["detail"], "Admin access required");
    let (s, _) = send(json!({"post_id": p.to_string()}), Some(other.bearer())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = send(
        json!({"post_id": Uuid::new_v4().to_string()}),
        Some(student.bearer()),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["detail"], "Post not found");
    let (s, b) = send(json!({"post_id": 5}), Some(student.bearer())).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    // None of these reached Mux.
    assert!(bodies(&mux, "POST", "/video/v1/uploads").await.is_empty());

    // The owner: a community upload capped at 1080p, query post_id wins over the body.
    let (s, b) = json(
        app.post(&format!("/api/mux/upload-url?post_id={p}"))
            .header("Authorization", student.bearer())
            .json(&json!({"post_id": Uuid::new_v4().to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["status"], "success");
    let sent = bodies(&mux, "POST", "/video/v1/uploads").await;
    let st = &sent[0]["new_asset_settings"];
    assert_eq!(st["max_resolution_tier"], "1080p");
    assert!(st.get("mp4_support").is_none());
    assert_eq!(sent[0]["cors_origin"], FRONTEND);
    let short: String = p.to_string().chars().take(8).collect();
    assert_eq!(
        st["meta"],
        json!({"external_id": format!("community-post-{short}"), "title": "My shines", "creator_id": "community-stage"})
    );
    let pt: Value = serde_json::from_str(st["passthrough"].as_str().unwrap()).unwrap();
    assert_eq!(
        pt,
        json!({"post_id": p.to_string(), "type": "community-post", "post_type": "stage"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_upload_respects_the_slot_limit() {
    let mux = MockServer::start().await;
    mount_create_upload(&mux, "up-slot").await;
    let app = mux_app(&mux).await;
    let student = app.student().await;
    for i in 0..4 {
        post(
            &app,
            student.id,
            "stage",
            Some(&format!("a{i}")),
            Some(&format!("p{i}")),
        )
        .await;
    }
    let other_post = post(&app, student.id, "lab", None, None).await;
    // An accepted reply video is free; a normal one takes a slot.
    let rp = reply(&app, other_post, student.id, Some("ra"), Some("rp")).await;
    let fresh = post(&app, student.id, "stage", None, None).await;
    let url = format!("/api/mux/upload-url?post_id={fresh}");
    let (s, b) = json(
        app.post(&url)
            .header("Authorization", student.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(
        b["detail"]["message"],
        "You've reached your 5 video limit. Delete an old video to post a new one."
    );
    assert!(bodies(&mux, "POST", "/video/v1/uploads").await.is_empty());

    sqlx::query("UPDATE post_replies SET is_accepted_answer = true WHERE id = $1")
        .bind(rp)
        .execute(app.db())
        .await
        .unwrap();
    let (s, b) = json(
        app.post(&url)
            .header("Authorization", student.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // Pro users get 20.
    let pro = app.pro_student().await;
    for i in 0..5 {
        post(
            &app,
            pro.id,
            "stage",
            Some(&format!("pa{i}")),
            Some(&format!("pp{i}")),
        )
        .await;
    }
    let p = post(&app, pro.id, "stage", None, None).await;
    let (s, _) = json(
        app.post(&format!("/api/mux/upload-url?post_id={p}"))
            .header("Authorization", pro.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_errors_and_missing_configuration() {
    let mux = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/video/v1/uploads"))
        .respond_with(ResponseTemplate::new(502).set_body_string("bad gateway"))
        .mount(&mux)
        .await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let (s, b) = json(
        app.post("/api/mux/upload-url")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(b["detail"], "Failed to create video upload URL");

    // Mux hanging: the call times out instead of hanging the request forever.
    // (Covered by the client timeout; see mambo_core::mux::MUX_TIMEOUT.)

    let bare = TestApp::spawn_api_only().await;
    let admin = bare.admin().await;
    for (m, p) in [
        ("POST", "/api/mux/upload-url".to_string()),
        ("GET", "/api/mux/upload-status/u1".to_string()),
        ("GET", "/api/mux/asset/a1/exists".to_string()),
        ("DELETE", "/api/mux/asset/a1".to_string()),
    ] {
        let rb = match m {
            "POST" => bare.post(&p),
            "GET" => bare.get(&p),
            _ => bare.delete(&p),
        };
        let (s, b) = json(
            rb.header("Authorization", admin.bearer())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{m} {p}: {b}");
        // §3.6 fixes the upload-url message.
        let expected = if p == "/api/mux/upload-url" {
            "Video service not configured"
        } else {
            "Mux is not configured"
        };
        assert_eq!(b["detail"], expected, "{m} {p}");
    }
}

// ---------------------------------------------------------------------------
// Upload status and check-upload-status
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_status_reports_ready_once_there_is_a_playback_id() {
    let mux = MockServer::start().await;
    mount_create_upload(&mux, "up-1").await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let c = course(&app, "status", false).await;
    let (s, _) = json(
        app.post("/api/mux/upload-url")
            .header("Authorization", admin.bearer())
            .json(&json!({"lesson_id": c.lesson.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    let waiting = Mock::given(method("GET"))
        .and(path("/video/v1/uploads/up-1"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": {"id": "up-1", "status": "waiting"}})),
        )
        .mount_as_scoped(&mux)
        .await;
    let (s, b) = json(
        app.get("/api/mux/upload-status/up-1")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!({"status": "waiting", "asset_id": null, "playback_id": null})
    );
    drop(waiting);

    Mock::given(method("GET"))
        .and(path("/video/v1/uploads/up-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"id": "up-1", "status": "asset_created", "asset_id": "asset-1"}}),
        ))
        .mount(&mux)
        .await;
    let preparing = Mock::given(method("GET"))
        .and(path("/video/v1/assets/asset-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": {
            "id": "asset-1", "status": "preparing", "playback_ids": [{"id": "play-1", "policy": "public"}]
        }})))
        .mount_as_scoped(&mux)
        .await;
    let (_, b) = json(
        app.get("/api/mux/upload-status/up-1")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(b["status"], "asset_created");
    drop(preparing);

    Mock::given(method("GET"))
        .and(path("/video/v1/assets/asset-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": asset_json("asset-1", "play-1", None)})),
        )
        .mount(&mux)
        .await;
    let (_, b) = json(
        app.get("/api/mux/upload-status/up-1")
            .header("Authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        b,
        json!({"status": "ready", "asset_id": "asset-1", "playback_id": "play-1"})
    );
    // The recorded upload attached the video to its lesson.
    let (a, p, _) = lesson_ids(&app, c.lesson).await;
    assert_eq!(
        (a.as_deref(), p.as_deref()),
        (Some("asset-1"), Some("play-1"))
    );

    // Another user may not poll someone else's upload; anonymous callers get 401.
    let student = app.student().await;
    let (s, _) = json(
        app.get("/api/mux/upload-status/up-1")
            .header("Authorization", student.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = json(app.get("/api/mux/upload-status/up-1").send().await.unwrap()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_upload_status_finds_and_stores_videos() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let student = app.student().await;
    let other = app.student().await;
    let c = course(&app, "check", false).await;
    let stage = post(&app, student.id, "stage", None, None).await;

    Mock::given(method("GET"))
        .and(path("/video/v1/assets"))
        .and(query_param("limit", "50"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            // A level preview names its course too: it must not match the course.
            asset_json("a-level", "p-level", Some(json!({"level_id": c.level.to_string(), "type": "level-preview", "course_id": c.world.to_string()}))),
            {"id": "a-nopb", "status": "preparing", "passthrough": json!({"lesson_id": c.lesson.to_string()}).to_string()},
            asset_json("a-lesson", "p-lesson", Some(json!({"lesson_id": c.lesson.to_string(), "type": "lesson"}))),
            asset_json("a-post", "p-post", Some(json!({"post_id": stage.to_string(), "type": "community-post"}))),
            {"id": "a-junk", "passthrough": "not json"},
        ]})))
        .mount(&mux)
        .await;

    let check = |q: String, auth: Option<String>| {
        let mut rb = app.post(&format!("/api/mux/check-upload-status{q}"));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        async move { json(rb.send().await.unwrap()).await }
    };

    // Real 4xx codes (D6).
    let (s, b) = check(String::new(), Some(admin.bearer())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["detail"],
        "Either lesson_id, course_id, level_id, or post_id must be provided"
    );
    let (s, b) = check(format!("?lesson_id={}", c.lesson), Some(student.bearer())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(b["detail"], "Admin access required");
    let (s, b) = check(format!("?post_id={stage}"), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["detail"], "Authentication required");
    let (s, b) = check(format!("?post_id={stage}"), Some(other.bearer())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(b["detail"], "You can only check your own posts");
    let (s, b) = check(
        format!("?lesson_id={}", Uuid::new_v4()),
        Some(admin.bearer()),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["detail"], "Lesson not found");
    let (s, b) = check("?course_id=not-a-uuid".into(), Some(admin.bearer())).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["detail"], "Course not found");
    let (s, b) = check(
        format!("?post_id={}", Uuid::new_v4()),
        Some(student.bearer()),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["detail"], "Post not found");

    // Course: no matching asset (the level preview is not the course's).
    let (s, b) = check(format!("?course_id={}", c.world), Some(admin.bearer())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!({"status": "processing", "message": "Preview video is still processing or not found"})
    );

    // Level: found and stored.
    let (_, b) = check(format!("?level_id={}", c.level), Some(admin.bearer())).await;
    assert_eq!(
        b,
        json!({"status": "ready", "playback_id": "p-level", "asset_id": "a-level", "message": "Preview video found and level updated"})
    );
    let (_, b) = check(format!("?level_id={}", c.level), Some(admin.bearer())).await;
    assert_eq!(b["message"], "Preview video is already ready");
    assert_eq!(b["asset_id"], "a-level");

    // Lesson: the first asset with a playback id wins.
    let (_, b) = check(format!("?lesson_id={}", c.lesson), Some(admin.bearer())).await;
    assert_eq!(b["message"], "Video found and lesson updated");
    assert_eq!(b["asset_id"], "a-lesson");
    let (a, p, _) = lesson_ids(&app, c.lesson).await;
    assert_eq!(
        (a.as_deref(), p.as_deref()),
        (Some("a-lesson"), Some("p-lesson"))
    );
    let (_, b) = check(format!("?lesson_id={}", c.lesson), Some(admin.bearer())).await;
    assert_eq!(
        b,
        json!({"status": "ready", "playback_id": "p-lesson", "asset_id": "a-lesson", "message": "Video is already ready"})
    );

    // Post: stored, and the Stage post queues the videos_posted badge check (D8).
    assert_eq!(badge_jobs(&app, student.id).await, 0);
    let (_, b) = check(format!("?post_id={stage}"), Some(student.bearer())).await;
    assert_eq!(b["message"], "Video found and post updated");
    assert_eq!(
        post_ids(&app, stage).await,
        (Some("a-post".into()), Some("p-post".into()))
    );
    assert_eq!(badge_jobs(&app, student.id).await, 1);
    let (_, b) = check(format!("?post_id={stage}"), Some(student.bearer())).await;
    assert_eq!(b["message"], "Video is already ready");
    assert_eq!(badge_jobs(&app, student.id).await, 1);

    // A course whose preview is set: the stored asset id is returned (D36).
    sqlx::query("UPDATE worlds SET mux_preview_playback_id = 'wp', mux_preview_asset_id = 'wa' WHERE id = $1")
        .bind(c.world)
        .execute(app.db())
        .await
        .unwrap();
    let (_, b) = check(format!("?course_id={}", c.world), Some(admin.bearer())).await;
    assert_eq!(
        b,
        json!({"status": "ready", "playback_id": "wp", "asset_id": "wa", "message": "Preview video is already ready"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_upload_status_reports_mux_failures_as_status_error() {
    let mux = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/video/v1/assets"))
        .respond_with(ResponseTemplate::new(500).set_body_string("boom"))
        .mount(&mux)
        .await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let c = course(&app, "err", false).await;
    let (s, b) = json(
        app.post(&format!(
            "/api/mux/check-upload-status?lesson_id={}",
            c.lesson
        ))
        .header("Authorization", admin.bearer())
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["status"], "error");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("Error checking status: "),
        "{b}"
    );
    assert!(!b["message"].as_str().unwrap().contains(MUX_SECRET));
}

// ---------------------------------------------------------------------------
// Webhook
// ---------------------------------------------------------------------------

async fn deliver(
    app: &TestApp,
    route: &str,
    event: &Value,
    t: i64,
    secret: &str,
) -> (StatusCode, Value) {
    let body = serde_json::to_vec(event).unwrap();
    let sig = mambo_core::mux::sign(secret, t, &body);
    json(
        app.post(route)
            .header("Content-Type", "application/json")
            .header("Mux-Signature", sig)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn ready_event(id: &str, asset: &str, playback: &str, passthrough: Value) -> Value {
    json!({
        "id": id,
        "type": "video.asset.ready",
        "created_at": "2026-11-27T10:00:00.000000Z",
        "data": asset_json(asset, playback, Some(passthrough)),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signatures_are_checked() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let c = course(&app, "wh", false).await;
    let now = app.ctx.clock.now().timestamp();
    let event = ready_event(
        "evt-sig",
        "a1",
        "p1",
        json!({"lesson_id": c.lesson.to_string(), "type": "lesson"}),
    );
    let body = serde_json::to_vec(&event).unwrap();

    let post_raw = |sig: Option<String>, body: Vec<u8>| {
        let mut rb = app
            .post("/api/mux/webhook")
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(s) = sig {
            rb = rb.header("Mux-Signature", s);
        }
        async move { json(rb.send().await.unwrap()).await }
    };

    let (s, b) = post_raw(None, body.clone()).await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Missing webhook signature"))
    );
    let (s, b) = post_raw(Some(format!("t={now}")), body.clone()).await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("Invalid webhook signature format")
        )
    );
    let wrong = mambo_core::mux::sign("not-the-secret", now, &body);
    let (s, b) = post_raw(Some(wrong), body.clone()).await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Invalid webhook signature"))
    );
    // A signature over another body.
    let other = mambo_core::mux::sign(WEBHOOK_SECRET, now, b"{}");
    let (s, _) = post_raw(Some(other), body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Base64 (what the reference compared against) is not accepted.
    let (s, _) = post_raw(Some(format!("t={now},v1=c2lnbmF0dXJl")), body.clone()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Stale: more than 300 s old (or ahead).
    let (s, _) = deliver(&app, "/api/mux/webhook", &event, now - 301, WEBHOOK_SECRET).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = deliver(&app, "/api/mux/webhook", &event, now + 310, WEBHOOK_SECRET).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Nothing changed, and the rejected event id was not consumed.
    assert_eq!(lesson_ids(&app, c.lesson).await.0, None);

    // Valid (within the window, with a second stale v1 value alongside).
    let good = mambo_core::mux::sign(WEBHOOK_SECRET, now - 200, &body);
    let sig = format!("{good},v1={}", "ab".repeat(32));
    let (s, b) = post_raw(Some(sig), body.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!({"status": "ok"}));
    let (a, p, _) = lesson_ids(&app, c.lesson).await;
    assert_eq!((a.as_deref(), p.as_deref()), (Some("a1"), Some("p1")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_routes_by_passthrough_and_is_idempotent() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let student = app.student().await;
    let c = course(&app, "route", false).await;
    let stage = post(&app, student.id, "stage", None, None).await;
    let lab = post(&app, student.id, "lab", None, None).await;
    let rp = reply(&app, lab, student.id, None, None).await;
    let now = app.ctx.clock.now().timestamp();

    for (route, event) in [
        (
            "/api/mux/webhook",
            ready_event(
                "e-lesson",
                "al",
                "pl",
                json!({"lesson_id": c.lesson.to_string(), "type": "lesson"}),
            ),
        ),
        (
            "/api/webhook",
            ready_event(
                "e-course",
                "ac",
                "pc",
                json!({"course_id": c.world.to_string(), "type": "course-preview", "course_slug": "route"}),
            ),
        ),
        (
            "/api/webhooks",
            ready_event(
                "e-level",
                "av",
                "pv",
                json!({"level_id": c.level.to_string(), "type": "level-preview", "course_id": c.world.to_string()}),
            ),
        ),
        (
            "/api/mux/webhook",
            ready_event(
                "e-post",
                "ap",
                "pp",
                json!({"post_id": stage.to_string(), "type": "community-post"}),
            ),
        ),
        (
            "/api/mux/webhook",
            ready_event("e-lab", "ab", "pb", json!({"post_id": lab.to_string()})),
        ),
        (
            "/api/mux/webhook",
            ready_event(
                "e-reply",
                "ar",
                "pr",
                json!({"reply_id": rp.to_string(), "type": "community-reply"}),
            ),
        ),
    ] {
        let (s, b) = deliver(&app, route, &event, now, WEBHOOK_SECRET).await;
        assert_eq!(
            (s, b.clone()),
            (StatusCode::OK, json!({"status": "ok"})),
            "{route}"
        );
    }
    let world: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT mux_preview_asset_id, mux_preview_playback_id FROM worlds WHERE id = $1",
    )
    .bind(c.world)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(world, (Some("ac".into()), Some("pc".into())));
    let level: (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT mux_preview_asset_id, mux_preview_playback_id FROM levels WHERE id = $1",
    )
    .bind(c.level)
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(level, (Some("av".into()), Some("pv".into())));
    assert_eq!(lesson_ids(&app, c.lesson).await.0.as_deref(), Some("al"));
    assert_eq!(
        post_ids(&app, stage).await,
        (Some("ap".into()), Some("pp".into()))
    );
    assert_eq!(
        post_ids(&app, lab).await,
        (Some("ab".into()), Some("pb".into()))
    );
    let r: (Option<String>, Option<String>) =
        sqlx::query_as("SELECT mux_asset_id, mux_playback_id FROM post_replies WHERE id = $1")
            .bind(rp)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(r, (Some("ar".into()), Some("pr".into())));
    // Only the Stage post queues the videos_posted check.
    assert_eq!(badge_jobs(&app, student.id).await, 1);

    // Redelivery: nothing changes, no second badge job.
    let stage_event = ready_event(
        "e-post",
        "ap",
        "pp",
        json!({"post_id": stage.to_string(), "type": "community-post"}),
    );
    let (s, b) = deliver(&app, "/api/mux/webhook", &stage_event, now, WEBHOOK_SECRET).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": "ok"})));
    assert_eq!(badge_jobs(&app, student.id).await, 1);

    // Deleted clears every reference; replaying the old ready event afterwards
    // does not bring it back.
    sqlx::query("UPDATE posts SET mux_asset_id = 'al', mux_playback_id = 'pl' WHERE id = $1")
        .bind(lab)
        .execute(app.db())
        .await
        .unwrap();
    let deleted = json!({"id": "e-del", "type": "video.asset.deleted", "data": {"id": "al"}});
    let (s, _) = deliver(&app, "/api/mux/webhook", &deleted, now, WEBHOOK_SECRET).await;
    assert_eq!(s, StatusCode::OK);
    let (a, p, url) = lesson_ids(&app, c.lesson).await;
    assert_eq!((a, p, url.as_str()), (None, None, ""));
    assert_eq!(post_ids(&app, lab).await, (None, None));
    let replay = ready_event(
        "e-lesson",
        "al",
        "pl",
        json!({"lesson_id": c.lesson.to_string(), "type": "lesson"}),
    );
    let (s, _) = deliver(&app, "/api/mux/webhook", &replay, now, WEBHOOK_SECRET).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(lesson_ids(&app, c.lesson).await.0, None);
    let (s, _) = deliver(&app, "/api/mux/webhook", &deleted, now, WEBHOOK_SECRET).await;
    assert_eq!(s, StatusCode::OK);

    // The same new event delivered concurrently: processed once.
    let fresh = ready_event(
        "e-conc",
        "ax",
        "px",
        json!({"post_id": stage.to_string(), "type": "community-post"}),
    );
    let results = futures::future::join_all(
        (0..6).map(|_| deliver(&app, "/api/mux/webhook", &fresh, now, WEBHOOK_SECRET)),
    )
    .await;
    assert!(results.iter().all(|(s, _)| *s == StatusCode::OK));
    assert_eq!(
        post_ids(&app, stage).await,
        (Some("ax".into()), Some("px".into()))
    );
    assert_eq!(badge_jobs(&app, student.id).await, 2);
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM processed_webhook_events WHERE provider = 'mux'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(stored, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deleted_clears_everything_and_odd_events_are_harmless() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let student = app.student().await;
    let c = course(&app, "del", false).await;
    sqlx::query("UPDATE lessons SET mux_asset_id = 'X', mux_playback_id = 'px' WHERE id = $1")
        .bind(c.lesson)
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query("UPDATE worlds SET mux_preview_asset_id = 'X', mux_preview_playback_id = 'px' WHERE id = $1")
        .bind(c.world)
        .execute(app.db())
        .await
        .unwrap();
    sqlx::query("UPDATE levels SET mux_preview_asset_id = 'X', mux_preview_playback_id = 'px' WHERE id = $1")
        .bind(c.level)
        .execute(app.db())
        .await
        .unwrap();
    let p = post(&app, student.id, "stage", Some("X"), Some("px")).await;
    let keep = post(&app, student.id, "stage", Some("Y"), Some("py")).await;
    let r = reply(&app, p, student.id, Some("X"), Some("px")).await;
    let now = app.ctx.clock.now().timestamp();

    // Events without ids, for missing entities, unknown types, errors: all 200.
    for event in [
        json!({"type": "video.asset.created", "data": {"id": "X"}}),
        json!({"id": "e1", "type": "video.asset.errored", "data": {"id": "X", "errors": {"type": "invalid_input"}}}),
        ready_event(
            "e2",
            "Z",
            "pz",
            json!({"lesson_id": Uuid::new_v4().to_string()}),
        ),
        ready_event("e3", "Z", "pz", json!({"nothing": "here"})),
        json!({"id": "e4", "type": "video.asset.ready", "data": {"id": "Z", "playback_ids": []}}),
        json!({"id": "e5", "type": "video.upload.cancelled", "data": {"id": "nope"}}),
    ] {
        let (s, b) = deliver(&app, "/api/mux/webhook", &event, now, WEBHOOK_SECRET).await;
        assert_eq!((s, b), (StatusCode::OK, json!({"status": "ok"})));
    }
    // Not JSON at all (but signed): 200 with an error status, like the reference.
    let body = b"not json".to_vec();
    let sig = mambo_core::mux::sign(WEBHOOK_SECRET, now, &body);
    let (s, b) = json(
        app.post("/api/mux/webhook")
            .header("Mux-Signature", sig)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, b),
        (
            StatusCode::OK,
            json!({"status": "error", "message": "Internal error"})
        )
    );

    let deleted = json!({"id": "e-del-all", "type": "video.asset.deleted", "data": {"id": "X"}});
    let (s, _) = deliver(&app, "/api/mux/webhook", &deleted, now, WEBHOOK_SECRET).await;
    assert_eq!(s, StatusCode::OK);
    let (a, pb, url) = lesson_ids(&app, c.lesson).await;
    assert_eq!((a, pb, url.as_str()), (None, None, ""));
    let n: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM worlds WHERE mux_preview_asset_id = 'X')
              + (SELECT COUNT(*) FROM levels WHERE mux_preview_asset_id = 'X')
              + (SELECT COUNT(*) FROM posts WHERE mux_asset_id = 'X')
              + (SELECT COUNT(*) FROM post_replies WHERE mux_asset_id = 'X')",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(n, 0);
    assert_eq!(post_ids(&app, keep).await.0.as_deref(), Some("Y"));
    let _ = r;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_without_a_secret_outside_development_is_refused() {
    let app = spawn(vec![
        ("MUX_TOKEN_ID", MUX_ID.into()),
        ("MUX_TOKEN_SECRET", MUX_SECRET.into()),
    ])
    .await;
    let (s, b) = json(
        app.post("/api/mux/webhook")
            .json(&json!({"type": "video.asset.ready", "data": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(b["detail"], "Webhook not properly configured");
}

// ---------------------------------------------------------------------------
// Asset deletion and existence
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_assets_needs_an_owner_or_an_admin() {
    let mux = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/video/v1/assets/own-asset"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mux)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/video/v1/assets/lesson-asset"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(
            ResponseTemplate::new(404).set_body_json(json!({"error": {"type": "not_found"}})),
        )
        .mount(&mux)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/video/v1/assets/broken"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&mux)
        .await;
    let app = mux_app(&mux).await;
    let owner = app.student().await;
    let stranger = app.student().await;
    let admin = app.admin().await;
    let c = course(&app, "delete", false).await;
    sqlx::query(
        "UPDATE lessons SET mux_asset_id = 'lesson-asset', mux_playback_id = 'lp' WHERE id = $1",
    )
    .bind(c.lesson)
    .execute(app.db())
    .await
    .unwrap();
    sqlx::query("UPDATE worlds SET mux_preview_asset_id = 'lesson-asset', mux_preview_playback_id = 'lp' WHERE id = $1")
        .bind(c.world)
        .execute(app.db())
        .await
        .unwrap();
    let p = post(&app, owner.id, "stage", Some("own-asset"), Some("op")).await;
    let r = reply(&app, p, owner.id, Some("own-asset"), Some("op")).await;
    let q = post(&app, admin.id, "stage", Some("broken"), Some("bp")).await;

    let del = |asset: &str, auth: Option<String>| {
        let mut rb = app.delete(&format!("/api/mux/asset/{asset}"));
        if let Some(a) = auth {
            rb = rb.header("Authorization", a);
        }
        async move { json(rb.send().await.unwrap()).await }
    };

    // Anonymous callers can delete nothing (D5).
    let (s, _) = del("own-asset", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = del("own-asset", Some(stranger.bearer())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        b["detail"],
        "You can only delete videos from your own posts"
    );
    let (s, b) = del("lesson-asset", Some(owner.bearer())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(
        b["detail"],
        "Admin access required to delete lesson/course videos"
    );
    assert!(mux.received_requests().await.unwrap().is_empty());
    assert_eq!(post_ids(&app, p).await.0.as_deref(), Some("own-asset"));

    // The owner: deleted at Mux, cleared from the post and the reply.
    let (s, b) = del("own-asset", Some(owner.bearer())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"status": "success", "message": "Asset own-asset deleted from Mux and cleared from 1 post(s), 1 reply(ies)"})
    );
    assert_eq!(post_ids(&app, p).await, (None, None));
    let rr: Option<String> =
        sqlx::query_scalar("SELECT mux_asset_id FROM post_replies WHERE id = $1")
            .bind(r)
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(rr, None);

    // An admin deletes a lesson video that Mux no longer has: still cleared.
    let (s, b) = del("lesson-asset", Some(admin.bearer())).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["message"],
        "Asset lesson-asset cleared from 1 lesson(s), 1 course preview(s)"
    );
    let (a, pb, url) = lesson_ids(&app, c.lesson).await;
    assert_eq!((a, pb, url.as_str()), (None, None, ""));

    // Mux failing: the contract's error and nothing cleared.
    let (s, b) = del("broken", Some(admin.bearer())).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(b["detail"], "Error deleting video asset");
    assert_eq!(post_ids(&app, q).await.0.as_deref(), Some("broken"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_exists_is_admin_only() {
    let mux = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/video/v1/assets/there"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": asset_json("there", "p", None)})),
        )
        .mount(&mux)
        .await;
    Mock::given(method("GET"))
        .and(path("/video/v1/assets/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&mux)
        .await;
    Mock::given(method("GET"))
        .and(path("/video/v1/assets/err"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&mux)
        .await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    let student = app.student().await;
    let get = |id: &str, who: &mambo_tests::TestUser| {
        let rb = app
            .get(&format!("/api/mux/asset/{id}/exists"))
            .header("Authorization", who.bearer());
        async move { json(rb.send().await.unwrap()).await }
    };
    assert_eq!(
        get("there", &admin).await,
        (StatusCode::OK, json!({"exists": true, "asset_id": "there"}))
    );
    assert_eq!(
        get("gone", &admin).await,
        (StatusCode::OK, json!({"exists": false, "asset_id": "gone"}))
    );
    let (s, b) = get("err", &admin).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .starts_with("Error checking asset: ")
    );
    let (s, b) = get("there", &student).await;
    assert_eq!(
        (s, b["detail"].as_str()),
        (StatusCode::FORBIDDEN, Some("Not enough permissions"))
    );
}

// ---------------------------------------------------------------------------
// Downloads
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_url_only_for_callers_who_may_watch() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let student = app.student().await;
    let pro = app.pro_student().await;
    let admin = app.admin().await;
    let paid = course(&app, "paid", false).await;
    let free = course(&app, "free", true).await;
    for (lesson, pid) in [(paid.lesson, "paid-pb"), (free.lesson, "free-pb")] {
        sqlx::query("UPDATE lessons SET mux_playback_id = $2, mux_asset_id = 'x' WHERE id = $1")
            .bind(lesson)
            .bind(pid)
            .execute(app.db())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE worlds SET mux_preview_playback_id = 'preview-pb' WHERE id = $1")
        .bind(paid.world)
        .execute(app.db())
        .await
        .unwrap();
    let other = app.student().await;
    post(&app, other.id, "stage", Some("pa"), Some("post-pb")).await;

    let get = |pb: &str, q: &str, who: Option<&mambo_tests::TestUser>| {
        let mut rb = app.get(&format!("/api/mux/download-url/{pb}{q}"));
        if let Some(u) = who {
            rb = rb.header("Authorization", u.bearer());
        }
        async move { json(rb.send().await.unwrap()).await }
    };
    let stream = mux.uri();
    let (s, b) = get("post-pb", "", Some(&student)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b,
        json!({"download_url": format!("{stream}/post-pb/high.mp4"), "resolution": "high"})
    );
    let (s, b) = get("free-pb", "?resolution=medium", Some(&student)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["download_url"], format!("{stream}/free-pb/medium.mp4"));
    assert_eq!(
        get("preview-pb", "", Some(&student)).await.0,
        StatusCode::OK
    );
    let (s, b) = get("paid-pb", "", Some(&student)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(b["detail"], "You do not have access to this video");
    assert_eq!(get("paid-pb", "", Some(&pro)).await.0, StatusCode::OK);
    assert_eq!(get("paid-pb", "", Some(&admin)).await.0, StatusCode::OK);
    assert_eq!(
        get("unknown-pb", "", Some(&student)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(get("post-pb", "", None).await.0, StatusCode::UNAUTHORIZED);
    let (s, b) = get("post-pb", "?resolution=low", Some(&student)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["detail"], "Resolution must be 'high' or 'medium'");

    // A canceled pro subscription loses paid lesson downloads.
    let lapsed = app
        .create_user(UserSpec {
            subscription: Some(("canceled", "performer")),
            ..Default::default()
        })
        .await;
    assert_eq!(
        get("paid-pb", "", Some(&lapsed)).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_available_probes_the_mp4() {
    let stream = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/ok/high.mp4"))
        .and(header("range", "bytes=0-0"))
        .respond_with(
            ResponseTemplate::new(206)
                .insert_header("content-type", "video/mp4")
                .set_body_bytes(vec![0u8]),
        )
        .mount(&stream)
        .await;
    Mock::given(method("GET"))
        .and(path("/bin/low.mp4"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "application/octet-stream")
                .set_body_bytes(vec![0u8]),
        )
        .mount(&stream)
        .await;
    Mock::given(method("GET"))
        .and(path("/redirect/high.mp4"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("location", format!("{}/ok/high.mp4", stream.uri())),
        )
        .mount(&stream)
        .await;
    Mock::given(method("GET"))
        .and(path("/json/high.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"error": "no mp4"})))
        .mount(&stream)
        .await;
    Mock::given(method("GET"))
        .and(path("/html/high.mp4"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("content-type", "text/html")
                .set_body_string("<p>"),
        )
        .mount(&stream)
        .await;
    let app = spawn(vec![("MUX_STREAM_BASE_URL", stream.uri())]).await;
    let get = |p: &str| {
        let rb = app.get(&format!("/api/mux/download-available/{p}"));
        async move { json(rb.send().await.unwrap()).await }
    };
    let s = stream.uri();
    assert_eq!(
        get("ok").await,
        (
            StatusCode::OK,
            json!({"available": true, "download_url": format!("{s}/ok/high.mp4"), "resolution": "high", "message": null})
        )
    );
    assert_eq!(get("bin?resolution=low").await.1["available"], true);
    assert_eq!(get("redirect").await.1["available"], true);
    let missing = json!({"available": false, "download_url": null, "resolution": null, "message": "MP4 download not available for this video."});
    assert_eq!(get("nothing-here").await, (StatusCode::OK, missing.clone()));
    assert_eq!(get("json").await.1, missing);
    assert_eq!(
        get("html").await.1["message"],
        "Could not verify MP4 availability."
    );
    let (st, b) = get("ok?resolution=4k").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(b["detail"], "Resolution must be 'high', 'medium', or 'low'");

    // Nothing listening: still an answer.
    let dead = spawn(vec![("MUX_STREAM_BASE_URL", "http://127.0.0.1:9".into())]).await;
    let (st, b) = json(
        dead.get("/api/mux/download-available/x")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(b["message"], "Unable to verify download availability.");
}

// ---------------------------------------------------------------------------
// The mux_sync job
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_sync_deletes_assets_through_the_worker() {
    let mux = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path("/video/v1/assets/old-asset"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mux)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/video/v1/assets/already-gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&mux)
        .await;
    let app = mux_app(&mux).await;

    // Queued in a transaction like a post deletion would, run by the worker.
    let mut tx = app.db().begin().await.unwrap();
    mambo_core::mux::enqueue_delete(&mut tx, "old-asset")
        .await
        .unwrap();
    tx.commit().await.unwrap();
    mambo_core::jobs::wake_relay(&app.ctx);
    let seen = eventually(20, || async {
        let n = bodies(&mux, "DELETE", "/video/v1/assets/old-asset")
            .await
            .len();
        (n >= 1).then_some(n)
    })
    .await;
    assert_eq!(seen, Some(1));

    // Idempotent: a 404 is success; running twice is fine.
    use mambo_core::jobs::{MuxSyncAction, MuxSyncJob};
    for id in ["already-gone", "old-asset", "old-asset"] {
        let job = MuxSyncJob {
            action: MuxSyncAction::DeleteAsset {
                asset_id: id.into(),
            },
        };
        mambo_core::mux::sync(&app.ctx, &job).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_sync_reconciles_uploads_that_never_got_a_webhook() {
    let mux = MockServer::start().await;
    mount_create_upload(&mux, "up-rec").await;
    Mock::given(method("GET"))
        .and(path("/video/v1/uploads/up-rec"))
        .and(basic_auth(MUX_ID, MUX_SECRET))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"data": {"id": "up-rec", "status": "asset_created", "asset_id": "asset-rec"}}),
        ))
        .mount(&mux)
        .await;
    Mock::given(method("GET"))
        .and(path("/video/v1/assets/asset-rec"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"data": asset_json("asset-rec", "pb-rec", None)})),
        )
        .mount(&mux)
        .await;
    let app = mux_app(&mux).await;
    let student = app.student().await;
    let p = post(&app, student.id, "stage", None, None).await;
    let (s, _) = json(
        app.post("/api/mux/upload-url")
            .header("Authorization", student.bearer())
            .json(&json!({"post_id": p.to_string()}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);

    use mambo_core::jobs::{MuxSyncAction, MuxSyncJob};
    let job = MuxSyncJob {
        action: MuxSyncAction::Reconcile,
    };
    // Too fresh: left alone.
    mambo_core::mux::sync(&app.ctx, &job).await.unwrap();
    assert_eq!(post_ids(&app, p).await, (None, None));
    // A few minutes later: attached, the upload marked ready, the badge queued.
    app.ctx.clock.advance(chrono::Duration::minutes(6));
    mambo_core::mux::sync(&app.ctx, &job).await.unwrap();
    assert_eq!(
        post_ids(&app, p).await,
        (Some("asset-rec".into()), Some("pb-rec".into()))
    );
    let status: String =
        sqlx::query_scalar("SELECT status FROM mux_uploads WHERE upload_id = 'up-rec'")
            .fetch_one(app.db())
            .await
            .unwrap();
    assert_eq!(status, "ready");
    assert_eq!(badge_jobs(&app, student.id).await, 1);
    // Nothing pending any more.
    mambo_core::mux::sync(&app.ctx, &job).await.unwrap();
    assert_eq!(badge_jobs(&app, student.id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_video_from_the_webhook_earns_center_stage_through_the_worker() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let student = app.student().await;
    // The frontend creates the Stage post first, without a video.
    let p = post(&app, student.id, "stage", None, None).await;
    let event = ready_event(
        "e-badge",
        "a-badge",
        "p-badge",
        json!({"post_id": p.to_string(), "type": "community-post", "post_type": "stage"}),
    );
    let now = app.ctx.clock.now().timestamp();
    let (s, _) = deliver(&app, "/api/mux/webhook", &event, now, WEBHOOK_SECRET).await;
    assert_eq!(s, StatusCode::OK);
    let earned = eventually(20, || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM user_badges WHERE user_id = $1 AND badge_id = 'center_stage_bronze'",
        )
        .bind(student.id)
        .fetch_one(app.db())
        .await
        .unwrap();
        (n == 1).then_some(())
    })
    .await;
    assert!(
        earned.is_some(),
        "the videos_posted check should award center_stage_bronze"
    );
}

/// N6.4: a Stage post earns its reward when the server first attaches a ready
/// video (webhook or check-upload-status), once; a zero-length video and a
/// video id the client supplied never earn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_post_is_rewarded_when_the_server_attaches_its_video() {
    let mux = MockServer::start().await;
    let app = mux_app(&mux).await;
    let admin = app.admin().await;
    app.set_preset(&admin, "guild_2026").await;
    app.set_settings(
        &admin,
        json!({"posting_rewards": {"cooldown_seconds": 0},
               "community": {"video_type_required": false}}),
    )
    .await;
    let student = app
        .create_user(UserSpec {
            subscription: Some(("active", "advanced")),
            ..Default::default()
        })
        .await;
    let create = |title: &'static str, extra: Value| {
        let (app, student) = (&app, &student);
        async move {
            let mut body = json!({"post_type": "stage", "title": title, "tags": ["mambo"]});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            let (s, v) = app
                .call("POST", "/api/community/posts", Some(student), Some(body))
                .await;
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["reward"], Value::Null, "a stage post is paid on attach");
            Uuid::parse_str(v["post"]["id"].as_str().unwrap()).unwrap()
        }
    };
    let by_webhook = create("Webhook shines", json!({})).await;
    let zero = create("Zero shines", json!({})).await;
    let by_check = create("Checked shines", json!({})).await;
    let supplied = create(
        "Supplied shines",
        json!({"mux_asset_id": "client-a", "mux_playback_id": "client-p"}),
    )
    .await;

    // The webhook attaches the first: 40 claves, once, whatever redelivers.
    let event = ready_event(
        "e-reward",
        "a-reward",
        "p-reward",
        json!({"post_id": by_webhook.to_string(), "type": "community-post"}),
    );
    let now = app.ctx.clock.now().timestamp();
    for _ in 0..2 {
        let (s, _) = deliver(&app, "/api/mux/webhook", &event, now, WEBHOOK_SECRET).await;
        assert_eq!(s, StatusCode::OK);
    }
    let mut second = ready_event(
        "e-reward-2",
        "a-reward-2",
        "p-reward-2",
        json!({"post_id": by_webhook.to_string(), "type": "community-post"}),
    );
    second["data"]["duration"] = json!(12.5);
    deliver(&app, "/api/mux/webhook", &second, now, WEBHOOK_SECRET).await;
    let mut zero_event = ready_event(
        "e-zero",
        "a-zero",
        "p-zero",
        json!({"post_id": zero.to_string(), "type": "community-post"}),
    );
    zero_event["data"]["duration"] = json!(0.0);
    deliver(&app, "/api/mux/webhook", &zero_event, now, WEBHOOK_SECRET).await;
    // The client-supplied video's post gets a server video later: still nothing.
    let late = ready_event(
        "e-late",
        "a-late",
        "p-late",
        json!({"post_id": supplied.to_string(), "type": "community-post"}),
    );
    deliver(&app, "/api/mux/webhook", &late, now, WEBHOOK_SECRET).await;
    let rewards: Vec<(Uuid, i32)> = sqlx::query_as(
        "SELECT reference_id, amount FROM clave_transactions
         WHERE user_id = $1 AND reason = 'post_reward'",
    )
    .bind(student.id)
    .fetch_all(app.db())
    .await
    .unwrap();
    assert_eq!(rewards, vec![(by_webhook, 40)]);

    // check-upload-status finds the third and says what it paid.
    Mock::given(method("GET"))
        .and(path("/video/v1/assets"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"data": [
            asset_json("a-check", "p-check", Some(json!({"post_id": by_check.to_string(), "type": "community-post"}))),
        ]})))
        .mount(&mux)
        .await;
    let (s, v) = app
        .call(
            "POST",
            &format!("/api/mux/check-upload-status?post_id={by_check}"),
            Some(&student),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "ready");
    assert_eq!(
        v["reward"],
        json!({"amount": 40, "reason": "post_reward", "new_balance": 15 + 80})
    );
    // Checking again finds it already attached: no reward key, nothing paid.
    let (_, v) = app
        .call(
            "POST",
            &format!("/api/mux/check-upload-status?post_id={by_check}"),
            Some(&student),
            None,
        )
        .await;
    assert!(v.get("reward").is_none(), "{v}");
    assert_eq!(app.balance_and_ledger(student.id).await, (95, 95));
}
