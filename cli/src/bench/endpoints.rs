//! The fixtures (accounts, tokens, ids) and the endpoints the benchmark drives.

use super::*;

/// Ids `md5('<kind>:<n>')::uuid` for `n` in `ns` (the seed's id scheme).
pub(super) async fn ids(
    conn: &mut PgConnection,
    kind: &str,
    ns: &[i64],
) -> anyhow::Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(
        "SELECT md5($1 || ':' || n)::uuid FROM unnest($2::bigint[]) WITH ORDINALITY AS t(n, o)
         ORDER BY o",
    )
    .bind(kind)
    .bind(ns)
    .fetch_all(&mut *conn)
    .await?)
}

/// A deterministic spread of `n` over `0..m` (splitmix64).
pub(super) fn spread(n: u64, m: i64) -> i64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % (m.max(1) as u64)) as i64
}

pub(super) struct Fixtures {
    pub(super) base: String,
    /// Access tokens of the benchmark accounts (index = user number).
    pub(super) tokens: Vec<String>,
    /// Tokens of the pro benchmark accounts.
    pub(super) pro_tokens: Vec<String>,
    pub(super) worlds: Vec<Uuid>,
    pub(super) lessons: Vec<Uuid>,
    pub(super) posts: Vec<Uuid>,
    pub(super) fresh_posts: Vec<Uuid>,
    pub(super) emails: i64,
    pub(super) deep_skip: i64,
    /// (token, ETag of its signed-in worlds list), for the 304 row.
    pub(super) etags: Vec<(String, String)>,
}

pub(super) type MakeRequest =
    Arc<dyn Fn(&reqwest::Client, u64) -> reqwest::RequestBuilder + Send + Sync>;

pub(super) struct Endpoint {
    pub(super) name: String,
    pub(super) make: MakeRequest,
    /// Shared by every cell of the endpoint: sequence numbers never repeat
    /// (each react is a new (user, post) pair, each login a fresh email).
    pub(super) counter: Arc<AtomicU64>,
}

