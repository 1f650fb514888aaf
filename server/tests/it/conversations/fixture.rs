//! What the conversation tests share: one node on SQLite or two nodes on Postgres over Redis,
//! the service API's key, and the client's conversation requests.

use anyhow::{Context as _, Result, bail};
use convene_protocol::{ConversationId, ConversationView, DirectMessage, ErrorCode, ServerMessage, UserId};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Backend, Client, TestServer, TestUser};
use crate::nodes::{TestCluster, redis_url};

pub const SERVICE_KEY: &str = "test-service-key";

/// Where the people of a test connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// One node on SQLite.
    OneNode,
    /// Two nodes on Postgres over Redis; `node(i)` alternates between them.
    TwoNodes,
}

/// Defines each listed test twice: `one_node::name` and `two_nodes::name`.
#[macro_export]
macro_rules! on_one_node_and_two {
    ($($name:ident),* $(,)?) => {
        mod one_node {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::conversations::fixture::Setup::OneNode).await
                }
            )*
        }
        mod two_nodes {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name($crate::conversations::fixture::Setup::TwoNodes).await
                }
            )*
        }
    };
}

/// Two people of a test, a device each, and their conversation (see [`Fixture::pair`]).
pub struct Pair {
    pub mentor: TestUser,
    pub mentee: TestUser,
    pub mentor_device: Client,
    pub mentee_device: Client,
    pub conversation: ConversationView,
}

pub struct Fixture {
    pub nodes: Vec<TestServer>,
    /// One organization for the test's people.
    pub org: Uuid,
}

impl Fixture {
    pub async fn start(setup: Setup) -> Result<Self> {
        Self::start_with(setup, |_| {}).await
    }

    /// [`Self::start`], with the nodes' configuration changed by `configure`.
    pub async fn start_with(setup: Setup, configure: impl Fn(&mut convene_server::Config)) -> Result<Self> {
        let configure = |config: &mut convene_server::Config| {
            config.service_key = Some(SERVICE_KEY.to_owned());
            configure(config);
        };
        let nodes = match setup {
            Setup::OneNode => vec![TestServer::start_with(Backend::Sqlite, configure).await?],
            Setup::TwoNodes => TestCluster::start_with(2, redis_url(), configure).await?.nodes,
        };
        Ok(Self { nodes, org: Uuid::new_v4() })
    }

    /// The `i`th place to connect: the nodes in turn.
    pub fn node(&self, i: usize) -> &TestServer {
        &self.nodes[i % self.nodes.len()]
    }

    pub fn user(&self, role: convene_protocol::Role) -> TestUser {
        TestUser::new(role, Some(self.org))
    }

    /// A mentor with a device on node 0 who opened a conversation with a mentee, whose device is
    /// on node 1.
    pub async fn pair(&self) -> Result<Pair> {
        let (mentor, mentee) = (self.user(convene_protocol::Role::Mentor), self.user(convene_protocol::Role::Mentee));
        let mut mentor_device = Client::connect(self.node(0), &mentor).await?;
        let mentee_device = Client::connect(self.node(1), &mentee).await?;
        let conversation =
            mentor_device.open_with(mentee.id).await?.map_err(|code| anyhow::anyhow!("open: {code:?}"))?;
        Ok(Pair { mentor, mentee, mentor_device, mentee_device, conversation })
    }

    /// Calls the service API on node `i` with the service key; answers the status and body.
    pub async fn service(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        self.call(i, method, path, body, Some(SERVICE_KEY)).await
    }

    pub async fn call(
        &self,
        i: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut request = reqwest::Client::new().request(method, self.node(i).http(path));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).context(text)? };
        Ok((status, value))
    }

    /// Sets a user's profile over the service API.
    pub async fn profile(&self, user: &TestUser, kind: &str, chat_enabled: bool, visibility: &str) -> Result<()> {
        let body = json!({"organization_id": user.org, "kind": kind, "chat_enabled": chat_enabled,
            "profile_visibility": visibility});
        let (status, answer) = self
            .service(0, reqwest::Method::PUT, &format!("/v1/service/users/{}/profile", user.id), Some(body))
            .await?;
        if status != 204 {
            bail!("setting a profile: {status} {answer}");
        }
        Ok(())
    }
}

