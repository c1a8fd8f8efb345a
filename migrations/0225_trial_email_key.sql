-- The Profile's `has_used_trial` (N5.2) is read in the profile's one query,
-- so the trial key of an email is computed in SQL too. It is
-- mambo_core::payments::normalize_email, the form `trial_claims` is keyed by:
-- trimmed, lowercased, the local part cut at the first `+`, and for
-- gmail.com / googlemail.com (one domain, spelled gmail.com) dots removed
-- from the local part. An address without `@` is only trimmed and lowercased.
-- tests/tests/profile_2026.rs checks the two agree.
CREATE OR REPLACE FUNCTION trial_email_key(email text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN strpos(e, '@') = 0 THEN e
        ELSE (CASE WHEN d IN ('gmail.com', 'googlemail.com')
                   THEN replace(split_part(l, '+', 1), '.', '')
                   ELSE split_part(l, '+', 1) END)
             || '@' || (CASE WHEN d = 'googlemail.com' THEN 'gmail.com' ELSE d END)
    END
    FROM (SELECT e,
                 regexp_replace(e, '@[^@]*$', '') AS l,
                 substring(e FROM '@([^@]*)$') AS d
          FROM (SELECT lower(btrim(email, E' \t\n\r\f\v')) AS e) AS t) AS parts
$$;

-- The profile (and checkout's eligibility check) also look claims up by user.
CREATE INDEX IF NOT EXISTS trial_claims_user_id_idx ON trial_claims (user_id);
