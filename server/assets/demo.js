// src/rosters.ts
var Rosters = class {
  #rooms = /* @__PURE__ */ new Map();
  /**
   * Takes in a roster. Returns false when it is a diff against a version this device does not
   * hold: the device is out of step, and should join again to be sent the room whole.
   */
  apply(roster) {
    let room = this.#rooms.get(roster.room_id);
    if (roster.since && !room && roster.since.seq === 0) {
      room = { version: roster.since, live: true, total: 0, members: /* @__PURE__ */ new Map() };
      this.#rooms.set(roster.room_id, room);
    }
    if (roster.since) {
      if (!room || !sameVersion(room.version, roster.since)) {
        this.#rooms.delete(roster.room_id);
        return false;
      }
    } else {
      room = { version: roster.version, live: roster.live, total: roster.total, members: /* @__PURE__ */ new Map() };
      this.#rooms.set(roster.room_id, room);
    }
    for (const member2 of roster.members ?? []) room.members.set(member2.user_id, member2);
    for (const user of roster.left ?? []) room.members.delete(user);
    room.version = roster.version;
    room.live = roster.live;
    room.total = roster.total;
    return true;
  }
  room(roomId) {
    return this.#rooms.get(roomId);
  }
  members(roomId) {
    return [...this.#rooms.get(roomId)?.members.values() ?? []];
  }
  /** The versions to name when joining again. */
  held() {
    return [...this.#rooms].filter(([, room]) => room.live).map(([room_id, room]) => ({ room_id, version: room.version }));
  }
  forget(roomId) {
    this.#rooms.delete(roomId);
  }
};
function sameVersion(a, b) {
  return a.epoch === b.epoch && a.seq === b.seq;
}

// src/client.ts
var ConveneError = class extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.name = "ConveneError";
  }
  code;
};
var DEFAULTS = { initialBackoffMs: 500, maxBackoffMs: 15e3, requestTimeoutMs: 15e3 };
var RETRY_PAUSE_MS = 1e3;
var ConveneClient = class {
  #options;
  #socket;
  #state = "closed";
  #attempt = 0;
  #reconnectTimer;
  #heartbeatTimer;
  #lastHeard = 0;
  #heartbeatMs = 15e3;
  #nextRequest = 0;
  #pending = /* @__PURE__ */ new Map();
  #unacked = /* @__PURE__ */ new Map();
  #sessions = /* @__PURE__ */ new Map();
  #listeners = /* @__PURE__ */ new Map();
  #stateListeners = /* @__PURE__ */ new Set();
  #stopped = false;
  /** Who this connection is, from `hello`. */
  userId;
  /** This connection's device id, from `hello`; a new one after every reconnection. */
  connId;
  constructor(options) {
    this.#options = {
      ...DEFAULTS,
      ...options,
      WebSocket: options.WebSocket ?? globalThis.WebSocket
    };
  }
  get state() {
    return this.#state;
  }
  /** Opens the connection; resolves at the first `hello`. Reconnects by itself until `close`. */
  connect() {
    this.#stopped = false;
    const hello = this.once("hello");
    void this.#open();
    return hello;
  }
  /** Closes for good: no reconnection, pending requests fail with `closed`. */
  close() {
    this.#stopped = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#heartbeatTimer);
    this.#socket?.close(1e3, "closed by the client");
    this.#socket = void 0;
    this.#failPending("closed", "the client was closed");
    for (const unacked of this.#unacked.values()) unacked.reject(new ConveneError("closed", "the client was closed"));
    this.#unacked.clear();
    this.#setState("closed");
  }
  /** Calls `listener` with every message of `type`; returns the function that stops it. */
  on(type, listener) {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, set = /* @__PURE__ */ new Set());
    set.add(listener);
    return () => set.delete(listener);
  }
  /** Calls `listener` with every message. */
  onAny(listener) {
    return this.on("*", listener);
  }
  /** Resolves with the next message of `type`. */
  once(type) {
    return new Promise((resolve) => {
      const stop = this.on(type, (message) => {
        stop();
        resolve(message);
      });
    });
  }
  onState(listener) {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }
  /**
   * Sends a request and resolves with its reply (`ok`, `joined`, `history`…), or rejects with the
   * server's error code. A request cut off by a disconnection rejects with `disconnected`: retry
   * it once the client is open again.
   */
  request(request) {
    const requestId = `r${++this.#nextRequest}-${Date.now().toString(36)}`;
    return new Promise((resolve, reject) => {
      if (this.#state !== "open" || !this.#socket) {
        reject(new ConveneError("disconnected", "not connected"));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        reject(new ConveneError("timeout", `no reply to ${request.type}`));
      }, this.#options.requestTimeoutMs);
      this.#pending.set(requestId, { resolve, reject, timer });
      this.#socket.send(JSON.stringify({ ...request, request_id: requestId }));
    });
  }
  // --- sessions -------------------------------------------------------------------------------
  /** Joins a session (with `video`, this device takes part in its room's video). */
  async join(sessionId, options = {}) {
    const membership = this.#sessions.get(sessionId) ?? this.#membership(options.video);
    membership.video = options.video ?? membership.video;
    this.#sessions.set(sessionId, membership);
    return this.#join(sessionId, membership);
  }
  async leave(sessionId) {
    this.#sessions.delete(sessionId);
    await this.request({ type: "leave_session", session_id: sessionId });
  }
  /**
   * Where to resume each room of the session: the last sequence seen there. Restore it after a
   * page reload with `restoreCursors` to get what was missed while the page was gone.
   */
  cursors(sessionId) {
    const membership = this.#sessions.get(sessionId);
    return membership ? [...membership.lastSeq].map(([room_id, last_seq]) => ({ room_id, last_seq })) : [];
  }
  /** The rosters this device holds of a session it is in: its room's (a host's: every room's). */
  rosters(sessionId) {
    return this.#sessions.get(sessionId)?.rosters;
  }
  restoreCursors(sessionId, cursors, options = {}) {
    const membership = this.#sessions.get(sessionId) ?? this.#membership(options.video);
    for (const cursor of cursors) this.#saw(membership, cursor.room_id, cursor.last_seq);
    this.#sessions.set(sessionId, membership);
  }
  /**
   * Sends a chat message, resending it after reconnections until the server acknowledges it;
   * resolves with the acknowledgement. `clientMsgId` names the message: a retry with the same
   * id is never stored twice.
   */
  sendMessage(sessionId, roomId, body, clientMsgId = randomId()) {
    const request = { type: "send_message", session_id: sessionId, room_id: roomId, client_msg_id: clientMsgId, body };
    return new Promise((resolve, reject) => {
      this.#unacked.set(clientMsgId, { request, resolve, reject });
      this.#sendUnacked(clientMsgId);
    });
  }
  // --- the socket -----------------------------------------------------------------------------
  async #open() {
    if (this.#stopped) return;
    this.#setState(this.#attempt === 0 ? "connecting" : "reconnecting");
    let token;
    try {
      token = typeof this.#options.token === "function" ? await this.#options.token() : this.#options.token;
    } catch {
      this.#scheduleReconnect();
      return;
    }
    const separator = this.#options.url.includes("?") ? "&" : "?";
    const socket = new this.#options.WebSocket(`${this.#options.url}${separator}access_token=${encodeURIComponent(token)}`);
    this.#socket = socket;
    socket.onmessage = (event) => {
      if (socket !== this.#socket) return;
      this.#lastHeard = Date.now();
      let message;
      try {
        message = JSON.parse(String(event.data));
      } catch {
        return;
      }
      this.#handle(message);
    };
    socket.onclose = (event) => {
      if (socket !== this.#socket) return;
      this.#socket = void 0;
      clearInterval(this.#heartbeatTimer);
      this.#failPending("disconnected", `the connection closed (${event.code})`);
      if (this.#stopped) {
        this.#setState("closed");
      } else {
        this.#scheduleReconnect();
      }
    };
  }
  #scheduleReconnect() {
    if (this.#stopped) return;
    this.#setState("reconnecting");
    const ceiling = Math.min(this.#options.maxBackoffMs, this.#options.initialBackoffMs * 2 ** this.#attempt);
    this.#attempt += 1;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => void this.#open(), Math.random() * ceiling);
  }
  #handle(message) {
    switch (message.type) {
      case "hello":
        this.userId = message.user_id;
        this.connId = message.conn_id;
        this.#heartbeatMs = message.heartbeat_interval_ms;
        this.#attempt = 0;
        this.#setState("open");
        this.#startHeartbeat();
        void this.#resume();
        break;
      case "message":
        this.#sawMessage(message.message);
        break;
      case "replay":
      case "history":
        for (const chat of message.messages) this.#sawMessage(chat);
        break;
      case "message_ack": {
        const unacked = this.#unacked.get(message.client_msg_id);
        this.#unacked.delete(message.client_msg_id);
        unacked?.resolve(message);
        break;
      }
      case "joined": {
        const membership = this.#sessions.get(message.session.id);
        if (!membership) break;
        for (const room of message.rooms) {
          if (!membership.lastSeq.has(room.room_id)) this.#saw(membership, room.room_id, room.last_seq);
        }
        this.#takeRosters(message.session.id, message.rosters);
        break;
      }
      case "moved": {
        const membership = this.#sessions.get(message.session_id);
        if (membership) this.#saw(membership, message.room.room_id, message.room.last_seq);
        this.#takeRosters(message.session_id, [message.roster]);
        break;
      }
      case "presence_changed":
        this.#takeRosters(message.session_id, message.rosters);
        break;
      case "session_interrupted":
        void this.#rejoinAfterInterruption(message.session_id);
        break;
      case "removed":
      case "denied":
      case "session_ended":
        this.#sessions.delete(message.session_id);
        break;
    }
    const requestId = "request_id" in message ? message.request_id : void 0;
    if (requestId) {
      const pending = this.#pending.get(requestId);
      if (pending) {
        this.#pending.delete(requestId);
        clearTimeout(pending.timer);
        if (message.type === "error") pending.reject(new ConveneError(message.code, message.message));
        else pending.resolve(message);
      }
    }
    for (const key of [message.type, "*"]) {
      for (const listener of this.#listeners.get(key) ?? []) listener(message);
    }
  }
  /** After a (re)connection: rejoin every session with its cursors, then resend unacknowledged messages. */
  async #resume() {
    for (const [sessionId, membership] of this.#sessions) {
      try {
        await this.#join(sessionId, membership);
      } catch (error) {
        if (error instanceof ConveneError && ["gone", "forbidden", "not_found", "denied"].includes(error.code)) {
          this.#sessions.delete(sessionId);
        }
      }
    }
    for (const clientMsgId of this.#unacked.keys()) this.#sendUnacked(clientMsgId);
  }
  async #rejoinAfterInterruption(sessionId) {
    const membership = this.#sessions.get(sessionId);
    while (membership && this.#sessions.get(sessionId) === membership && this.#state === "open") {
      try {
        await this.#join(sessionId, membership);
        for (const [clientMsgId, unacked] of this.#unacked) {
          if (unacked.request.session_id === sessionId) this.#sendUnacked(clientMsgId);
        }
        return;
      } catch (error) {
        if (!(error instanceof ConveneError) || error.code !== "unavailable") return;
        await new Promise((resolve) => setTimeout(resolve, RETRY_PAUSE_MS));
      }
    }
  }
  async #join(sessionId, membership) {
    const resume = [...membership.lastSeq].map(([room_id, last_seq]) => ({ room_id, last_seq }));
    const rosters = membership.rosters.held();
    const reply = await this.request({ type: "join_session", session_id: sessionId, resume, rosters, video: membership.video });
    if (reply.type === "joined" || reply.type === "lobby_waiting") return reply;
    throw new ConveneError("invalid", `unexpected reply ${reply.type} to join_session`);
  }
  #sendUnacked(clientMsgId) {
    const unacked = this.#unacked.get(clientMsgId);
    if (!unacked || this.#state !== "open" || !this.#socket) return;
    this.request(unacked.request).catch((error) => {
      if (error.code === "disconnected") return;
      if (error.code === "rate_limited" || error.code === "unavailable" || error.code === "timeout") {
        setTimeout(() => this.#sendUnacked(clientMsgId), RETRY_PAUSE_MS);
        return;
      }
      this.#unacked.delete(clientMsgId);
      unacked.reject(error);
    });
  }
  #sawMessage(message) {
    const membership = this.#sessions.get(message.session_id);
    if (membership) this.#saw(membership, message.room_id, message.seq);
  }
  #membership(video) {
    return { video: video ?? false, lastSeq: /* @__PURE__ */ new Map(), rosters: new Rosters() };
  }
  /** A diff that does not apply means this device missed something: it joins again. */
  #takeRosters(sessionId, rosters) {
    const membership = this.#sessions.get(sessionId);
    if (!membership) return;
    if (!rosters.every((roster) => membership.rosters.apply(roster))) void this.#rejoinAfterInterruption(sessionId);
  }
  #saw(membership, roomId, seq) {
    if ((membership.lastSeq.get(roomId) ?? -1) < seq) membership.lastSeq.set(roomId, seq);
  }
  /** Browsers do not show WebSocket pings: a silent connection is found with `ping` requests. */
  #startHeartbeat() {
    clearInterval(this.#heartbeatTimer);
    this.#lastHeard = Date.now();
    this.#heartbeatTimer = setInterval(() => {
      if (Date.now() - this.#lastHeard > 2 * this.#heartbeatMs) {
        this.#socket?.close(4e3, "no reply to pings");
        return;
      }
      this.request({ type: "ping" }).catch(() => void 0);
    }, this.#heartbeatMs);
  }
  #failPending(code, reason) {
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new ConveneError(code, reason));
    }
    this.#pending.clear();
  }
  #setState(state2) {
    if (this.#state === state2) return;
    this.#state = state2;
    for (const listener of this.#stateListeners) listener(state2);
  }
};
function randomId() {
  return globalThis.crypto.randomUUID();
}