pub(super) fn endpoints(f: Arc<Fixtures>) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = vec![];
    let mut add = |name: &str, make: MakeRequest| {
        out.push(Endpoint {
            name: name.to_string(),
            make,
            counter: Arc::new(AtomicU64::new(0)),
        })
    };
    let g = f.clone();
    add(
        "GET /api/courses/worlds (anonymous)",
        Arc::new(move |c, _| c.get(format!("{}/api/courses/worlds", g.base))),
    );
    let g = f.clone();
    add(
        "GET /api/courses/worlds (signed in)",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/courses/worlds", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/courses/worlds/{id}/lessons",
        Arc::new(move |c, n| {
            let w = g.worlds[n as usize % g.worlds.len()];
            c.get(format!("{}/api/courses/worlds/{w}/lessons", g.base))
                .bearer_auth(&g.pro_tokens[n as usize % g.pro_tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/courses/lessons/{id}",
        Arc::new(move |c, n| {
            let l = g.lessons[spread(n, g.lessons.len() as i64) as usize];
            c.get(format!("{}/api/courses/lessons/{l}", g.base))
                .bearer_auth(&g.pro_tokens[n as usize % g.pro_tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/community/feed (page 1)",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/community/feed?skip=0&limit=20", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        &format!("GET /api/community/feed (skip={})", f.deep_skip),
        Arc::new(move |c, n| {
            c.get(format!(
                "{}/api/community/feed?skip={}&limit=20",
                g.base, g.deep_skip
            ))
            .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/community/posts/{id}",
        Arc::new(move |c, n| {
            let p = g.posts[spread(n, g.posts.len() as i64) as usize];
            c.get(format!("{}/api/community/posts/{p}", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/claves/wallet",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/claves/wallet", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "POST /api/community/posts/{id}/react",
        Arc::new(move |c, n| {
            // Pair n -> (user a, post (a + b) % F): unique for n < users × F,
            // and consecutive requests touch different users and posts.
            let users = g.tokens.len() as u64;
            let fresh = g.fresh_posts.len() as u64;
            let (a, b) = (n % users, n / users);
            let p = g.fresh_posts[((a + b) % fresh) as usize];
            c.post(format!("{}/api/community/posts/{p}/react", g.base))
                .bearer_auth(&g.tokens[a as usize])
                .json(&serde_json::json!({"reaction_type": "fire"}))
        }),
    );
    for path in ["/api/auth/me", "/api/users/me", "/api/badges/"] {
        let g = f.clone();
        add(
            &format!("GET {path}"),
            Arc::new(move |c, n| {
                c.get(format!("{}{path}", g.base))
                    .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
            }),
        );
    }
    let g = f.clone();
    add(
        "GET /api/notifications/unread-count",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/notifications/unread-count", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/notifications",
        Arc::new(move |c, n| {
            c.get(format!("{}/api/notifications?skip=0&limit=20", g.base))
                .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    // Issue 26: the reads the May 2026 pages make on every visit.
    for path in [
        "/api/community/upload-check-lab",
        "/api/community/upload-check",
    ] {
        let g = f.clone();
        add(
            &format!("GET {path}"),
            Arc::new(move |c, n| {
                c.get(format!("{}{path}", g.base))
                    .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
            }),
        );
    }
    let g = f.clone();
    add(
        "GET /api/payments/guild-master-seats",
        Arc::new(move |c, _| c.get(format!("{}/api/payments/guild-master-seats", g.base))),
    );
    let g = f.clone();
    add(
        "GET /api/community/feed (anonymous preview)",
        Arc::new(move |c, _| c.get(format!("{}/api/community/feed?skip=0&limit=20", g.base))),
    );
    // N5.4: a board and the caller's rank, both read from the leaderboard
    // snapshot (plus the caller's live counts for my-rank).
    let g = f.clone();
    add(
        "GET /api/community/stats (period=weekly, category=overall)",
        Arc::new(move |c, _| {
            c.get(format!(
                "{}/api/community/stats?period=weekly&category=overall",
                g.base
            ))
        }),
    );
    let g = f.clone();
    add(
        "GET /api/community/stats/my-rank",
        Arc::new(move |c, n| {
            c.get(format!(
                "{}/api/community/stats/my-rank?period=all_time&category=overall",
                g.base
            ))
            .bearer_auth(&g.tokens[n as usize % g.tokens.len()])
        }),
    );
    let g = f.clone();
    add(
        "GET /api/courses/worlds (signed in, If-None-Match: 304)",
        Arc::new(move |c, n| {
            let (token, tag) = &g.etags[n as usize % g.etags.len()];
            c.get(format!("{}/api/courses/worlds", g.base))
                .bearer_auth(token)
                .header("if-none-match", tag)
        }),
    );
    for (label, encoding) in [
        ("identity", None),
        ("gzip", Some("gzip")),
        ("br", Some("br")),
    ] {
        let g = f.clone();
        add(
            &format!("GET /api/community/feed (page 1, {label})"),
            Arc::new(move |c, n| {
                let r = c
                    .get(format!("{}/api/community/feed?skip=0&limit=20", g.base))
                    .bearer_auth(&g.tokens[n as usize % g.tokens.len()]);
                match encoding {
                    Some(e) => r.header("accept-encoding", e),
                    None => r,
                }
            }),
        );
        let g = f.clone();
        add(
            &format!("GET /openapi.json ({label})"),
            Arc::new(move |c, _| {
                let r = c.get(format!("{}/openapi.json", g.base));
                match encoding {
                    Some(e) => r.header("accept-encoding", e),
                    None => r,
                }
            }),
        );
    }
    let g = f;
    add(
        "POST /api/auth/token (login)",
        Arc::new(move |c, n| {
            // A fresh email and client address per attempt: the per-email
            // (5 / 5 min) and per-address limits are not what is measured.
            let email = bench_seed::bench_email(n as i64 % g.emails);
            let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
            c.post(format!("{}/api/auth/token", g.base))
                .header("x-forwarded-for", ip)
                .form(&[
                    ("username", email.as_str()),
                    ("password", bench_seed::BENCH_PASSWORD),
                ])
        }),
    );
    out
}

pub(super) async fn fixtures(url: &str, s: &Sizes, base: String) -> anyhow::Result<Fixtures> {
    let (opts, _) = options(url)?;
    let mut conn = PgConnection::connect_with(&opts).await?;
    let bench: Vec<i64> = (0..s.bench_users).collect();
    let user_ids = ids(&mut conn, "u", &bench).await?;
    let mut map = HashMap::new();
    map.insert("SECRET_KEY".to_string(), SECRET.to_string());
    let config = mambo_core::Config::from_map(&map)?;
    // Long enough for the whole run.
    let now = chrono_now() + 3 * 3600 - config.access_token_seconds();
    let tokens: Vec<String> = user_ids
        .iter()
        .map(|u| create_token(&config, *u, TokenKind::Access, now))
        .collect();
    let pro_tokens = tokens.iter().step_by(2).cloned().collect();
    let worlds = ids(&mut conn, "w", &(0..s.worlds).collect::<Vec<_>>()).await?;
    let lessons = ids(&mut conn, "le", &(0..s.lessons).collect::<Vec<_>>()).await?;
    let sample: Vec<i64> = (0..5_000u64).map(|n| spread(n, s.posts)).collect();
    let posts = ids(&mut conn, "p", &sample).await?;
    let fresh: Vec<i64> = (s.posts - s.fresh_posts..s.posts).collect();
    let fresh_posts = ids(&mut conn, "p", &fresh).await?;
    // The ETag each of the first 64 accounts holds for its worlds list.
    let client = reqwest::Client::new();
    let mut etags = vec![];
    for t in tokens.iter().take(64) {
        let r = client
            .get(format!("{base}/api/courses/worlds"))
            .bearer_auth(t)
            .send()
            .await?;
        if let Some(tag) = r.headers().get("etag").and_then(|v| v.to_str().ok()) {
            etags.push((t.clone(), tag.to_string()));
        }
    }
    if etags.is_empty() {
        anyhow::bail!("the worlds list sends no ETag");
    }
    Ok(Fixtures {
        base,
        tokens,
        pro_tokens,
        worlds,
        lessons,
        posts,
        fresh_posts,
        emails: s.users,
        deep_skip: (s.posts / 2).min(10_000),
        etags,
    })
}

pub(super) fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
