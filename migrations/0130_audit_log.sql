-- The admin audit log (API-NEXT.md N4.5) and the people search's index (N4.3).
--
-- audit_log is append-only: the triggers below refuse UPDATE, DELETE and
-- TRUNCATE, so a row, once committed with the admin action it describes, stays.
-- Rows are written only through core::audit::record, in the transaction of the
-- action. Retention: kept for good (no job deletes them). actor_id has no
-- foreign key: deleting a user (N3) leaves the trace of what they did as an
-- admin, and needs no write to this table.
CREATE TABLE audit_log (
    id          uuid        PRIMARY KEY,
    actor_id    uuid        NULL,
    action      text        NOT NULL,
    target_type text        NOT NULL,
    target_id   text        NOT NULL,
    before      jsonb       NULL,
    after       jsonb       NULL,
    ip          inet        NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- The admin list: newest first, optionally by actor, action or target.
CREATE INDEX audit_log_newest_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor_id, created_at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, created_at DESC, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id, created_at DESC, id DESC);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Statement-level: refused even when no row matches.
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- People search (N4.3): a case-insensitive username prefix. The unique index
-- on lower(username) uses the database collation, which a prefix range or
-- LIKE cannot use; text_pattern_ops compares bytes and can.
CREATE INDEX user_profiles_username_prefix_idx
    ON user_profiles (lower(username) text_pattern_ops);