// src/video.ts
var VideoMesh = class {
  #options;
  #peers = /* @__PURE__ */ new Map();
  /** Candidates that arrived before their connection had the other side's description. */
  #early = /* @__PURE__ */ new Map();
  #iceServers = [];
  #stops;
  /** Create it before joining the session with `video: true`, so it sees the first peers. */
  constructor(options) {
    this.#options = options;
    const { client, sessionId } = options;
    const mine = (handler) => (message) => {
      if (message.session_id === sessionId) handler(message);
    };
    this.#stops = [
      client.on("joined", (message) => {
        if (message.session.id === sessionId) this.#iceServers = (message.ice_servers?.ice_servers ?? []).map(toRtc);
      }),
      client.on("peers_changed", mine((message) => this.#peersChanged(message))),
      client.on("signal_received", mine((message) => void this.#signal(message))),
      // The server forgets this device's connections with the session: so does the mesh.
      client.on("session_interrupted", mine(() => this.#closeAll())),
      client.on("removed", mine(() => this.#closeAll())),
      client.on("session_ended", mine(() => this.#closeAll())),
      client.on("left", mine(() => this.#closeAll())),
      client.onState((state2) => {
        if (state2 !== "open") this.#closeAll();
      })
    ];
  }
  get peers() {
    return this.#peers;
  }
  /** Replaces the camera and microphone on every open connection. */
  setLocalStream(stream) {
    this.#options.localStream = stream;
    for (const peer of this.#peers.values()) {
      for (const sender of peer.connection.getSenders()) {
        const track = stream?.getTracks().find((candidate) => candidate.kind === sender.track?.kind) ?? null;
        void sender.replaceTrack(track);
      }
    }
  }
  close() {
    for (const stop of this.#stops) stop();
    this.#closeAll();
  }
  #peersChanged(message) {
    for (const gone of message.close ?? []) this.#closePeer(gone.device);
    for (const peer of message.open ?? []) {
      if (this.#peers.has(peer.device)) continue;
      const link = this.#connect(peer.user_id, peer.device, peer.offer);
      if (peer.offer) void this.#offer(link);
    }
  }
  #connect(userId, device, offer) {
    const connection = new RTCPeerConnection({ iceServers: this.#iceServers });
    const link = { userId, device, offer, connection, stream: void 0 };
    this.#peers.set(device, link);
    for (const track of this.#options.localStream?.getTracks() ?? []) {
      connection.addTrack(track, this.#options.localStream);
    }
    if (!this.#options.localStream) {
      connection.addTransceiver("audio", { direction: "recvonly" });
      connection.addTransceiver("video", { direction: "recvonly" });
    }
    connection.onicecandidate = (event) => {
      if (!event.candidate) return;
      const { candidate, sdpMid, sdpMLineIndex, usernameFragment } = event.candidate.toJSON();
      void this.#send(link, {
        type: "ice_candidate",
        candidate: candidate ?? "",
        sdp_mid: sdpMid ?? null,
        sdp_m_line_index: sdpMLineIndex ?? null,
        username_fragment: usernameFragment ?? null
      });
    };
    connection.ontrack = (event) => {
      const stream = event.streams[0] ?? new MediaStream([event.track]);
      if (link.stream !== stream) {
        link.stream = stream;
        this.#options.onRemoteStream?.(link, stream);
      }
    };
    connection.onconnectionstatechange = () => this.#options.onStateChanged?.(link, connection.connectionState);
    this.#options.onPeerAdded?.(link);
    return link;
  }
  async #offer(link) {
    const offer = await link.connection.createOffer();
    await link.connection.setLocalDescription(offer);
    await this.#send(link, { type: "offer", sdp: offer.sdp ?? "" });
  }
  async #signal(message) {
    const link = this.#peers.get(message.from_device);
    if (!link) return;
    const { connection } = link;
    const signal = message.signal;
    switch (signal.type) {
      case "offer": {
        await connection.setRemoteDescription({ type: "offer", sdp: signal.sdp });
        await this.#addEarly(link);
        const answer = await connection.createAnswer();
        await connection.setLocalDescription(answer);
        await this.#send(link, { type: "answer", sdp: answer.sdp ?? "" });
        break;
      }
      case "answer":
        await connection.setRemoteDescription({ type: "answer", sdp: signal.sdp });
        await this.#addEarly(link);
        break;
      case "ice_candidate": {
        const candidate = {
          candidate: signal.candidate,
          sdpMid: signal.sdp_mid ?? null,
          sdpMLineIndex: signal.sdp_m_line_index ?? null,
          usernameFragment: signal.username_fragment ?? null
        };
        if (connection.remoteDescription) await connection.addIceCandidate(candidate);
        else this.#early.set(link.device, [...this.#early.get(link.device) ?? [], candidate]);
        break;
      }
    }
  }
  async #addEarly(link) {
    const early = this.#early.get(link.device) ?? [];
    this.#early.delete(link.device);
    for (const candidate of early) await link.connection.addIceCandidate(candidate);
  }
  async #send(link, signal) {
    try {
      await this.#options.client.request({
        type: "send_signal",
        session_id: this.#options.sessionId,
        to_user_id: link.userId,
        to_device: link.device,
        signal
      });
    } catch (error) {
      console.debug("signal not delivered", error);
    }
  }
  #closePeer(device) {
    const link = this.#peers.get(device);
    if (!link) return;
    this.#peers.delete(device);
    this.#early.delete(device);
    link.connection.close();
    this.#options.onPeerRemoved?.(link);
  }
  #closeAll() {
    for (const device of [...this.#peers.keys()]) this.#closePeer(device);
  }
};
function toRtc(server) {
  return { urls: server.urls, username: server.username ?? void 0, credential: server.credential ?? void 0 };
}

// demo/dom.ts
var $ = (id) => document.getElementById(id);
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  for (const [key, value] of Object.entries(dataset ?? {})) node.dataset[key] = value;
  node.append(...children);
  return node;
}
var short = (id) => id.slice(0, 8);
function report(error) {
  const text = error instanceof ConveneError ? error.message : String(error);
  $("status").textContent = text;
  console.warn(error);
}
function act(run) {
  $("status").textContent = "";
  run().catch(report);
}
function button(label, run) {
  const node = el("button", { textContent: label });
  node.onclick = () => act(run);
  return node;
}
function banner(text) {
  const node = $("banner");
  node.hidden = text === void 0;
  node.textContent = text ?? "";
}

// demo/state.ts
var HOST_ROLES = ["therapist", "mentor", "admin"];
var state = {
  client: void 0,
  mesh: void 0,
  role: void 0,
  session: void 0,
  me: void 0,
  members: /* @__PURE__ */ new Map(),
  roomNames: /* @__PURE__ */ new Map(),
  breakouts: /* @__PURE__ */ new Map(),
  breakoutsOpen: false,
  lobby: /* @__PURE__ */ new Map(),
  help: /* @__PURE__ */ new Map(),
  chat: /* @__PURE__ */ new Map(),
  conversations: /* @__PURE__ */ new Map(),
  openConversation: void 0,
  directs: /* @__PURE__ */ new Map(),
  notifications: /* @__PURE__ */ new Map(),
  unread: 0,
  closing: void 0,
  localStream: void 0
};
var isHost = () => state.role !== void 0 && HOST_ROLES.includes(state.role);
var myRoom = () => state.me?.room_id;

// demo/controls.ts
function renderHostControls() {
  const panel = $("host-controls");
  if (!isHost() || !state.session) {
    panel.replaceChildren();
    return;
  }
  const session = state.session.id;
  const client = state.client;
  const count = el("input", { type: "number", min: "1", max: "20", value: "2" });
  const seconds = el("input", { type: "number", min: "0", max: "600", value: "10" });
  const broadcast = el("input", { placeholder: "message to every room" });
  const lobby = [...state.lobby.values()].map(
    (entry) => el(
      "li",
      {},
      `${short(entry.user_id)} ${entry.role} `,
      button("Admit", () => client.request({ type: "admit_participant", session_id: session, user_id: entry.user_id })),
      button("Deny", () => client.request({ type: "deny_participant", session_id: session, user_id: entry.user_id }))
    )
  );
  const help = [...state.help.values()].map(
    (request) => el(
      "li",
      {},
      `${short(request.user_id)} asks for help in ${state.roomNames.get(request.room_id) ?? "a room"} `,
      button(
        "Go there",
        () => client.request({ type: "move_participant", session_id: session, user_id: client.userId, from_room_id: myRoom(), to_room_id: request.room_id })
      ),
      button("Resolved", () => client.request({ type: "resolve_help", session_id: session, user_id: request.user_id }))
    )
  );
  panel.replaceChildren(
    el("h3", {}, "Host"),
    el(
      "div",
      { className: "controls" },
      el("span", {}, `Share: `),
      el("input", { readOnly: true, value: `${location.origin}/#session=${session}`, size: 22, onclick: (e) => e.target.select() })
    ),
    el(
      "div",
      { className: "controls" },
      // Everyone, this page included, hears the change as `session_updated`.
      button(
        state.session.lobby_enabled ? "Turn lobby off" : "Turn lobby on",
        () => client.request({ type: "set_lobby", session_id: session, enabled: !state.session.lobby_enabled })
      )
    ),
    el("ul", {}, ...lobby),
    el(
      "div",
      { className: "controls" },
      count,
      button(
        "Create breakout rooms",
        () => client.request({ type: "create_breakout_rooms", session_id: session, count: Number(count.value), max_participants: 10, assignment_mode: "automatic" })
      )
    ),
    el(
      "div",
      { className: "controls" },
      button("Plan automatically", () => client.request({ type: "plan_breakouts", session_id: session, automatic: true, reset: true }).then(showPlan)),
      button("Open breakouts", () => client.request({ type: "open_breakouts", session_id: session }))
    ),
    el(
      "div",
      { className: "controls" },
      seconds,
      button(
        "Close all (countdown s)",
        () => client.request({ type: "close_breakout_rooms", session_id: session, room_ids: [], countdown_secs: Number(seconds.value) })
      )
    ),
    el(
      "div",
      { className: "controls" },
      broadcast,
      button("Broadcast", () => client.request({ type: "broadcast", session_id: session, body: broadcast.value }))
    ),
    el("ul", {}, ...help),
    el("p", {}, el("small", {}, "Drag a person onto a room to move them; × removes them."))
  );
}
function showPlan(plan) {
  if (plan.type !== "breakout_plan") return;
  const lines = plan.assignments.map((a) => `${short(a.user_id)} → ${state.roomNames.get(a.room_id) ?? short(a.room_id)}`);
  banner(`Plan: ${lines.join(", ") || "nobody to place"}${plan.unassigned.length ? `; left in the main room: ${plan.unassigned.map(short).join(", ")}` : ""}`);
}
function renderParticipantControls() {
  const panel = $("participant-controls");
  if (isHost() || !state.session) {
    panel.replaceChildren();
    return;
  }
  const session = state.session.id;
  const client = state.client;
  const inBreakout = myRoom() !== session;
  const choices = [...state.roomNames].filter(([id]) => id !== myRoom());
  const pick = el("select", {}, ...choices.map(([id, name]) => el("option", { value: id, textContent: name })));
  panel.replaceChildren(
    el("h3", {}, "You"),
    el(
      "div",
      { className: "controls" },
      inBreakout ? button("Ask for help", () => client.request({ type: "ask_for_help", session_id: session })) : "",
      choices.length ? pick : "",
      choices.length ? button("Go to room", () => client.request({ type: "select_room", session_id: session, room_id: pick.value })) : ""
    )
  );
}

// demo/inbox.ts
async function loadInbox() {
  const client = state.client;
  const conversations = await client.request({ type: "list_conversations", archived: false });
  if (conversations.type === "conversations") {
    state.conversations = new Map(conversations.conversations.map((summary) => [summary.conversation.id, summary]));
  }
  const notifications = await client.request({ type: "list_notifications", unread_only: false, limit: 20 });
  if (notifications.type === "notifications") {
    state.notifications = new Map(notifications.notifications.map((notification) => [notification.id, notification]));
    state.unread = notifications.counts.total;
  }
  renderInbox();
}
function addDirects(conversation, messages) {
  let known = state.directs.get(conversation);
  if (!known) state.directs.set(conversation, known = /* @__PURE__ */ new Map());
  for (const message of messages) known.set(message.seq, message);
  renderInbox();
}
async function openConversation(id) {
  state.openConversation = id;
  const reply = await state.client.request({ type: "fetch_direct_history", conversation_id: id, limit: 50 });
  if (reply.type === "direct_history") addDirects(id, reply.messages);
  renderInbox();
}
function renderInbox() {
  const client = state.client;
  $("conversations").replaceChildren(
    ...[...state.conversations.values()].map((summary) => {
      const item = el("li", {}, el("a", { href: "#", textContent: short(summary.other_user_id) }), summary.unread ? ` (${summary.unread})` : "");
      item.onclick = (event) => (event.preventDefault(), act(() => openConversation(summary.conversation.id)));
      return item;
    })
  );
  const open = state.openConversation;
  if (open) {
    const input = el("input", { placeholder: "message" });
    const form = el("form", { className: "controls" }, input, el("button", { textContent: "Send" }));
    form.onsubmit = (event) => {
      event.preventDefault();
      const body = input.value;
      input.value = "";
      act(() => client.request({ type: "send_direct", conversation_id: open, client_msg_id: randomId(), body }));
    };
    const messages = [...state.directs.get(open)?.values() ?? []].sort((a, b) => a.seq - b.seq);
    $("conversation").replaceChildren(
      el("ol", {}, ...messages.map((m) => el("li", {}, el("span", { className: "from" }, short(m.sender_id) + " "), m.body))),
      form
    );
  }
  $("unread").textContent = String(state.unread);
  $("notifications").replaceChildren(
    ...[...state.notifications.values()].map((n) => el("li", {}, `${n.read_at ? "" : "• "}${n.title}: ${n.message}`))
  );
}

// demo/app.ts
var STORE = { token: "convene.token", session: "convene.session" };
async function devToken(role) {
  const response = await fetch("/v1/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ role })
  });
  if (!response.ok) throw new Error(`no dev token (${response.status}): this server verifies real tokens`);
  const body = await response.json();
  return body.access_token;
}
function roleOf(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.app_metadata?.role;
  } catch {
    return void 0;
  }
}
async function signIn(token) {
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
    $("session-id").value = shared;
    await join(shared);
  }
  void loadInbox();
}
async function createSession() {
  const reply = await state.client.request({ type: "create_session", session_type: "group", lobby_enabled: false });
  if (reply.type !== "session_created") return;
  location.hash = `session=${reply.session.id}`;
  $("session-id").value = reply.session.id;
  await join(reply.session.id);
}
async function join(sessionId) {
  const client = state.client;
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
      const video = tile(peer).querySelector("video");
      video.srcObject = stream;
    },
    onStateChanged: (peer, connection) => {
      tile(peer).dataset.state = connection;
    },
    onPeerRemoved: (peer) => document.getElementById(`tile-${peer.device}`)?.remove()
  });
  const reply = await client.join(sessionId, { video: true });
  sessionStorage.setItem(STORE.session, sessionId);
  if (reply.type === "lobby_waiting") {
    banner("Waiting in the lobby for a host to let you in…");
    return;
  }
  location.hash = `session=${sessionId}`;
}
function joined(message) {
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
  banner(void 0);
  localTile();
  void loadHistory();
  render();
}
async function loadHistory() {
  const room = myRoom();
  if (!state.session || !room) return;
  const reply = await state.client.request({ type: "fetch_history", session_id: state.session.id, room_id: room, limit: 50 });
  if (reply.type === "history") addChat(reply.messages);
}
function addChat(messages) {
  for (const message of messages) {
    let room = state.chat.get(message.room_id);
    if (!room) state.chat.set(message.room_id, room = /* @__PURE__ */ new Map());
    room.set(message.seq, message);
  }
  renderChat();
}
function member(update) {
  state.members.set(update.user_id, update);
  if (update.user_id === state.client?.userId) state.me = update;
}
function showRosters() {
  const session = state.session;
  const rosters = session ? state.client?.rosters(session.id) : void 0;
  if (!session || !rosters) return;
  const rooms = isHost() ? [session.id, ...state.breakouts.keys()] : [myRoom() ?? session.id];
  state.members = /* @__PURE__ */ new Map();
  for (const room of rooms) for (const present of rosters.members(room)) member(present);
  if (state.me && !state.members.has(state.me.user_id)) state.members.set(state.me.user_id, state.me);
}
function wire(client) {
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
  client.on("presence_changed", () => (showRosters(), render()));
  client.on("moved", (m) => {
    state.roomNames.set(m.room.room_id, m.room.name);
    if (state.me) state.me = { ...state.me, room_id: m.room.room_id };
    showRosters();
    state.closing = void 0;
    banner(m.reason === "room_closed" ? "The breakout room closed: you are back in the main room." : void 0);
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
function leaveUi(reason) {
  state.mesh?.close();
  state.session = void 0;
  sessionStorage.removeItem(STORE.session);
  $("room").hidden = true;
  $("start").hidden = false;
  banner(reason);
}
function countdown() {
  const closing = state.closing;
  if (!closing) return;
  const left = Math.max(0, Math.round((closing.closesAt - Date.now()) / 1e3));
  banner(`${state.roomNames.get(closing.roomId) ?? "A breakout room"} closes in ${left} s`);
  if (left > 0) setTimeout(countdown, 1e3);
}
function localTile() {
  if (document.getElementById("tile-local")) return;
  const video = el("video", { autoplay: true, muted: true, playsInline: true });
  if (state.localStream) video.srcObject = state.localStream;
  $("videos").append(el("div", { className: "tile", id: "tile-local" }, video, el("span", { className: "label" }, "you")));
}
function tile(peer) {
  const id = `tile-${peer.device}`;
  const existing = document.getElementById(id);
  if (existing) return existing;
  const node = el(
    "div",
    { className: "tile", id, dataset: { user: peer.userId, state: "new" } },
    el("video", { autoplay: true, playsInline: true }),
    el("span", { className: "label" }, short(peer.userId))
  );
  $("videos").append(node);
  return node;
}
function render() {
  renderRooms();
  renderChat();
  renderHostControls();
  renderParticipantControls();
}
function chip(person) {
  const me = person.user_id === state.client?.userId;
  const node = el("span", {
    className: `member${me ? " me" : ""}${person.status === "away" ? " away" : ""}`,
    title: `${person.user_id} (${person.role}, ${person.status})`,
    draggable: isHost() && !me,
    dataset: { user: person.user_id }
  });
  node.append(`${short(person.user_id)} ${person.role}${me ? " (you)" : ""}`);
  node.ondragstart = (event) => event.dataTransfer?.setData("text/plain", person.user_id);
  if (isHost() && !me) {
    const remove = el("button", { title: "Remove from the session", textContent: "×" });
    remove.onclick = () => act(() => state.client.request({ type: "remove_participant", session_id: state.session.id, user_id: person.user_id }));
    node.append(remove);
  }
  return node;
}
function renderRooms() {
  const session = state.session;
  if (!session) return;
  const rooms = [[session.id, "Main room"]];
  for (const room of state.breakouts.values()) rooms.push([room.room_id, room.name]);
  for (const [id, name] of state.roomNames) if (!rooms.some(([known]) => known === id)) rooms.push([id, name]);
  const boxes = rooms.map(([roomId, name]) => {
    const people = [...state.members.values()].filter((person) => person.room_id === roomId);
    const box = el(
      "div",
      { className: `room${roomId === myRoom() ? " here" : ""}`, dataset: { room: roomId } },
      el("h4", {}, name, el("small", {}, String(people.length))),
      ...people.map(chip)
    );
    if (isHost()) {
      box.ondragover = (event) => (event.preventDefault(), box.classList.add("drop"));
      box.ondragleave = () => box.classList.remove("drop");
      box.ondrop = (event) => {
        event.preventDefault();
        box.classList.remove("drop");
        const userId = event.dataTransfer?.getData("text/plain");
        const from = userId ? state.members.get(userId)?.room_id : void 0;
        if (userId && from && from !== roomId) moveTo(userId, from, roomId);
      };
    }
    return box;
  });
  $("rooms").replaceChildren(el("h3", {}, state.breakoutsOpen ? "Rooms (breakouts open)" : "Rooms"), ...boxes);
}
function moveTo(userId, from, to) {
  act(
    () => state.client.request({ type: "move_participant", session_id: state.session.id, user_id: userId, from_room_id: from, to_room_id: to })
  );
}
function renderChat() {
  const room = myRoom();
  if (!room) return;
  $("chat-title").textContent = `Chat: ${state.roomNames.get(room) ?? "room"}`;
  const messages = [...state.chat.get(room)?.values() ?? []].sort((a, b) => a.seq - b.seq);
  $("messages").replaceChildren(
    ...messages.map(
      (message) => el(
        "li",
        { dataset: { seq: String(message.seq) } },
        el("span", { className: "from" }, short(message.sender_id)),
        message.deleted_at ? "(deleted)" : message.body
      )
    )
  );
  $("messages").scrollTop = $("messages").scrollHeight;
}
function start() {
  $("dev-token").onclick = () => act(async () => signIn(await devToken($("role").value)));
  $("use-token").onclick = () => act(() => signIn($("token").value.trim()));
  $("create").onclick = () => act(createSession);
  $("join").onclick = () => act(() => join($("session-id").value.trim()));
  $("chat-form").onsubmit = (event) => {
    event.preventDefault();
    const input = $("chat-input");
    const body = input.value.trim();
    const room = myRoom();
    if (!body || !room || !state.session) return;
    input.value = "";
    act(() => state.client.sendMessage(state.session.id, room, body));
  };
  $("conversation-form").onsubmit = (event) => {
    event.preventDefault();
    const userId = $("conversation-user").value.trim();
    act(async () => {
      const reply = await state.client.request({ type: "open_conversation", user_id: userId });
      if (reply.type === "conversation") {
        await loadInbox();
        await openConversation(reply.conversation.id);
      }
    });
  };
  document.addEventListener("visibilitychange", () => {
    if (!state.session || state.client?.state !== "open") return;
    const status = document.visibilityState === "hidden" ? "away" : "active";
    act(() => state.client.request({ type: "set_status", session_id: state.session.id, status }));
  });
  $("mark-read").onclick = () => act(() => state.client.request({ type: "mark_notifications_read", all: true }));
  const saved = sessionStorage.getItem(STORE.token);
  if (saved) act(() => signIn(saved));
}
start();
