#!/usr/bin/env bash
# EXPLAIN (ANALYZE, BUFFERS) of the hot queries (issue 10) against the bench
# database, with real ids from it. Writes go through BEGIN ... ROLLBACK.
#   scripts/explain.sh > /tmp/plans.txt
# BENCH_DATABASE_URL as for `mambo bench` (default the local mambo_bench).
set -euo pipefail
URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/mambo_bench?sslmode=disable}"
PRO="(s.status IN ('active','trialing') AND s.tier IN ('advanced','performer'))"
COLS="p.id, p.user_id, p.post_type, p.title, p.body, p.mux_playback_id,
    p.video_duration_seconds, p.tags::text[] AS tags, p.is_wip, p.feedback_type, p.is_solved,
    p.reaction_count, p.reply_count, p.created_at, p.updated_at,
    COALESCE(pr.first_name, 'Unknown') AS first_name, COALESCE(pr.last_name, 'User') AS last_name,
    pr.avatar_url, COALESCE(pr.level, 1) AS level, COALESCE($PRO, false) AS is_pro"
ORDER="COALESCE(le.week_number, 0), COALESCE(le.day_number, 0), le.order_index, l.order_index, le.id"
psql "$URL" -X -q -P pager=off <<SQL
SELECT id AS viewer FROM users WHERE email = 'bench0@bench.mambo.test' \gset
SELECT id AS owner FROM users WHERE email = 'bench1@bench.mambo.test' \gset
SELECT post_id AS post FROM post_replies ORDER BY post_id LIMIT 1 \gset
SELECT id AS lesson FROM lessons ORDER BY id LIMIT 1 \gset
SELECT array_agg(id)::text AS ids FROM (SELECT id FROM posts ORDER BY created_at DESC, id DESC LIMIT 20) t \gset
\echo '### auth: the caller'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT email, role FROM users WHERE id = :'viewer';
\echo '### feed page 1 (one query, viewer reactions joined)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) WITH page AS (
  SELECT p.id, p.created_at FROM posts p ORDER BY p.created_at DESC, p.id DESC OFFSET 0 LIMIT 20)
SELECT $COLS, r.reaction_type AS user_reaction FROM page JOIN posts p ON p.id = page.id
LEFT JOIN user_profiles pr ON pr.user_id = p.user_id LEFT JOIN subscriptions s ON s.user_id = p.user_id
LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = :'viewer'
ORDER BY page.created_at DESC, page.id DESC;
\echo '### feed deep page, uncached (skip 10000)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) WITH page AS (
  SELECT p.id, p.created_at FROM posts p ORDER BY p.created_at DESC, p.id DESC OFFSET 10000 LIMIT 20)
SELECT $COLS, r.reaction_type AS user_reaction FROM page JOIN posts p ON p.id = page.id
LEFT JOIN user_profiles pr ON pr.user_id = p.user_id LEFT JOIN subscriptions s ON s.user_id = p.user_id
LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = :'viewer'
ORDER BY page.created_at DESC, page.id DESC;
\echo '### feed deep page, cached ids (rows by id)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT $COLS, r.reaction_type AS user_reaction FROM posts p
LEFT JOIN user_profiles pr ON pr.user_id = p.user_id LEFT JOIN subscriptions s ON s.user_id = p.user_id
LEFT JOIN post_reactions r ON r.post_id = p.id AND r.user_id = :'viewer'
WHERE p.id = ANY(:'ids'::uuid[]);
\echo '### post detail: replies'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT rp.id, rp.content, rp.created_at FROM post_replies rp
LEFT JOIN user_profiles pr ON pr.user_id = rp.user_id WHERE rp.post_id = :'post'
ORDER BY rp.is_accepted_answer DESC, rp.created_at ASC, rp.id ASC;
\echo '### catalogue head (worlds list, world lessons): version, pro, completed lessons'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT (SELECT version FROM cache_versions WHERE name = 'catalog'),
  (SELECT $PRO FROM subscriptions s WHERE s.user_id = :'viewer'),
  ARRAY(SELECT lesson_id FROM user_progress WHERE user_id = :'viewer' AND is_completed);
\echo '### lesson detail (lesson, access, neighbours: one query)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT le.id, w.is_free,
  (SELECT $PRO FROM subscriptions s WHERE s.user_id = :'viewer') AS pro, n.prev_id, n.next_id
FROM lessons le JOIN levels l ON l.id = le.level_id JOIN worlds w ON w.id = l.world_id
LEFT JOIN LATERAL (SELECT t.prev_id, t.next_id FROM (
  SELECT le.id, lag(le.id) OVER o AS prev_id, lead(le.id) OVER o AS next_id
  FROM lessons le JOIN levels l ON l.id = le.level_id WHERE l.world_id = w.id
  WINDOW o AS (ORDER BY $ORDER)) t WHERE t.id = :'lesson') n ON true
WHERE le.id = :'lesson';
\echo '### wallet (one query)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT (SELECT current_claves FROM user_profiles WHERE user_id = :'viewer'),
  (SELECT $PRO FROM subscriptions s WHERE s.user_id = :'viewer'),
  ((SELECT count(*) FROM posts WHERE user_id = :'viewer' AND mux_asset_id IS NOT NULL)
   + (SELECT count(*) FROM post_replies WHERE user_id = :'viewer' AND mux_asset_id IS NOT NULL
      AND NOT is_accepted_answer)), t.*
FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT id, amount, reason, reference_id, created_at
  FROM clave_transactions WHERE user_id = :'viewer' ORDER BY created_at DESC, id DESC LIMIT 20) t ON true;
BEGIN;
\echo '### react: the post lock, then the caller''s reaction'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT user_id FROM posts WHERE id = :'post' FOR UPDATE;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT reaction_type FROM post_reactions
  WHERE post_id = :'post' AND user_id = :'viewer';
\echo '### react: spend (debit + ledger row)'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) WITH s AS (UPDATE user_profiles SET current_claves = current_claves - 1
  WHERE user_id = :'viewer' AND current_claves >= 1 RETURNING current_claves),
t AS (INSERT INTO clave_transactions (user_id, amount, reason, reference_id)
  SELECT :'viewer', -1, 'reaction', :'post' FROM s)
SELECT current_claves FROM s;
\echo '### react: the owner''s capped refund'
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) WITH t AS (INSERT INTO clave_transactions (user_id, amount, reason, reference_id)
  SELECT :'owner', 1, 'reaction_refund', :'post' WHERE (SELECT count(*) FROM clave_transactions
    WHERE user_id = :'owner' AND reason = 'reaction_refund' AND reference_id = :'post') < 5 RETURNING id),
p AS (UPDATE user_profiles SET current_claves = current_claves + 1
  WHERE user_id = :'owner' AND EXISTS (SELECT 1 FROM t) RETURNING current_claves)
SELECT (SELECT count(*) FROM t), (SELECT current_claves FROM p);
ROLLBACK;
SQL
