//! Foundation: health, docs, CORS, security headers, error bodies, migrations and seed.

use mambo_tests::{TestApp, TestDb, json};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_and_health_report_status() {
    let app = TestApp::spawn_api_only().await;
    let (s, b) = json(app.get("/").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(b, json!({"message": "Salsa Lab API", "status": "running"}));
    let (s, b) = json(app.get("/health").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(b["status"], "healthy");
    assert_eq!(b["database"], "ok");
    assert_eq!(b["redis"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_naming_redis_when_redis_is_down() {
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![("REDIS_URL".into(), "redis://127.0.0.1:1".into())],
    })
    .await;
    let (s, b) = json(app.get("/health").send().await.unwrap()).await;
    assert_eq!(s, 503);
    assert_eq!(b["redis"], "down");
    assert_eq!(b["database"], "ok");
    // Reads that need only PostgreSQL keep working.
    let (s, _) = json(app.get("/").send().await.unwrap()).await;
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_and_docs_are_served() {
    let app = TestApp::spawn_api_only().await;
    let (s, spec) = json(app.get("/openapi.json").send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert!(spec["paths"]["/health"]["get"].is_object());
    let r = app.get("/docs").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().to_lowercase().contains("swagger"));
    let r = app.get("/redoc").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().to_lowercase().contains("redoc"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_are_hidden_in_production() {
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![("ENVIRONMENT".into(), "production".into())],
    })
    .await;
    assert_eq!(app.get("/docs").send().await.unwrap().status(), 404);
    let r = app.get("/").send().await.unwrap();
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_allowed_and_denied() {
    let app = TestApp::spawn_api_only().await;
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/auth/me"))
        .header("Origin", "http://localhost:3000")
        .header("Access-Control-Request-Method", "GET")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "http://localhost:3000");
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PATCH")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("authorization")
    );

    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/auth/me"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let (_, b) = json(r).await;
    assert_eq!(b["detail"], "Disallowed CORS origin");

    // A simple request from an allowed origin gets CORS headers, also on errors.
    let r = app
        .get("/nope")
        .header("Origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("X-RateLimit-Remaining")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_headers_on_every_response() {
    let app = TestApp::spawn_api_only().await;
    for path in ["/", "/does-not-exist"] {
        let r = app.get(path).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-xss-protection"], "1; mode=block");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
        assert_eq!(
            h["permissions-policy"],
            "geolocation=(), microphone=(), camera=()"
        );
        assert!(h.get("strict-transport-security").is_none());
        assert!(h.get("x-request-id").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_bodies_are_fastapi_compatible() {
    let app = TestApp::spawn_api_only().await;
    let (s, b) = json(app.get("/api/no/such/route").send().await.unwrap()).await;
    assert_eq!(s, 404);
    assert_eq!(b, json!({"detail": "Not Found"}));

    let (s, b) = json(app.delete("/health").send().await.unwrap()).await;
    assert_eq!(s, 405);
    assert_eq!(b, json!({"detail": "Method Not Allowed"}));

    // Protected route without a token.
    let r = app.get("/api/auth/me").send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (s, b) = json(r).await;
    assert_eq!(s, 401);
    assert_eq!(b, json!({"detail": "Could not validate credentials"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_422_and_oversized_body_is_413() {
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: vec![("MAX_BODY_BYTES".into(), "1024".into())],
    })
    .await;
    let (s, b) = json(
        app.post("/api/auth/register")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(b["detail"].is_array(), "{b}");
    assert_eq!(b["detail"][0]["loc"][0], "body");

    let big = format!("{{\"email\":\"{}\"}}", "a".repeat(5000));
    let (s, b) = json(
        app.post("/api/auth/register")
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 413, "{b}");
    assert!(b["detail"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_are_explained_field_by_field() {
    let app = TestApp::spawn_api_only().await;
    let (s, b) = json(
        app.post("/api/auth/register")
            .json(&json!({"email": "a@example.com", "password": 5}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let errors = b["detail"].as_array().unwrap();
    let missing: Vec<&str> = errors
        .iter()
        .filter(|e| e["type"] == "missing")
        .map(|e| e["loc"][1].as_str().unwrap())
        .collect();
    assert!(missing.contains(&"username"), "{b}");
    assert!(
        errors
            .iter()
            .any(|e| e["loc"] == json!(["body", "password"]) && e["type"] == "string_type"),
        "{b}"
    );
    for e in errors {
        assert!(e["msg"].is_string() && e["loc"][0] == "body", "{b}");
    }

    // Missing fields are listed in the model's field order, as FastAPI does.
    let (_, spec) = json(app.get("/openapi.json").send().await.unwrap()).await;
    let schema_ref = spec["paths"]["/api/auth/register"]["post"]["requestBody"]["content"]
        ["application/json; charset=utf-8"]["schema"]["$ref"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let declared: Vec<String> = spec["components"]["schemas"][&schema_ref]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let (_, b) = json(
        app.post("/api/auth/register")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let reported: Vec<String> = b["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"][1].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reported, declared, "{b}");
    assert_eq!(reported[0], "email");

    // A JSON array where an object is expected.
    let (s, b) = json(
        app.post("/api/auth/register")
            .json(&json!([1, 2]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(b["detail"][0]["loc"], json!(["body"]));

    // A query parameter of the wrong type is a 422 naming the parameter.
    let admin = app.admin().await;
    let (s, b) = json(
        app.get("/api/admin/students?limit=abc")
            .header("authorization", admin.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["detail"][0]["loc"], json!(["query", "limit"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_uuid_in_a_path_is_the_endpoints_404() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    let (s, b) = json(
        app.get("/api/courses/lessons/not-a-uuid")
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    assert_eq!(b, json!({"detail": "Lesson not found"}));
    let (s, b) = json(
        app.get("/api/community/posts/123")
            .header("authorization", user.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_to_an_empty_database_and_seed_twice_is_a_no_op() {
    // A database with nothing in it, migrated from scratch (not from the template).
    let db = TestDb::new().await;
    let pool = mambo_core::db::connect(&db.url, 2).await.unwrap();
    sqlx::raw_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
        .execute(&pool)
        .await
        .unwrap();
    mambo_core::db::migrate(&pool).await.unwrap();
    let badges: i64 = sqlx::query_scalar("SELECT count(*) FROM badge_definitions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(badges, 38);
    let tags: i64 = sqlx::query_scalar("SELECT count(*) FROM community_tags")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tags, 16);

    let first = mambo_core::seed::seed(&pool).await.unwrap();
    assert!(first.worlds_created >= 3);
    assert_eq!(first.users_created, 2);
    let snapshot = |pool: sqlx::PgPool| async move {
        let mut v = vec![];
        for t in [
            "worlds",
            "levels",
            "level_edges",
            "lessons",
            "users",
            "user_profiles",
            "clave_transactions",
        ] {
            let n: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            v.push(n);
        }
        v
    };
    let before = snapshot(pool.clone()).await;
    let second = mambo_core::seed::seed(&pool).await.unwrap();
    assert_eq!(second, Default::default());
    assert_eq!(snapshot(pool.clone()).await, before);

    // The demo catalogue has what the frontend needs to show.
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT course_type FROM worlds ORDER BY 1")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(kinds, vec!["choreo", "course", "topic"]);
    let boss: i64 = sqlx::query_scalar("SELECT count(*) FROM lessons WHERE is_boss_battle")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(boss >= 1);
    let quiz_with_content: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM lessons WHERE lesson_type IN ('quiz','history') AND content_json IS NOT NULL",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(quiz_with_content >= 2);
    pool.close().await;
}

#[test]
fn config_refuses_to_start_without_secret_key_outside_development() {
    let mut m = std::collections::HashMap::new();
    m.insert("ENVIRONMENT".to_string(), "production".to_string());
    let err = mambo_core::Config::from_map(&m).unwrap_err();
    assert!(err.to_string().contains("SECRET_KEY"));
    m.insert("SECRET_KEY".to_string(), "x".to_string());
    assert!(mambo_core::Config::from_map(&m).is_ok());
}
