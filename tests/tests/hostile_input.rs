//! Hostile input (issue 11): SQL metacharacters and LIKE wildcards, very long
//! strings, deep and huge JSON, invalid UTF-8, wrong content types, negative
//! and huge numbers, malformed UUIDs and duplicate JSON keys.
//!
//! Every refused request gets a 4xx with a `{"detail": ...}` body (never a
//! 5xx), and nothing is written: the row counts of the main tables are the same
//! before and after. Reads with wildcards or metacharacters match literally.
//! Free text with SQL metacharacters is stored exactly as sent.

use mambo_tests::{StatusCode, TestApp, TestUser, json};
use serde_json::{Value, json};
use uuid::Uuid;

const TABLES: &[&str] = &[
    "users",
    "user_profiles",
    "subscriptions",
    "worlds",
    "levels",
    "level_edges",
    "lessons",
    "user_progress",
    "boss_submissions",
    "clave_transactions",
    "community_tags",
    "posts",
    "post_replies",
    "post_reactions",
    "user_badges",
    "job_outbox",
    "mux_uploads",
];

async fn counts(app: &TestApp) -> Vec<(String, i64)> {
    let mut out = vec![];
    for t in TABLES {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
            .fetch_one(app.db())
            .await
            .unwrap();
        out.push((t.to_string(), n));
    }
    // Also the things a hostile update could change in place.
    let sums: (String,) = sqlx::query_as(
        "SELECT concat_ws('|',
            (SELECT string_agg(title || coalesce(body,'') || array_to_string(tags, ','), ';' ORDER BY id) FROM posts),
            (SELECT string_agg(title || difficulty || order_index, ';' ORDER BY id) FROM worlds),
            (SELECT string_agg(coalesce(username,'') || coalesce(avatar_url,'') || current_claves, ';' ORDER BY id) FROM user_profiles),
            (SELECT string_agg(email || role, ';' ORDER BY id) FROM users))",
    )
    .fetch_one(app.db())
    .await
    .unwrap();
    out.push(("contents".into(), sums.0.len() as i64));
    out.push(("contents-hash".into(), {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        sums.0.hash(&mut h);
        h.finish() as i64
    }));
    out
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    name: String,
    method: &'static str,
    path: String,
    user: Option<TestUser>,
    body: Body,
}

fn case(name: &str, method: &'static str, path: &str, user: Option<&TestUser>, body: Body) -> Case {
    Case {
        name: name.into(),
        method,
        path: path.into(),
        user: user.cloned(),
        body,
    }
}

async fn send(app: &TestApp, c: &Case) -> (StatusCode, Value) {
    let m = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = app.client.request(m, app.url(&c.path));
    if let Some(u) = &c.user {
        req = req.header("Authorization", u.bearer());
    }
    req = match &c.body {
        Body::None => req,
        Body::Json(v) => req.json(v),
        Body::Raw(ct, bytes) => {
            let r = req.body(bytes.clone());
            if ct.is_empty() {
                r
            } else {
                r.header("content-type", *ct)
            }
        }
    };
    json(req.send().await.unwrap()).await
}

const SQL: &[&str] = &[
    "'; DROP TABLE posts; --",
    "' OR '1'='1",
    "\" OR 1=1 --",
    "1; SELECT pg_sleep(5)",
    "%",
    "_",
    "%_%",
    "\\",
    "\0",
];

struct Fix {
    student: TestUser,
    admin: TestUser,
    world: Uuid,
    level: Uuid,
    lesson: Uuid,
    post: Uuid,
}

