//! Signed test events for development (`mambo stripe-event`): what `stripe
//! listen` would forward, without Stripe. An event file gets an `id` and a
//! `created` time when it has none, is signed with `STRIPE_WEBHOOK_SECRET`
//! and posted to the API's webhook, which verifies it like any other.

use super::*;

/// Completes an event: a fresh `evt_local_…` id and `created = now` when
/// missing, `object: "event"`. Fails on anything but a JSON object with a
/// `type` and a `data.object`.
pub fn complete_event(mut event: Value, now: i64) -> std::result::Result<Value, String> {
    let Some(obj) = event.as_object_mut() else {
        return Err("the event must be a JSON object".into());
    };
    if !obj.get("type").is_some_and(Value::is_string) {
        return Err("the event needs a \"type\" (e.g. \"invoice.payment_failed\")".into());
    }
    if !obj
        .get("data")
        .and_then(|d| d.get("object"))
        .is_some_and(Value::is_object)
    {
        return Err("the event needs \"data\": {\"object\": {...}}".into());
    }
    let has_id = obj
        .get("id")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has_id {
        obj.insert(
            "id".into(),
            Value::String(format!("evt_local_{}", Uuid::new_v4().simple())),
        );
    }
    if !obj.get("created").is_some_and(Value::is_i64) {
        obj.insert("created".into(), Value::from(now));
    }
    obj.entry("object").or_insert_with(|| Value::from("event"));
    Ok(event)
}

/// Signs `event` and posts it to `{api_base}/api/payments/webhook`; returns
/// the HTTP status and the body of the answer.
pub async fn send_signed_event(
    http: &reqwest::Client,
    api_base: &str,
    secret: &str,
    event: &Value,
    now: i64,
) -> std::result::Result<(u16, String), String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let resp = http
        .post(format!(
            "{}/api/payments/webhook",
            api_base.trim_end_matches('/')
        ))
        .header("Content-Type", "application/json")
        .header("Stripe-Signature", signature_header(secret, now, &body))
        .body(body)
        .send()
        .await
        .map_err(|e| format!("could not reach the API: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_completed_or_refused() {
        let e = complete_event(
            serde_json::json!({"type": "invoice.paid", "data": {"object": {"id": "in_1"}}}),
            1_800_000_000,
        )
        .unwrap();
        assert!(e["id"].as_str().unwrap().starts_with("evt_local_"));
        assert_eq!(e["created"], 1_800_000_000);
        assert_eq!(e["object"], "event");
        let kept = complete_event(
            serde_json::json!({"id": "evt_1", "created": 5, "type": "x", "data": {"object": {}}}),
            9,
        )
        .unwrap();
        assert_eq!(
            (kept["id"].clone(), kept["created"].clone()),
            ("evt_1".into(), 5.into())
        );
        assert!(complete_event(serde_json::json!([]), 0).is_err());
        assert!(complete_event(serde_json::json!({"type": "x"}), 0).is_err());
        assert!(complete_event(serde_json::json!({"data": {"object": {}}}), 0).is_err());
    }
}
