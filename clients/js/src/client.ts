// The connection to Convene: one WebSocket that reconnects by itself (exponential backoff with
// full jitter), rejoins the sessions it was in with `resume` so that missed messages are
// replayed, resends chat messages the server has not acknowledged (their `client_msg_id` makes
// the retry safe), keeps the rosters of its sessions (and names them when it rejoins, to be
// sent only what changed), and matches each reply to its request.

import type {
  ChatMessage,
  ClientMessage,
  ErrorCode,
  RoomCursor,
  RoomId,
  Roster,
  ServerMessage,
  SessionId,
  UserId,
} from "./wire.js";
import { Rosters } from "./rosters.js";

/** A server message of one `type`. */
export type MessageOf<K extends ServerMessage["type"]> = Extract<ServerMessage, { type: K }>;

/** A request as the caller writes it: the client adds the `request_id`. */
export type Request = DistributiveOmit<ClientMessage, "request_id">;
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** Where the connection is. */
export type ConnectionState = "connecting" | "open" | "reconnecting" | "closed";

/** A request the server refused (its stable code), or one that could not be sent or answered. */
export class ConveneError extends Error {
  constructor(
    readonly code: ErrorCode | "disconnected" | "timeout" | "closed",
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = "ConveneError";
  }
}

export interface ConveneOptions {
  /** The WebSocket endpoint, e.g. `wss://convene.example/v1/ws`. */
  url: string;
  /** The access token, or a function asked for a fresh one before every (re)connection. */
  token: string | (() => string | Promise<string>);
  /** First reconnection delay; doubles up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long a request waits for its reply. */
  requestTimeoutMs?: number;
  /** For tests and non-browser runtimes. */
  WebSocket?: typeof WebSocket;
}

/** What the client remembers of a session it joined, to rejoin it after a reconnect. */
interface Membership {
  video: boolean;
  /** The last sequence number seen in each room. */
  lastSeq: Map<RoomId, number>;
  rosters: Rosters;
}

interface Pending {
  resolve: (message: ServerMessage) => void;
  reject: (error: ConveneError) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** A chat message sent and not yet acknowledged: resent after every reconnection. */
interface Unacked {
  request: Extract<Request, { type: "send_message" }>;
  resolve: (message: MessageOf<"message_ack">) => void;
  reject: (error: ConveneError) => void;
}

type Listener = (message: ServerMessage) => void;
type Settings = Required<ConveneOptions>;

const DEFAULTS = { initialBackoffMs: 500, maxBackoffMs: 15_000, requestTimeoutMs: 15_000 };
/**
 * The pause before retrying what the server refused for now (`unavailable`, `rate_limited`) or
 * did not answer: a rejoin while the session changes owner, a chat message.
 */
const RETRY_PAUSE_MS = 1_000;

export class ConveneClient {
  #options: Settings;
  #socket: WebSocket | undefined;
  #state: ConnectionState = "closed";
  #attempt = 0;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  #lastHeard = 0;
  #heartbeatMs = 15_000;
  #nextRequest = 0;
  #pending = new Map<string, Pending>();
  #unacked = new Map<string, Unacked>();
  #sessions = new Map<SessionId, Membership>();
  #listeners = new Map<string, Set<Listener>>();
  #stateListeners = new Set<(state: ConnectionState) => void>();
  #stopped = false;
  /** Who this connection is, from `hello`. */
  userId: UserId | undefined;
  /** This connection's device id, from `hello`; a new one after every reconnection. */
  connId: string | undefined;

  constructor(options: ConveneOptions) {
    this.#options = {
      ...DEFAULTS,
      ...options,
      WebSocket: options.WebSocket ?? globalThis.WebSocket,
    };
  }

  get state(): ConnectionState {
    return this.#state;
  }

  /** Opens the connection; resolves at the first `hello`. Reconnects by itself until `close`. */
  connect(): Promise<MessageOf<"hello">> {
    this.#stopped = false;
    const hello = this.once("hello");
    void this.#open();
    return hello;
  }

