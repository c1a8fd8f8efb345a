//! A topic level's teaser (API-2026-05 N5.3): the `## TL;DR` section of its
//! first lesson's notes, in the caller's locale when there is a translation.
//! It is the only part of a lesson's content shown to callers without access.

use super::*;

/// The pattern a `?locale=` must match.
pub const LOCALE_PATTERN: &str = "^[a-z]{2}$";

/// A content locale: two lowercase ASCII letters (`en` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locale(String);

impl Default for Locale {
    fn default() -> Self {
        Self("en".into())
    }
}

impl Locale {
    /// `?locale=`: absent means `en`; anything but `^[a-z]{2}$` is a
    /// FastAPI-style 422 (`string_pattern_mismatch` at `["query", "locale"]`).
    pub fn parse(raw: Option<&str>) -> Result<Self> {
        let Some(raw) = raw else {
            return Ok(Self::default());
        };
        if raw.len() == 2 && raw.bytes().all(|b| b.is_ascii_lowercase()) {
            return Ok(Self(raw.to_string()));
        }
        Err(Error::with_object(
            422,
            serde_json::json!([{
                "type": "string_pattern_mismatch",
                "loc": ["query", "locale"],
                "msg": format!("String should match pattern '{LOCALE_PATTERN}'"),
                "input": raw,
                "ctx": { "pattern": LOCALE_PATTERN },
            }]),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The text of a level-2 ATX heading (`## text`, up to three spaces of
/// indentation, an optional closing run of `#`), or `None` for any other line.
fn heading2(line: &str) -> Option<&str> {
    let rest = line.trim_start_matches(' ');
    if line.len() - rest.len() > 3 {
        return None;
    }
    let rest = rest.strip_prefix("##")?;
    let text = if rest.trim().is_empty() {
        ""
    } else if rest.starts_with([' ', '\t']) {
        rest.trim()
    } else {
        return None;
    };
    let closed = text.trim_end_matches('#');
    Some(if closed.is_empty() || closed.ends_with([' ', '\t']) {
        closed.trim_end()
    } else {
        text
    })
}

/// Whether a line opens or closes a fenced code block (inside one, `## ` is
/// not a heading).
fn fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// The text under the first `## TL;DR` (or `## TLDR`, any case) heading of a
/// markdown document, up to the next `## ` heading, trimmed; `None` when there
/// is no such heading or the section is empty.
pub fn tldr_section(markdown: &str) -> Option<String> {
    let mut in_fence = false;
    let mut section: Option<Vec<&str>> = None;
    for line in markdown.lines() {
        let heading = if in_fence { None } else { heading2(line) };
        if fence(line) {
            in_fence = !in_fence;
        }
        match (&mut section, heading) {
            (Some(_), Some(_)) => break,
            (Some(lines), None) => lines.push(line),
            (None, Some(h))
                if h.eq_ignore_ascii_case("tl;dr") || h.eq_ignore_ascii_case("tldr") =>
            {
                section = Some(vec![])
            }
            (None, _) => {}
        }
    }
    let text = section?.join("\n");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// A level's teaser from its first lesson's `content_json.translations[locale].notes`
/// (`translated`) and `content_json.notes` (`notes`): the translation's section
/// when it has one, else the notes'. Values that are not strings count as absent.
pub fn level_tldr(translated: Option<&Value>, notes: Option<&Value>) -> Option<String> {
    [translated, notes]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(tldr_section)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_section_under_the_heading_up_to_the_next_one() {
        let md =
            "# Guide\nIntro.\n\n## TL;DR\n\n  Step on **2**.\nBreak back.  \n\n## Details\nMore.";
        assert_eq!(
            tldr_section(md).as_deref(),
            Some("Step on **2**.\nBreak back.")
        );
    }

    #[test]
    fn heading_spellings() {
        for h in [
            "## TL;DR",
            "## tl;dr",
            "## TLDR",
            "## Tldr",
            "##   TL;DR  ",
            "   ## TL;DR",
            "## TL;DR ##",
            "##\tTLDR",
        ] {
            assert_eq!(
                tldr_section(&format!("{h}\nShort.\n## Next")).as_deref(),
                Some("Short."),
                "{h:?}"
            );
        }
        for h in [
            "# TL;DR",
            "### TL;DR",
            "##TL;DR",
            "    ## TL;DR",
            "## TL;DR:",
            "## TL DR",
            "TL;DR",
        ] {
            assert_eq!(tldr_section(&format!("{h}\nShort.")), None, "{h:?}");
        }
    }

    #[test]
    fn runs_to_the_end_and_keeps_deeper_headings() {
        let md = "## TLDR\nOne.\n### Sub\nTwo.\n# Top\nThree.";
        assert_eq!(
            tldr_section(md).as_deref(),
            Some("One.\n### Sub\nTwo.\n# Top\nThree.")
        );
        assert_eq!(
            tldr_section("## TL;DR\r\nWindows.\r\n## Next\r\n").as_deref(),
            Some("Windows.")
        );
    }

    #[test]
    fn absent_or_empty_is_none() {
        assert_eq!(tldr_section(""), None);
        assert_eq!(tldr_section("Just notes.\n## Details\nx"), None);
        assert_eq!(tldr_section("## TL;DR\n\n   \n## Details\nx"), None);
        assert_eq!(tldr_section("## TL;DR"), None);
        assert_eq!(tldr_section("## Details\n## TL;DR\n## More"), None);
    }

    #[test]
    fn first_section_wins_and_fences_hide_headings() {
        let md = "## TL;DR\nFirst.\n## TLDR\nSecond.";
        assert_eq!(tldr_section(md).as_deref(), Some("First."));
        let md =
            "```\n## TL;DR\nin code\n```\n## TL;DR\nA\n```md\n## Not a heading\n```\nB\n## End";
        assert_eq!(
            tldr_section(md).as_deref(),
            Some("A\n```md\n## Not a heading\n```\nB")
        );
    }

    #[test]
    fn translation_first_then_notes() {
        let es = json!("## TL;DR\nPaso en 2.");
        let en = json!("## TL;DR\nStep on 2.");
        assert_eq!(
            level_tldr(Some(&es), Some(&en)).as_deref(),
            Some("Paso en 2.")
        );
        assert_eq!(level_tldr(None, Some(&en)).as_deref(), Some("Step on 2."));
        // A translation without the section, or not a string, falls back.
        let bare = json!("Solo notas.");
        assert_eq!(
            level_tldr(Some(&bare), Some(&en)).as_deref(),
            Some("Step on 2.")
        );
        assert_eq!(
            level_tldr(Some(&json!({"x": 1})), Some(&en)).as_deref(),
            Some("Step on 2.")
        );
        assert_eq!(level_tldr(None, Some(&json!(["## TL;DR\nx"]))), None);
        assert_eq!(level_tldr(None, None), None);
    }

    #[test]
    fn locales() {
        assert_eq!(Locale::parse(None).unwrap().as_str(), "en");
        assert_eq!(Locale::parse(Some("es")).unwrap().as_str(), "es");
        for bad in ["EN1", "EN", "e", "esp", "", "é", "e1", " es"] {
            let e = Locale::parse(Some(bad)).unwrap_err();
            assert_eq!(e.status(), 422, "{bad:?}");
            let Error::Http { detail, .. } = e else {
                panic!("{bad:?}")
            };
            assert_eq!(detail[0]["type"], json!("string_pattern_mismatch"));
            assert_eq!(detail[0]["loc"], json!(["query", "locale"]));
            assert_eq!(detail[0]["input"], json!(bad));
            assert_eq!(
                detail[0]["msg"],
                json!("String should match pattern '^[a-z]{2}$'")
            );
        }
    }
}
