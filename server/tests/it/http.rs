//! Health, readiness and metrics.

use anyhow::Result;
use convene_protocol::Role;

use crate::common::{Backend, Client, TestServer, TestUser, group_session};
use crate::on_both_backends;

on_both_backends!(health_readiness_and_metrics_report_the_server, readiness_is_degraded_when_redis_is_down,);

async fn health_readiness_and_metrics_report_the_server(backend: Backend) -> Result<()> {
    let redis = std::env::var("CONVENE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let server = TestServer::start_with(backend, |config| config.redis_url = Some(redis)).await?;
    let health = reqwest::get(server.http("/healthz")).await?;
    assert_eq!(health.status(), 200);

    let ready = reqwest::get(server.http("/readyz")).await?;
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await?;
    assert_eq!(ready["status"], "healthy", "{ready}");
    assert_eq!(ready["checks"]["database"]["status"], "healthy");
    assert_eq!(ready["checks"]["redis"]["status"], "healthy");

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

async fn readiness_is_degraded_when_redis_is_down(backend: Backend) -> Result<()> {
    let server =
        TestServer::start_with(backend, |config| config.redis_url = Some("redis://127.0.0.1:1".to_owned())).await?;
    let ready: serde_json::Value = reqwest::get(server.http("/readyz")).await?.json().await?;
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["checks"]["redis"]["status"], "unhealthy");
    assert_eq!(ready["checks"]["database"]["status"], "healthy");
    Ok(())
}
