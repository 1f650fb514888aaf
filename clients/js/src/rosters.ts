// A session's rosters as this device holds them. The server sends a room's roster whole, then
// diffs that each name the version they apply to (`since`); a device names the versions it
// holds when it joins again, and is sent only what changed. See docs/protocol.md, "Presence".

import type { HeldRoster, MemberView, RoomId, Roster, RosterVersion, UserId } from "./wire.js";

/** One room's roster as held: everyone in it (or, for a room too large to follow, its hosts). */
export interface HeldRoom {
  version: RosterVersion;
  /** False for a room too large to follow live: `members` are its hosts; page with `fetch_roster`. */
  live: boolean;
  /** Members in the room, by the latest roster or diff. */
  total: number;
  members: Map<UserId, MemberView>;
}

export class Rosters {
  #rooms = new Map<RoomId, HeldRoom>();

  /**
   * Takes in a roster. Returns false when it is a diff against a version this device does not
   * hold: the device is out of step, and should join again to be sent the room whole.
   */
  apply(roster: Roster): boolean {
    let room = this.#rooms.get(roster.room_id);
    if (roster.since && !room && roster.since.seq === 0) {
      // Every room starts empty at 0: a diff of a room never held since then (one created
      // after this device joined) applies to nothing.
      room = { version: roster.since, live: true, total: 0, members: new Map() };
      this.#rooms.set(roster.room_id, room);
    }
    if (roster.since) {
      if (!room || !sameVersion(room.version, roster.since)) {
        this.#rooms.delete(roster.room_id);
        return false;
      }
    } else {
      room = { version: roster.version, live: roster.live, total: roster.total, members: new Map() };
      this.#rooms.set(roster.room_id, room);
    }
    for (const member of roster.members ?? []) room.members.set(member.user_id, member);
    for (const user of roster.left ?? []) room.members.delete(user);
    room.version = roster.version;
    room.live = roster.live;
    room.total = roster.total;
    return true;
  }

  room(roomId: RoomId): HeldRoom | undefined {
    return this.#rooms.get(roomId);
  }

  members(roomId: RoomId): MemberView[] {
    return [...(this.#rooms.get(roomId)?.members.values() ?? [])];
  }

  /** The versions to name when joining again. */
  held(): HeldRoster[] {
    return [...this.#rooms].filter(([, room]) => room.live).map(([room_id, room]) => ({ room_id, version: room.version }));
  }

  forget(roomId: RoomId): void {
    this.#rooms.delete(roomId);
  }
}

function sameVersion(a: RosterVersion, b: RosterVersion): boolean {
  return a.epoch === b.epoch && a.seq === b.seq;
}
