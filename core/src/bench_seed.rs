//! A reproducible benchmark dataset at scale (`mambo bench-seed`).
//!
//! Everything is generated inside PostgreSQL with `INSERT ... SELECT
//! generate_series(...)`: ids are `md5('<kind>:<n>')::uuid` and every "random"
//! choice is `hashint8extended(n, seed + salt)`, so the same sizes and seed give
//! the same rows (except the one argon2id salt). The relations are built so
//! that the counters are exact without a recount:
//!
//! * user `n` has the email `bench<n>@bench.mambo.test` and the password
//!   [`BENCH_PASSWORD`] (one real argon2id hash, shared by every user);
//! * users `0..bench_users` are the benchmark accounts: a large balance, and
//!   every even one is pro (active performer);
//! * the newest `fresh_posts` posts have no reactions and are owned by
//!   non-benchmark users, so a benchmark account reacting to one of them is
//!   always a new, paid reaction (the spend path);
//! * `reaction_count` / `reply_count` are the closed forms of how the reaction
//!   and reply rows are spread over the posts;
//! * each user's ledger is one `new_user_bonus` row equal to the balance.

use crate::Result;
use sqlx::PgConnection;
use std::time::{Duration, Instant};

/// The password of every generated user.
pub const BENCH_PASSWORD: &str = "BenchPass2026!";
/// The email of generated user `n`.
pub fn bench_email(n: i64) -> String {
    format!("bench{n}@bench.mambo.test")
}
/// Levels (modules) per world.
pub const LEVELS_PER_WORLD: i64 = 5;

/// Sizes of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    pub users: i64,
    pub worlds: i64,
    pub lessons: i64,
    pub progress: i64,
    pub posts: i64,
    pub reactions: i64,
    pub replies: i64,
    /// Benchmark accounts (users `0..bench_users`).
    pub bench_users: i64,
    /// Newest posts left without reactions (targets of the react benchmark).
    pub fresh_posts: i64,
    pub seed: i64,
}

impl Sizes {
    /// The large preset.
    pub const LARGE: Sizes = Sizes {
        users: 100_000,
        worlds: 40,
        lessons: 1_500,
        progress: 1_000_000,
        posts: 500_000,
        reactions: 2_000_000,
        replies: 1_000_000,
        bench_users: 1_000,
        fresh_posts: 2_000,
        seed: 42,
    };

    /// A quick dataset (same catalogue, 1/50 of the community).
    pub const SMALL: Sizes = Sizes {
        users: 2_000,
        worlds: 40,
        lessons: 1_500,
        progress: 20_000,
        posts: 10_000,
        reactions: 40_000,
        replies: 20_000,
        bench_users: 500,
        fresh_posts: 1_000,
        seed: 42,
    };

    pub fn preset(name: &str) -> Option<Sizes> {
        match name {
            "small" => Some(Self::SMALL),
            "large" => Some(Self::LARGE),
            _ => None,
        }
    }

    /// Clamps the sizes so that the generators' uniqueness arguments hold.
    pub fn normalized(mut self) -> Sizes {
        self.users = self.users.max(4);
        self.worlds = self.worlds.max(1);
        self.lessons = self.lessons.max(1);
        self.bench_users = self.bench_users.clamp(1, self.users / 2);
        self.posts = self.posts.max(0);
        self.fresh_posts = self.fresh_posts.clamp(0, self.posts);
        self.progress = self.progress.clamp(0, self.users * self.lessons);
        let reactable = self.posts - self.fresh_posts;
        // Reactors of a post are owner+1 .. owner+k: fewer than users.
        self.reactions = if reactable == 0 {
            0
        } else {
            self.reactions.clamp(0, reactable * (self.users - 1))
        };
        self.replies = self.replies.max(0);
        self
    }
}

/// How long each table took.
#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<(String, i64, Duration)>,
    pub total: Duration,
}

