//! Skill-tree edges between the levels of one world.

use super::*;

pub const EDGE_EXISTS: &str = "Edge already exists";
pub const EDGE_OUTSIDE_WORLD: &str = "Both levels must belong to this world";
pub const EDGE_SELF_LOOP: &str = "A level cannot be its own prerequisite";
pub const EDGE_CYCLE: &str = "This edge would create a cycle";

/// Adds the prerequisite edge `from → to` in a world. Rejected when a level is
/// missing (404), outside the world, the same level, already linked, or when
/// the edge would close a cycle (400). The world row is locked, so concurrent
/// additions are checked one after the other.
pub async fn create_edge(
    db: &PgPool,
    actor: &Actor,
    world_id: Uuid,
    from: Uuid,
    to: Uuid,
) -> Result<courses::Edge> {
    let mut tx = db.begin().await?;
    lock_world(&mut tx, world_id, WORLD_NOT_FOUND).await?;
    let levels: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT id, world_id FROM levels WHERE id = ANY($1)")
            .bind(vec![from, to])
            .fetch_all(&mut *tx)
            .await?;
    for id in [from, to] {
        match levels.iter().find(|(l, _)| *l == id) {
            None => return Err(Error::not_found(LEVEL_NOT_FOUND)),
            Some((_, w)) if *w != world_id => return Err(Error::bad_request(EDGE_OUTSIDE_WORLD)),
            Some(_) => {}
        }
    }
    if from == to {
        return Err(Error::bad_request(EDGE_SELF_LOOP));
    }
    // One query: does the edge exist, and can `from` already be reached from `to`?
    let (exists, cycle): (bool, bool) = sqlx::query_as(
        "WITH RECURSIVE reach(id) AS (
             SELECT $2::uuid
             UNION
             SELECT e.to_level_id FROM level_edges e JOIN reach r ON e.from_level_id = r.id
         )
         SELECT EXISTS (SELECT 1 FROM level_edges WHERE from_level_id = $1 AND to_level_id = $2),
                EXISTS (SELECT 1 FROM reach WHERE id = $1)",
    )
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await?;
    if exists {
        return Err(Error::bad_request(EDGE_EXISTS));
    }
    if cycle {
        return Err(Error::bad_request(EDGE_CYCLE));
    }
    let edge = sqlx::query_as::<_, courses::Edge>(
        "INSERT INTO level_edges (world_id, from_level_id, to_level_id) VALUES ($1, $2, $3)
         RETURNING id, from_level_id, to_level_id, world_id",
    )
    .bind(world_id)
    .bind(from)
    .bind(to)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e, None) {
            Error::bad_request(EDGE_EXISTS)
        } else {
            Error::Database(e)
        }
    })?;
    let after = audit::snapshot(&mut tx, Table::LevelEdges, edge.id, false).await?;
    audit::record(
        &mut tx,
        actor
            .entry(action::EDGE_CREATE, target::EDGE, edge.id)
            .after(after),
    )
    .await?;
    tx.commit().await?;
    Ok(edge)
}

pub async fn delete_edge(db: &PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    let d = Deletion {
        table: Table::LevelEdges,
        action: action::EDGE_DELETE,
        target: target::EDGE,
        not_found: EDGE_NOT_FOUND,
    };
    delete_row(db, actor, d, id).await
}
