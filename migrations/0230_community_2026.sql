-- The May 2026 community (API-2026-05.md N5.4).
--
-- `like` is a fourth reaction type beside fire/ruler/clap: the frontend's one
-- reaction button (POST .../react with no type). It counts for the reactions
-- given/received stats, not for the fire/clap/ruler badge families (those
-- count their own type only, core::badges).
ALTER TABLE post_reactions
    DROP CONSTRAINT post_reactions_reaction_type_check,
    ADD CONSTRAINT post_reactions_reaction_type_check
        CHECK (reaction_type IN ('fire', 'ruler', 'clap', 'like'));

-- The feed filtered by the Stage's video type (`?video_type=`), newest first,
-- for viewers who see no hidden post (the shared, cached pages): a keyset-
-- capable range like posts_visible_post_type_created_at_id_idx. Rows without
-- a video type (lab posts, older stage posts) are never asked for by it.
CREATE INDEX posts_visible_video_type_created_at_id_idx
    ON posts (video_type, created_at DESC, id DESC)
    WHERE NOT is_hidden AND video_type IS NOT NULL;
