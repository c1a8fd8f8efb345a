//! Path and query parameters of the community endpoints.

use crate::error::ApiError;
use mambo_core::Error as CoreError;
use mambo_core::community::{self, FeedQuery};
use serde_json::json;
use uuid::Uuid;

/// A post id of a write endpoint: malformed means not found (D28), with the
/// object detail of community writes.
pub(super) fn write_post_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| community::write_post_not_found().into())
}

/// An integer query parameter with FastAPI's validation errors.
pub(crate) fn int_query(
    name: &str,
    raw: Option<String>,
    default: i64,
    ge: i64,
    le: Option<i64>,
) -> Result<i64, CoreError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let loc = ["query", name];
    let v: i64 = raw.trim().parse().map_err(|_| {
        CoreError::validation(
            &loc,
            "Input should be a valid integer, unable to parse string as an integer",
            "int_parsing",
            json!(raw),
        )
    })?;
    if v < ge {
        return Err(CoreError::with_object(
            422,
            json!([{ "type": "greater_than_equal", "loc": loc,
                     "msg": format!("Input should be greater than or equal to {ge}"),
                     "input": raw, "ctx": { "ge": ge } }]),
        ));
    }
    if let Some(le) = le
        && v > le
    {
        return Err(CoreError::with_object(
            422,
            json!([{ "type": "less_than_equal", "loc": loc,
                     "msg": format!("Input should be less than or equal to {le}"),
                     "input": raw, "ctx": { "le": le } }]),
        ));
    }
    Ok(v)
}

pub(super) fn page(
    post_type: Option<String>,
    tag: Option<String>,
    skip: Option<String>,
    limit: Option<String>,
) -> Result<FeedQuery, CoreError> {
    let skip = int_query("skip", skip, 0, 0, None)?;
    let limit = int_query(
        "limit",
        limit,
        community::LIMIT_DEFAULT,
        1,
        Some(community::LIMIT_MAX),
    )?;
    for (name, v) in [("post_type", &post_type), ("tag", &tag)] {
        if let Some(v) = v {
            let mut val = community::Validation::new();
            val.no_nul(&["query", name], v);
            val.finish()?;
        }
    }
    Ok(FeedQuery {
        post_type,
        tag,
        skip,
        limit,
    })
}
