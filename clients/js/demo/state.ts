// What the demo page knows: one state object, which the other modules render.

import type {
  BreakoutRoomView,
  ChatMessage,
  ConveneClient,
  ConversationId,
  ConversationSummary,
  DirectMessage,
  HelpRequest,
  LobbyEntry,
  MemberView,
  Notification,
  Role,
  RoomId,
  SessionView,
  UserId,
  VideoMesh,
} from "../src/index.js";

export const HOST_ROLES: Role[] = ["therapist", "mentor", "admin"];

export interface State {
  client: ConveneClient | undefined;
  mesh: VideoMesh | undefined;
  role: Role | undefined;
  session: SessionView | undefined;
  me: MemberView | undefined;
  members: Map<UserId, MemberView>;
  roomNames: Map<RoomId, string>;
  breakouts: Map<RoomId, BreakoutRoomView>;
  breakoutsOpen: boolean;
  lobby: Map<UserId, LobbyEntry>;
  help: Map<UserId, HelpRequest>;
  chat: Map<RoomId, Map<number, ChatMessage>>;
  conversations: Map<ConversationId, ConversationSummary>;
  openConversation: ConversationId | undefined;
  directs: Map<ConversationId, Map<number, DirectMessage>>;
  notifications: Map<number, Notification>;
  unread: number;
  closing: { roomId: RoomId; closesAt: number } | undefined;
  localStream: MediaStream | undefined;
}

export const state: State = {
  client: undefined,
  mesh: undefined,
  role: undefined,
  session: undefined,
  me: undefined,
  members: new Map(),
  roomNames: new Map(),
  breakouts: new Map(),
  breakoutsOpen: false,
  lobby: new Map(),
  help: new Map(),
  chat: new Map(),
  conversations: new Map(),
  openConversation: undefined,
  directs: new Map(),
  notifications: new Map(),
  unread: 0,
  closing: undefined,
  localStream: undefined,
};

export const isHost = () => state.role !== undefined && HOST_ROLES.includes(state.role);

export const myRoom = () => state.me?.room_id;
