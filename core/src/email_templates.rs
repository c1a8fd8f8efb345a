//! Email bodies rendered from template files (minijinja), never by string
//! concatenation.
//!
//! Every email has two files in `core/templates/email/`, compiled into the
//! binary: `{name}.txt`, whose first line is `Subject: ...` followed by a blank
//! line and the plain-text body, and `{name}.html`, which extends `layout.html`.
//! HTML templates escape every variable; text templates print them as they are.
//!
//! Variables are strict: a template that uses a variable the caller did not
//! pass fails to render (it never sends an email with a hole in it). Optional
//! values are passed as `null`, which prints as nothing and is false in `if`.
//!
//! | template | variables |
//! |---|---|
//! | `password_reset` | `reset_link`, `expires_in` (e.g. `"1 hour"`) |
//! | `data_export` | `ready` (bool), `download_link` (string or null), `expires_in` (e.g. `"24 hours"`, or null) |
//! | `waitlist_welcome` | `username`, `referral_link` (`{FRONTEND_URL}/waitlist?ref={code}`) |
//! | `submission_graded` | `first_name`, `lesson_title`, `approved` (bool), `xp_awarded` (int, 0 when none), `feedback_text`, `feedback_video_url` (string or null), `courses_link` |
//! | `broadcast` | `subject`, `content_html` (trusted HTML), `content_text` |
//! | `subscription_ended` | `first_name`, `pricing_link` |
//! | `trial_ending` | `first_name`, `trial_end` (a date as words), `billing_link` |
//! | `payment_failed` | `first_name`, `billing_link` (`{FRONTEND_URL}/billing`), `grace_until` (a date as words, or null) |
//! | `email_verification` | `verify_link` (`{FRONTEND_URL}/verify-email?token=…`), `expires_in` (e.g. `"48 hours"`) |
//! | `notification_digest` | `first_name`, `period` (`daily`/`weekly`), `total` (int), `notifications` (up to 10 of `{title, message, actor (string or null), when}`, newest first), `more` (int), `app_link`, `unsubscribe_link` |

use crate::jobs::EmailJob;
use crate::{Error, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value as JinjaValue};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::LazyLock;

/// The emails this module can render.
pub const TEMPLATES: &[&str] = &[
    "password_reset",
    "data_export",
    "waitlist_welcome",
    "submission_graded",
    "broadcast",
    "notification_digest",
    "email_verification",
    "subscription_ended",
    "trial_ending",
    "payment_failed",
];

/// The template files, embedded at build time.
const FILES: &[(&str, &str)] = &[
    (
        "layout.html",
        include_str!("../templates/email/layout.html"),
    ),
    (
        "password_reset.html",
        include_str!("../templates/email/password_reset.html"),
    ),
    (
        "password_reset.txt",
        include_str!("../templates/email/password_reset.txt"),
    ),
    (
        "data_export.html",
        include_str!("../templates/email/data_export.html"),
    ),
    (
        "data_export.txt",
        include_str!("../templates/email/data_export.txt"),
    ),
    (
        "waitlist_welcome.html",
        include_str!("../templates/email/waitlist_welcome.html"),
    ),
    (
        "waitlist_welcome.txt",
        include_str!("../templates/email/waitlist_welcome.txt"),
    ),
    (
        "submission_graded.html",
        include_str!("../templates/email/submission_graded.html"),
    ),
    (
        "submission_graded.txt",
        include_str!("../templates/email/submission_graded.txt"),
    ),
    (
        "broadcast.html",
        include_str!("../templates/email/broadcast.html"),
    ),
    (
        "broadcast.txt",
        include_str!("../templates/email/broadcast.txt"),
    ),
    (
        "email_verification.html",
        include_str!("../templates/email/email_verification.html"),
    ),
    (
        "email_verification.txt",
        include_str!("../templates/email/email_verification.txt"),
    ),
    (
        "notification_digest.html",
        include_str!("../templates/email/notification_digest.html"),
    ),
    (
        "notification_digest.txt",
        include_str!("../templates/email/notification_digest.txt"),
    ),
    (
        "subscription_ended.html",
        include_str!("../templates/email/subscription_ended.html"),
    ),
    (
        "subscription_ended.txt",
        include_str!("../templates/email/subscription_ended.txt"),
    ),
    (
        "trial_ending.html",
        include_str!("../templates/email/trial_ending.html"),
    ),
    (
        "trial_ending.txt",
        include_str!("../templates/email/trial_ending.txt"),
    ),
    (
        "payment_failed.html",
        include_str!("../templates/email/payment_failed.html"),
    ),
    (
        "payment_failed.txt",
        include_str!("../templates/email/payment_failed.txt"),
    ),
];

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// A template environment with the project's settings: strict undefined
/// variables, HTML escaping for `*.html` names, `null` printed as nothing and
/// block tags that do not leave blank lines behind.
pub fn environment<'a>() -> Environment<'a> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") || name.ends_with(".htm") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            // Strict mode already refused undefined variables before this point.
            return Ok(());
        }
        if matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe() {
            // minijinja also escapes `/`; links read better (and match) without it.
            let escaped = escape_html(&value.to_string());
            return out.write_str(&escaped).map_err(|_| {
                minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write failed")
            });
        }
        minijinja::escape_formatter(out, state, value)
    });
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("valid syntax configuration"),
    );
    env
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = environment();
    for (name, source) in FILES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("email template {name} does not compile: {e:#}"));
    }
    env
});