async fn setup(app: &TestApp) -> Fix {
    let student = app
        .create_user(mambo_tests::UserSpec {
            claves: 100,
            ..Default::default()
        })
        .await;
    let admin = app.admin().await;
    let db = app.db();
    let world: Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, difficulty, is_free, is_published)
         VALUES ('Hostile', 'hostile', 1, 'Beginner', true, true) RETURNING id",
    )
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
    let lesson: Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, order_index, is_boss_battle) VALUES ($1, 'Boss', 0, true) RETURNING id",
    )
    .bind(level)
    .fetch_one(db)
    .await
    .unwrap();
    let post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         VALUES ($1, 'lab', 'Shines and spins', 'How?', '{mambo}') RETURNING id",
    )
    .bind(student.id)
    .fetch_one(db)
    .await
    .unwrap();
    Fix {
        student,
        admin,
        world,
        level,
        lesson,
        post,
    }
}

fn post_body() -> Value {
    json!({"post_type": "lab", "title": "A fine question", "body": "Why?", "tags": ["mambo"]})
}

fn with(mut v: Value, key: &str, val: Value) -> Value {
    v[key] = val;
    v
}

fn cases(f: &Fix) -> Vec<Case> {
    let s = Some(&f.student);
    let a = Some(&f.admin);
    let mut out = vec![];
    let big = "x".repeat(100_000);

    // --- SQL metacharacters and wildcards in fields that have a closed set of
    // values or a format: refused.
    for (i, m) in SQL.iter().enumerate() {
        let m = *m;
        out.push(case(
            &format!("post_type {m:?}"),
            "POST",
            "/api/community/posts",
            s,
            Body::Json(with(post_body(), "post_type", json!(m))),
        ));
        out.push(case(
            &format!("tag {m:?}"),
            "POST",
            "/api/community/posts",
            s,
            Body::Json(with(post_body(), "tags", json!([m]))),
        ));
        out.push(case(
            &format!("feedback_type {m:?}"),
            "POST",
            "/api/community/posts",
            s,
            Body::Json(with(post_body(), "feedback_type", json!(m))),
        ));
        out.push(case(
            &format!("reaction {m:?}"),
            "POST",
            &format!("/api/community/posts/{}/react", f.post),
            Some(&f.admin),
            Body::Json(json!({"reaction_type": m})),
        ));
        out.push(case(
            &format!("login email {m:?}"),
            "POST",
            "/api/auth/token",
            None,
            Body::Json(json!({"email": m, "password": m})),
        ));
        out.push(case(
            &format!("register username {m:?}"),
            "POST",
            "/api/auth/register",
            None,
            Body::Json(
                json!({"email": format!("sql{i}@example.com"), "username": m,
                "password": "Passw0rd123", "confirm_password": "Passw0rd123",
                "first_name": "A", "last_name": "B"}),
            ),
        ));
        out.push(case(
            &format!("register email {m:?}"),
            "POST",
            "/api/auth/register",
            None,
            Body::Json(json!({"email": m, "username": format!("sqlu{i}"),
                "password": "Passw0rd123", "confirm_password": "Passw0rd123",
                "first_name": "A", "last_name": "B"})),
        ));
        out.push(case(
            &format!("waitlist email {m:?}"),
            "POST",
            "/api/auth/waitlist",
            None,
            Body::Json(json!({"email": m, "username": format!("wl{i}")})),
        ));
        out.push(case(
            &format!("difficulty {m:?}"),
            "POST",
            "/api/admin/courses",
            a,
            Body::Json(
                json!({"title": "T", "slug": format!("s{i}"), "order_index": 1, "difficulty": m}),
            ),
        ));
        out.push(case(
            &format!("course_type {m:?}"),
            "PATCH",
            &format!("/api/admin/courses/{}", f.world),
            a,
            Body::Json(json!({"course_type": m})),
        ));
        out.push(case(
            &format!("lesson_type {m:?}"),
            "PATCH",
            &format!("/api/admin/lessons/{}", f.lesson),
            a,
            Body::Json(json!({"lesson_type": m})),
        ));
        out.push(case(
            &format!("grade status {m:?}"),
            "POST",
            &format!("/api/admin/submissions/{}/grade", Uuid::new_v4()),
            a,
            Body::Json(json!({"status": m})),
        ));
        out.push(case(
            &format!("edge ids {m:?}"),
            "POST",
            &format!("/api/admin/worlds/{}/edges", f.world),
            a,
            Body::Json(json!({"from_level_id": m, "to_level_id": f.level})),
        ));
        out.push(case(
            &format!("folder {m:?}"),
            "POST",
            "/api/uploads/presigned-url",
            s,
            Body::Json(json!({"file_type": "image/png", "folder": m})),
        ));
        out.push(case(&format!("price {m:?}"), "POST", "/api/payments/create-checkout-session", s,
            Body::Json(json!({"price_id": m, "success_url": "http://localhost:3000/a", "cancel_url": "http://localhost:3000/b"}))));
        out.push(case(
            &format!("submit lesson_id {m:?}"),
            "POST",
            "/api/submissions/submit",
            s,
            Body::Json(json!({"lesson_id": m, "video_url": "https://v.example/x.mp4"})),
        ));
        out.push(case(
            &format!("avatar {m:?}"),
            "PATCH",
            "/api/users/me",
            s,
            Body::Json(json!({"avatar_url": m})),
        ));
        out.push(case(
            &format!("profile username {m:?}"),
            "PATCH",
            "/api/users/me",
            s,
            Body::Json(json!({"username": m})),
        ));
        let q = urlencode(m);
        out.push(case(
            &format!("feed limit {m:?}"),
            "GET",
            &format!("/api/community/feed?limit={q}"),
            s,
            Body::None,
        ));
        out.push(case(
            &format!("search skip {m:?}"),
            "GET",
            &format!("/api/community/search?q=ab&skip={q}"),
            s,
            Body::None,
        ));
        out.push(case(
            &format!("check-upload post_id {m:?}"),
            "POST",
            &format!("/api/mux/check-upload-status?post_id={q}"),
            s,
            Body::None,
        ));
        out.push(case(
            &format!("public username {m:?}"),
            "GET",
            &format!("/api/users/public/{q}"),
            None,
            Body::None,
        ));
        out.push(case(
            &format!("post path {m:?}"),
            "GET",
            &format!("/api/community/posts/{q}"),
            s,
            Body::None,
        ));
        out.push(case(
            &format!("balance-check {m:?}"),
            "GET",
            &format!("/api/claves/balance-check/{q}"),
            s,
            Body::None,
        ));
        out.push(case(
            &format!("download resolution {m:?}"),
            "GET",
            &format!("/api/mux/download-url/pb?resolution={q}"),
            s,
            Body::None,
        ));
    }

    // --- very long strings
    out.push(case(
        "title 100k",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(with(post_body(), "title", json!(big))),
    ));
    out.push(case(
        "tag 100k",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(with(post_body(), "tags", json!([big]))),
    ));
    out.push(case(
        "reply 100k",
        "POST",
        &format!("/api/community/posts/{}/replies", f.post),
        s,
        Body::Json(json!({"content": big})),
    ));
    out.push(case(
        "username 100k",
        "PATCH",
        "/api/users/me",
        s,
        Body::Json(json!({"username": big})),
    ));
    out.push(case(
        "avatar 100k",
        "PATCH",
        "/api/users/me",
        s,
        Body::Json(json!({"avatar_url": format!("https://x.r2.dev/{big}")})),
    ));
    out.push(case(
        "register email 100k",
        "POST",
        "/api/auth/register",
        None,
        Body::Json(json!({
        "email": format!("{big}@example.com"), "username": "longmail", "password": "Passw0rd123",
        "confirm_password": "Passw0rd123", "first_name": "A", "last_name": "B"})),
    ));
    out.push(case(
        "register password 100k",
        "POST",
        "/api/auth/register",
        None,
        Body::Json(json!({
        "email": "longpw@example.com", "username": "longpw", "password": big,
        "confirm_password": big, "first_name": "A", "last_name": "B"})),
    ));
    out.push(case(
        "chat message 100k",
        "POST",
        "/api/ai/chat",
        s,
        Body::Json(json!({"messages": [{"role": "user", "content": big}], "stream": false})),
    ));
    out.push(case(
        "post path 100k",
        "GET",
        &format!("/api/community/posts/{}", &big[..4000]),
        s,
        Body::None,
    ));

    // --- deep and huge JSON
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let deep_obj = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    for (path, who) in [
        ("/api/community/posts", s),
        ("/api/auth/register", None),
        ("/api/admin/courses", a),
        ("/api/ai/chat", s),
    ] {
        out.push(case(
            &format!("deep array {path}"),
            "POST",
            path,
            who,
            Body::Raw("application/json", deep.clone().into_bytes()),
        ));
        out.push(case(
            &format!("deep object {path}"),
            "POST",
            path,
            who,
            Body::Raw("application/json", deep_obj.clone().into_bytes()),
        ));
    }
    let nested_tags = json!({"post_type": "lab", "title": "Deep tags", "body": "b",
        "tags": serde_json::from_str::<Value>(&format!("{}\"mambo\"{}", "[".repeat(100), "]".repeat(100))).unwrap()});
    out.push(case(
        "nested tags",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(nested_tags),
    ));
    // 3 MB: over the 2 MiB body limit.
    let huge = serde_json::to_vec(&with(
        post_body(),
        "body",
        json!("y".repeat(3 * 1024 * 1024)),
    ))
    .unwrap();
    out.push(case(
        "huge body",
        "POST",
        "/api/community/posts",
        s,
        Body::Raw("application/json", huge),
    ));
    let many_tags: Vec<String> = (0..100_000).map(|i| format!("t{i}")).collect();
    out.push(case(
        "100k tags",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(with(post_body(), "tags", json!(many_tags))),
    ));
    let many_ids: Vec<String> = (0..20_000).map(|_| Uuid::new_v4().to_string()).collect();
    out.push(case("chat 20k messages", "POST", "/api/ai/chat", s, Body::Json(json!({
        "messages": many_ids.iter().map(|c| json!({"role": "user", "content": c})).collect::<Vec<_>>(), "stream": false}))));

    // --- invalid UTF-8, broken JSON
    let mut bad = b"{\"post_type\":\"lab\",\"title\":\"".to_vec();
    bad.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    bad.extend_from_slice(b"\",\"body\":\"b\",\"tags\":[\"mambo\"]}");
    out.push(case(
        "invalid utf-8 post",
        "POST",
        "/api/community/posts",
        s,
        Body::Raw("application/json", bad.clone()),
    ));
    out.push(case(
        "invalid utf-8 reply",
        "POST",
        &format!("/api/community/posts/{}/replies", f.post),
        s,
        Body::Raw("application/json", b"{\"content\":\"\xc0\xaf\"}".to_vec()),
    ));
    out.push(case(
        "invalid utf-8 register",
        "POST",
        "/api/auth/register",
        None,
        Body::Raw("application/json", bad),
    ));
    out.push(case(
        "lone surrogate escape",
        "POST",
        "/api/community/posts",
        s,
        Body::Raw(
            "application/json",
            br#"{"post_type":"lab","title":"Bad \ud800 surrogate","body":"b","tags":["mambo"]}"#
                .to_vec(),
        ),
    ));
    out.push(case(
        "NUL in title",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(with(post_body(), "title", json!("nul\u{0}byte title"))),
    ));
    out.push(case(
        "truncated json",
        "POST",
        "/api/community/posts",
        s,
        Body::Raw("application/json", b"{\"post_type\":\"lab\",".to_vec()),
    ));
    out.push(case(
        "trailing garbage",
        "POST",
        "/api/community/posts",
        s,
        Body::Raw(
            "application/json",
            format!("{} trailing", post_body()).into_bytes(),
        ),
    ));
    out.push(case(
        "json array body",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(json!([post_body()])),
    ));
    out.push(case(
        "json null body",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(Value::Null),
    ));
    out.push(case(
        "empty body",
        "POST",
        "/api/community/posts",
        s,
        Body::Raw("application/json", vec![]),
    ));

    // --- wrong content types
    let pb = serde_json::to_vec(&post_body()).unwrap();
    for ct in [
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "image/png",
    ] {
        out.push(case(
            &format!("content-type {ct}"),
            "POST",
            "/api/community/posts",
            s,
            Body::Raw(ct, pb.clone()),
        ));
    }
    out.push(case("form to register", "POST", "/api/auth/register", None,
        Body::Raw("application/x-www-form-urlencoded", b"email=form%40example.com&username=formuser&password=Passw0rd123&confirm_password=Passw0rd123&first_name=A&last_name=B".to_vec())));

    // --- negative and huge numbers
    for n in [
        json!(i64::MAX),
        json!(-1),
        json!(i64::MIN),
        json!(1e308),
        json!(2147483648i64),
        json!("12"),
        json!(1.5),
    ] {
        out.push(case(&format!("order_index {n}"), "POST", "/api/admin/courses", a, Body::Json(json!({
            "title": "Num", "slug": format!("num-{}", Uuid::new_v4().simple()), "order_index": n.clone(), "difficulty": "Beginner",
            "total_duration_minutes": n.clone()}))));
        out.push(case(
            &format!("xp_value {n}"),
            "POST",
            &format!("/api/admin/levels/{}/lessons", f.level),
            a,
            Body::Json(json!({
            "title": "Num", "order_index": 1, "xp_value": n.clone()})),
        ));
        out.push(case(
            &format!("video_duration_seconds {n}"),
            "POST",
            "/api/community/posts",
            s,
            Body::Json(with(post_body(), "video_duration_seconds", n.clone())),
        ));
    }
    out.push(case(
        "x_position 1e309",
        "PUT",
        &format!("/api/admin/levels/{}/position", f.level),
        a,
        Body::Raw(
            "application/json",
            br#"{"x_position": 1e309, "y_position": 0}"#.to_vec(),
        ),
    ));
    // The largest finite float: it used to pass validation and then fail the
    // audit row's jsonb round trip (a 500 the seeded fuzz found).
    for (name, raw) in [
        (
            "x_position f64::MAX",
            r#"{"x_position": 1.7976931348623157e308, "y_position": 0}"#,
        ),
        (
            "y_position -f64::MAX",
            r#"{"x_position": 0, "y_position": -1.7976931348623157e308}"#,
        ),
        (
            "x_position 1000001",
            r#"{"x_position": 1000001, "y_position": 0}"#,
        ),
    ] {
        out.push(case(
            name,
            "PUT",
            &format!("/api/admin/levels/{}/position", f.level),
            a,
            Body::Raw("application/json", raw.as_bytes().to_vec()),
        ));
        out.push(case(
            &format!("{name} (level update)"),
            "PUT",
            &format!("/api/admin/levels/{}", f.level),
            a,
            Body::Raw("application/json", raw.as_bytes().to_vec()),
        ));
    }
    out.push(case(
        "x_position -1e999",
        "PUT",
        &format!("/api/admin/levels/{}/position", f.level),
        a,
        Body::Raw(
            "application/json",
            br#"{"x_position": -1e999, "y_position": 0}"#.to_vec(),
        ),
    ));
    for q in [
        "limit=-1",
        "limit=0",
        "limit=51",
        "limit=9223372036854775807",
        "limit=99999999999999999999",
        "skip=-1",
        "skip=99999999999999999999",
        "limit=1e308",
        "limit=NaN",
    ] {
        out.push(case(
            &format!("feed {q}"),
            "GET",
            &format!("/api/community/feed?{q}"),
            s,
            Body::None,
        ));
        out.push(case(
            &format!("search {q}"),
            "GET",
            &format!("/api/community/search?q=ab&{q}"),
            s,
            Body::None,
        ));
    }
    for q in ["skip=-1", "limit=99999999999999999999"] {
        out.push(case(
            &format!("students {q}"),
            "GET",
            &format!("/api/admin/students?{q}"),
            a,
            Body::None,
        ));
    }
    out.push(case(
        "balance-check 2^64",
        "GET",
        "/api/claves/balance-check/18446744073709551616",
        s,
        Body::None,
    ));
    out.push(case(
        "balance-check 1e308",
        "GET",
        "/api/claves/balance-check/1e308",
        s,
        Body::None,
    ));

    // --- malformed UUIDs
    for bad in [
        "not-a-uuid",
        "00000000-0000-0000-0000-00000000000g",
        "{}",
        "1",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
    ] {
        for (m, p) in [
            ("GET", format!("/api/community/posts/{bad}")),
            ("PUT", format!("/api/community/posts/{bad}")),
            ("DELETE", format!("/api/community/posts/{bad}")),
            ("POST", format!("/api/community/posts/{bad}/replies")),
            (
                "POST",
                format!("/api/community/posts/{}/replies/{bad}/accept", f.post),
            ),
            ("GET", format!("/api/courses/lessons/{bad}")),
            ("POST", format!("/api/progress/lessons/{bad}/complete")),
            ("GET", format!("/api/courses/worlds/{bad}/skill-tree")),
            ("GET", format!("/api/admin/courses/{bad}")),
            ("DELETE", format!("/api/admin/levels/{bad}")),
            ("POST", format!("/api/admin/submissions/{bad}/grade")),
        ] {
            let body = match m {
                "PUT" => Body::Json(json!({"title": "Renamed"})),
                "POST" if p.ends_with("/grade") => Body::Json(json!({"status": "approved"})),
                "POST" if p.ends_with("/replies") => Body::Json(json!({"content": "hi"})),
                _ => Body::None,
            };
            let who = if p.starts_with("/api/admin") { a } else { s };
            out.push(case(&format!("uuid {bad} {m} {p}"), m, &p, who, body));
        }
    }
    out.push(case("uuid in body", "POST", "/api/submissions/submit", s,
        Body::Json(json!({"lesson_id": "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", "video_url": "https://v.example/x.mp4"}))));
    out.push(case(
        "uuid as number",
        "POST",
        "/api/submissions/submit",
        s,
        Body::Json(json!({"lesson_id": 12345, "video_url": "https://v.example/x.mp4"})),
    ));
    out.push(case(
        "edge self loop",
        "POST",
        &format!("/api/admin/worlds/{}/edges", f.world),
        a,
        Body::Json(json!({"from_level_id": f.level, "to_level_id": f.level})),
    ));

    // --- NUL bytes (issue 15): refused at the edge in every form body, query
    // string and JSON string, never a PostgreSQL error (500).
    for (name, form) in [
        (
            "form login NUL username",
            &b"username=%00abc&password=x"[..],
        ),
        (
            "form login NUL password",
            &b"username=student%40example.com&password=x%00y"[..],
        ),
        (
            "form login NUL key",
            &b"username=a%40b.co&password=x&sc%00pe=y"[..],
        ),
    ] {
        out.push(case(
            name,
            "POST",
            "/api/auth/token",
            None,
            Body::Raw("application/x-www-form-urlencoded", form.to_vec()),
        ));
    }
    out.push(case(
        "json login NUL password",
        "POST",
        "/api/auth/token",
        None,
        Body::Json(json!({"email": f.student.email, "password": "Passw0rd123\u{0}"})),
    ));
    out.push(case(
        "json register NUL first_name",
        "POST",
        "/api/auth/register",
        None,
        Body::Json(
            json!({"email": "nulname@example.com", "username": "nulname",
            "password": "Passw0rd123", "confirm_password": "Passw0rd123",
            "first_name": "A\u{0}B", "last_name": "B"}),
        ),
    ));
    out.push(case(
        "json NUL in a key",
        "POST",
        "/api/community/posts",
        s,
        Body::Json(with(post_body(), "ti\u{0}tle", json!("x"))),
    ));
    for (path, who) in [
        ("/api/community/search?q=%00", s),
        ("/api/community/search?q=ab%00cd&limit=5", s),
        ("/api/community/feed?tag=%00", s),
        ("/api/admin/students?search=%00", a),
        ("/api/users/leaderboard?x%00=1", s),
        ("/api/courses/worlds?q=%00", None),
        ("/api/auth/google/callback?code=%00&state=x", None),
    ] {
        out.push(case(
            &format!("query NUL {path}"),
            "GET",
            path,
            who,
            Body::None,
        ));
    }

    // --- duplicate keys: ambiguous, refused
    out.push(case("duplicate post_type", "POST", "/api/community/posts", s, Body::Raw("application/json",
        br#"{"post_type":"lab","post_type":"stage","title":"Dup keys","body":"b","tags":["mambo"]}"#.to_vec())));
    out.push(case(
        "duplicate title",
        "POST",
        "/api/community/posts",
        s,
        Body::Raw(
            "application/json",
            br#"{"post_type":"lab","title":"Dup keys","title":"x","body":"b","tags":["mambo"]}"#
                .to_vec(),
        ),
    ));
    out.push(case(
        "duplicate role-ish",
        "PATCH",
        "/api/users/me",
        s,
        Body::Raw(
            "application/json",
            br#"{"username":"dupname1","username":"dupname2"}"#.to_vec(),
        ),
    ));
    out.push(case(
        "duplicate nested",
        "POST",
        "/api/ai/chat",
        s,
        Body::Raw(
            "application/json",
            br#"{"messages":[{"role":"user","role":"system","content":"x"}],"stream":false}"#
                .to_vec(),
        ),
    ));
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'~' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_detail_and_write_nothing() {
    // Stripe is configured (to an address nothing listens on, never reached)
    // so the price cases meet the price check: unconfigured Stripe is a 503
    // before any check of the body.
    let app = TestApp::spawn_with(mambo_tests::Options {
        worker: false,
        vars: [
            ("STRIPE_SECRET_KEY", "sk_test_hostile"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_hostile"),
            ("STRIPE_BASE_URL", "http://127.0.0.1:9"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into(),
    })
    .await;
    let f = setup(&app).await;
    let before = counts(&app).await;
    let cases = cases(&f);
    let mut failures = vec![];
    for c in &cases {
        let (status, body) = send(&app, c).await;
        let short = body.to_string().chars().take(200).collect::<String>();
        if !status.is_client_error() {
            failures.push(format!(
                "{}: {} {} -> {status} {short}",
                c.name,
                c.method,
                c.path.chars().take(120).collect::<String>()
            ));
        } else if body.get("detail").is_none() {
            failures.push(format!("{}: {status} without detail: {short}", c.name));
        }
    }
    let after = counts(&app).await;
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(before, after, "a refused request wrote something");
    println!(
        "hostile input: {} refused requests, nothing written",
        cases.len()
    );
}

/// NUL bytes are refused at the edge with a FastAPI 422 naming the field, for
/// form bodies, query strings and JSON alike, and the NUL is not echoed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_a_422_naming_the_field() {
    let app = TestApp::spawn_api_only().await;
    let f = setup(&app).await;
    let form = |body: &'static str| {
        app.post("/api/auth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let cases = [
        (
            form("username=%00abc&password=x"),
            json!(["body", "username"]),
        ),
        (
            form("username=a%40b.co&password=x%00"),
            json!(["body", "password"]),
        ),
        (
            app.get("/api/community/search?q=%00")
                .header("Authorization", f.student.bearer()),
            json!(["query", "q"]),
        ),
        (
            app.get("/api/admin/students?search=ab%00")
                .header("Authorization", f.admin.bearer()),
            json!(["query", "search"]),
        ),
        (
            app.post("/api/auth/token")
                .json(&json!({"email": "a\u{0}@b.co", "password": "x"})),
            json!(["body", "email"]),
        ),
        (
            app.post("/api/community/posts")
                .header("Authorization", f.student.bearer())
                .json(&with(post_body(), "tags", json!(["ok", "n\u{0}l"]))),
            json!(["body", "tags", "1"]),
        ),
    ];
    for (req, loc) in cases {
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{loc}: {text}");
        assert!(!text.contains("\\u0000"), "{loc}: NUL echoed: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        let e = &v["detail"][0];
        assert_eq!(e["loc"], loc, "{text}");
        assert_eq!(e["type"], "value_error", "{text}");
        assert_eq!(
            e["msg"], "Value error, String should not contain NUL characters",
            "{text}"
        );
        assert!(e.get("input").is_some(), "{text}");
        if loc[1] == "password" {
            assert_eq!(e["input"], "[redacted]", "{text}");
        }
    }
}

/// Reads with wildcards and metacharacters match literally (or not at all),
/// and free text with SQL metacharacters is stored exactly as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metacharacters_are_literal_in_reads_and_writes() {
    let app = TestApp::spawn_api_only().await;
    let f = setup(&app).await;
    let s = &f.student;
    let get = |p: String| {
        let app = &app;
        let b = s.bearer();
        async move { json(app.get(&p).header("Authorization", b).send().await.unwrap()).await }
    };
    for m in [
        "%%",
        "__",
        "%_",
        "' OR '1'='1",
        "'; DROP TABLE posts; --",
        "\\%",
        "[a-z]*",
        ".*",
    ] {
        let (st, v) = get(format!("/api/community/search?q={}", urlencode(m))).await;
        assert_eq!((st, v), (StatusCode::OK, json!([])), "search {m:?}");
        let (st, v) = get(format!("/api/community/feed?tag={}", urlencode(m))).await;
        assert_eq!((st, v), (StatusCode::OK, json!([])), "feed tag {m:?}");
        let (st, v) = json(
            app.get(&format!("/api/admin/students?search={}", urlencode(m)))
                .header("Authorization", f.admin.bearer())
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (st, v),
            (StatusCode::OK, json!([])),
            "students search {m:?}"
        );
        let (st, _) = json(
            app.get(&format!("/api/users/public/{}", urlencode(m)))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "public {m:?}");
    }
    // A username pattern like `u\_%` must not find `u_...`.
    let (st, _) = json(app.get("/api/users/public/u_%25").send().await.unwrap()).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // The real post is still found by a literal substring.
    let (st, v) = get("/api/community/search?q=shines".into()).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1);

    // Stored literally.
    let title = "Robert'); DROP TABLE posts;-- 100% _sure_ \\o/";
    let body = "\" OR 1=1 -- ; SELECT pg_sleep(10); %s %n {{7*7}} ${jndi:x}";
    let (st, v) = json(
        app.post("/api/community/posts")
            .header("Authorization", s.bearer())
            .json(&json!({"post_type": "lab", "title": title, "body": body, "tags": ["mambo"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["post"]["title"], title);
    assert_eq!(v["post"]["body"], body);
    let id = v["post"]["id"].as_str().unwrap();
    let (_, v) = get(format!("/api/community/posts/{id}")).await;
    assert_eq!(
        (v["title"].as_str(), v["body"].as_str()),
        (Some(title), Some(body))
    );
    let (st, v) = get(format!(
        "/api/community/search?q={}",
        urlencode("100% _sure_")
    ))
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts")
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(posts, 2);
}
