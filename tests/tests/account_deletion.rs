//! Account deletion (API-NEXT.md N3, GDPR art. 17): the user route and the
//! admin route, the immediate sign-in block, and the resumable worker job
//! (Stripe, Mux, R2, rows, tombstone, audit): run twice, killed halfway and
//! resumed, Stripe and Mux called once, other users' balances, counters and
//! accepted answers intact. Real PostgreSQL, Redis and S3 server; fake Stripe
//! and Mux.

use mambo_core::jobs::AccountDeletionJob;
use mambo_core::privacy::deletion::{self, Step};
use mambo_tests::s3::LocalS3;
use mambo_tests::{Options, StatusCode, TestApp, TestUser, UserSpec, eventually, json};
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Fakes {
    mux: MockServer,
    stripe: MockServer,
    s3: LocalS3,
}

async fn fakes() -> Fakes {
    let mux = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/video/v1/assets/[^/]+$"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&mux)
        .await;
    let stripe = MockServer::start().await;
    Mock::given(method("DELETE"))
        .and(path_regex("^/v1/subscriptions/[^/]+$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "sub_gone", "object": "subscription", "status": "canceled"
        })))
        .mount(&stripe)
        .await;
    Fakes {
        mux,
        stripe,
        s3: LocalS3::start("mambo-media").await,
    }
}

async fn spawn(f: &Fakes, worker: bool) -> TestApp {
    let mut vars: Vec<(String, String)> = vec![
        ("MUX_TOKEN_ID".into(), "mux-id".into()),
        ("MUX_TOKEN_SECRET".into(), "mux-secret".into()),
        ("MUX_BASE_URL".into(), f.mux.uri()),
        ("STRIPE_SECRET_KEY".into(), "sk_test_1".into()),
        ("STRIPE_WEBHOOK_SECRET".into(), "whsec_1".into()),
        ("STRIPE_BASE_URL".into(), f.stripe.uri()),
    ];
    vars.extend(f.s3.vars().into_iter().map(|(k, v)| (k.to_string(), v)));
    TestApp::spawn_with(Options { worker, vars }).await
}

/// How many `DELETE`s each Mux asset received.
async fn mux_deletes(mux: &MockServer, asset: &str) -> usize {
    let p = format!("/video/v1/assets/{asset}");
    mux.received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "DELETE" && r.url.path() == p)
        .count()
}

async fn stripe_cancels(stripe: &MockServer) -> usize {
    stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == "DELETE" && r.url.path() == "/v1/subscriptions/sub_del")
        .count()
}

/// The world around the user to delete.
struct World {
    victim: TestUser,
    friend: TestUser,
    other: TestUser,
    /// The victim's post (a stage video), with a reply by the friend.
    victim_post: Uuid,
    /// The friend's lab post: the victim's accepted reply, a reply by the
    /// other user, a reaction and a save by the victim.
    friend_post: Uuid,
    victim_reply: Uuid,
    avatar_key: String,
    export_key: String,
}

const ASSETS: [&str; 4] = [
    "asset-post",
    "asset-friend-reply",
    "asset-victim-reply",
    "asset-sub",
];

