//! The `mambo` binary: help for every command, and one-line reasons with a
//! non-zero exit on bad input or an unreachable database.

use std::process::{Command, Output};

fn mambo(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mambo"));
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("ENVIRONMENT", "development")
        // Nothing listens on port 1: connecting fails at once.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")
        .env("REDIS_URL", "redis://127.0.0.1:1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run mambo")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn help_lists_every_command_with_one_line() {
    let o = mambo(&["--help"], &[]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for cmd in [
        "dev",
        "api",
        "worker",
        "migrate",
        "seed",
        "openapi",
        "create-admin",
        "create-test-user",
        "broadcast",
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{cmd} ")))
            .unwrap_or_else(|| panic!("{cmd} missing from\n{out}"));
        assert!(
            line.split_whitespace().count() > 2,
            "{cmd} has no help: {line}"
        );
    }
    let o = mambo(&["broadcast", "--help"], &[]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--template",
        "--audience",
        "--var",
        "--dry-run",
        "--no-wait",
    ] {
        assert!(out.contains(flag), "{flag} missing from\n{out}");
    }
}

#[test]
fn bad_input_exits_non_zero_with_a_reason() {
    let o = mambo(
        &[
            "broadcast",
            "--template",
            "x.html",
            "--audience",
            "everyone",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("unknown audience"), "{}", stderr(&o));

    let o = mambo(
        &[
            "broadcast",
            "--template",
            "/nonexistent/x.html",
            "--audience",
            "waitlist",
        ],
        &[],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.starts_with("error: cannot read the template"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");

    let o = mambo(&["create-test-user", "--tier", "gold"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--tier"), "{}", stderr(&o));

    let o = mambo(&["worker"], &[("WORKER_METRICS_PORT", "not-a-port")]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("WORKER_METRICS_PORT"), "{}", stderr(&o));
}

#[test]
fn an_unreachable_database_is_one_line() {
    for args in [&["migrate"][..], &["seed"][..]] {
        let o = mambo(args, &[]);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: cannot connect to PostgreSQL"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn openapi_prints_the_spec_without_a_database() {
    let o = mambo(&["openapi"], &[]);
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert!(doc["paths"]["/health"]["get"]["operationId"].is_string());
}
