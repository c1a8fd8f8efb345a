-- The caller cache (issue 20, core/src/callers.rs): every API process keeps
-- the few columns a request's authentication reads of its caller, and must
-- forget them the moment they change, whoever changes them (a route, the
-- worker's deletion, the CLI, plain SQL). These triggers tell every listening
-- process, after the transaction commits (NOTIFY is transactional), which
-- user's row changed.
CREATE FUNCTION notify_caller_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mambo_callers', OLD.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_caller_changed
    AFTER UPDATE ON users
    FOR EACH ROW
    WHEN (OLD.email IS DISTINCT FROM NEW.email
          OR OLD.role IS DISTINCT FROM NEW.role
          OR OLD.is_verified IS DISTINCT FROM NEW.is_verified
          OR OLD.tokens_valid_after IS DISTINCT FROM NEW.tokens_valid_after
          OR OLD.deletion_requested_at IS DISTINCT FROM NEW.deletion_requested_at
          OR OLD.id IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION notify_caller_changed();

CREATE TRIGGER users_caller_deleted
    AFTER DELETE ON users
    FOR EACH ROW
    EXECUTE FUNCTION notify_caller_changed();