async fn world(app: &TestApp, f: &Fakes) -> World {
    let victim = app
        .create_user(UserSpec {
            subscription: Some(("active", "performer")),
            claves: 50,
            ..Default::default()
        })
        .await;
    let friend = app
        .create_user(UserSpec {
            claves: 40,
            ..Default::default()
        })
        .await;
    let other = app
        .create_user(UserSpec {
            claves: 30,
            ..Default::default()
        })
        .await;
    let db = app.db();
    sqlx::query(
        "UPDATE subscriptions SET stripe_customer_id = 'cus_del', stripe_subscription_id = 'sub_del'
         WHERE user_id = $1",
    )
    .bind(victim.id)
    .execute(db)
    .await
    .unwrap();

    let victim_post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags, mux_asset_id, mux_playback_id)
         VALUES ($1, 'stage', 'My routine', NULL, '{mambo}', 'asset-post', 'pb-post') RETURNING id",
    )
    .bind(victim.id)
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO post_replies (post_id, user_id, content, mux_asset_id, mux_playback_id)
         VALUES ($1, $2, 'Great!', 'asset-friend-reply', 'pb-friend-reply')",
    )
    .bind(victim_post)
    .bind(friend.id)
    .execute(db)
    .await
    .unwrap();
    sqlx::query("UPDATE posts SET reply_count = 1, reaction_count = 1 WHERE id = $1")
        .bind(victim_post)
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO post_reactions (post_id, user_id, reaction_type) VALUES ($1, $2, 'fire')",
    )
    .bind(victim_post)
    .bind(friend.id)
    .execute(db)
    .await
    .unwrap();

    let friend_post: Uuid = sqlx::query_scalar(
        "INSERT INTO posts (user_id, post_type, title, body, tags)
         VALUES ($1, 'lab', 'How to spin?', 'Help', '{mambo}') RETURNING id",
    )
    .bind(friend.id)
    .fetch_one(db)
    .await
    .unwrap();
    let victim_reply: Uuid = sqlx::query_scalar(
        "INSERT INTO post_replies (post_id, user_id, content, mux_asset_id, mux_playback_id,
                                   is_accepted_answer, created_at)
         VALUES ($1, $2, 'Spot your turn', 'asset-victim-reply', 'pb-victim-reply', true,
                 now() - interval '1 minute')
         RETURNING id",
    )
    .bind(friend_post)
    .bind(victim.id)
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO post_replies (post_id, user_id, content) VALUES ($1, $2, 'Agreed')")
        .bind(friend_post)
        .bind(other.id)
        .execute(db)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE posts SET reply_count = 2, reaction_count = 2, is_solved = true,
             accepted_answer_id = $2
         WHERE id = $1",
    )
    .bind(friend_post)
    .bind(victim_reply)
    .execute(db)
    .await
    .unwrap();
    for u in [victim.id, other.id] {
        sqlx::query(
            "INSERT INTO post_reactions (post_id, user_id, reaction_type) VALUES ($1, $2, 'clap')",
        )
        .bind(friend_post)
        .bind(u)
        .execute(db)
        .await
        .unwrap();
    }
    for u in [victim.id, other.id] {
        sqlx::query("INSERT INTO saved_posts (user_id, post_id) VALUES ($1, $2)")
            .bind(u)
            .bind(friend_post)
            .execute(db)
            .await
            .unwrap();
    }
    // The accepted answer paid the victim through the ledger; the friend
    // spent on a reaction: both stay in the ledger.
    mambo_core::economy::credit(
        &mut db.acquire().await.unwrap(),
        victim.id,
        10,
        "accepted_answer",
        Some(victim_reply),
        Some(&format!("accepted_answer:{victim_reply}")),
    )
    .await
    .unwrap();

    // A boss submission whose video is a recorded Mux upload.
    let lesson: Uuid = sqlx::query_scalar(
        "WITH w AS (INSERT INTO worlds (title, slug, order_index, difficulty)
                    VALUES ('W', $1, 1, 'Beginner') RETURNING id),
              l AS (INSERT INTO levels (world_id, title, order_index)
                    SELECT id, 'L', 0 FROM w RETURNING id)
         INSERT INTO lessons (level_id, title, order_index, is_boss_battle)
         SELECT id, 'Boss', 0, true FROM l RETURNING id",
    )
    .bind(format!("w-{}", Uuid::new_v4().simple()))
    .fetch_one(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO boss_submissions (user_id, lesson_id, video_url) VALUES ($1, $2, 'pbsubmission01')",
    )
    .bind(victim.id)
    .bind(lesson)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO mux_uploads (upload_id, user_id, target_type, status, asset_id, playback_id)
         VALUES ($1, $2, 'none', 'ready', 'asset-sub', 'pbsubmission01')",
    )
    .bind(format!("up-{}", Uuid::new_v4().simple()))
    .bind(victim.id)
    .execute(db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, type, title, message)
         VALUES ($1, $2, 'badge_earned', 'Badge', 'You earned it')",
    )
    .bind(Uuid::now_v7())
    .bind(victim.id)
    .execute(db)
    .await
    .unwrap();
    sqlx::query("INSERT INTO notification_preferences (user_id) VALUES ($1)")
        .bind(victim.id)
        .execute(db)
        .await
        .unwrap();

    // Objects in R2: the avatar and an old export archive.
    let r2 = app.ctx.config.r2.clone().unwrap();
    let client = mambo_core::uploads::s3_client(&r2);
    let avatar_key = format!("avatars/{}.png", Uuid::new_v4());
    let export_key = format!("exports/{}/{}.zip", victim.id, Uuid::new_v4());
    for key in [&avatar_key, &export_key] {
        client
            .put_object()
            .bucket(&r2.bucket)
            .key(key.as_str())
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"data"))
            .send()
            .await
            .unwrap();
        assert!(f.s3.object_path(key).exists());
    }
    sqlx::query("UPDATE user_profiles SET avatar_url = $2 WHERE user_id = $1")
        .bind(victim.id)
        .bind(mambo_core::uploads::public_url(&r2, &avatar_key))
        .execute(db)
        .await
        .unwrap();

    World {
        victim,
        friend,
        other,
        victim_post,
        friend_post,
        victim_reply,
        avatar_key,
        export_key,
    }
}