/// The client's conversation requests.
impl Client {
    /// Opens the conversation with `other`; the view, or the error code.
    pub async fn open_with(&mut self, other: UserId) -> Result<std::result::Result<ConversationView, ErrorCode>> {
        let id = format!("o-{}", Uuid::new_v4().simple());
        self.send_json(json!({"type": "open_conversation", "request_id": id, "user_id": other})).await?;
        self.recv_until(|m| match m {
            ServerMessage::Conversation { request_id: Some(r), conversation } if r.as_str() == id => {
                Some(Ok(conversation))
            }
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => Some(Err(e.code)),
            _ => None,
        })
        .await
    }

    /// Sends a message; the acknowledged sequence, or the error code. Conversation messages
    /// that arrive before the ack are skipped.
    pub async fn send_dm(
        &mut self,
        conversation: ConversationId,
        client_msg_id: &str,
        body: &str,
    ) -> Result<std::result::Result<i64, ErrorCode>> {
        self.send_dm_seeing(conversation, client_msg_id, body, &mut Vec::new()).await
    }

    /// [`Self::send_dm`], keeping the conversation messages that arrive before the ack.
    pub async fn send_dm_seeing(
        &mut self,
        conversation: ConversationId,
        client_msg_id: &str,
        body: &str,
        seen: &mut Vec<DirectMessage>,
    ) -> Result<std::result::Result<i64, ErrorCode>> {
        let id = format!("s-{}", Uuid::new_v4().simple());
        let request = json!({"type": "send_direct", "request_id": id, "conversation_id": conversation,
            "client_msg_id": client_msg_id, "body": body});
        self.send_json(request).await?;
        self.recv_until(|m| match m {
            ServerMessage::DirectAck { request_id: Some(r), seq, .. } if r.as_str() == id => Some(Ok(seq)),
            ServerMessage::Error(e) if e.request_id.as_ref().is_some_and(|r| r.as_str() == id) => Some(Err(e.code)),
            ServerMessage::DirectMessage { message } => {
                seen.push(message);
                None
            }
            _ => None,
        })
        .await
    }

    /// The next conversation message delivered.
    pub async fn next_dm(&mut self) -> Result<DirectMessage> {
        self.recv_until(|m| match m {
            ServerMessage::DirectMessage { message } => Some(message),
            _ => None,
        })
        .await
    }

    /// Every conversation message delivered up to a ping's answer.
    pub async fn dms_so_far(&mut self) -> Result<Vec<DirectMessage>> {
        Ok(self
            .sync()
            .await?
            .into_iter()
            .filter_map(|m| match m {
                ServerMessage::DirectMessage { message } => Some(message),
                _ => None,
            })
            .collect())
    }

    /// Says this device is at `last_seq` in `conversation`: the sequences replayed to it, then
    /// the sync's outcome.
    pub async fn sync_from(
        &mut self,
        conversation: ConversationId,
        last_seq: i64,
    ) -> Result<(Vec<i64>, Vec<convene_protocol::SyncOutcome>)> {
        self.send_json(json!({"type": "sync_conversations",
            "positions": [{"conversation_id": conversation, "last_seq": last_seq}]}))
            .await?;
        let mut replayed = Vec::new();
        loop {
            match self.recv().await? {
                ServerMessage::DirectMessage { message } => replayed.push(message.seq),
                ServerMessage::ConversationsSynced { conversations, .. } => return Ok((replayed, conversations)),
                _ => {}
            }
        }
    }

    /// Sends a request and waits for the reply that names it (any kind).
    pub async fn ask(&mut self, mut body: Value) -> Result<ServerMessage> {
        let id = format!("a-{}", Uuid::new_v4().simple());
        body["request_id"] = json!(id);
        self.send_json(body).await?;
        self.recv_until(|m| (crate::conversations::fixture::names(&m) == Some(id.as_str())).then_some(m)).await
    }
}

/// The request id a reply names.
pub fn names(message: &ServerMessage) -> Option<&str> {
    let id = match message {
        ServerMessage::Ok { request_id }
        | ServerMessage::Conversation { request_id, .. }
        | ServerMessage::Conversations { request_id, .. }
        | ServerMessage::DirectAck { request_id, .. }
        | ServerMessage::DirectHistory { request_id, .. }
        | ServerMessage::ConversationsSynced { request_id, .. }
        | ServerMessage::Notifications { request_id, .. }
        | ServerMessage::NotificationCounts { request_id, .. } => request_id.as_ref(),
        ServerMessage::Error(error) => error.request_id.as_ref(),
        _ => None,
    };
    id.map(convene_protocol::RequestId::as_str)
}
