// Video in a room: one RTCPeerConnection per other person's device, opened and closed exactly
// as the server says (`peers_changed`), the offer made by the side the server names, and every
// offer, answer and ICE candidate carried through the server (`send_signal`). When the person
// changes room the server closes the old connections and opens the new ones; this helper only
// carries that out.

import type { ConveneClient, MessageOf } from "./client.js";
import type { ConnId, IceServer, SessionId, Signal, UserId } from "./wire.js";

/** One peer connection, with the other person's media once it arrives. */
export interface PeerLink {
  userId: UserId;
  device: ConnId;
  offer: boolean;
  connection: RTCPeerConnection;
  stream: MediaStream | undefined;
}

export interface VideoMeshOptions {
  client: ConveneClient;
  sessionId: SessionId;
  /** The camera and microphone sent to every peer; none to only watch. */
  localStream?: MediaStream;
  onPeerAdded?: (peer: PeerLink) => void;
  onRemoteStream?: (peer: PeerLink, stream: MediaStream) => void;
  onPeerRemoved?: (peer: PeerLink) => void;
  onStateChanged?: (peer: PeerLink, state: RTCPeerConnectionState) => void;
}

export class VideoMesh {
  readonly #options: VideoMeshOptions;
  readonly #peers = new Map<ConnId, PeerLink>();
  /** Candidates that arrived before their connection had the other side's description. */
  readonly #early = new Map<ConnId, RTCIceCandidateInit[]>();
  #iceServers: RTCIceServer[] = [];
  readonly #stops: Array<() => void>;

  /** Create it before joining the session with `video: true`, so it sees the first peers. */
  constructor(options: VideoMeshOptions) {
    this.#options = options;
    const { client, sessionId } = options;
    const mine = <T extends { session_id: SessionId }>(handler: (message: T) => void) => (message: T) => {
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
      client.onState((state) => {
        if (state !== "open") this.#closeAll();
      }),
    ];
  }

  get peers(): ReadonlyMap<ConnId, PeerLink> {
    return this.#peers;
  }

  /** Replaces the camera and microphone on every open connection. */
  setLocalStream(stream: MediaStream | undefined): void {
    this.#options.localStream = stream;
    for (const peer of this.#peers.values()) {
      for (const sender of peer.connection.getSenders()) {
        const track = stream?.getTracks().find((candidate) => candidate.kind === sender.track?.kind) ?? null;
        void sender.replaceTrack(track);
      }
    }
  }

  close(): void {
    for (const stop of this.#stops) stop();
    this.#closeAll();
  }

  #peersChanged(message: MessageOf<"peers_changed">): void {
    for (const gone of message.close ?? []) this.#closePeer(gone.device);
    for (const peer of message.open ?? []) {
      if (this.#peers.has(peer.device)) continue;
      const link = this.#connect(peer.user_id, peer.device, peer.offer);
      if (peer.offer) void this.#offer(link);
    }
  }

  #connect(userId: UserId, device: ConnId, offer: boolean): PeerLink {
    const connection = new RTCPeerConnection({ iceServers: this.#iceServers });
    const link: PeerLink = { userId, device, offer, connection, stream: undefined };
    this.#peers.set(device, link);
    for (const track of this.#options.localStream?.getTracks() ?? []) {
      connection.addTrack(track, this.#options.localStream as MediaStream);
    }
    if (!this.#options.localStream) {
      // Receive even without sending.
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
        username_fragment: usernameFragment ?? null,
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

  async #offer(link: PeerLink): Promise<void> {
    const offer = await link.connection.createOffer();
    await link.connection.setLocalDescription(offer);
    await this.#send(link, { type: "offer", sdp: offer.sdp ?? "" });
  }

  async #signal(message: MessageOf<"signal_received">): Promise<void> {
    // A candidate still in flight when its connection closed has nowhere to go.
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
        const candidate: RTCIceCandidateInit = {
          candidate: signal.candidate,
          sdpMid: signal.sdp_mid ?? null,
          sdpMLineIndex: signal.sdp_m_line_index ?? null,
          usernameFragment: signal.username_fragment ?? null,
        };
        if (connection.remoteDescription) await connection.addIceCandidate(candidate);
        else this.#early.set(link.device, [...(this.#early.get(link.device) ?? []), candidate]);
        break;
      }
    }
  }

  async #addEarly(link: PeerLink): Promise<void> {
    const early = this.#early.get(link.device) ?? [];
    this.#early.delete(link.device);
    for (const candidate of early) await link.connection.addIceCandidate(candidate);
  }

  async #send(link: PeerLink, signal: Signal): Promise<void> {
    try {
      await this.#options.client.request({
        type: "send_signal",
        session_id: this.#options.sessionId,
        to_user_id: link.userId,
        to_device: link.device,
        signal,
      });
    } catch (error) {
      // The other side left the room meanwhile: its `peers_changed` closes this connection.
      console.debug("signal not delivered", error);
    }
  }

  #closePeer(device: ConnId): void {
    const link = this.#peers.get(device);
    if (!link) return;
    this.#peers.delete(device);
    this.#early.delete(device);
    link.connection.close();
    this.#options.onPeerRemoved?.(link);
  }

  #closeAll(): void {
    for (const device of [...this.#peers.keys()]) this.#closePeer(device);
  }
}

function toRtc(server: IceServer): RTCIceServer {
  return { urls: server.urls, username: server.username ?? undefined, credential: server.credential ?? undefined };
}
