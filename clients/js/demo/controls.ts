// The host's controls (lobby, breakouts, countdown, broadcast, help) and the participant's.

import type { ServerMessage } from "../src/index.js";
import { $, banner, button, el, short } from "./dom.js";
import { isHost, myRoom, state } from "./state.js";

export function renderHostControls(): void {
  const panel = $("host-controls");
  if (!isHost() || !state.session) {
    panel.replaceChildren();
    return;
  }
  const session = state.session.id;
  const client = state.client!;
  const count = el("input", { type: "number", min: "1", max: "20", value: "2" });
  const seconds = el("input", { type: "number", min: "0", max: "600", value: "10" });
  const broadcast = el("input", { placeholder: "message to every room" });
  const lobby = [...state.lobby.values()].map((entry) =>
    el(
      "li",
      {},
      `${short(entry.user_id)} ${entry.role} `,
      button("Admit", () => client.request({ type: "admit_participant", session_id: session, user_id: entry.user_id })),
      button("Deny", () => client.request({ type: "deny_participant", session_id: session, user_id: entry.user_id })),
    ),
  );
  const help = [...state.help.values()].map((request) =>
    el(
      "li",
      {},
      `${short(request.user_id)} asks for help in ${state.roomNames.get(request.room_id) ?? "a room"} `,
      button("Go there", () =>
        client.request({ type: "move_participant", session_id: session, user_id: client.userId!, from_room_id: myRoom()!, to_room_id: request.room_id }),
      ),
      button("Resolved", () => client.request({ type: "resolve_help", session_id: session, user_id: request.user_id })),
    ),
  );
  panel.replaceChildren(
    el("h3", {}, "Host"),
    el(
      "div",
      { className: "controls" },
      el("span", {}, `Share: `),
      el("input", { readOnly: true, value: `${location.origin}/#session=${session}`, size: 22, onclick: (e: MouseEvent) => (e.target as HTMLInputElement).select() }),
    ),
    el(
      "div",
      { className: "controls" },
      // Everyone, this page included, hears the change as `session_updated`.
      button(state.session.lobby_enabled ? "Turn lobby off" : "Turn lobby on", () =>
        client.request({ type: "set_lobby", session_id: session, enabled: !state.session!.lobby_enabled }),
      ),
    ),
    el("ul", {}, ...lobby),
    el(
      "div",
      { className: "controls" },
      count,
      button("Create breakout rooms", () =>
        client.request({ type: "create_breakout_rooms", session_id: session, count: Number(count.value), max_participants: 10, assignment_mode: "automatic" }),
      ),
    ),
    el(
      "div",
      { className: "controls" },
      button("Plan automatically", () => client.request({ type: "plan_breakouts", session_id: session, automatic: true, reset: true }).then(showPlan)),
      button("Open breakouts", () => client.request({ type: "open_breakouts", session_id: session })),
    ),
    el(
      "div",
      { className: "controls" },
      seconds,
      button("Close all (countdown s)", () =>
        client.request({ type: "close_breakout_rooms", session_id: session, room_ids: [], countdown_secs: Number(seconds.value) }),
      ),
    ),
    el(
      "div",
      { className: "controls" },
      broadcast,
      button("Broadcast", () => client.request({ type: "broadcast", session_id: session, body: broadcast.value })),
    ),
    el("ul", {}, ...help),
    el("p", {}, el("small", {}, "Drag a person onto a room to move them; × removes them.")),
  );
}

export function showPlan(plan: ServerMessage): void {
  if (plan.type !== "breakout_plan") return;
  const lines = plan.assignments.map((a) => `${short(a.user_id)} → ${state.roomNames.get(a.room_id) ?? short(a.room_id)}`);
  banner(`Plan: ${lines.join(", ") || "nobody to place"}${plan.unassigned.length ? `; left in the main room: ${plan.unassigned.map(short).join(", ")}` : ""}`);
}

export function renderParticipantControls(): void {
  const panel = $("participant-controls");
  if (isHost() || !state.session) {
    panel.replaceChildren();
    return;
  }
  const session = state.session.id;
  const client = state.client!;
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
      choices.length ? button("Go to room", () => client.request({ type: "select_room", session_id: session, room_id: pick.value })) : "",
    ),
  );
}
