//! What HTTP caches and clients see (issue 20): compressed responses (gzip,
//! brotli) over 1 KiB when the client accepts them, never event streams.

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
use mambo_tests::*;
use tokio::io::AsyncReadExt;

async fn decode(encoding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "br" => BrotliDecoder::new(body)
            .read_to_end(&mut out)
            .await
            .unwrap(),
        "gzip" => GzipDecoder::new(body).read_to_end(&mut out).await.unwrap(),
        other => panic!("unexpected encoding {other}"),
    };
    out
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .reduce(|a, b| format!("{a}, {b}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_text_responses_are_compressed_as_the_client_accepts() {
    let app = TestApp::spawn_api_only().await;
    let plain = app.get("/openapi.json").send().await.unwrap();
    assert_eq!(plain.status(), 200);
    assert_eq!(header(&plain, "content-encoding"), None);
    assert!(
        header(&plain, "vary")
            .unwrap()
            .to_lowercase()
            .contains("accept-encoding")
    );
    let identity = plain.bytes().await.unwrap();
    assert!(identity.len() > 100_000);

    for (accept, expect) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("gzip, deflate, br", "br"),
        ("br;q=0.5, gzip", "gzip"),
    ] {
        let resp = app
            .get("/openapi.json")
            .header("Accept-Encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "content-encoding").as_deref(),
            Some(expect),
            "{accept}"
        );
        let body = resp.bytes().await.unwrap();
        assert!(
            body.len() * 4 < identity.len(),
            "{accept}: {} bytes",
            body.len()
        );
        assert_eq!(decode(expect, &body).await, identity, "{accept}");
    }

    // A JSON list over 1 KiB through the API's own routes.
    let user = app.student().await;
    let resp = app
        .get("/api/badges/")
        .header("Authorization", user.bearer())
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-encoding").as_deref(), Some("gzip"));
    let badges: serde_json::Value =
        serde_json::from_slice(&decode("gzip", &resp.bytes().await.unwrap()).await).unwrap();
    assert_eq!(badges.as_array().unwrap().len(), 38);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_responses_and_event_streams_are_never_compressed() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    // Small JSON (well under 1 KiB).
    let resp = app
        .get("/api/notifications/unread-count")
        .header("Authorization", user.bearer())
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-encoding"), None);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["unread_count"], 0);

    // The notification stream stays an uncompressed event stream.
    let mut resp = app
        .get("/api/notifications/stream")
        .header("Authorization", user.bearer())
        .header("Accept-Encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        header(&resp, "content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(header(&resp, "content-encoding"), None);
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), resp.chunk())
        .await
        .expect("the stream sends its first event at once")
        .unwrap()
        .unwrap();
    assert!(std::str::from_utf8(&first).is_ok(), "plain text events");
}

/// A published world (free or not) with one level and one lesson.
async fn world(app: &TestApp, is_free: bool) -> (uuid::Uuid, uuid::Uuid, uuid::Uuid) {
    let slug = format!("w-{}", uuid::Uuid::new_v4().simple());
    let w: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO worlds (title, slug, order_index, is_free, difficulty, is_published)
         VALUES ($1, $1, 0, $2, 'Beginner', true) RETURNING id",
    )
    .bind(&slug)
    .bind(is_free)
    .fetch_one(app.db())
    .await
    .unwrap();
    let l: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'L', 0) RETURNING id",
    )
    .bind(w)
    .fetch_one(app.db())
    .await
    .unwrap();
    let le: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO lessons (level_id, title, video_url, xp_value, order_index)
         VALUES ($1, 'Lesson', 'https://video.example/x', 10, 0) RETURNING id",
    )
    .bind(l)
    .fetch_one(app.db())
    .await
    .unwrap();
    (w, l, le)
}

