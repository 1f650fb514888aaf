//! Closed breakout rooms stay readable: hosts and those who were in a room page its history
//! after it closes, and a client resuming there learns where its chat ended, before and after a
//! restart.

use anyhow::{Result, bail};
use convene_protocol::{ErrorCode, MoveReason, ResumeOutcome, RoomId, ServerMessage, SessionId};
use serde_json::json;

use crate::breakouts::{create_rooms, fixture, moved, mv};
use crate::common::{Backend, Client, TestServer, TestUser};
use crate::on_both_backends;

on_both_backends!(a_closed_room_is_read_by_hosts_and_its_past_members_only);

/// Rejoins with a cursor in `room`; returns what the server says of it.
async fn resume_in(server: &TestServer, user: &TestUser, session: SessionId, room: RoomId) -> Result<ResumeOutcome> {
    let mut client = Client::connect(server, user).await?;
    client
        .send_json(json!({"type": "join_session", "request_id": "j", "session_id": session,
            "resume": [{"room_id": room, "last_seq": 1}]}))
        .await?;
    match client.recv().await? {
        ServerMessage::Joined { mut resume, .. } if resume.len() == 1 => Ok(resume.remove(0)),
        other => bail!("expected joined with one resume outcome, got {other:?}"),
    }
}

async fn a_closed_room_is_read_by_hosts_and_its_past_members_only(backend: Backend) -> Result<()> {
    let mut f = fixture(backend, 2).await?;
    let room = create_rooms(&mut f, 1, 5, "manual").await?[0];
    let visitor = f.people[0].0.clone();
    let stranger = f.people[1].0.clone();
    assert_eq!(f.host_client.request(mv(f.session, visitor.id, f.main, room)).await?, Ok(()));
    moved(&mut f.people[0].1).await?;
    for i in 1..=3 {
        f.people[0].1.post(f.session, room, &format!("m{i}"), "said in the breakout").await?;
    }
    let close = json!({"type": "close_breakout_rooms", "session_id": f.session, "countdown_secs": 0});
    assert_eq!(f.host_client.request(close).await?, Ok(()));
    assert_eq!(moved(&mut f.people[0].1).await?.1, MoveReason::RoomClosed);

    let expected =
        [("host", Ok(vec![1, 2, 3])), ("visitor", Ok(vec![1, 2, 3])), ("stranger", Err(ErrorCode::Forbidden))];
    let (host_client, people) = (&mut f.host_client, &mut f.people);
    let (visitor_client, rest) = people.split_at_mut(1);
    let clients = [host_client, &mut visitor_client[0].1, &mut rest[0].1];
    for ((who, want), client) in expected.iter().zip(clients) {
        assert_eq!(&client.history(f.session, room).await?, want, "{who} reads the closed room");
    }
    let resumed = resume_in(&f.server, &visitor, f.session, room).await?;
    assert_eq!((resumed.recovered, resumed.last_seq), (false, 3), "resume reports where the room ended");
    assert_eq!(resume_in(&f.server, &stranger, f.session, room).await?.last_seq, 0, "nothing told to outsiders");

    // After a restart the session is loaded from the store: the same people may read it.
    drop(f.host_client);
    drop(f.people);
    let db = f.server.stop().await?;
    let server = TestServer::start_on(db, |_| {}).await?;
    for (user, want) in
        [(&f.host, Ok(vec![1, 2, 3])), (&visitor, Ok(vec![1, 2, 3])), (&stranger, Err(ErrorCode::Forbidden))]
    {
        let mut client = Client::connect(&server, user).await?;
        client.join(f.session).await?;
        assert_eq!(client.history(f.session, room).await?, want, "after a restart");
    }
    assert_eq!(resume_in(&server, &visitor, f.session, room).await?.last_seq, 3);
    Ok(())
}
