//! Redis: the only module that speaks to it.

use std::time::Duration;

/// How long a readiness probe waits for Redis.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer in time")]
    Timeout,
}

/// Checks that Redis answers.
#[derive(Clone, Debug)]
pub struct RedisProbe {
    client: redis::Client,
}

impl RedisProbe {
    pub fn new(url: &str) -> Result<Self, RedisError> {
        Ok(Self { client: redis::Client::open(url)? })
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let probe = async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<(), RedisError>(())
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe).await.map_err(|_| RedisError::Timeout)?
    }
}
