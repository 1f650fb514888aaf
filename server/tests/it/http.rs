//! Health, readiness and metrics.

use anyhow::Result;
use convene_protocol::Role;

use crate::common::{Backend, Client, TestServer, TestUser, group_session};
use crate::on_both_backends;

on_both_backends!(health_readiness_and_metrics_report_the_server, the_http_api_answers_cors_for_allowed_origins_only,);

async fn health_readiness_and_metrics_report_the_server(backend: Backend) -> Result<()> {
    let server = TestServer::start(backend).await?;
    let health = reqwest::get(server.http("/healthz")).await?;
    assert_eq!(health.status(), 200);

    let ready = reqwest::get(server.http("/readyz")).await?;
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await?;
    assert_eq!(ready["status"], "healthy", "{ready}");
    assert_eq!(ready["checks"]["database"]["status"], "healthy");
    assert!(ready["checks"].get("redis").is_none(), "a node alone has no Redis to check: {ready}");

    let (host, mut client, session) = group_session(&server).await?;
    client.post(session.id, session.main_room_id, "m", "counted").await?;
    let _listener = Client::connect(&server, &TestUser::new(Role::Patient, host.org)).await?;
    let metrics = reqwest::get(server.http("/metrics")).await?.text().await?;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    assert_eq!(value("convene_connections"), 2.0, "{metrics}");
    assert_eq!(value("convene_sessions_active"), 1.0);
    assert_eq!(value("convene_chat_messages_stored_total"), 1.0);
    assert!(value("convene_frames_in_total") >= 2.0);
    assert!(value("convene_persist_seconds_count") >= 1.0);
    Ok(())
}

async fn the_http_api_answers_cors_for_allowed_origins_only(backend: Backend) -> Result<()> {
    let server = TestServer::start_with(backend, |config| {
        config.allowed_origins = vec!["https://app.example".to_owned()];
    })
    .await?;
    let client = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.http("/v1/sessions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allowed = preflight("https://app.example").await?;
    assert!(allowed.status().is_success(), "preflight: {}", allowed.status());
    let header = |response: &reqwest::Response, name: &str| {
        response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some("https://app.example"));
    let methods = header(&allowed, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let other = preflight("https://evil.example").await?;
    assert_eq!(header(&other, "access-control-allow-origin"), None, "another origin is not allowed");

    // A real request from the allowed origin carries the header too.
    let host = TestUser::new(Role::Therapist, None);
    let created = client
        .post(server.http("/v1/sessions"))
        .header("origin", "https://app.example")
        .bearer_auth(host.token())
        .json(&serde_json::json!({"session_type": "group"}))
        .send()
        .await?;
    assert_eq!(created.status(), 201);
    assert_eq!(header(&created, "access-control-allow-origin").as_deref(), Some("https://app.example"));
    Ok(())
}
