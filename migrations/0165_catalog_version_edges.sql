-- The skill tree's edges are part of the catalogue: a change to them moves
-- the catalogue version too, so HTTP validators (ETag) derived from it and
-- the in-process caches see it (issue 20).
CREATE TRIGGER level_edges_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON level_edges
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
