-- A version number for the course catalogue (worlds, levels, lessons), bumped
-- by a statement trigger in the writing transaction. The API caches the
-- catalogue's aggregates in process and revalidates them against this number on
-- every request (issue 10): a write through any API process, the CLI or plain
-- SQL is seen by every process as soon as it commits.
CREATE TABLE cache_versions (
    name text PRIMARY KEY,
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO cache_versions (name) VALUES ('catalog');

CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE cache_versions SET version = version + 1 WHERE name = 'catalog';
    RETURN NULL;
END
$$;

CREATE TRIGGER worlds_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON worlds
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER levels_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON levels
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER lessons_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lessons
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