/// Renders the email `template` (one of [`TEMPLATES`]) with `vars` (a JSON
/// object). Fails on an unknown template, on a variable the template uses but
/// `vars` lacks, and on a text template without a `Subject:` first line.
pub fn render(template: &str, vars: &Value) -> Result<Rendered> {
    let fail = |msg: String| Error::internal(format!("email template {template}: {msg}"));
    if !TEMPLATES.contains(&template) {
        return Err(fail("no such template".into()));
    }
    let Value::Object(map) = vars else {
        return Err(fail("the variables must be a JSON object".into()));
    };

    let text_name = format!("{template}.txt");
    let html_name = format!("{template}.html");
    let text_tpl = ENV
        .get_template(&text_name)
        .map_err(|e| fail(e.to_string()))?;
    let html_tpl = ENV
        .get_template(&html_name)
        .map_err(|e| fail(e.to_string()))?;

    // Name every missing variable at once (the renderer stops at the first).
    let mut missing: BTreeSet<String> = text_tpl.undeclared_variables(false).into_iter().collect();
    missing.extend(html_tpl.undeclared_variables(false));
    missing.retain(|v| v != "subject" || template == "broadcast");
    missing.retain(|v| !map.contains_key(v));
    if !missing.is_empty() {
        return Err(fail(format!(
            "missing variable(s): {}",
            missing.into_iter().collect::<Vec<_>>().join(", ")
        )));
    }

    let ctx = JinjaValue::from(Serde(vars));
    let full_text = text_tpl.render(&ctx).map_err(|e| fail(format!("{e}")))?;
    let (subject, text) = split_subject(&full_text).ok_or_else(|| {
        fail(format!(
            "{text_name} must start with a `Subject:` line followed by a blank line"
        ))
    })?;
    if subject.is_empty() {
        return Err(fail("the subject is empty".into()));
    }

    let mut with_subject = map.clone();
    with_subject.insert("subject".into(), Value::String(subject.clone()));
    let html = html_tpl
        .render(JinjaValue::from(Serde(&with_subject)))
        .map_err(|e| fail(format!("{e}")))?;

    Ok(Rendered {
        subject,
        html: html.trim().to_string() + "\n",
        text,
    })
}