async fn step(
    conn: &mut PgConnection,
    report: &mut Report,
    name: &str,
    sql: &'static str,
    s: &Sizes,
    hash: &str,
) -> Result<()> {
    let t = Instant::now();
    let r = sqlx::query(sql)
        .bind(s.users) // $1
        .bind(s.worlds) // $2
        .bind(s.lessons) // $3
        .bind(s.progress) // $4
        .bind(s.posts) // $5
        .bind(s.reactions) // $6
        .bind(s.replies) // $7
        .bind(s.bench_users) // $8
        .bind(s.fresh_posts) // $9
        .bind(s.seed) // $10
        .bind(hash) // $11
        .bind(LEVELS_PER_WORLD) // $12
        .execute(&mut *conn)
        .await?;
    let elapsed = t.elapsed();
    tracing::info!(
        table = name,
        rows = r.rows_affected(),
        ?elapsed,
        "bench seed"
    );
    report
        .steps
        .push((name.to_string(), r.rows_affected() as i64, elapsed));
    Ok(())
}

// Every statement takes the same twelve parameters (unused ones are declared
// with a cast so PostgreSQL knows their types):
// $1 users, $2 worlds, $3 lessons, $4 progress, $5 posts, $6 reactions,
// $7 replies, $8 bench users, $9 fresh posts, $10 seed, $11 password hash,
// $12 levels per world. Base time: 2026-01-01 UTC.

const PARAMS: &str = "";

const USERS: &str = "
INSERT INTO users (id, email, hashed_password, auth_provider, is_verified, role,
                   created_at, updated_at)
SELECT md5('u:' || i)::uuid, 'bench' || i || '@bench.mambo.test', $11::text, 'email', true,
       'student', ts, ts
FROM (SELECT i, timestamptz '2025-01-01 00:00:00+00' + make_interval(secs => i * 60) AS ts
      FROM generate_series(0::bigint, $1::bigint - 1) i) g
WHERE $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL AND $10::bigint IS NOT NULL
  AND $12::bigint IS NOT NULL";

const PROFILES: &str = "
INSERT INTO user_profiles (user_id, first_name, last_name, username, current_level_tag, xp,
                           level, streak_count, referral_code, current_claves, reputation,
                           created_at, updated_at)
SELECT md5('u:' || i)::uuid,
       (ARRAY['Ana','Luis','Marta','Eddie','Sofia','Carlos','Nadia','Tito'])[1 + r % 8],
       (ARRAY['Torres','Santos','Rivera','Cruz','Ortiz','Vega','Morales','Diaz'])[1 + (r / 8) % 8],
       'bench_' || i,
       (ARRAY['Beginner','Novice','Intermediate','Advanced'])[1 + (r / 64) % 4],
       (r / 256) % 5000, 1 + ((r / 256) % 5000) / 500, (r / 7) % 30,
       'BENCH' || i,
       CASE WHEN i < $8::bigint THEN 1000000 ELSE 10 + (r / 11) % 300 END,
       (r / 13) % 100, ts, ts
FROM (SELECT i, abs(hashint8extended(i, $10::bigint)) AS r,
             timestamptz '2025-01-01 00:00:00+00' + make_interval(secs => i * 60) AS ts
      FROM generate_series(0::bigint, $1::bigint - 1) i) g
WHERE $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $9::bigint IS NOT NULL AND $11::text IS NOT NULL AND $12::bigint IS NOT NULL";

const SUBSCRIPTIONS: &str = "
INSERT INTO subscriptions (user_id, status, tier, stripe_customer_id, current_period_end)
SELECT md5('u:' || i)::uuid,
       CASE WHEN pro THEN 'active' ELSE 'incomplete' END,
       CASE WHEN pro THEN 'performer' ELSE 'rookie' END,
       CASE WHEN pro THEN 'cus_bench' || i END,
       CASE WHEN pro THEN timestamptz '2027-01-01 00:00:00+00' END
FROM (SELECT i, CASE WHEN i < $8::bigint THEN i % 2 = 0
                     ELSE abs(hashint8extended(i, $10::bigint + 1)) % 5 = 0 END AS pro
      FROM generate_series(0::bigint, $1::bigint - 1) i) g
WHERE $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $9::bigint IS NOT NULL AND $11::text IS NOT NULL AND $12::bigint IS NOT NULL";

const LEDGER: &str = "
INSERT INTO clave_transactions (user_id, amount, reason, created_at)
SELECT user_id, current_claves, 'new_user_bonus', created_at
FROM user_profiles
WHERE current_claves > 0
  AND $1::bigint IS NOT NULL AND $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL
  AND $4::bigint IS NOT NULL AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL
  AND $7::bigint IS NOT NULL AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL
  AND $10::bigint IS NOT NULL AND $11::text IS NOT NULL AND $12::bigint IS NOT NULL";

