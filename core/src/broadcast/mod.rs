//! Broadcast emails (the waitlist launch mail, newsletters): `mambo broadcast`.
//!
//! [`prepare`] checks the template against every recipient (a missing variable
//! fails here, before anything is recorded or sent), records one
//! `broadcast_recipients` row per recipient in batches of [`BATCH_SIZE`] and
//! queues one [`BroadcastJob`] per batch that still has pending recipients.
//! The worker's [`send_batch`] sends a batch with one call to Resend's batch
//! endpoint and records each recipient's outcome.
//!
//! Nobody gets a broadcast twice:
//! - a broadcast is found again by its key (audience + template + variables),
//!   so rerunning the command resumes it; `UNIQUE (broadcast_id, user_id)`
//!   keeps each recipient to one row, and only `pending` rows are sent;
//! - a batch is sent while its rows are locked (`FOR UPDATE SKIP LOCKED`), so
//!   two runs of the same job cannot both send it;
//! - the batch's `Idempotency-Key` names the broadcast, the batch and its
//!   recipients, so a send that Resend accepted but we failed to record (a crash
//!   at the wrong moment) is answered from Resend's idempotency cache on retry.
//!
//! Users with `email_unsubscribed` are never recorded, and are skipped at send
//! time if they unsubscribed after the broadcast was prepared. A send that fails
//! for good (a 4xx, or [`MAX_ATTEMPTS`] failed attempts) is recorded as `failed`
//! per recipient; nothing is retried forever.
//!
//! ## The template file
//!
//! A minijinja file with three blocks: `subject`, `html` and `text`. The HTML
//! block escapes variables; the subject and text blocks do not. The result is
//! wrapped in the `broadcast` email layout (`core/templates/email/broadcast.*`).
//!
//! ```jinja
//! {% block subject %}The doors are open, {{ first_name }}{% endblock %}
//! {% block html %}<p>Hi {{ first_name }}, your username @{{ username }} is waiting.</p>{% endblock %}
//! {% block text %}Hi {{ first_name }}, your username @{{ username }} is waiting.{% endblock %}
//! ```
//!
//! Variables: see [`RECIPIENT_VARIABLES`], plus any `--var NAME=VALUE`. Values a
//! recipient lacks (no username, no referral code) are `null`: they print as
//! nothing and are false in `{% if %}`.

use crate::email_templates::{self, Rendered};
use crate::jobs::{BroadcastJob, Job};
use crate::{Context, Error, Result};
use minijinja::Environment;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

mod prepare;
mod send;
mod template;

pub use prepare::*;
pub use send::*;
pub use template::*;

/// Recipients per Resend batch call (Resend's maximum).
pub const BATCH_SIZE: usize = 100;
/// Failed sends of one batch (rate limits aside) before its recipients are
/// recorded as `failed`.
pub const MAX_ATTEMPTS: i32 = 5;

/// The variables every recipient has.
pub const RECIPIENT_VARIABLES: &[&str] = &[
    "email",
    "first_name",
    "last_name",
    "username",
    "referral_code",
    "referral_link",
    "frontend_url",
];

/// Functions a template may call (minijinja's globals), not variables.
const GLOBAL_FUNCTIONS: &[&str] = &["range", "dict", "namespace", "debug"];

/// Who receives a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Everyone who joined the waitlist (`auth_provider = 'waitlist'`).
    Waitlist,
    /// Every user.
    All,
    /// Students with a real account (role `student`, not waitlist-only).
    Students,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::Waitlist => "waitlist",
            Audience::All => "all",
            Audience::Students => "students",
        }
    }
}

impl fmt::Display for Audience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Audience {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "waitlist" => Ok(Audience::Waitlist),
            "all" => Ok(Audience::All),
            "students" => Ok(Audience::Students),
            other => Err(format!(
                "unknown audience {other:?} (expected waitlist, all or students)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extra() -> Map<String, Value> {
        Map::new()
    }

    const GOOD: &str = "{% block subject %}Doors open, {{ first_name }}{% endblock %}\n\
        {% block html %}<p>Hi {{ first_name }} &amp; @{{ username }}</p>{% endblock %}\n\
        {% block text %}Hi {{ first_name }} & @{{ username }}{% endblock %}\n";

    #[test]
    fn renders_the_three_blocks_with_escaping_only_in_html() {
        let t = BroadcastTemplate::parse(GOOD, &extra()).unwrap();
        let mut r = sample_recipient();
        r.first_name = Some("<Ana>".into());
        let out = t.render(&template_vars(&r, "http://x", &extra())).unwrap();
        assert_eq!(out.subject, "Doors open, <Ana>");
        assert!(
            out.html.contains("<p>Hi &lt;Ana&gt; &amp; @ana_on2</p>"),
            "{}",
            out.html
        );
        assert!(
            out.text.starts_with("Hi <Ana> & @ana_on2\n"),
            "{}",
            out.text
        );
    }

    #[test]
    fn null_values_print_as_nothing() {
        let t = BroadcastTemplate::parse(GOOD, &extra()).unwrap();
        let mut r = sample_recipient();
        r.username = None;
        let out = t.render(&template_vars(&r, "http://x", &extra())).unwrap();
        assert!(out.text.starts_with("Hi Ana & @\n"), "{}", out.text);
    }

    #[test]
    fn missing_variables_and_blocks_are_rejected() {
        let src = "{% block subject %}{{ launch_date }}{% endblock %}{% block html %}{{ frist_name }}{% endblock %}{% block text %}x{% endblock %}";
        let err = BroadcastTemplate::parse(src, &extra())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("frist_name") && err.contains("launch_date"),
            "{err}"
        );
        let mut vars = extra();
        vars.insert("launch_date".into(), json!("Monday"));
        vars.insert("frist_name".into(), json!("x"));
        BroadcastTemplate::parse(src, &vars).unwrap();

        let err = BroadcastTemplate::parse(
            "{% block subject %}Hi{% endblock %}{% block html %}x{% endblock %}",
            &extra(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("block text"), "{err}");
        assert!(BroadcastTemplate::parse("{% block subject %}", &extra()).is_err());
        let err = BroadcastTemplate::parse(
            "{% block subject %} {% endblock %}{% block html %}x{% endblock %}{% block text %}x{% endblock %}",
            &extra(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn the_key_depends_on_audience_template_and_vars() {
        let req = BroadcastRequest {
            name: "a".into(),
            source: GOOD.into(),
            audience: Audience::Waitlist,
            vars: extra(),
        };
        let mut other = req.clone();
        other.name = "b".into();
        assert_eq!(req.key(), other.key());
        other.audience = Audience::All;
        assert_ne!(req.key(), other.key());
        let mut other = req.clone();
        other.vars.insert("x".into(), json!("1"));
        assert_ne!(req.key(), other.key());
    }

    #[test]
    fn audiences_parse() {
        assert_eq!("Waitlist".parse::<Audience>().unwrap(), Audience::Waitlist);
        assert_eq!("students".parse::<Audience>().unwrap(), Audience::Students);
        assert!("everyone".parse::<Audience>().is_err());
    }
}