/// Renders `template` and wraps it into an [`EmailJob`] for one recipient.
pub fn email_job(
    template: &str,
    idempotency_key: impl Into<String>,
    to: impl Into<String>,
    vars: &Value,
) -> Result<EmailJob> {
    let r = render(template, vars)?;
    Ok(EmailJob {
        idempotency_key: idempotency_key.into(),
        template: template.to_string(),
        to: vec![to.into()],
        subject: r.subject,
        html: r.html,
        text: r.text,
        headers: Default::default(),
    })
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `"Subject: X\n\nbody"` → `("X", "body\n")`. Lines inside the subject are
/// joined (a header cannot contain a line break).
fn split_subject(full: &str) -> Option<(String, String)> {
    let rest = full.strip_prefix("Subject:")?;
    let (subject, body) = match rest.split_once("\n\n") {
        Some((s, b)) => (s, b),
        None => (rest, ""),
    };
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let body = collapse_blank_lines(body.trim());
    Some((subject, body + "\n"))
}

/// At most one empty line in a row (optional sections leave some behind).
fn collapse_blank_lines(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut blank = 0;
    for line in s.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// `60` → `"1 hour"`, `120` → `"2 hours"`, `45` → `"45 minutes"`: the
/// `expires_in` of the password reset email.
pub fn duration_phrase(minutes: i64) -> String {
    match minutes {
        60 => "1 hour".into(),
        m if m > 60 && m % 60 == 0 => format!("{} hours", m / 60),
        1 => "1 minute".into(),
        m => format!("{m} minutes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_template_compiles() {
        for t in TEMPLATES {
            ENV.get_template(&format!("{t}.txt")).unwrap();
            ENV.get_template(&format!("{t}.html")).unwrap();
        }
    }

    #[test]
    fn password_reset() {
        let link = "https://mamboguild.com/reset-password?token=a.b.c&x=<1>";
        let r = render(
            "password_reset",
            &json!({"reset_link": link, "expires_in": duration_phrase(60)}),
        )
        .unwrap();
        assert_eq!(r.subject, "Reset Your Password - The Mambo Guild");
        assert!(r.text.contains(link), "{}", r.text);
        assert!(r.text.contains("expires in 1 hour"));
        assert!(r.html.contains("expires in 1 hour"));
        // The button and the plain link, escaped.
        let escaped = "https://mamboguild.com/reset-password?token=a.b.c&amp;x=&lt;1&gt;";
        assert_eq!(r.html.matches(escaped).count(), 3, "{}", r.html);
        assert!(r.html.contains("Reset password</a>"));
        assert!(!r.html.contains("<1>"));
        assert!(
            r.html
                .contains("<title>Reset Your Password - The Mambo Guild</title>")
        );
    }

    #[test]
    fn waitlist_welcome() {
        let r = render(
            "waitlist_welcome",
            &json!({"username": "salsa_queen", "referral_link": "http://localhost:3000/waitlist?ref=AB12CD"}),
        )
        .unwrap();
        assert_eq!(r.subject, "Welcome to The Mambo Guild");
        for body in [&r.text, &r.html] {
            assert!(body.contains("@salsa_queen"));
            assert!(body.contains("http://localhost:3000/waitlist?ref=AB12CD"));
        }
    }

    #[test]
    fn submission_graded_optional_parts() {
        let base = json!({
            "first_name": "Ana", "lesson_title": "Boss <1>", "approved": true,
            "xp_awarded": 500, "feedback_text": null, "feedback_video_url": null,
            "courses_link": "http://localhost:3000/courses",
        });
        let r = render("submission_graded", &base).unwrap();
        assert_eq!(r.subject, "Boss Battle passed: Boss <1> - The Mambo Guild");
        assert!(r.text.contains("You earned 500 XP."));
        assert!(!r.text.contains("feedback:"));
        assert!(!r.text.contains("none"));
        assert!(!r.text.contains("\n\n\n"), "{:?}", r.text);
        assert!(r.html.contains("Boss &lt;1&gt;"));

        let mut v = base.clone();
        v["approved"] = json!(false);
        v["xp_awarded"] = json!(0);
        v["feedback_text"] = json!("Watch your timing on 2");
        let r = render("submission_graded", &v).unwrap();
        assert_eq!(
            r.subject,
            "Boss Battle feedback: Boss <1> - The Mambo Guild"
        );
        assert!(!r.text.contains("XP"));
        assert!(
            r.text
                .contains("Instructor feedback:\nWatch your timing on 2")
        );
        assert!(r.html.contains("Watch your timing on 2"));
    }

    #[test]
    fn broadcast_layout_keeps_trusted_html() {
        let r = render(
            "broadcast",
            &json!({"subject": "Doors open", "content_html": "<p>Hi <b>Ana</b></p>", "content_text": "Hi Ana"}),
        )
        .unwrap();
        assert_eq!(r.subject, "Doors open");
        assert!(r.html.contains("<p>Hi <b>Ana</b></p>"));
        assert!(r.text.starts_with("Hi Ana\n"));
    }

    #[test]
    fn notification_digest_lists_escapes_and_links_the_unsubscribe() {
        let vars = json!({
            "first_name": "Ana", "period": "daily", "total": 12, "more": 2,
            "notifications": [
                {"title": "🔥 New Reaction", "message": "reacted to your post \"<b>On2</b>\"",
                 "actor": "salsa_king", "when": "Nov 20, 16:00 UTC"},
                {"title": "🏆 Badge Earned", "message": "You earned First Steps",
                 "actor": null, "when": "Nov 20, 15:00 UTC"},
            ],
            "app_link": "http://localhost:3000/",
            "unsubscribe_link": "http://localhost:8000/api/notifications/unsubscribe?token=a.b",
        });
        let r = render("notification_digest", &vars).unwrap();
        assert_eq!(r.subject, "You have 12 new notifications - The Mambo Guild");
        assert!(r.text.starts_with("Hi Ana,\n"), "{}", r.text);
        assert!(
            r.text.contains(
                "- 🔥 New Reaction: salsa_king reacted to your post \"<b>On2</b>\" (Nov 20, 16:00 UTC)\n\
                 - 🏆 Badge Earned: You earned First Steps (Nov 20, 15:00 UTC)\n"
            ),
            "{}",
            r.text
        );
        assert!(r.text.contains("...and 2 more."));
        assert!(r.text.contains("unsubscribe?token=a.b"));
        assert!(!r.text.contains("\n\n\n"), "{:?}", r.text);
        assert!(r.html.contains("&lt;b&gt;On2&lt;/b&gt;"));
        assert!(!r.html.contains("<b>On2"));
        assert!(
            r.html.contains(
                "<a href=\"http://localhost:8000/api/notifications/unsubscribe?token=a.b\""
            )
        );
        assert!(
            !r.html.contains("because of your account"),
            "the footer is replaced"
        );

        let mut one = vars.clone();
        one["total"] = json!(1);
        one["more"] = json!(0);
        one["first_name"] = json!("");
        one["notifications"] = json!([vars["notifications"][1]]);
        let r = render("notification_digest", &one).unwrap();
        assert_eq!(r.subject, "You have 1 new notification - The Mambo Guild");
        assert!(r.text.starts_with("Hi,\n"));
        assert!(!r.text.contains("more."));
    }

    #[test]
    fn a_missing_variable_fails_and_is_named() {
        let err = render("password_reset", &json!({"reset_link": "x"})).unwrap_err();
        assert!(err.to_string().contains("expires_in"), "{err}");
        let err = render("waitlist_welcome", &json!({})).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("referral_link") && msg.contains("username"),
            "{msg}"
        );
        assert!(render("nope", &json!({})).is_err());
        assert!(render("password_reset", &json!([1])).is_err());
    }

    #[test]
    fn email_job_wraps_the_rendered_email() {
        let job = email_job(
            "waitlist_welcome",
            "welcome:1",
            "a@example.com",
            &json!({"username": "u", "referral_link": "l"}),
        )
        .unwrap();
        assert_eq!(job.template, "waitlist_welcome");
        assert_eq!(job.to, vec!["a@example.com".to_string()]);
        assert_eq!(job.subject, "Welcome to The Mambo Guild");
    }
}
