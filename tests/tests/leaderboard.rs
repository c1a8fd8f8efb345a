//! Community leaderboards (API-2026-05.md N5.4, N5.7): `GET /api/community/stats`
//! with and without `period`/`category`/`limit`, the hall of fame,
//! `GET /api/community/stats/my-rank`, the snapshot (`leaderboard_entries`)
//! rebuilt by the worker's cron and directly, and account deletion.
//!
//! Activity is written with SQL, dated in the past, and the snapshot is
//! rebuilt with `leaderboard::rebuild` (the cron's function), except where the
//! cron itself is under test.

use mambo_core::community::leaderboard;
use mambo_core::jobs::AccountDeletionJob;
use mambo_core::privacy::deletion;
use mambo_tests::{StatusCode, TestApp, TestUser, eventually};
use serde_json::{Value, json};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A post by `user`, created `days` ago.
async fn post(app: &TestApp, user: Uuid, days: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, created_at)
         VALUES ($1, 'lab', 'A post', 'body', now() - make_interval(days => $2)) RETURNING id",
    )
    .bind(user)
    .bind(days)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn hide_post(app: &TestApp, post: Uuid) {
    sqlx::query("UPDATE posts SET is_hidden = true WHERE id = $1")
        .bind(post)
        .execute(app.db())
        .await
        .unwrap();
}

/// A reply by `user` on `post`, created `days` ago.
async fn reply(app: &TestApp, user: Uuid, post: Uuid, days: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO post_replies (post_id, user_id, content, created_at)
         VALUES ($1, $2, 'a reply', now() - make_interval(days => $3)) RETURNING id",
    )
    .bind(post)
    .bind(user)
    .bind(days)
    .fetch_one(app.db())
    .await
    .unwrap()
}

async fn set_reply(app: &TestApp, reply: Uuid, column: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE post_replies SET {column} = true WHERE id = $1"
    )))
    .bind(reply)
    .execute(app.db())
    .await
    .unwrap();
}

/// A reaction by `user` on `post`, created `days` ago.
async fn react(app: &TestApp, user: Uuid, post: Uuid, days: i32) {
    sqlx::query(
        "INSERT INTO post_reactions (post_id, user_id, reaction_type, created_at)
         VALUES ($1, $2, 'fire', now() - make_interval(days => $3))",
    )
    .bind(post)
    .bind(user)
    .bind(days)
    .execute(app.db())
    .await
    .unwrap();
}

async fn rebuild(app: &TestApp) -> u64 {
    leaderboard::rebuild(app.db(), app.ctx.clock.now())
        .await
        .unwrap()
        .entries
}

async fn stats(app: &TestApp, query: &str) -> Value {
    let (s, v) = app
        .call("GET", &format!("/api/community/stats{query}"), None, None)
        .await;
    assert_eq!(s, StatusCode::OK, "{query}: {v}");
    v
}