  /** Closes for good: no reconnection, pending requests fail with `closed`. */
  close(): void {
    this.#stopped = true;
    clearTimeout(this.#reconnectTimer);
    clearInterval(this.#heartbeatTimer);
    this.#socket?.close(1000, "closed by the client");
    this.#socket = undefined;
    this.#failPending("closed", "the client was closed");
    for (const unacked of this.#unacked.values()) unacked.reject(new ConveneError("closed", "the client was closed"));
    this.#unacked.clear();
    this.#setState("closed");
  }

  /** Calls `listener` with every message of `type`; returns the function that stops it. */
  on<K extends ServerMessage["type"]>(type: K, listener: (message: MessageOf<K>) => void): () => void {
    let set = this.#listeners.get(type);
    if (!set) this.#listeners.set(type, (set = new Set()));
    set.add(listener as Listener);
    return () => set.delete(listener as Listener);
  }

  /** Calls `listener` with every message. */
  onAny(listener: Listener): () => void {
    return this.on("*" as ServerMessage["type"], listener);
  }

  /** Resolves with the next message of `type`. */
  once<K extends ServerMessage["type"]>(type: K): Promise<MessageOf<K>> {
    return new Promise((resolve) => {
      const stop = this.on(type, (message) => {
        stop();
        resolve(message);
      });
    });
  }

  onState(listener: (state: ConnectionState) => void): () => void {
    this.#stateListeners.add(listener);
    return () => this.#stateListeners.delete(listener);
  }

  /**
   * Sends a request and resolves with its reply (`ok`, `joined`, `history`…), or rejects with the
   * server's error code. A request cut off by a disconnection rejects with `disconnected`: retry
   * it once the client is open again.
   */
  request(request: Request): Promise<ServerMessage> {
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
  async join(sessionId: SessionId, options: { video?: boolean } = {}): Promise<MessageOf<"joined"> | MessageOf<"lobby_waiting">> {
    const membership = this.#sessions.get(sessionId) ?? this.#membership(options.video);
    membership.video = options.video ?? membership.video;
    this.#sessions.set(sessionId, membership);
    return this.#join(sessionId, membership);
  }

  async leave(sessionId: SessionId): Promise<void> {
    this.#sessions.delete(sessionId);
    await this.request({ type: "leave_session", session_id: sessionId });
  }

  /**
   * Where to resume each room of the session: the last sequence seen there. Restore it after a
   * page reload with `restoreCursors` to get what was missed while the page was gone.
   */
  cursors(sessionId: SessionId): RoomCursor[] {
    const membership = this.#sessions.get(sessionId);
    return membership ? [...membership.lastSeq].map(([room_id, last_seq]) => ({ room_id, last_seq })) : [];
  }

  /** The rosters this device holds of a session it is in: its room's (a host's: every room's). */
  rosters(sessionId: SessionId): Rosters | undefined {
    return this.#sessions.get(sessionId)?.rosters;
  }

  restoreCursors(sessionId: SessionId, cursors: RoomCursor[], options: { video?: boolean } = {}): void {
    const membership = this.#sessions.get(sessionId) ?? this.#membership(options.video);
    for (const cursor of cursors) this.#saw(membership, cursor.room_id, cursor.last_seq);
    this.#sessions.set(sessionId, membership);
  }

  /**
   * Sends a chat message, resending it after reconnections until the server acknowledges it;
   * resolves with the acknowledgement. `clientMsgId` names the message: a retry with the same
   * id is never stored twice.
   */
  sendMessage(sessionId: SessionId, roomId: RoomId, body: string, clientMsgId = randomId()): Promise<MessageOf<"message_ack">> {
    const request = { type: "send_message", session_id: sessionId, room_id: roomId, client_msg_id: clientMsgId, body } as const;
    return new Promise((resolve, reject) => {
      this.#unacked.set(clientMsgId, { request, resolve, reject });
      this.#sendUnacked(clientMsgId);
    });
  }

  // --- the socket -----------------------------------------------------------------------------

  async #open(): Promise<void> {
    if (this.#stopped) return;
    this.#setState(this.#attempt === 0 ? "connecting" : "reconnecting");
    let token: string;
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
      let message: ServerMessage;
      try {
        message = JSON.parse(String(event.data)) as ServerMessage;
      } catch {
        return;
      }
      this.#handle(message);
    };
    socket.onclose = (event) => {
      if (socket !== this.#socket) return;
      this.#socket = undefined;
      clearInterval(this.#heartbeatTimer);
      this.#failPending("disconnected", `the connection closed (${event.code})`);
      if (this.#stopped) {
        this.#setState("closed");
      } else {
        this.#scheduleReconnect();
      }
    };
  }

  #scheduleReconnect(): void {
    if (this.#stopped) return;
    this.#setState("reconnecting");
    // Full jitter: a node that restarts is not met by all its clients at the same instant.
    const ceiling = Math.min(this.#options.maxBackoffMs, this.#options.initialBackoffMs * 2 ** this.#attempt);
    this.#attempt += 1;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => void this.#open(), Math.random() * ceiling);
  }

  #handle(message: ServerMessage): void {
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
        // Also sent unasked, when a host lets this device in from the lobby. A room met for
        // the first time starts where it is now; a resumed one moves on as its replay arrives.
        const membership = this.#sessions.get(message.session.id);
        if (!membership) break;
        for (const room of message.rooms) {
          if (!membership.lastSeq.has(room.room_id)) this.#saw(membership, room.room_id, room.last_seq);
        }
        this.#takeRosters(message.session.id, message.rosters);
        break;
      }
      case "moved": {
        // From here on, the new room's messages arrive live.
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
    const requestId = "request_id" in message ? message.request_id : undefined;
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
  async #resume(): Promise<void> {
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

  async #rejoinAfterInterruption(sessionId: SessionId): Promise<void> {
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

  async #join(sessionId: SessionId, membership: Membership): Promise<MessageOf<"joined"> | MessageOf<"lobby_waiting">> {
    const resume = [...membership.lastSeq].map(([room_id, last_seq]) => ({ room_id, last_seq }));
    const rosters = membership.rosters.held();
    const reply = await this.request({ type: "join_session", session_id: sessionId, resume, rosters, video: membership.video });
    if (reply.type === "joined" || reply.type === "lobby_waiting") return reply;
    throw new ConveneError("invalid", `unexpected reply ${reply.type} to join_session`);
  }

  #sendUnacked(clientMsgId: string): void {
    const unacked = this.#unacked.get(clientMsgId);
    if (!unacked || this.#state !== "open" || !this.#socket) return;
    // Errors are final for a message (a closed room, a message too long) except these: after a
    // disconnection the reconnection resends it; a refusal for now, or no answer, is retried
    // after a pause (the same `client_msg_id` is never stored twice).
    this.request(unacked.request).catch((error: ConveneError) => {
      if (error.code === "disconnected") return;
      if (error.code === "rate_limited" || error.code === "unavailable" || error.code === "timeout") {
        setTimeout(() => this.#sendUnacked(clientMsgId), RETRY_PAUSE_MS);
        return;
      }
      this.#unacked.delete(clientMsgId);
      unacked.reject(error);
    });
  }

  #sawMessage(message: ChatMessage): void {
    const membership = this.#sessions.get(message.session_id);
    if (membership) this.#saw(membership, message.room_id, message.seq);
  }

  #membership(video?: boolean): Membership {
    return { video: video ?? false, lastSeq: new Map(), rosters: new Rosters() };
  }

  /** A diff that does not apply means this device missed something: it joins again. */
  #takeRosters(sessionId: SessionId, rosters: Roster[]): void {
    const membership = this.#sessions.get(sessionId);
    if (!membership) return;
    if (!rosters.every((roster) => membership.rosters.apply(roster))) void this.#rejoinAfterInterruption(sessionId);
  }

  #saw(membership: Membership, roomId: RoomId, seq: number): void {
    if ((membership.lastSeq.get(roomId) ?? -1) < seq) membership.lastSeq.set(roomId, seq);
  }

  /** Browsers do not show WebSocket pings: a silent connection is found with `ping` requests. */
  #startHeartbeat(): void {
    clearInterval(this.#heartbeatTimer);
    this.#lastHeard = Date.now();
    this.#heartbeatTimer = setInterval(() => {
      if (Date.now() - this.#lastHeard > 2 * this.#heartbeatMs) {
        this.#socket?.close(4000, "no reply to pings");
        return;
      }
      this.request({ type: "ping" }).catch(() => undefined);
    }, this.#heartbeatMs);
  }

  #failPending(code: "disconnected" | "closed", reason: string): void {
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new ConveneError(code, reason));
    }
    this.#pending.clear();
  }

  #setState(state: ConnectionState): void {
    if (this.#state === state) return;
    this.#state = state;
    for (const listener of this.#stateListeners) listener(state);
  }
}

/** A random id for a chat message or a request. */
export function randomId(): string {
  return globalThis.crypto.randomUUID();
}