const WORLDS: &str = "
INSERT INTO worlds (id, title, description, slug, order_index, is_free, difficulty,
                    is_published, course_type, objectives)
SELECT md5('w:' || i)::uuid, 'Bench World ' || i, 'A generated world for the benchmark',
       'bench-world-' || i, i::int, i % 4 = 0,
       (ARRAY['Beginner','Intermediate','Advanced','Open'])[1 + i % 4], true,
       (ARRAY['course','choreo','topic'])[1 + i % 3],
       '[\"Timing\", \"Turns\", \"Styling\"]'::jsonb
FROM generate_series(0::bigint, $2::bigint - 1) i
WHERE $1::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL AND $10::bigint IS NOT NULL
  AND $11::text IS NOT NULL AND $12::bigint IS NOT NULL";

const LEVELS: &str = "
INSERT INTO levels (id, world_id, title, order_index, description, x_position, y_position,
                    duration_minutes, total_xp)
SELECT md5('lv:' || j)::uuid, md5('w:' || (j / $12::bigint))::uuid,
       'Module ' || (j % $12::bigint + 1), (j % $12::bigint)::int, 'A generated module',
       (j % $12::bigint) * 100.0, 0, 30, 500
FROM generate_series(0::bigint, $2::bigint * $12::bigint - 1) j
WHERE $1::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL AND $10::bigint IS NOT NULL
  AND $11::text IS NOT NULL";

const LEVEL_EDGES: &str = "
INSERT INTO level_edges (id, world_id, from_level_id, to_level_id)
SELECT md5('le-edge:' || j)::uuid, md5('w:' || (j / $12::bigint))::uuid,
       md5('lv:' || j)::uuid, md5('lv:' || (j + 1))::uuid
FROM generate_series(0::bigint, $2::bigint * $12::bigint - 1) j
WHERE j % $12::bigint < $12::bigint - 1
  AND $1::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL AND $10::bigint IS NOT NULL
  AND $11::text IS NOT NULL";

const LESSONS: &str = "
INSERT INTO lessons (id, level_id, title, description, video_url, xp_value, order_index,
                     is_boss_battle, duration_minutes, lesson_type, mux_playback_id)
SELECT md5('le:' || k)::uuid, md5('lv:' || (k % ($2::bigint * $12::bigint)))::uuid,
       'Lesson ' || k, 'A generated lesson', 'https://stream.example/bench/' || k || '.m3u8',
       50, (k / ($2::bigint * $12::bigint))::int, k % 37 = 36,
       5 + (abs(hashint8extended(k, $10::bigint + 2)) % 20)::int, 'video', 'bench' || k
FROM generate_series(0::bigint, $3::bigint - 1) k
WHERE $1::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL AND $11::text IS NOT NULL";

// Progress row k: user k % users, its (k / users)-th lesson; a user's lessons
// are spaced by lessons / per_user, so (user, lesson) is unique.
const PROGRESS: &str = "
INSERT INTO user_progress (id, user_id, lesson_id, is_completed, completed_at)
SELECT md5('up:' || k)::uuid, md5('u:' || (k % $1::bigint))::uuid,
       md5('le:' || (((k % $1::bigint) * 7
                     + (k / $1::bigint) * ($3::bigint / ((($4::bigint + $1::bigint - 1) / $1::bigint))))
                    % $3::bigint))::uuid,
       true, timestamptz '2025-06-01 00:00:00+00' + make_interval(secs => k)
FROM generate_series(0::bigint, $4::bigint - 1) k
WHERE $2::bigint IS NOT NULL AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL
  AND $7::bigint IS NOT NULL AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL
  AND $10::bigint IS NOT NULL AND $11::text IS NOT NULL AND $12::bigint IS NOT NULL";

// Post i (newest = highest i). Owner: (i * 7919) % users, except the fresh
// posts (the newest fresh_posts), owned by non-benchmark users.
const POSTS: &str = "
INSERT INTO posts (id, user_id, post_type, title, body, tags, is_wip, feedback_type,
                   reaction_count, reply_count, created_at, updated_at)
