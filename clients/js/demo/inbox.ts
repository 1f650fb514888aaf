// The side panel: 1:1 conversations and notifications, which follow the person everywhere.

import { randomId } from "../src/index.js";
import type { ConversationId, DirectMessage } from "../src/index.js";
import { $, act, el, short } from "./dom.js";
import { state } from "./state.js";

export async function loadInbox(): Promise<void> {
  const client = state.client!;
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

export function addDirects(conversation: ConversationId, messages: DirectMessage[]): void {
  let known = state.directs.get(conversation);
  if (!known) state.directs.set(conversation, (known = new Map()));
  for (const message of messages) known.set(message.seq, message);
  renderInbox();
}

export async function openConversation(id: ConversationId): Promise<void> {
  state.openConversation = id;
  const reply = await state.client!.request({ type: "fetch_direct_history", conversation_id: id, limit: 50 });
  if (reply.type === "direct_history") addDirects(id, reply.messages);
  renderInbox();
}

export function renderInbox(): void {
  const client = state.client!;
  $("conversations").replaceChildren(
    ...[...state.conversations.values()].map((summary) => {
      const item = el("li", {}, el("a", { href: "#", textContent: short(summary.other_user_id) }), summary.unread ? ` (${summary.unread})` : "");
      item.onclick = (event) => (event.preventDefault(), act(() => openConversation(summary.conversation.id)));
      return item;
    }),
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
    const messages = [...(state.directs.get(open)?.values() ?? [])].sort((a, b) => a.seq - b.seq);
    $("conversation").replaceChildren(
      el("ol", {}, ...messages.map((m) => el("li", {}, el("span", { className: "from" }, short(m.sender_id) + " "), m.body))),
      form,
    );
  }
  $("unread").textContent = String(state.unread);
  $("notifications").replaceChildren(
    ...[...state.notifications.values()].map((n) => el("li", {}, `${n.read_at ? "" : "• "}${n.title}: ${n.message}`)),
  );
}