async fn my_rank(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let (s, v) = app
        .call(
            "GET",
            &format!("/api/community/stats/my-rank{query}"),
            Some(user),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{query}: {v}");
    v
}

/// A board as (id, score, rank).
fn rows(board: &Value) -> Vec<(Uuid, i64, i64)> {
    board
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().parse().unwrap(),
                e["score"].as_i64().unwrap(),
                e["rank"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The expected board: scores > 0, `score DESC, id ASC`, rank = position.
fn ranked(mut scores: Vec<(Uuid, i64)>) -> Vec<(Uuid, i64, i64)> {
    scores.retain(|(_, s)| *s > 0);
    scores.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    scores
        .into_iter()
        .enumerate()
        .map(|(i, (id, s))| (id, s, i as i64 + 1))
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

async fn entries_of(app: &TestApp, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM leaderboard_entries WHERE user_id = $1")
        .bind(user)
        .fetch_one(app.db())
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// The legacy answer
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_board_parameters_the_legacy_answer_stays_and_gains_the_hall_of_fame() {
    let app = TestApp::spawn_api_only().await;
    let a = app.student().await;
    let b = app.student().await;
    let c = app.student().await;
    let d = app.student().await;
    let p1 = post(&app, a.id, 0).await;
    post(&app, a.id, 0).await;
    post(&app, a.id, 0).await;
    let pb = post(&app, b.id, 0).await;
    post(&app, b.id, 0).await;
    post(&app, c.id, 0).await;
    // d has the most reactions and replies but one post: the legacy top 3
    // goes by post count (and the tie of c and d by id).
    let pd = post(&app, d.id, 0).await;
    react(&app, b.id, p1, 0).await;
    reply(&app, b.id, pb, 0).await;
    react(&app, a.id, pd, 0).await;
    react(&app, b.id, pd, 0).await;
    react(&app, c.id, pd, 0).await;

    let v = stats(&app, "").await;
    assert_eq!(
        keys(&v),
        [
            "active_now",
            "category",
            "hall_of_fame",
            "leaderboard",
            "member_count",
            "period"
        ]
    );
    assert_eq!(v["member_count"], 4);
    assert!(v["active_now"].as_i64().unwrap() >= 3);
    assert_eq!(v["period"], Value::Null);
    assert_eq!(v["category"], Value::Null);
    let lb = v["leaderboard"].as_array().unwrap();
    // The legacy entries keep API.md's shape exactly.
    for e in lb {
        assert_eq!(
            keys(e),
            ["avatar_url", "first_name", "id", "rank", "score"],
            "{e}"
        );
        assert_eq!(e["first_name"], "Test");
    }
    let third = if c.id < d.id { &c } else { &d };
    let third_score = if third.id == c.id { 5 } else { 5 + 3 * 2 };
    assert_eq!(
        rows(&v["leaderboard"]),
        vec![
            (a.id, 3 * 5 + 2, 1),
            (b.id, 2 * 5 + 3, 2),
            (third.id, third_score, 3)
        ]
    );
    // The hall of fame: the all-time overall board's top 5, with usernames.
    assert_eq!(
        rows(&v["hall_of_fame"]),
        ranked(vec![
            (a.id, 3 * 5 + 2),
            (b.id, 2 * 5 + 3),
            (c.id, 5),
            (d.id, 5 + 3 * 2),
        ])
    );
    for e in v["hall_of_fame"].as_array().unwrap() {
        assert_eq!(
            keys(e),
            [
                "avatar_url",
                "first_name",
                "id",
                "rank",
                "score",
                "username"
            ]
        );
        assert!(e["username"].as_str().unwrap().starts_with("u_"));
    }
}

// ---------------------------------------------------------------------------
// Boards: weights, windows, exclusions, ties
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_board_scores_its_items_in_its_window_and_skips_hidden_and_deleted_ones() {
    let app = TestApp::spawn_api_only().await;
    let author = app.student().await;
    let helper = app.student().await;
    let lurker = app.student().await;
    let _idle = app.student().await;
    let (u1, u2, u3) = (author.id, helper.id, lurker.id);

    // u1 posts (1, 10 and 40 days ago); u2 replies to and reacts on each, at
    // the same ages; the newest reply is the accepted answer.
    let mut posts = vec![];
    for days in [1, 10, 40] {
        let p = post(&app, u1, days).await;
        let r = reply(&app, u2, p, days).await;
        if days == 1 {
            set_reply(&app, r, "is_accepted_answer").await;
        }
        react(&app, u2, p, days).await;
        posts.push(p);
    }
    // Nothing of u3 counts: a hidden post (with a reaction and a reply by
    // u2 on it, which do not count for u2 either), a deleted reply and a
    // hidden one, a reply and a reaction on the hidden post.
    let hidden = post(&app, u3, 1).await;
    hide_post(&app, hidden).await;
    react(&app, u2, hidden, 1).await;
    let r = reply(&app, u2, hidden, 1).await;
    set_reply(&app, r, "is_accepted_answer").await;
    let r = reply(&app, u3, posts[0], 1).await;
    set_reply(&app, r, "is_deleted").await;
    let r = reply(&app, u3, posts[0], 1).await;
    set_reply(&app, r, "is_hidden").await;
    reply(&app, u3, hidden, 1).await;
    // A reaction on a hidden post does not count for its giver.
    let hidden2 = post(&app, u2, 1).await;
    hide_post(&app, hidden2).await;
    react(&app, u3, hidden2, 1).await;

    // Streak touches: one within 24 h, one older.
    sqlx::query("UPDATE user_profiles SET last_login_date = NULL")
        .execute(app.db())
        .await
        .unwrap();
    for (user, hours) in [(u1, 1), (u2, 30)] {
        sqlx::query(
            "UPDATE user_profiles SET last_login_date = now() - make_interval(hours => $2)
             WHERE user_id = $1",
        )
        .bind(user)
        .bind(hours)
        .execute(app.db())
        .await
        .unwrap();
    }
    rebuild(&app).await;

    // (period, category) → (u1, u2) scores. Items per period: u1 posts and
    // reactions received 1/2/3, u2 replies and reactions given 1/2/3, one
    // accepted answer (1 day old).
    let expected: [(&str, &str, i64, i64); 12] = [
        ("weekly", "overall", 5 + 2, 3 + 15),
        ("monthly", "overall", 2 * 5 + 2 * 2, 2 * 3 + 15),
        ("all_time", "overall", 3 * 5 + 3 * 2, 3 * 3 + 15),
        ("weekly", "helpful", 0, 3 + 10),
        ("monthly", "helpful", 0, 2 * 3 + 10),
        ("all_time", "helpful", 0, 3 * 3 + 10),
        ("weekly", "creative", 5 + 3, 0),
        ("monthly", "creative", 2 * 5 + 2 * 3, 0),
        ("all_time", "creative", 3 * 5 + 3 * 3, 0),
        // Equal scores: ordered by user id.
        ("weekly", "active", 3, 2 + 1),
        ("monthly", "active", 2 * 3, 2 * 2 + 2),
        ("all_time", "active", 3 * 3, 3 * 2 + 3),
    ];
    for (period, category, s1, s2) in expected {
        let v = stats(&app, &format!("?period={period}&category={category}")).await;
        assert_eq!(
            keys(&v),
            [
                "active_now",
                "category",
                "hall_of_fame",
                "leaderboard",
                "member_count",
                "period"
            ]
        );
        assert_eq!(v["period"], period);
        assert_eq!(v["category"], category);
        assert_eq!(v["member_count"], 4);
        assert_eq!(v["active_now"], 1, "one streak touch in the last 24 h");
        assert_eq!(
            rows(&v["leaderboard"]),
            ranked(vec![(u1, s1), (u2, s2)]),
            "{period} {category}"
        );
        for e in v["leaderboard"].as_array().unwrap() {
            assert_eq!(
                keys(e),
                [
                    "avatar_url",
                    "first_name",
                    "id",
                    "rank",
                    "score",
                    "username"
                ]
            );
        }
        assert_eq!(rows(&v["hall_of_fame"]), ranked(vec![(u1, 21), (u2, 24)]));
        // The caller's live score agrees with the board.
        let me = if category == "helpful" {
            &helper
        } else {
            &author
        };
        let mine = if category == "helpful" { s2 } else { s1 };
        let r = my_rank(&app, me, &format!("?period={period}&category={category}")).await;
        assert_eq!(r["score"], mine, "{period} {category}");
        let board = ranked(vec![(u1, s1), (u2, s2)]);
        let rank = board.iter().find(|(id, _, _)| *id == me.id).unwrap().2;
        assert_eq!(r["rank"], rank, "{period} {category}");
    }
    // The ties of the active board, explicitly.
    let v = stats(&app, "?period=weekly&category=active").await;
    let ids: Vec<Uuid> = rows(&v["leaderboard"]).iter().map(|r| r.0).collect();
    assert_eq!(ids, {
        let mut s = vec![u1, u2];
        s.sort();
        s
    });
    assert_eq!(rows(&v["leaderboard"])[1].2, 2, "rank is the position");

    // Defaults: all_time, overall, 10; limit cuts the board.
    let v = stats(&app, "?limit=1").await;
    assert_eq!(
        (&v["period"], &v["category"]),
        (&json!("all_time"), &json!("overall"))
    );
    assert_eq!(rows(&v["leaderboard"]), vec![(u2, 24, 1)]);
    let v = stats(&app, "?category=creative").await;
    assert_eq!(v["period"], "all_time");
    assert_eq!(rows(&v["leaderboard"]), vec![(u1, 24, 1)]);
    let v = stats(&app, "?period=monthly").await;
    assert_eq!(v["category"], "overall");
    assert_eq!(rows(&v["leaderboard"]), ranked(vec![(u1, 14), (u2, 21)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_holds_at_most_limit_members_and_the_hall_of_fame_five() {
    let app = TestApp::spawn_api_only().await;
    let mut scores = vec![];
    for n in 0..12 {
        let u = app.student().await;
        for _ in 0..(n % 4 + 1) {
            post(&app, u.id, 0).await;
        }
        scores.push((u.id, 5 * (n % 4 + 1)));
    }
    rebuild(&app).await;
    let all = ranked(scores);
    let v = stats(&app, "?period=all_time").await;
    assert_eq!(rows(&v["leaderboard"]), all[..10].to_vec());
    assert_eq!(rows(&v["hall_of_fame"]), all[..5].to_vec());
    let v = stats(&app, "?limit=50").await;
    assert_eq!(rows(&v["leaderboard"]), all);
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_board_parameters_are_422_lists() {
    let app = TestApp::spawn_api_only().await;
    let user = app.student().await;
    for (query, loc, kind) in [
        ("?period=daily", "period", "literal_error"),
        ("?period=", "period", "literal_error"),
        ("?category=best", "category", "literal_error"),
        ("?limit=0", "limit", "greater_than_equal"),
        ("?limit=51", "limit", "less_than_equal"),
        ("?limit=ten", "limit", "int_parsing"),
    ] {
        let (s, v) = app
            .call("GET", &format!("/api/community/stats{query}"), None, None)
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
        assert_eq!(v["detail"][0]["loc"], json!(["query", loc]), "{query}");
        assert_eq!(v["detail"][0]["type"], kind, "{query}");
    }
    let (s, v) = app
        .call(
            "GET",
            "/api/community/stats?period=daily&category=best&limit=99",
            None,
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let locs: Vec<&Value> = v["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["loc"])
        .collect();
    assert_eq!(
        locs,
        [
            &json!(["query", "period"]),
            &json!(["query", "category"]),
            &json!(["query", "limit"])
        ]
    );
    assert_eq!(
        v["detail"][0]["msg"],
        "Input should be 'weekly', 'monthly' or 'all_time'"
    );

    for query in [
        "?period=yearly",
        "?category=overall&period=x",
        "?category=Overall",
    ] {
        let (s, v) = app
            .call(
                "GET",
                &format!("/api/community/stats/my-rank{query}"),
                Some(&user),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {v}");
        assert_eq!(v["detail"][0]["type"], "literal_error");
    }
    let (s, _) = app
        .call("GET", "/api/community/stats/my-rank", None, None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------
// my-rank: live score, snapshot rank
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_rank_scores_live_and_ranks_against_the_snapshot() {
    let app = TestApp::spawn_api_only().await;
    let a = app.student().await;
    let b = app.student().await;
    let c = app.student().await;
    let me = app.student().await;
    for (u, n) in [(&a, 3), (&b, 2), (&c, 2)] {
        for _ in 0..n {
            post(&app, u.id, 0).await;
        }
    }
    rebuild(&app).await;

    let v = my_rank(&app, &me, "").await;
    assert_eq!(
        v,
        json!({"rank": null, "score": 0, "period": "all_time", "category": "overall"})
    );

    // Two posts: the score is live at once; the snapshot (without me) has
    // a (15) ahead, and b and c (10) ahead only when their id is smaller.
    post(&app, me.id, 0).await;
    post(&app, me.id, 0).await;
    let ties_ahead = [&b, &c].iter().filter(|u| u.id < me.id).count() as i64;
    let v = my_rank(&app, &me, "?period=all_time&category=overall").await;
    assert_eq!(v["score"], 10);
    assert_eq!(v["rank"], 2 + ties_ahead);
    // Public boards read the snapshot: not there yet.
    let board = stats(&app, "?period=all_time").await;
    assert!(
        rows(&board["leaderboard"]).iter().all(|r| r.0 != me.id),
        "boards lag until the next rebuild"
    );

    rebuild(&app).await;
    let board = stats(&app, "?period=all_time").await;
    let mine = rows(&board["leaderboard"])
        .into_iter()
        .find(|r| r.0 == me.id)
        .unwrap();
    assert_eq!(mine, (me.id, 10, 2 + ties_ahead));
    assert_eq!(my_rank(&app, &me, "").await["rank"], 2 + ties_ahead);

    // One more post: live 15, while the snapshot still holds my 10 (left out:
    // only a, at 15, can be ahead, when its id is smaller).
    post(&app, me.id, 0).await;
    let v = my_rank(&app, &me, "").await;
    assert_eq!(v["score"], 15);
    assert_eq!(v["rank"], 1 + i64::from(a.id < me.id));

    // Other boards and windows: the posts are today's, so weekly counts
    // them; helpful has nothing of mine.
    let v = my_rank(&app, &me, "?period=weekly&category=creative").await;
    assert_eq!(
        (&v["score"], &v["period"], &v["category"]),
        (&json!(15), &json!("weekly"), &json!("creative"))
    );
    let v = my_rank(&app, &me, "?category=helpful").await;
    assert_eq!(
        v,
        json!({"rank": null, "score": 0, "period": "all_time", "category": "helpful"})
    );
    // Old items fall out of the window.
    sqlx::query("UPDATE posts SET created_at = now() - interval '8 days' WHERE user_id = $1")
        .bind(me.id)
        .execute(app.db())
        .await
        .unwrap();
    let v = my_rank(&app, &me, "?period=weekly").await;
    assert_eq!((&v["score"], &v["rank"]), (&json!(0), &Value::Null));
    let v = my_rank(&app, &me, "?period=monthly").await;
    assert_eq!(v["score"], 15);
}

// ---------------------------------------------------------------------------
// The snapshot: rebuilt by the cron, directly, never growing
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_direct_rebuild_replaces_the_snapshot_and_never_grows_it() {
    let app = TestApp::spawn_api_only().await;
    let a = app.student().await;
    let b = app.student().await;
    let pa = post(&app, a.id, 0).await;
    post(&app, b.id, 20).await;
    react(&app, b.id, pa, 0).await;
    let first = rebuild(&app).await;
    // a: on every overall/creative/active board; b: monthly and all_time
    // overall/creative/active (post), and weekly+ active (reaction given);
    // plus the legacy top 3 (a and b).
    let count = |app: &TestApp| {
        let db = app.db().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM leaderboard_entries")
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(&app).await as u64, first);
    assert_eq!(first, 9 + 7 + 2);
    for _ in 0..3 {
        assert_eq!(rebuild(&app).await, first);
    }
    assert_eq!(count(&app).await as u64, first, "rebuilt, never grows");

    // A removed post leaves the boards at the next rebuild.
    sqlx::query("DELETE FROM posts WHERE user_id = $1")
        .bind(b.id)
        .execute(app.db())
        .await
        .unwrap();
    rebuild(&app).await;
    let v = stats(&app, "?period=monthly&category=creative").await;
    assert_eq!(rows(&v["leaderboard"]), vec![(a.id, 5 + 3, 1)]);
    let built = leaderboard::built_at(app.db()).await.unwrap();
    assert!(built.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_cron_rebuilds_the_boards() {
    let app = TestApp::spawn_with_vars(&[("LEADERBOARD_SCHEDULE", "*/1 * * * * *")]).await;
    let u = app.student().await;
    post(&app, u.id, 0).await;
    // No request has read a board: only the cron builds the snapshot.
    let built = eventually(30, || async {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM leaderboard_entries WHERE user_id = $1")
                .bind(u.id)
                .fetch_one(app.db())
                .await
                .unwrap();
        (n > 0).then_some(())
    })
    .await;
    assert!(built.is_some(), "the cron built the snapshot");
    let first = leaderboard::built_at(app.db()).await.unwrap().unwrap();

    // New activity shows on the board after a later tick.
    post(&app, u.id, 0).await;
    let seen = eventually(30, || async {
        let v = stats(&app, "?period=weekly&category=overall").await;
        (rows(&v["leaderboard"]) == vec![(u.id, 10, 1)]).then_some(())
    })
    .await;
    assert!(seen.is_some(), "the board caught up with the activity");
    let later = leaderboard::built_at(app.db()).await.unwrap().unwrap();
    assert!(later > first);
}

// ---------------------------------------------------------------------------
// Account deletion (N5.7)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_deletion_deletes_the_users_entries() {
    let app = TestApp::spawn_api_only().await;
    let victim = app.student().await;
    let other = app.student().await;
    let p = post(&app, victim.id, 0).await;
    post(&app, other.id, 0).await;
    react(&app, other.id, p, 0).await;
    rebuild(&app).await;
    assert!(entries_of(&app, victim.id).await > 0);
    let other_before = entries_of(&app, other.id).await;

    let (s, v) = app
        .call(
            "DELETE",
            "/api/users/me",
            Some(&victim),
            Some(json!({"password": victim.password})),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    deletion::run(&app.ctx, &AccountDeletionJob { user_id: victim.id })
        .await
        .unwrap();
    // Gone at once, before any rebuild; the others' entries stay.
    assert_eq!(entries_of(&app, victim.id).await, 0);
    assert_eq!(entries_of(&app, other.id).await, other_before);
    let v = stats(&app, "?period=all_time").await;
    assert!(rows(&v["leaderboard"]).iter().all(|r| r.0 != victim.id));
    assert!(rows(&v["hall_of_fame"]).iter().all(|r| r.0 != victim.id));
    // And the tombstone never comes back.
    rebuild(&app).await;
    assert_eq!(entries_of(&app, victim.id).await, 0);
}
