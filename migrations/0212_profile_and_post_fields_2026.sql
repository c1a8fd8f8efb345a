-- The May 2026 product's columns that several areas read (N5.2, N5.4, N7,
-- N10.1), added once so each area builds on them.
-- Profile: the Instagram link (normalised to https://instagram.com/<handle>),
-- the equipped cosmetics (SKUs of the shop, N7; the foreign keys come with the
-- shop's table), the shop's bonus slots, and the IANA time zone (N10).
ALTER TABLE user_profiles
    ADD COLUMN instagram_url        varchar(255) NULL,
    ADD COLUMN equipped_border_sku  varchar(64)  NULL,
    ADD COLUMN equipped_title_sku   varchar(64)  NULL,
    ADD COLUMN bonus_video_slots    integer      NOT NULL DEFAULT 0 CHECK (bonus_video_slots >= 0),
    ADD COLUMN bonus_question_slots integer      NOT NULL DEFAULT 0 CHECK (bonus_question_slots >= 0),
    ADD COLUMN timezone             varchar(64)  NOT NULL DEFAULT 'UTC';

-- Stage posts' kind of video (N5.4): Move of the Week, an original, a Guild
-- piece; null for lab posts and for stage posts that did not say.
ALTER TABLE posts
    ADD COLUMN video_type varchar(16) NULL
        CONSTRAINT posts_video_type_check CHECK (video_type IN ('motw', 'original', 'guild'));