SELECT md5('p:' || i)::uuid,
       md5('u:' || CASE WHEN i >= $5::bigint - $9::bigint
                        THEN $8::bigint + i % ($1::bigint - $8::bigint)
                        ELSE (i * 7919) % $1::bigint END)::uuid,
       CASE WHEN i % 3 = 0 THEN 'lab' ELSE 'stage' END,
       'Bench post ' || i,
       'Generated body of post ' || i || ': working on my timing and shines.',
       ARRAY[(ARRAY['salsa-on2','mambo','cha-cha-cha','boogaloo','pachanga','salsa-fusion',
                    'timing','body-movement','styling','musicality','choreo','turn','drills',
                    'beginner','intermediate','advanced'])[1 + r % 16],
             (ARRAY['salsa-on2','mambo','cha-cha-cha','boogaloo','pachanga','salsa-fusion',
                    'timing','body-movement','styling','musicality','choreo','turn','drills',
                    'beginner','intermediate','advanced'])[1 + (r % 16 + 1 + (r / 16) % 15) % 16]
            ]::varchar(50)[],
       false, CASE WHEN r % 2 = 0 THEN 'coach' ELSE 'hype' END,
       CASE WHEN i >= $5::bigint - $9::bigint THEN 0
            ELSE $6::bigint / ($5::bigint - $9::bigint)
                 + CASE WHEN i < $6::bigint % ($5::bigint - $9::bigint) THEN 1 ELSE 0 END
       END::int,
       ($7::bigint / $5::bigint + CASE WHEN i < $7::bigint % $5::bigint THEN 1 ELSE 0 END)::int,
       ts, ts
FROM (SELECT i, abs(hashint8extended(i, $10::bigint + 3)) AS r,
             timestamptz '2026-01-01 00:00:00+00' - make_interval(secs => ($5::bigint - i) * 60) AS ts
      FROM generate_series(0::bigint, $5::bigint - 1) i) g
WHERE $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $11::text IS NOT NULL AND $12::bigint IS NOT NULL";

// Reaction k: post k % reactable, reactor owner + 1 + k / reactable (never the
// owner, unique per post).
const REACTIONS: &str = "
INSERT INTO post_reactions (id, post_id, user_id, reaction_type, created_at)
SELECT md5('r:' || k)::uuid, md5('p:' || p)::uuid,
       md5('u:' || (((p * 7919) % $1::bigint) + 1 + k / ($5::bigint - $9::bigint)) % $1::bigint)::uuid,
       (ARRAY['fire','ruler','clap'])[1 + abs(hashint8extended(k, $10::bigint + 4)) % 3],
       timestamptz '2026-01-01 00:00:00+00' - make_interval(secs => ($5::bigint - p) * 60)
         + make_interval(secs => 1 + k / ($5::bigint - $9::bigint))
FROM (SELECT k, k % ($5::bigint - $9::bigint) AS p
      FROM generate_series(0::bigint, $6::bigint - 1) k) g
WHERE $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $7::bigint IS NOT NULL AND $8::bigint IS NOT NULL AND $11::text IS NOT NULL
  AND $12::bigint IS NOT NULL";

const REPLIES: &str = "
INSERT INTO post_replies (id, post_id, user_id, content, created_at)
SELECT md5('rp:' || k)::uuid, md5('p:' || (k % $5::bigint))::uuid,
       md5('u:' || ((k % $5::bigint) * 31 + 1 + k / $5::bigint) % $1::bigint)::uuid,
       'Nice! Try keeping the frame on 5. (' || k || ')',
       timestamptz '2026-01-01 00:00:00+00' - make_interval(secs => ($5::bigint - k % $5::bigint) * 60)
         + make_interval(secs => 2 + k / $5::bigint)
FROM generate_series(0::bigint, $7::bigint - 1) k
WHERE $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $6::bigint IS NOT NULL AND $8::bigint IS NOT NULL AND $9::bigint IS NOT NULL
  AND $10::bigint IS NOT NULL AND $11::text IS NOT NULL AND $12::bigint IS NOT NULL";

// Notifications of the benchmark accounts: 30 each (the newest 10 unread),
// from 30 different actors, so the bell's page and count have real rows.
const NOTIFICATIONS: &str = "
INSERT INTO notifications (id, user_id, actor_id, type, title, message, reference_type,
                           reference_id, is_read, created_at)
