// The demo page: everything a host and the people in a session do, on top of the client.
// Plain DOM, no framework: the page is state plus a render of that state.

import { ConveneClient, VideoMesh } from "../src/index.js";
import type { ChatMessage, MemberView, MessageOf, PeerLink, Role, RoomId, UserId } from "../src/index.js";
import { renderHostControls, renderParticipantControls } from "./controls.js";
import { $, act, banner, el, report, short } from "./dom.js";
import { addDirects, loadInbox, openConversation, renderInbox } from "./inbox.js";
import { isHost, myRoom, state } from "./state.js";

/** Saved per tab: a reload resumes as the same person, in the same session. */
const STORE = { token: "convene.token", session: "convene.session" };

// --- signing in ---------------------------------------------------------------------------------

async function devToken(role: Role): Promise<string> {
  const response = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ role }),
  });
  if (!response.ok) throw new Error(`no dev token (${response.status}): this server verifies real tokens`);
  const body = (await response.json()) as { access_token: string };
  return body.access_token;
}

function roleOf(token: string): Role | undefined {
  try {
    const payload = JSON.parse(atob(token.split(".")[1]!.replace(/-/g, "+").replace(/_/g, "/"))) as {
      app_metadata?: { role?: Role };
    };
    return payload.app_metadata?.role;
  } catch {
    return undefined;
  }
}

