// Convene's browser client: the connection (`ConveneClient`), the video mesh (`VideoMesh`) and
// the wire types generated from the server's protocol crate.

export { ConveneClient, ConveneError, randomId } from "./client.js";
export type { ConnectionState, ConveneOptions, MessageOf, Request } from "./client.js";
export { Rosters } from "./rosters.js";
export type { HeldRoom } from "./rosters.js";
export { VideoMesh } from "./video.js";
export type { PeerLink, VideoMeshOptions } from "./video.js";
export * from "./wire.js";
