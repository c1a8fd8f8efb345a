//! Stripe webhook signatures.

use super::*;

// ---------------------------------------------------------------------------
// Webhook signature
// ---------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, timestamp: &str, payload: &[u8]) -> HmacSha256 {
    let mut mac =
        <HmacSha256 as KeyInit>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The `v1` signature Stripe would send for `payload` at `timestamp`
/// (hex HMAC-SHA256 of `"{timestamp}.{payload}"`). Used by tests and tools.
pub fn sign_webhook(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    hex::encode(
        mac(secret, &timestamp.to_string(), payload)
            .finalize()
            .into_bytes(),
    )
}

/// A complete `Stripe-Signature` header value for `payload` at `timestamp`.
pub fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        sign_webhook(secret, timestamp, payload)
    )
}

/// Verifies `Stripe-Signature: t=..,v1=..[,v1=..]` in constant time, then the
/// replay window. The error text follows Stripe's library.
pub fn verify_signature(
    secret: &str,
    header: &str,
    payload: &[u8],
    now: i64,
    tolerance: i64,
) -> std::result::Result<(), String> {
    let mut timestamp: Option<&str> = None;
    let mut signatures: Vec<&str> = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        match k.trim() {
            "t" => timestamp = Some(v.trim()),
            "v1" => signatures.push(v.trim()),
            _ => {}
        }
    }
    let (Some(ts_raw), Some(ts)) = (timestamp, timestamp.and_then(|t| t.parse::<i64>().ok()))
    else {
        return Err("Unable to extract timestamp and signatures from header".into());
    };
    if signatures.is_empty() {
        return Err("No signatures found with expected scheme v1".into());
    }
    let expected = mac(secret, ts_raw, payload);
    let matched = signatures.iter().any(|s| {
        hex::decode(s)
            .map(|bytes| expected.clone().verify_slice(&bytes).is_ok())
            .unwrap_or(false)
    });
    if !matched {
        return Err("No signatures found matching the expected signature for payload".into());
    }
    if (now - ts).abs() > tolerance {
        return Err("Timestamp outside the tolerance zone".into());
    }
    Ok(())
}