async function signIn(token: string): Promise<void> {
  sessionStorage.setItem(STORE.token, token);
  state.role = roleOf(token);
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1/ws`;
  const client = new ConveneClient({ url, token });
  state.client = client;
  wire(client);
  const hello = await client.connect();
  $("who").textContent = `${state.role ?? "user"} ${short(hello.user_id)}`;
  $("who").title = hello.user_id;
  $("signin").hidden = true;
  $("app").hidden = false;
  $("start").hidden = false;
  $("create").hidden = !isHost();
  const shared = new URLSearchParams(location.hash.slice(1)).get("session") ?? sessionStorage.getItem(STORE.session);
  if (shared) {
    $<HTMLInputElement>("session-id").value = shared;
    await join(shared);
  }
  void loadInbox();
}

// --- the session --------------------------------------------------------------------------------

async function createSession(): Promise<void> {
  const reply = await state.client!.request({ type: "create_session", session_type: "group", lobby_enabled: false });
  if (reply.type !== "session_created") return;
  location.hash = `session=${reply.session.id}`;
  $<HTMLInputElement>("session-id").value = reply.session.id;
  await join(reply.session.id);
}

async function join(sessionId: string): Promise<void> {
  const client = state.client!;
  if (!state.localStream) {
    try {
      state.localStream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    } catch (error) {
      report(`no camera or microphone (${String(error)}): joining to watch only`);
    }
  }
  state.mesh?.close();
  state.mesh = new VideoMesh({
    client,
    sessionId,
    localStream: state.localStream,
    onPeerAdded: (peer) => tile(peer),
    onRemoteStream: (peer, stream) => {
      const video = tile(peer).querySelector("video")!;
      video.srcObject = stream;
    },
    onStateChanged: (peer, connection) => {
      tile(peer).dataset.state = connection;
    },
    onPeerRemoved: (peer) => document.getElementById(`tile-${peer.device}`)?.remove(),
  });
  const reply = await client.join(sessionId, { video: true });
  sessionStorage.setItem(STORE.session, sessionId);
  if (reply.type === "lobby_waiting") {
    banner("Waiting in the lobby for a host to let you in…");
    return;
  }
  location.hash = `session=${sessionId}`;
}

function joined(message: MessageOf<"joined">): void {
  state.session = message.session;
  state.me = message.you;
  showRosters();
  for (const room of message.rooms) state.roomNames.set(room.room_id, room.name);
  state.roomNames.set(message.session.id, "Main room");
  state.lobby = new Map((message.lobby ?? []).map((entry) => [entry.user_id, entry]));
  if (message.breakouts) {
    state.breakoutsOpen = message.breakouts.open;
    state.breakouts = new Map(message.breakouts.rooms.map((room) => [room.room_id, room]));
    state.help = new Map(message.breakouts.help_requests.map((help) => [help.user_id, help]));
  }
  $("start").hidden = true;
  $("room").hidden = false;
  banner(undefined);
  localTile();
  void loadHistory();
  render();
}

async function loadHistory(): Promise<void> {
  const room = myRoom();
  if (!state.session || !room) return;
  const reply = await state.client!.request({ type: "fetch_history", session_id: state.session.id, room_id: room, limit: 50 });
  if (reply.type === "history") addChat(reply.messages);
}

function addChat(messages: ChatMessage[]): void {
  for (const message of messages) {
    let room = state.chat.get(message.room_id);
    if (!room) state.chat.set(message.room_id, (room = new Map()));
    room.set(message.seq, message);
  }
  renderChat();
}

function member(update: MemberView): void {
  state.members.set(update.user_id, update);
  if (update.user_id === state.client?.userId) state.me = update;
}

/** Shows the rosters the client holds: a participant's room; for a host, the main room and every open breakout. */
function showRosters(): void {
  const session = state.session;
  const rosters = session ? state.client?.rosters(session.id) : undefined;
  if (!session || !rosters) return;
  const rooms = isHost() ? [session.id, ...state.breakouts.keys()] : [myRoom() ?? session.id];
  state.members = new Map();
  for (const room of rooms) for (const present of rosters.members(room)) member(present);
  if (state.me && !state.members.has(state.me.user_id)) state.members.set(state.me.user_id, state.me);
}

function wire(client: ConveneClient): void {
  client.onState((connection) => {
    const badge = $("connection");
    badge.textContent = connection;
    badge.className = `badge ${connection}`;
  });
  client.on("joined", joined);
  client.on("session_updated", (m) => {
    if (m.session.id === state.session?.id) state.session = m.session;
    render();
  });
  // The client keeps the rosters (whole, then diffs); the page shows what it holds.
  client.on("presence_changed", () => (showRosters(), render()));
  client.on("moved", (m) => {
    state.roomNames.set(m.room.room_id, m.room.name);
    if (state.me) state.me = { ...state.me, room_id: m.room.room_id };
    showRosters();
    state.closing = undefined;
    banner(m.reason === "room_closed" ? "The breakout room closed: you are back in the main room." : undefined);
    void loadHistory();
    render();
  });
  client.on("message", (m) => addChat([m.message]));
  client.on("replay", (m) => addChat(m.messages));
  client.on("message_edited", (m) => addChat([m.message]));
  client.on("message_deleted", (m) => addChat([m.message]));
  client.on("lobby_entered", (m) => (state.lobby.set(m.entry.user_id, m.entry), render()));
  client.on("lobby_left", (m) => (state.lobby.delete(m.user_id), render()));
  client.on("breakouts_changed", (m) => {
    state.breakoutsOpen = m.open;
    for (const room of m.rooms ?? []) {
      state.breakouts.set(room.room_id, room);
      state.roomNames.set(room.room_id, room.name);
      for (const id of room.members) {
        const known = state.members.get(id);
        if (known) member({ ...known, room_id: room.room_id });
      }
    }
    for (const closed of m.closed ?? []) state.breakouts.delete(closed);
    render();
  });
  client.on("room_closing", (m) => {
    state.closing = { roomId: m.room_id, closesAt: Date.parse(m.closes_at) };
    countdown();
  });
  client.on("broadcast", (m) => banner(`Broadcast from the host: ${m.body}`));
  client.on("help_requested", (m) => (state.help.set(m.request.user_id, m.request), render()));
  client.on("help_resolved", (m) => (state.help.delete(m.user_id), render()));
  client.on("removed", () => leaveUi("A host removed you from the session."));
  client.on("session_ended", () => leaveUi("The session ended."));
  client.on("denied", () => leaveUi("A host did not let you in."));
  client.on("conversation_started", () => void loadInbox());
  client.on("direct_message", (m) => {
    addDirects(m.message.conversation_id, [m.message]);
    void loadInbox();
  });
  client.on("notification", (m) => {
    state.notifications.set(m.notification.id, m.notification);
    state.unread += 1;
    renderInbox();
  });
  client.on("notifications_read", (m) => {
    state.unread = m.counts.total;
    renderInbox();
  });
}

function leaveUi(reason: string): void {
  state.mesh?.close();
  state.session = undefined;
  sessionStorage.removeItem(STORE.session);
  $("room").hidden = true;
  $("start").hidden = false;
  banner(reason);
}

function countdown(): void {
  const closing = state.closing;
  if (!closing) return;
  const left = Math.max(0, Math.round((closing.closesAt - Date.now()) / 1000));
  banner(`${state.roomNames.get(closing.roomId) ?? "A breakout room"} closes in ${left} s`);
  if (left > 0) setTimeout(countdown, 1000);
}

// --- video tiles --------------------------------------------------------------------------------

function localTile(): void {
  if (document.getElementById("tile-local")) return;
  const video = el("video", { autoplay: true, muted: true, playsInline: true });
  if (state.localStream) video.srcObject = state.localStream;
  $("videos").append(el("div", { className: "tile", id: "tile-local" }, video, el("span", { className: "label" }, "you")));
}

function tile(peer: PeerLink): HTMLElement {
  const id = `tile-${peer.device}`;
  const existing = document.getElementById(id);
  if (existing) return existing;
  const node = el(
    "div",
    { className: "tile", id, dataset: { user: peer.userId, state: "new" } },
    el("video", { autoplay: true, playsInline: true }),
    el("span", { className: "label" }, short(peer.userId)),
  );
  $("videos").append(node);
  return node;
}

// --- rendering ----------------------------------------------------------------------------------

function render(): void {
  renderRooms();
  renderChat();
  renderHostControls();
  renderParticipantControls();
}

function chip(person: MemberView): HTMLElement {
  const me = person.user_id === state.client?.userId;
  const node = el("span", {
    className: `member${me ? " me" : ""}${person.status === "away" ? " away" : ""}`,
    title: `${person.user_id} (${person.role}, ${person.status})`,
    draggable: isHost() && !me,
    dataset: { user: person.user_id },
  });
  node.append(`${short(person.user_id)} ${person.role}${me ? " (you)" : ""}`);
  node.ondragstart = (event) => event.dataTransfer?.setData("text/plain", person.user_id);
  if (isHost() && !me) {
    const remove = el("button", { title: "Remove from the session", textContent: "×" });
    remove.onclick = () =>
      act(() => state.client!.request({ type: "remove_participant", session_id: state.session!.id, user_id: person.user_id }));
    node.append(remove);
  }
  return node;
}

function renderRooms(): void {
  const session = state.session;
  if (!session) return;
  const rooms: Array<[RoomId, string]> = [[session.id, "Main room"]];
  for (const room of state.breakouts.values()) rooms.push([room.room_id, room.name]);
  for (const [id, name] of state.roomNames) if (!rooms.some(([known]) => known === id)) rooms.push([id, name]);
  const boxes = rooms.map(([roomId, name]) => {
    const people = [...state.members.values()].filter((person) => person.room_id === roomId);
    const box = el(
      "div",
      { className: `room${roomId === myRoom() ? " here" : ""}`, dataset: { room: roomId } },
      el("h4", {}, name, el("small", {}, String(people.length))),
      ...people.map(chip),
    );
    if (isHost()) {
      box.ondragover = (event) => (event.preventDefault(), box.classList.add("drop"));
      box.ondragleave = () => box.classList.remove("drop");
      box.ondrop = (event) => {
        event.preventDefault();
        box.classList.remove("drop");
        const userId = event.dataTransfer?.getData("text/plain");
        const from = userId ? state.members.get(userId)?.room_id : undefined;
        if (userId && from && from !== roomId) moveTo(userId, from, roomId);
      };
    }
    return box;
  });
  $("rooms").replaceChildren(el("h3", {}, state.breakoutsOpen ? "Rooms (breakouts open)" : "Rooms"), ...boxes);
}

function moveTo(userId: UserId, from: RoomId, to: RoomId): void {
  act(() =>
    state.client!.request({ type: "move_participant", session_id: state.session!.id, user_id: userId, from_room_id: from, to_room_id: to }),
  );
}

function renderChat(): void {
  const room = myRoom();
  if (!room) return;
  $("chat-title").textContent = `Chat: ${state.roomNames.get(room) ?? "room"}`;
  const messages = [...(state.chat.get(room)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
  $("messages").replaceChildren(
    ...messages.map((message) =>
      el(
        "li",
        { dataset: { seq: String(message.seq) } },
        el("span", { className: "from" }, short(message.sender_id)),
        message.deleted_at ? "(deleted)" : message.body,
      ),
    ),
  );
  $("messages").scrollTop = $("messages").scrollHeight;
}

// --- start --------------------------------------------------------------------------------------

function start(): void {
  $("dev-token").onclick = () =>
    act(async () => signIn(await devToken($<HTMLSelectElement>("role").value as Role)));
  $("use-token").onclick = () => act(() => signIn($<HTMLTextAreaElement>("token").value.trim()));
  $("create").onclick = () => act(createSession);
  $("join").onclick = () => act(() => join($<HTMLInputElement>("session-id").value.trim()));
  $("chat-form").onsubmit = (event) => {
    event.preventDefault();
    const input = $<HTMLInputElement>("chat-input");
    const body = input.value.trim();
    const room = myRoom();
    if (!body || !room || !state.session) return;
    input.value = "";
    act(() => state.client!.sendMessage(state.session!.id, room, body));
  };
  $("conversation-form").onsubmit = (event) => {
    event.preventDefault();
    const userId = $<HTMLInputElement>("conversation-user").value.trim();
    act(async () => {
      const reply = await state.client!.request({ type: "open_conversation", user_id: userId });
      if (reply.type === "conversation") {
        await loadInbox();
        await openConversation(reply.conversation.id);
      }
    });
  };
  // Presence: away while the tab is hidden, active when it is back.
  document.addEventListener("visibilitychange", () => {
    if (!state.session || state.client?.state !== "open") return;
    const status = document.visibilityState === "hidden" ? "away" : "active";
    act(() => state.client!.request({ type: "set_status", session_id: state.session!.id, status }));
  });
  $("mark-read").onclick = () => act(() => state.client!.request({ type: "mark_notifications_read", all: true }));
  const saved = sessionStorage.getItem(STORE.token);
  if (saved) act(() => signIn(saved));
}

start();