SELECT md5('n:' || u || ':' || k)::uuid, md5('u:' || u)::uuid,
       md5('u:' || ((u + 1 + k) % $1::bigint))::uuid,
       'reaction_received', '🔥 New Reaction', 'reacted to your post \"Bench post\"', 'post',
       md5('p:' || k)::uuid::text, k >= 10,
       timestamptz '2026-01-01 00:00:00+00' - make_interval(secs => k * 60)
FROM generate_series(0::bigint, $8::bigint - 1) u, generate_series(0::bigint, 29) k
WHERE $2::bigint IS NOT NULL AND $3::bigint IS NOT NULL AND $4::bigint IS NOT NULL
  AND $5::bigint IS NOT NULL AND $6::bigint IS NOT NULL AND $7::bigint IS NOT NULL
  AND $9::bigint IS NOT NULL AND $10::bigint IS NOT NULL AND $11::text IS NOT NULL
  AND $12::bigint IS NOT NULL";

/// Fills an EMPTY, migrated database. `password_hash` is the one argon2id hash
/// every user gets (see [`hash_bench_password`]).
pub async fn seed(conn: &mut PgConnection, sizes: Sizes, password_hash: &str) -> Result<Report> {
    let _ = PARAMS;
    let s = sizes.normalized();
    let started = Instant::now();
    let mut report = Report::default();
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut *conn)
        .await?;
    sqlx::query("SET maintenance_work_mem = '256MB'")
        .execute(&mut *conn)
        .await?;
    let steps: [(&str, &'static str); 13] = [
        ("users", USERS),
        ("user_profiles", PROFILES),
        ("subscriptions", SUBSCRIPTIONS),
        ("clave_transactions", LEDGER),
        ("worlds", WORLDS),
        ("levels", LEVELS),
        ("level_edges", LEVEL_EDGES),
        ("lessons", LESSONS),
        ("user_progress", PROGRESS),
        ("posts", POSTS),
        ("post_reactions", REACTIONS),
        ("post_replies", REPLIES),
        ("notifications", NOTIFICATIONS),
    ];
    for (name, sql) in steps {
        if (name == "post_reactions" && s.reactions == 0)
            || (name == "post_replies" && (s.replies == 0 || s.posts == 0))
            || (name == "posts" && s.posts == 0)
        {
            continue;
        }
        step(conn, &mut report, name, sql, &s, password_hash).await?;
    }
    // Visibility map and statistics: index-only scans and good plans at once.
    let t = Instant::now();
    sqlx::query("VACUUM (ANALYZE)").execute(&mut *conn).await?;
    report.steps.push(("vacuum analyze".into(), 0, t.elapsed()));
    report.total = started.elapsed();
    Ok(report)
}

/// The one real argon2id hash of [`BENCH_PASSWORD`] (the API's parameters).
pub async fn hash_bench_password() -> Result<String> {
    crate::auth::hash_password(BENCH_PASSWORD.to_string()).await
}

/// Checks the ledger invariant: users whose balance differs from the sum of
/// their ledger rows (0 when exact).
pub async fn ledger_mismatches(conn: &mut PgConnection) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM user_profiles p
         LEFT JOIN (SELECT user_id, sum(amount) AS total FROM clave_transactions
                    GROUP BY user_id) t ON t.user_id = p.user_id
         WHERE p.current_claves <> COALESCE(t.total, 0)",
    )
    .fetch_one(&mut *conn)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalized_sizes_keep_the_generators_unique() {
        let s = Sizes {
            users: 10,
            lessons: 3,
            progress: 1_000,
            posts: 5,
            fresh_posts: 10,
            reactions: 1_000,
            bench_users: 50,
            ..Sizes::SMALL
        }
        .normalized();
        assert_eq!(s.progress, 30);
        assert_eq!(s.fresh_posts, 5);
        assert_eq!(s.reactions, 0);
        assert_eq!(s.bench_users, 5);
        assert_eq!(Sizes::LARGE.normalized(), Sizes::LARGE);
        assert_eq!(Sizes::SMALL.normalized(), Sizes::SMALL);
    }
}
