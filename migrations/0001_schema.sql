-- The Mambo Guild: full data model (API.md §2.2) plus infrastructure tables
-- (webhook idempotency, job outbox, email deliveries, streak bonus awards).
--
-- Conventions
--   * Every id is `uuid PRIMARY KEY DEFAULT gen_random_uuid()` (builtin since PG13),
--     except badge_definitions.id and community_tags.slug (slugs, <= 50 chars).
--   * Enumerations are `text` + CHECK, storing the API values (lowercase / capitalised
--     exactly as the API emits them), not PG enum types.
--   * All timestamps are `timestamptz` (UTC); `last_daily_claim` is a `date`.
--   * Foreign keys cascade so that admin deletes of worlds/levels/lessons and user
--     deletes succeed (API.md §5 D27).
--   * No extensions are required.

-- ---------------------------------------------------------------------------
-- Identity
-- ---------------------------------------------------------------------------

CREATE TABLE users (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    email              text        NOT NULL,
    hashed_password    text        NULL,
    auth_provider      text        NOT NULL DEFAULT 'email'
                       CONSTRAINT users_auth_provider_check
                       CHECK (auth_provider IN ('email', 'google', 'waitlist', 'apple')),
    social_id          text        NULL,
    is_verified        boolean     NOT NULL DEFAULT false,
    role               text        NOT NULL DEFAULT 'student'
                       CONSTRAINT users_role_check
                       CHECK (role IN ('student', 'admin', 'instructor')),
    email_unsubscribed boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE INDEX users_social_id_idx ON users (social_id);

CREATE TABLE user_profiles (
    id                uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id           uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    first_name        text         NOT NULL,
    last_name         text         NOT NULL,
    username          varchar(30)  NULL,
    avatar_url        text         NULL,
    current_level_tag text         NOT NULL DEFAULT 'Beginner'
                      CONSTRAINT user_profiles_current_level_tag_check
                      CHECK (current_level_tag IN ('Beginner', 'Novice', 'Intermediate', 'Advanced')),
    xp                integer      NOT NULL DEFAULT 0,
    level             integer      NOT NULL DEFAULT 1,
    streak_count      integer      NOT NULL DEFAULT 0,
    last_login_date   timestamptz  NULL,
    badges            text         NOT NULL DEFAULT '[]',
    referral_code     varchar(20)  NULL,
    referred_by_code  varchar(20)  NULL,
    referral_count    integer      NOT NULL DEFAULT 0,
    current_claves    integer      NOT NULL DEFAULT 0
                      CONSTRAINT user_profiles_current_claves_check
                      CHECK (current_claves >= 0),
    reputation        integer      NOT NULL DEFAULT 0,
    last_daily_claim  date         NULL,
    created_at        timestamptz  NOT NULL DEFAULT now(),
    updated_at        timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT user_profiles_user_id_key UNIQUE (user_id),
    CONSTRAINT user_profiles_referral_code_key UNIQUE (referral_code)
);

-- Usernames are unique case-insensitively (stored lowercased by the app).
CREATE UNIQUE INDEX user_profiles_username_lower_key ON user_profiles (lower(username));
CREATE INDEX user_profiles_referred_by_code_idx ON user_profiles (referred_by_code);

CREATE TABLE subscriptions (
    id                     uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    stripe_customer_id     text        NULL,
    stripe_subscription_id text        NULL,
    status                 text        NOT NULL DEFAULT 'incomplete'
                           CONSTRAINT subscriptions_status_check
                           CHECK (status IN ('active', 'past_due', 'canceled', 'incomplete', 'trialing')),
    tier                   text        NOT NULL DEFAULT 'rookie'
                           CONSTRAINT subscriptions_tier_check
                           CHECK (tier IN ('rookie', 'advanced', 'performer')),
    current_period_end     timestamptz NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subscriptions_user_id_key UNIQUE (user_id)
);

CREATE INDEX subscriptions_stripe_customer_id_idx ON subscriptions (stripe_customer_id);
CREATE INDEX subscriptions_stripe_subscription_id_idx ON subscriptions (stripe_subscription_id);

-- ---------------------------------------------------------------------------
-- Content: worlds (courses) -> levels (modules) -> lessons
-- ---------------------------------------------------------------------------

CREATE TABLE worlds (
    id                      uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    title                   text        NOT NULL,
    description             text        NULL,
    slug                    text        NOT NULL,
    order_index             integer     NOT NULL,
    is_free                 boolean     NOT NULL DEFAULT false,
    image_url               text        NULL,
    thumbnail_url           text        NULL,
    mux_preview_playback_id text        NULL,
    mux_preview_asset_id    text        NULL,
    difficulty              text        NOT NULL
                            CONSTRAINT worlds_difficulty_check
                            CHECK (difficulty IN ('Beginner', 'Intermediate', 'Advanced', 'Open')),
    is_published            boolean     NOT NULL DEFAULT false,
    course_type             text        NOT NULL DEFAULT 'course'
                            CONSTRAINT worlds_course_type_check
                            CHECK (course_type IN ('course', 'choreo', 'topic')),
    total_duration_minutes  integer     NOT NULL DEFAULT 0,
    objectives              jsonb       NOT NULL DEFAULT '[]'::jsonb,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT worlds_slug_key UNIQUE (slug)
);

CREATE INDEX worlds_order_index_idx ON worlds (order_index);
CREATE INDEX worlds_mux_preview_asset_id_idx ON worlds (mux_preview_asset_id);

CREATE TABLE levels (
    id                      uuid             PRIMARY KEY DEFAULT gen_random_uuid(),
    world_id                uuid             NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    title                   text             NOT NULL,
    order_index             integer          NOT NULL,
    description             text             NULL,
    x_position              double precision NOT NULL DEFAULT 0,
    y_position              double precision NOT NULL DEFAULT 0,
    thumbnail_url           text             NULL,
    outcome                 varchar(255)     NULL,
    duration_minutes        integer          NOT NULL DEFAULT 0,
    total_xp                integer          NOT NULL DEFAULT 0,
    -- Not validated (API.md §2.1): active / coming_soon / locked by convention.
    status                  varchar(50)      NOT NULL DEFAULT 'active',
    mux_preview_playback_id text             NULL,
    mux_preview_asset_id    text             NULL,
    created_at              timestamptz      NOT NULL DEFAULT now(),
    updated_at              timestamptz      NOT NULL DEFAULT now()
);

CREATE INDEX levels_world_id_order_index_idx ON levels (world_id, order_index);
CREATE INDEX levels_mux_preview_asset_id_idx ON levels (mux_preview_asset_id);

-- An edge from A to B means A is a prerequisite of B.
CREATE TABLE level_edges (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    world_id      uuid NOT NULL REFERENCES worlds (id) ON DELETE CASCADE,
    from_level_id uuid NOT NULL REFERENCES levels (id) ON DELETE CASCADE,
    to_level_id   uuid NOT NULL REFERENCES levels (id) ON DELETE CASCADE,
    CONSTRAINT level_edges_no_self_loop CHECK (from_level_id <> to_level_id)
);

CREATE INDEX level_edges_world_id_idx ON level_edges (world_id);
CREATE INDEX level_edges_from_level_id_idx ON level_edges (from_level_id);
CREATE INDEX level_edges_to_level_id_idx ON level_edges (to_level_id);

CREATE TABLE lessons (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    level_id         uuid        NOT NULL REFERENCES levels (id) ON DELETE CASCADE,
    title            text        NOT NULL,
    description      text        NULL,
    video_url        text        NOT NULL DEFAULT '',
    xp_value         integer     NOT NULL DEFAULT 50,
    order_index      integer     NOT NULL,
    is_boss_battle   boolean     NOT NULL DEFAULT false,
    duration_minutes integer     NULL,
    lesson_type      text        NOT NULL DEFAULT 'video'
                     CONSTRAINT lessons_lesson_type_check
                     CHECK (lesson_type IN ('video', 'quiz', 'history')),
    week_number      integer     NULL,
    day_number       integer     NULL,
    content_json     jsonb       NULL,
    mux_playback_id  text        NULL,
    mux_asset_id     text        NULL,
    thumbnail_url    text        NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX lessons_level_order_idx ON lessons (level_id, week_number, day_number, order_index);
CREATE INDEX lessons_mux_asset_id_idx ON lessons (mux_asset_id);

-- ---------------------------------------------------------------------------
-- Learning activity
-- ---------------------------------------------------------------------------

CREATE TABLE user_progress (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    lesson_id    uuid        NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    is_completed boolean     NOT NULL DEFAULT false,
    completed_at timestamptz NULL,
    CONSTRAINT user_progress_user_id_lesson_id_key UNIQUE (user_id, lesson_id)
);

CREATE INDEX user_progress_lesson_id_idx ON user_progress (lesson_id);

CREATE TABLE boss_submissions (
    id                   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id              uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    lesson_id            uuid        NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    video_url            text        NOT NULL,
    status               text        NOT NULL DEFAULT 'pending'
                         CONSTRAINT boss_submissions_status_check
                         CHECK (status IN ('pending', 'approved', 'rejected')),
    instructor_feedback  text        NULL,
    instructor_video_url text        NULL,
    submitted_at         timestamptz NOT NULL DEFAULT now(),
    reviewed_at          timestamptz NULL,
    reviewed_by          uuid        NULL REFERENCES users (id) ON DELETE SET NULL,
    -- Set once, the first time the submission is approved and the +500 XP is paid
    -- (D27: a re-grade must not re-award).
    xp_awarded_at        timestamptz NULL,
    CONSTRAINT boss_submissions_user_id_lesson_id_key UNIQUE (user_id, lesson_id)
);

CREATE INDEX boss_submissions_status_submitted_at_idx ON boss_submissions (status, submitted_at);
CREATE INDEX boss_submissions_lesson_id_idx ON boss_submissions (lesson_id);
CREATE INDEX boss_submissions_reviewed_by_idx ON boss_submissions (reviewed_by);

CREATE TABLE comments (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    lesson_id  uuid        NOT NULL REFERENCES lessons (id) ON DELETE CASCADE,
    parent_id  uuid        NULL REFERENCES comments (id) ON DELETE CASCADE,
    content    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX comments_lesson_id_idx ON comments (lesson_id);
CREATE INDEX comments_user_id_idx ON comments (user_id);
CREATE INDEX comments_parent_id_idx ON comments (parent_id);

-- ---------------------------------------------------------------------------
-- Clave economy (ledger). Invariant: sum(amount) per user = user_profiles.current_claves.
-- ---------------------------------------------------------------------------

CREATE TABLE clave_transactions (
    id           uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount       integer      NOT NULL,
    reason       varchar(100) NOT NULL,
    reference_id uuid         NULL,
    -- Once-only effects: e.g. 'accepted_answer:{reply_id}',
    -- 'subscription_bonus:{invoice_id}', 'daily_login:{user_id}:{date}',
    -- 'streak_bonus:{user_id}:{date}'. NULL = no dedupe.
    dedupe_key   text         NULL,
    created_at   timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX clave_transactions_user_id_created_at_idx
    ON clave_transactions (user_id, created_at DESC);
CREATE INDEX clave_transactions_created_at_idx ON clave_transactions (created_at);
-- Reaction-refund cap lookups: (owner, 'reaction_refund', post id).
CREATE INDEX clave_transactions_user_reason_reference_idx
    ON clave_transactions (user_id, reason, reference_id);
CREATE UNIQUE INDEX clave_transactions_dedupe_key_key
    ON clave_transactions (dedupe_key) WHERE dedupe_key IS NOT NULL;

-- One streak bonus per user per milestone day.
CREATE TABLE streak_bonus_awards (
    user_id        uuid    NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    milestone_date date    NOT NULL,
    streak         integer NOT NULL,
    PRIMARY KEY (user_id, milestone_date)
);

-- ---------------------------------------------------------------------------
-- Community
-- ---------------------------------------------------------------------------

CREATE TABLE community_tags (
    slug        varchar(50)  PRIMARY KEY,
    name        varchar(100) NOT NULL,
    category    varchar(50)  NULL,
    usage_count integer      NOT NULL DEFAULT 0
);

CREATE TABLE posts (
    id                     uuid          PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id                uuid          NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_type              varchar(10)   NOT NULL
                           CONSTRAINT posts_post_type_check
                           CHECK (post_type IN ('stage', 'lab')),
    title                  varchar(200)  NOT NULL,
    body                   text          NULL,
    mux_asset_id           varchar(100)  NULL,
    mux_playback_id        varchar(100)  NULL,
    video_duration_seconds integer       NULL,
    tags                   varchar(50)[] NOT NULL DEFAULT '{}',
    is_wip                 boolean       NOT NULL DEFAULT false,
    feedback_type          varchar(10)   NOT NULL DEFAULT 'coach'
                           CONSTRAINT posts_feedback_type_check
                           CHECK (feedback_type IN ('coach', 'hype')),
    is_solved              boolean       NOT NULL DEFAULT false,
    accepted_answer_id     uuid          NULL, -- FK to post_replies added below
    reaction_count         integer       NOT NULL DEFAULT 0,
    reply_count            integer       NOT NULL DEFAULT 0,
    created_at             timestamptz   NOT NULL DEFAULT now(),
    updated_at             timestamptz   NOT NULL DEFAULT now()
);

-- Feed keyset / ordering: created_at DESC, id DESC.
CREATE INDEX posts_created_at_id_idx ON posts (created_at DESC, id DESC);
CREATE INDEX posts_post_type_created_at_id_idx ON posts (post_type, created_at DESC, id DESC);
CREATE INDEX posts_tags_gin_idx ON posts USING GIN (tags);
CREATE INDEX posts_user_id_idx ON posts (user_id);
CREATE INDEX posts_mux_asset_id_idx ON posts (mux_asset_id);
CREATE INDEX posts_accepted_answer_id_idx ON posts (accepted_answer_id);

CREATE TABLE post_replies (
    id                 uuid         PRIMARY KEY DEFAULT gen_random_uuid(),
    post_id            uuid         NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id            uuid         NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content            text         NOT NULL,
    mux_asset_id       varchar(100) NULL,
    mux_playback_id    varchar(100) NULL,
    is_accepted_answer boolean      NOT NULL DEFAULT false,
    created_at         timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX post_replies_post_id_created_at_idx ON post_replies (post_id, created_at);
CREATE INDEX post_replies_user_id_idx ON post_replies (user_id);
CREATE INDEX post_replies_mux_asset_id_idx ON post_replies (mux_asset_id);

-- Circular FK: posts.accepted_answer_id -> post_replies.id
ALTER TABLE posts
    ADD CONSTRAINT posts_accepted_answer_id_fkey
    FOREIGN KEY (accepted_answer_id) REFERENCES post_replies (id) ON DELETE SET NULL;

CREATE TABLE post_reactions (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    post_id       uuid        NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reaction_type varchar(20) NOT NULL
                  CONSTRAINT post_reactions_reaction_type_check
                  CHECK (reaction_type IN ('fire', 'ruler', 'clap')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT post_reactions_post_id_user_id_key UNIQUE (post_id, user_id)
);

CREATE INDEX post_reactions_user_id_idx ON post_reactions (user_id);

-- ---------------------------------------------------------------------------
-- Badges and stats
-- ---------------------------------------------------------------------------

CREATE TABLE badge_definitions (
    id               varchar(50)  PRIMARY KEY,
    name             varchar(100) NOT NULL,
    description      text         NULL,
    tier             varchar(20)  NOT NULL DEFAULT 'Silver',
    icon_url         varchar(255) NULL,
    -- No CHECK on category (D35): course/community/performance/learning/streaks/special.
    category         varchar(20)  NOT NULL,
    requirement_type varchar(50)  NOT NULL,
    threshold        integer      NOT NULL DEFAULT 0,
    requirements     jsonb        NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz  NOT NULL DEFAULT now()
);

CREATE INDEX badge_definitions_requirement_type_threshold_idx
    ON badge_definitions (requirement_type, threshold);

CREATE TABLE user_badges (
    id            uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    badge_id      varchar(50) NOT NULL REFERENCES badge_definitions (id) ON DELETE CASCADE,
    earned_at     timestamptz NOT NULL DEFAULT now(),
    display_order integer     NOT NULL DEFAULT 0,
    CONSTRAINT user_badges_user_id_badge_id_key UNIQUE (user_id, badge_id)
);

CREATE INDEX user_badges_user_id_idx ON user_badges (user_id);
CREATE INDEX user_badges_badge_id_idx ON user_badges (badge_id);

CREATE TABLE user_stats (
    user_id                  uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    reactions_given_count    integer     NOT NULL DEFAULT 0,
    reactions_received_count integer     NOT NULL DEFAULT 0,
    solutions_accepted_count integer     NOT NULL DEFAULT 0,
    last_updated             timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- Infrastructure
-- ---------------------------------------------------------------------------

-- Webhook idempotency (Stripe event.id, Mux event id, ...).
CREATE TABLE processed_webhook_events (
    provider     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, event_id)
);

-- Transactional outbox: rows written in the business transaction, relayed to the
-- job queue by the worker.
CREATE TABLE job_outbox (
    id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    queue      text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    relayed_at timestamptz NULL,
    attempts   integer     NOT NULL DEFAULT 0,
    last_error text        NULL
);

CREATE INDEX job_outbox_pending_idx ON job_outbox (created_at) WHERE relayed_at IS NULL;

-- Email job bookkeeping (one row per logical email, keyed by idempotency_key).
CREATE TABLE email_deliveries (
    id              uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    idempotency_key text        NOT NULL,
    template        text        NOT NULL,
    recipient       text        NOT NULL,
    status          text        NOT NULL DEFAULT 'pending'
                    CONSTRAINT email_deliveries_status_check
                    CHECK (status IN ('pending', 'sent', 'failed')),
    provider_id     text        NULL,
    error           text        NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT email_deliveries_idempotency_key_key UNIQUE (idempotency_key)
);