async fn login(app: &TestApp, u: &TestUser) -> (StatusCode, Value) {
    json(
        app.post("/api/auth/token")
            .json(&json!({"email": u.email, "password": u.password}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn me_status(app: &TestApp, u: &TestUser) -> StatusCode {
    app.get("/api/auth/me")
        .header("Authorization", u.bearer())
        .send()
        .await
        .unwrap()
        .status()
}

async fn delete_me(app: &TestApp, u: &TestUser, body: Value) -> (StatusCode, Value) {
    json(
        app.delete("/api/users/me")
            .header("Authorization", u.bearer())
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn ledger_rows(app: &TestApp, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM clave_transactions WHERE user_id = $1")
        .bind(id)
        .fetch_one(app.db())
        .await
        .unwrap()
}

async fn completed(app: &TestApp, id: Uuid) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT completed_at IS NOT NULL FROM account_deletions WHERE user_id = $1",
    )
    .bind(id)
    .fetch_optional(app.db())
    .await
    .unwrap()
    .unwrap_or(false)
}

/// Everything the deletion must have done (and left alone).
async fn assert_deleted(app: &TestApp, f: &Fakes, w: &World, ledger_before: i64) {
    let db = app.db();
    // Stripe and Mux: each called once.
    assert_eq!(stripe_cancels(&f.stripe).await, 1);
    for asset in ASSETS {
        assert_eq!(mux_deletes(&f.mux, asset).await, 1, "{asset}");
    }
    // R2: the avatar and the exports are gone.
    assert!(!f.s3.object_path(&w.avatar_key).exists());
    assert!(!f.s3.object_path(&w.export_key).exists());

    // The victim's post is gone, with the friend's reply under it.
    let (s, _) = json(
        app.get(&format!("/api/community/posts/{}", w.victim_post))
            .header("Authorization", w.friend.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM post_replies WHERE post_id = $1 OR mux_asset_id IS NOT NULL",
    )
    .bind(w.victim_post)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(left, 0);

    // The friend's post: the victim's reply stays as `Deleted user`, still
    // the accepted answer; reply count unchanged; the victim's reaction gone.
    let (s, detail) = json(
        app.get(&format!("/api/community/posts/{}", w.friend_post))
            .header("Authorization", w.other.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    let replies = detail["replies"].as_array().unwrap();
    assert_eq!(replies.len(), 2, "{detail}");
    let kept = replies
        .iter()
        .find(|r| r["id"] == json!(w.victim_reply))
        .expect("the victim's reply stays");
    assert_eq!(kept["user"]["first_name"], "Deleted");
    assert_eq!(kept["user"]["last_name"], "user");
    assert_eq!(kept["user"]["avatar_url"], Value::Null);
    assert_eq!(kept["content"], "Spot your turn");
    assert_eq!(kept["mux_playback_id"], Value::Null);
    assert_eq!(kept["is_accepted_answer"], true);
    let post = &detail;
    assert_eq!(post["reply_count"], 2, "{post}");
    assert_eq!(post["reaction_count"], 1, "{post}");
    assert_eq!(post["is_solved"], true);
    let accepted: Option<Uuid> =
        sqlx::query_scalar("SELECT accepted_answer_id FROM posts WHERE id = $1")
            .bind(w.friend_post)
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(accepted, Some(w.victim_reply));
    // Counters match the rows on every remaining post.
    let drift: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM posts p WHERE
             p.reply_count <> (SELECT count(*) FROM post_replies r WHERE r.post_id = p.id)
          OR p.reaction_count <> (SELECT count(*) FROM post_reactions r WHERE r.post_id = p.id)",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(drift, 0);

    // The victim's rows are gone, the other user's saves and reactions stay.
    for (table, column) in [
        ("posts", "user_id"),
        ("post_reactions", "user_id"),
        ("saved_posts", "user_id"),
        ("notifications", "user_id"),
        ("notification_preferences", "user_id"),
        ("boss_submissions", "user_id"),
        ("data_exports", "user_id"),
    ] {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE {column} = $1"
        )))
        .bind(w.victim.id)
        .fetch_one(db)
        .await
        .unwrap();
        assert_eq!(n, 0, "{table}");
    }
    let others: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM saved_posts WHERE user_id = $1)
              + (SELECT count(*) FROM post_reactions WHERE user_id = $1)",
    )
    .bind(w.other.id)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(others, 2);

    // The tombstone: nothing that names the person; the ledger stays.
    let (email, hash, social, deleted): (String, Option<String>, Option<String>, bool) =
        sqlx::query_as(
            "SELECT email, hashed_password, social_id, deleted_at IS NOT NULL FROM users WHERE id = $1",
        )
        .bind(w.victim.id)
        .fetch_one(db)
        .await
        .unwrap();
    assert_ne!(email, w.victim.email);
    assert!(email.ends_with("@deleted.invalid"), "{email}");
    assert_eq!((hash, social, deleted), (None, None, true));
    let (first, last, username, avatar): (String, String, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT first_name, last_name, username, avatar_url FROM user_profiles WHERE user_id = $1",
        )
        .bind(w.victim.id)
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!((first.as_str(), last.as_str()), ("Deleted", "user"));
    assert_eq!((username, avatar), (None, None));
    let ledger_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM clave_transactions WHERE user_id = $1")
            .bind(w.victim.id)
            .fetch_one(db)
            .await
            .unwrap();
    assert_eq!(ledger_rows, ledger_before, "the ledger rows stay");
    // Every balance still equals its ledger.
    for u in [&w.victim, &w.friend, &w.other] {
        let (balance, ledger) = app.balance_and_ledger(u.id).await;
        assert_eq!(balance, ledger, "{}", u.email);
    }
    let all_exact: bool = sqlx::query_scalar(
        "SELECT bool_and(p.current_claves =
                 COALESCE((SELECT sum(amount) FROM clave_transactions c WHERE c.user_id = p.user_id), 0))
         FROM user_profiles p",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert!(all_exact);

    // One audit row for the completed deletion (a system row).
    let audits: Vec<(Option<Uuid>, Value)> = sqlx::query_as(
        "SELECT actor_id, after FROM audit_log
         WHERE action = 'user.delete' AND target_id = $1 AND actor_id IS NULL",
    )
    .bind(w.victim.id.to_string())
    .fetch_all(db)
    .await
    .unwrap();
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert_eq!(audits[0].1["status"], "deleted");
    assert_eq!(audits[0].1["posts_deleted"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_ones_account_blocks_sign_in_at_once_and_the_worker_erases_it() {
    let f = fakes().await;
    let app = spawn(&f, true).await;
    let w = world(&app, &f).await;
    // A rate-limit key of the victim in Redis.
    let key = app.ctx.redis.key(&mambo_core::ratelimit::key(
        &mambo_core::ratelimit::LOGIN,
        &w.victim.email,
    ));
    let mut redis = app.ctx.redis.conn();
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(1)
        .query_async(&mut redis)
        .await
        .unwrap();

    let (s, _) = login(&app, &w.victim).await;
    assert_eq!(s, StatusCode::OK);
    // Authorization first, then the body.
    let r = app
        .delete("/api/users/me")
        .json(&json!({"password": w.victim.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (s, v) = delete_me(&app, &w.victim, json!({"password": "wrong-password"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v, json!({"detail": "Password is incorrect"}));
    let (s, v) = delete_me(&app, &w.victim, json!({"confirm": "DELETE"})).await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "an email account needs its password"
    );
    assert_eq!(v, json!({"detail": "Password is incorrect"}));
    assert_eq!(me_status(&app, &w.victim).await, StatusCode::OK);

    let ledger_before = ledger_rows(&app, w.victim.id).await;
    assert!(ledger_before >= 2);
    let (s, v) = delete_me(&app, &w.victim, json!({"password": w.victim.password})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v,
        json!({"message": "Your account is scheduled for deletion"})
    );
    // At once: the token is refused and sign-in answers as a wrong password.
    assert_eq!(me_status(&app, &w.victim).await, StatusCode::UNAUTHORIZED);
    let (s, v) = login(&app, &w.victim).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v, json!({"detail": "Incorrect email or password"}));
    let (s, _) = delete_me(&app, &w.victim, json!({"password": w.victim.password})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The others are untouched.
    assert_eq!(me_status(&app, &w.friend).await, StatusCode::OK);

    // The worker does the rest.
    let done = eventually(30, || async {
        completed(&app, w.victim.id).await.then_some(())
    })
    .await;
    assert!(done.is_some(), "the deletion job did not finish");
    assert_deleted(&app, &f, &w, ledger_before).await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "the user's Redis keys are deleted");

    // Running the job again changes nothing and calls nobody.
    deletion::run(
        &app.ctx,
        &AccountDeletionJob {
            user_id: w.victim.id,
        },
    )
    .await
    .unwrap();
    assert_deleted(&app, &f, &w, ledger_before).await;
    let (s, _) = login(&app, &w.victim).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = login(&app, &w.friend).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_killed_halfway_resumes_without_repeating_a_step() {
    let f = fakes().await;
    // Mux fails once for the post's asset (the second of four, in id
    // order): the job dies in the middle of its Mux step.
    Mock::given(method("DELETE"))
        .and(path("/video/v1/assets/asset-post"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.mux)
        .await;
    let app = spawn(&f, false).await;
    let w = world(&app, &f).await;
    let (s, _) = delete_me(&app, &w.victim, json!({"password": w.victim.password})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let job = AccountDeletionJob {
        user_id: w.victim.id,
    };

    // First attempt: Stripe done, Mux halfway, then the failure.
    let err = deletion::run(&app.ctx, &job).await;
    assert!(err.is_err(), "the Mux outage fails the job");
    assert_eq!(stripe_cancels(&f.stripe).await, 1);
    assert_eq!(mux_deletes(&f.mux, "asset-friend-reply").await, 1);
    assert_eq!(
        mux_deletes(&f.mux, "asset-post").await,
        1,
        "the failed call"
    );
    assert_eq!(mux_deletes(&f.mux, "asset-sub").await, 0);
    assert_eq!(mux_deletes(&f.mux, "asset-victim-reply").await, 0);
    // Nothing of the rows happened yet; the account is already blocked.
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts WHERE user_id = $1")
        .bind(w.victim.id)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(posts, 1);
    assert!(!completed(&app, w.victim.id).await);
    assert_eq!(me_status(&app, &w.victim).await, StatusCode::UNAUTHORIZED);

    // Resumed, but killed again after the object storage step.
    deletion::run_until(&app.ctx, w.victim.id, Step::Storage)
        .await
        .unwrap();
    assert!(!f.s3.object_path(&w.avatar_key).exists());
    assert!(!completed(&app, w.victim.id).await);
    assert_eq!(mux_deletes(&f.mux, "asset-post").await, 2, "retried once");
    assert_eq!(
        mux_deletes(&f.mux, "asset-friend-reply").await,
        1,
        "not repeated"
    );
    assert_eq!(mux_deletes(&f.mux, "asset-victim-reply").await, 1);

    // Resumed to the end, then run once more.
    deletion::run(&app.ctx, &job).await.unwrap();
    assert!(completed(&app, w.victim.id).await);
    deletion::run(&app.ctx, &job).await.unwrap();
    assert_eq!(stripe_cancels(&f.stripe).await, 1);
    for asset in ["asset-friend-reply", "asset-sub", "asset-victim-reply"] {
        assert_eq!(mux_deletes(&f.mux, asset).await, 1, "{asset}");
    }
    assert_eq!(mux_deletes(&f.mux, "asset-post").await, 2);
    // The rest as for an uninterrupted run (the failed call aside).
    let (s, detail) = json(
        app.get(&format!("/api/community/posts/{}", w.friend_post))
            .header("Authorization", w.other.bearer())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(detail["reply_count"], 2);
    assert_eq!(detail["reaction_count"], 1);
    for u in [&w.victim, &w.friend, &w.other] {
        let (balance, ledger) = app.balance_and_ledger(u.id).await;
        assert_eq!(balance, ledger);
    }
    let audits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'user.delete' AND target_id = $1",
    )
    .bind(w.victim.id.to_string())
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(audits, 1, "one audit row however many runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_delete_other_accounts_with_an_audit_row() {
    let f = fakes().await;
    let app = spawn(&f, false).await;
    let admin = app.admin().await;
    let student = app.student().await;
    let bystander = app.student().await;
    let call = |who: &TestUser, id: String| {
        let req = app
            .delete(&format!("/api/admin/users/{id}"))
            .header("Authorization", who.bearer());
        async move { json(req.send().await.unwrap()).await }
    };

    let (s, v) = call(&student, bystander.id.to_string()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = call(&admin, Uuid::new_v4().to_string()).await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "User not found"}))
    );
    let (s, v) = call(&admin, "not-a-uuid".into()).await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "User not found"}))
    );
    let (s, v) = call(&admin, admin.id.to_string()).await;
    assert_eq!(
        (s, v),
        (
            StatusCode::BAD_REQUEST,
            json!({"detail": "Use DELETE /api/users/me"})
        )
    );

    let (s, v) = call(&admin, student.id.to_string()).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(
        v,
        json!({"message": "The account is scheduled for deletion"})
    );
    assert_eq!(me_status(&app, &student).await, StatusCode::UNAUTHORIZED);
    let (s, _) = login(&app, &student).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Asking again is accepted and queues nothing new.
    let (s, _) = call(&admin, student.id.to_string()).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_outbox WHERE queue = 'account_deletion' AND payload->>'user_id' = $1",
    )
    .bind(student.id.to_string())
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(queued, 1);

    // The admin's audit row, written with the request.
    let (actor, before): (Option<Uuid>, Value) = sqlx::query_as(
        "SELECT actor_id, before FROM audit_log
         WHERE action = 'user.delete' AND target_type = 'user' AND target_id = $1
         ORDER BY created_at LIMIT 1",
    )
    .bind(student.id.to_string())
    .fetch_one(app.db())
    .await
    .unwrap();
    assert_eq!(actor, Some(admin.id));
    assert_eq!(before["id"], json!(student.id));
    let (s, rows) = json(
        app.get(&format!(
            "/api/admin/audit?action=user.delete&target_id={}",
            student.id
        ))
        .header("Authorization", admin.bearer())
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert!(!rows.as_array().unwrap().is_empty(), "{rows}");

    // The job finishes it; the tombstone is no longer a user to delete.
    deletion::run(
        &app.ctx,
        &AccountDeletionJob {
            user_id: student.id,
        },
    )
    .await
    .unwrap();
    assert!(completed(&app, student.id).await);
    let (s, v) = call(&admin, student.id.to_string()).await;
    assert_eq!(
        (s, v),
        (StatusCode::NOT_FOUND, json!({"detail": "User not found"}))
    );
    assert_eq!(me_status(&app, &bystander).await, StatusCode::OK);
    // No subscription at Stripe, no video: nobody was called.
    assert_eq!(stripe_cancels(&f.stripe).await, 0);
    assert!(
        f.mux
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_accounts_confirm_with_the_word_delete() {
    let f = fakes().await;
    let app = spawn(&f, false).await;
    let user = app.student().await;
    sqlx::query(
        "UPDATE users SET auth_provider = 'google', social_id = 'g-1', hashed_password = NULL
         WHERE id = $1",
    )
    .bind(user.id)
    .execute(app.db())
    .await
    .unwrap();
    let (s, v) = delete_me(&app, &user, json!({"confirm": "delete"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = delete_me(&app, &user, json!({"password": "anything"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = delete_me(&app, &user, json!({"confirm": 5})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(me_status(&app, &user).await, StatusCode::OK);
    let (s, v) = delete_me(&app, &user, json!({"confirm": "DELETE"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["message"], "Your account is scheduled for deletion");
    assert_eq!(me_status(&app, &user).await, StatusCode::UNAUTHORIZED);
    deletion::run(&app.ctx, &AccountDeletionJob { user_id: user.id })
        .await
        .unwrap();
    let social: Option<String> = sqlx::query_scalar("SELECT social_id FROM users WHERE id = $1")
        .bind(user.id)
        .fetch_one(app.db())
        .await
        .unwrap();
    assert_eq!(social, None, "the Google link is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_deliveries_of_the_job_run_the_deletion_once() {
    let f = fakes().await;
    let app = spawn(&f, false).await;
    let w = world(&app, &f).await;
    let ledger_before = ledger_rows(&app, w.victim.id).await;
    let (s, _) = delete_me(&app, &w.victim, json!({"password": w.victim.password})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let job = AccountDeletionJob {
        user_id: w.victim.id,
    };
    let (a, b, c) = tokio::join!(
        deletion::run(&app.ctx, &job),
        deletion::run(&app.ctx, &job),
        deletion::run(&app.ctx, &job),
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    // A run that found another one busy left the work to it: run once more.
    deletion::run(&app.ctx, &job).await.unwrap();
    assert!(completed(&app, w.victim.id).await);
    assert_deleted(&app, &f, &w, ledger_before).await;
}
