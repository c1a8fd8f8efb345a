//! The CLI's contract with operators: one-line reasons and non-zero exits.

#[test]
fn the_cli_refuses_to_start_without_secret_key_in_production() {
    let exe = env!("CARGO_BIN_EXE_mambo");
    let out = std::process::Command::new(exe)
        .arg("migrate")
        .env("ENVIRONMENT", "production")
        .env_remove("SECRET_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SECRET_KEY"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn openapi_prints_the_spec() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mambo"))
        .arg("openapi")
        .output()
        .unwrap();
    assert!(out.status.success());
    let spec: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(spec["paths"]["/health"].is_object());
}

#[test]
fn an_unreachable_database_is_a_one_line_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mambo"))
        .arg("migrate")
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("PostgreSQL"), "{err}");
}