/// (status, ETag, Cache-Control, Vary, body length) of a GET.
async fn probe(
    app_url: String,
    client: &reqwest::Client,
    user: Option<&TestUser>,
    if_none_match: Option<&str>,
) -> (u16, Option<String>, Option<String>, String, usize) {
    let mut req = client.get(app_url);
    if let Some(u) = user {
        req = req.header("Authorization", u.bearer());
    }
    if let Some(tag) = if_none_match {
        req = req.header("If-None-Match", tag);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = header(&resp, "etag");
    let cc = header(&resp, "cache-control");
    let vary = header(&resp, "vary").unwrap_or_default().to_lowercase();
    let len = resp.bytes().await.unwrap().len();
    (status, etag, cc, vary, len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_reads_answer_304_until_what_they_depend_on_changes() {
    let app = TestApp::spawn_api_only().await;
    let (w, level, lesson) = world(&app, true).await;
    let c = reqwest::Client::new();
    let worlds = || app.url("/api/courses/worlds");

    // Anonymous: public for a minute, 304 on a match (no body), Vary set.
    let (s, tag, cc, vary, _) = probe(worlds(), &c, None, None).await;
    assert_eq!(s, 200);
    let anon = tag.expect("an ETag");
    assert!(
        anon.starts_with('"') && anon.ends_with('"'),
        "strong: {anon}"
    );
    assert_eq!(cc.as_deref(), Some("public, max-age=60"));
    assert!(
        vary.contains("authorization") && vary.contains("cookie"),
        "{vary}"
    );
    let (s, tag, cc, _, len) = probe(worlds(), &c, None, Some(&anon)).await;
    assert_eq!((s, tag.as_deref(), len), (304, Some(anon.as_str()), 0));
    assert_eq!(cc.as_deref(), Some("public, max-age=60"));
    let (s, ..) = probe(worlds(), &c, None, Some(&format!("\"other\", W/{anon}"))).await;
    assert_eq!(s, 304, "a list and a weak tag match too");
    let (s, ..) = probe(worlds(), &c, None, Some("\"stale\"")).await;
    assert_eq!(s, 200);

    // Signed in: private, another tag than the anonymous one and another
    // student's.
    let me = app.student().await;
    let you = app.student().await;
    let (s, mine, cc, ..) = probe(worlds(), &c, Some(&me), None).await;
    assert_eq!((s, cc.as_deref()), (200, Some("private, no-cache")));
    let mine = mine.unwrap();
    let (_, yours, ..) = probe(worlds(), &c, Some(&you), None).await;
    assert_ne!(mine, anon);
    assert_ne!(Some(mine.clone()), yours);
    assert_eq!(probe(worlds(), &c, Some(&me), Some(&mine)).await.0, 304);

    // Completing a lesson changes my worlds list, lessons and skill tree.
    let lessons = app.url(&format!("/api/courses/worlds/{w}/lessons"));
    let tree = app.url(&format!("/api/courses/worlds/{w}/skill-tree"));
    let detail = app.url(&format!("/api/courses/lessons/{lesson}"));
    let (_, lessons_tag, ..) = probe(lessons.clone(), &c, Some(&me), None).await;
    let (_, tree_tag, ..) = probe(tree.clone(), &c, Some(&me), None).await;
    let (s, detail_tag, cc, ..) = probe(detail.clone(), &c, Some(&me), None).await;
    assert_eq!((s, cc.as_deref()), (200, Some("private, no-cache")));
    for (url, tag) in [
        (&lessons, &lessons_tag),
        (&tree, &tree_tag),
        (&detail, &detail_tag),
    ] {
        assert_eq!(
            probe(url.clone(), &c, Some(&me), tag.as_deref()).await.0,
            304,
            "{url}"
        );
    }
    let done = app
        .post(&format!("/api/progress/lessons/{lesson}/complete"))
        .header("Authorization", me.bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    assert_eq!(probe(worlds(), &c, Some(&me), Some(&mine)).await.0, 200);
    assert_eq!(
        probe(lessons.clone(), &c, Some(&me), lessons_tag.as_deref())
            .await
            .0,
        200
    );
    assert_eq!(
        probe(tree.clone(), &c, Some(&me), tree_tag.as_deref())
            .await
            .0,
        200
    );
    // Others' answers did not change.
    assert_eq!(probe(worlds(), &c, None, Some(&anon)).await.0, 304);

    // A catalogue change (here an edge of the skill tree) changes every tag.
    let (_, tree_tag, ..) = probe(tree.clone(), &c, Some(&me), None).await;
    let other_level: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO levels (world_id, title, order_index) VALUES ($1, 'L2', 1) RETURNING id",
    )
    .bind(w)
    .fetch_one(app.db())
    .await
    .unwrap();
    let (_, tree_tag2, ..) = probe(tree.clone(), &c, Some(&me), None).await;
    assert_ne!(tree_tag, tree_tag2);
    sqlx::query(
        "INSERT INTO level_edges (world_id, from_level_id, to_level_id) VALUES ($1, $2, $3)",
    )
    .bind(w)
    .bind(level)
    .bind(other_level)
    .execute(app.db())
    .await
    .unwrap();
    assert_eq!(
        probe(tree.clone(), &c, Some(&me), tree_tag2.as_deref())
            .await
            .0,
        200
    );
    assert_eq!(probe(worlds(), &c, None, Some(&anon)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_and_badges_are_part_of_the_validator_and_every_api_agrees() {
    let app = TestApp::spawn_api_only().await;
    let peer = app.spawn_peer().await;
    let (_, _, lesson) = world(&app, false).await;
    let c = reqwest::Client::new();
    let pro = app.pro_student().await;
    let detail = app.url(&format!("/api/courses/lessons/{lesson}"));
    let (s, tag, ..) = probe(detail.clone(), &c, Some(&pro), None).await;
    assert_eq!(s, 200);
    // The other API process computes the same tag for the same state.
    let (s, peer_tag, ..) = probe(
        peer.url(&format!("/api/courses/lessons/{lesson}")),
        &c,
        Some(&pro),
        None,
    )
    .await;
    assert_eq!((s, &peer_tag), (200, &tag));
    // Losing paid access: no 304 for the old tag, the lesson is locked.
    sqlx::query("UPDATE subscriptions SET status = 'canceled', tier = 'rookie' WHERE user_id = $1")
        .bind(pro.id)
        .execute(app.db())
        .await
        .unwrap();
    let (s, tag2, ..) = probe(detail.clone(), &c, Some(&pro), tag.as_deref()).await;
    assert_eq!((s, tag2), (403, None));

    // Badges: 304 until one is earned, on both processes.
    let badges = || app.url("/api/badges/");
    let (s, btag, cc, ..) = probe(badges(), &c, Some(&pro), None).await;
    assert_eq!((s, cc.as_deref()), (200, Some("private, no-cache")));
    assert_eq!(
        probe(badges(), &c, Some(&pro), btag.as_deref()).await.0,
        304
    );
    assert_eq!(
        probe(peer.url("/api/badges/"), &c, Some(&pro), btag.as_deref())
            .await
            .0,
        304
    );
    sqlx::query(
        "INSERT INTO user_badges (user_id, badge_id)
         SELECT $1, id FROM badge_definitions ORDER BY id LIMIT 1",
    )
    .bind(pro.id)
    .execute(app.db())
    .await
    .unwrap();
    assert_eq!(
        probe(badges(), &c, Some(&pro), btag.as_deref()).await.0,
        200
    );
    assert_eq!(
        probe(peer.url("/api/badges/"), &c, Some(&pro), btag.as_deref())
            .await
            .0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_has_its_own_tag_and_either_tag_revalidates() {
    let app = TestApp::spawn_api_only().await;
    for _ in 0..3 {
        world(&app, true).await;
    }
    let user = app.student().await;
    let get = |enc: Option<&'static str>, inm: Option<String>| {
        let mut r = app
            .get("/api/badges/")
            .header("Authorization", user.bearer());
        if let Some(e) = enc {
            r = r.header("Accept-Encoding", e);
        }
        if let Some(t) = inm {
            r = r.header("If-None-Match", t);
        }
        r.send()
    };
    let plain = get(None, None).await.unwrap();
    let tag = header(&plain, "etag").unwrap();
    let gz = get(Some("gzip"), None).await.unwrap();
    assert_eq!(header(&gz, "content-encoding").as_deref(), Some("gzip"));
    let gz_tag = header(&gz, "etag").unwrap();
    assert_eq!(gz_tag, format!("{}-gzip\"", tag.trim_end_matches('"')));
    for inm in [tag.clone(), gz_tag.clone()] {
        let r = get(Some("gzip"), Some(inm.clone())).await.unwrap();
        assert_eq!(r.status(), 304, "{inm}");
        assert_eq!(header(&r, "content-encoding"), None);
    }
}
