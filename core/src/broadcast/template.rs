//! The broadcast template: parsing, checking and rendering per recipient.

use super::*;

/// A compiled broadcast template.
pub struct BroadcastTemplate {
    pub(super) env: Environment<'static>,
    pub(super) source: String,
}

impl fmt::Debug for BroadcastTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastTemplate")
            .field("len", &self.source.len())
            .finish_non_exhaustive()
    }
}

pub(super) const HTML_NAME: &str = "broadcast-file.html";
pub(super) const TEXT_NAME: &str = "broadcast-file.txt";

impl BroadcastTemplate {
    /// Compiles `source` and checks that it has the three blocks and uses no
    /// variable outside [`RECIPIENT_VARIABLES`] and `extra` (the `--var`s).
    pub fn parse(source: &str, extra: &Map<String, Value>) -> Result<Self> {
        let bad = |msg: String| Error::unprocessable(format!("broadcast template: {msg}"));
        let mut env = email_templates::environment();
        // The same source twice: HTML escaping for the html block, none for the rest.
        env.add_template_owned(HTML_NAME, source.to_string())
            .map_err(|e| bad(format!("{e}")))?;
        env.add_template_owned(TEXT_NAME, source.to_string())
            .map_err(|e| bad(format!("{e}")))?;
        let tpl = Self {
            env,
            source: source.to_string(),
        };

        let used = tpl
            .env
            .get_template(TEXT_NAME)
            .map_err(|e| bad(format!("{e}")))?
            .undeclared_variables(false);
        let mut missing: BTreeSet<String> = used
            .into_iter()
            .filter(|v| {
                !RECIPIENT_VARIABLES.contains(&v.as_str())
                    && !GLOBAL_FUNCTIONS.contains(&v.as_str())
                    && !extra.contains_key(v)
            })
            .collect();
        if let Some(first) = missing.pop_first() {
            let mut names = vec![first];
            names.extend(missing);
            return Err(bad(format!(
                "missing variable(s): {} (recipients have {}; pass others with --var NAME=VALUE)",
                names.join(", "),
                RECIPIENT_VARIABLES.join(", ")
            )));
        }

        // Render once with a made-up recipient: missing blocks and type errors
        // show up now rather than for the first real recipient.
        let mut sample = sample_recipient().vars("http://localhost:3000");
        sample.extend(extra.clone());
        tpl.render(&Value::Object(sample))?;
        Ok(tpl)
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the email of one recipient (`vars`: recipient variables and extras).
    pub fn render(&self, vars: &Value) -> Result<Rendered> {
        let bad = |msg: String| Error::unprocessable(format!("broadcast template: {msg}"));
        let block = |name: &str, block: &str| -> Result<String> {
            let tpl = self
                .env
                .get_template(name)
                .map_err(|e| bad(format!("{e}")))?;
            let mut captured = tpl
                .render_captured(minijinja::Value::from(minijinja::value::Serde(vars)))
                .map_err(|e| bad(format!("{e}")))?;
            captured
                .with_state_mut(|state| state.render_block(block))
                .map_err(|e| {
                    if e.kind() == minijinja::ErrorKind::UnknownBlock {
                        bad(format!("the template has no `{{% block {block} %}}`"))
                    } else {
                        bad(format!("{e}"))
                    }
                })
        };
        let subject = block(TEXT_NAME, "subject")?
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if subject.is_empty() {
            return Err(bad("the subject block renders empty".into()));
        }
        let content_html = block(HTML_NAME, "html")?;
        let content_text = block(TEXT_NAME, "text")?;
        email_templates::render(
            "broadcast",
            &json!({
                "subject": subject,
                "content_html": content_html.trim(),
                "content_text": content_text.trim(),
            }),
        )
    }
}

/// What the template knows about one recipient.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Recipient {
    pub user_id: Uuid,
    pub email: String,
    pub email_unsubscribed: bool,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub username: Option<String>,
    pub referral_code: Option<String>,
}

impl Recipient {
    /// The recipient variables ([`RECIPIENT_VARIABLES`]).
    pub fn vars(&self, frontend_url: &str) -> Map<String, Value> {
        let frontend = frontend_url.trim_end_matches('/');
        let referral_link = self
            .referral_code
            .as_ref()
            .map(|c| format!("{frontend}/waitlist?ref={c}"));
        let mut m = Map::new();
        m.insert("email".into(), json!(self.email));
        m.insert("first_name".into(), json!(self.first_name));
        m.insert("last_name".into(), json!(self.last_name));
        m.insert("username".into(), json!(self.username));
        m.insert("referral_code".into(), json!(self.referral_code));
        m.insert("referral_link".into(), json!(referral_link));
        m.insert("frontend_url".into(), json!(frontend));
        m
    }
}

pub(super) fn sample_recipient() -> Recipient {
    Recipient {
        user_id: Uuid::nil(),
        email: "dancer@example.com".into(),
        email_unsubscribed: false,
        first_name: Some("Ana".into()),
        last_name: Some("Dancer".into()),
        username: Some("ana_on2".into()),
        referral_code: Some("ABCD1234".into()),
    }
}

pub(super) fn template_vars(
    r: &Recipient,
    frontend_url: &str,
    extra: &Map<String, Value>,
) -> Value {
    let mut vars = r.vars(frontend_url);
    for (k, v) in extra {
        vars.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Value::Object(vars)
}

pub(super) const RECIPIENT_COLUMNS: &str = "u.id AS user_id, u.email, u.email_unsubscribed,
     p.first_name, p.last_name, p.username, p.referral_code";

/// Everyone in `audience`, subscribed or not, oldest account first.
pub(super) async fn audience_members(ctx: &Context, audience: Audience) -> Result<Vec<Recipient>> {
    let sql = format!(
        "SELECT {RECIPIENT_COLUMNS}
         FROM users u
         LEFT JOIN user_profiles p ON p.user_id = u.id
         WHERE $1 = 'all'
            OR ($1 = 'waitlist' AND u.auth_provider = 'waitlist')
            OR ($1 = 'students' AND u.role = 'student' AND u.auth_provider <> 'waitlist')
         ORDER BY u.created_at, u.id"
    );
    Ok(sqlx::query_as::<_, Recipient>(sqlx::AssertSqlSafe(sql))
        .bind(audience.as_str())
        .fetch_all(&ctx.db)
        .await?)
}
