// Starts the real `convene` binary for a test: dev mode (so the page mints its own tokens),
// SQLite in a fresh directory, a port the system picks.

import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export interface Convene {
  url: string;
  /** Stops the server gracefully (connections close with 1012) and removes its data. */
  stop(): Promise<void>;
  /** Stops the server gracefully and starts it again on the same address and data: a deploy. */
  restart(): Promise<void>;
}

export async function startConvene(): Promise<Convene> {
  const dataDir = await mkdtemp(join(tmpdir(), "convene-browser-"));
  let server = await spawnConvene(dataDir, "127.0.0.1:0");
  return {
    url: `http://${server.addr}`,
    async stop() {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
    async restart() {
      await server.stop();
      server = await spawnConvene(dataDir, server.addr);
    },
  };
}

async function spawnConvene(dataDir: string, bind: string): Promise<{ addr: string; stop(): Promise<void> }> {
  const binary = process.env.CONVENE_BIN ?? resolve(import.meta.dirname, "../../../target/debug/convene");
  const env: NodeJS.ProcessEnv = { ...process.env, CONVENE_BIND: bind, CONVENE_DATA_DIR: dataDir, CONVENE_LOG_JSON: "true" };
  // Dev mode and the node alone: whatever the calling shell points at is not for this server.
  for (const name of ["DATABASE_URL", "REDIS_URL", "CONVENE_JWT_SECRET", "CONVENE_JWKS_URL"]) delete env[name];
  const child = spawn(binary, ["serve"], { env, stdio: ["ignore", "ignore", "pipe"] });
  // The server's log is kept with the test's output.
  const logs = resolve(import.meta.dirname, "../test-results");
  await mkdir(logs, { recursive: true });
  child.stderr!.pipe(createWriteStream(join(logs, "convene.log"), { flags: "a" }));
  const addr = await listeningAddress(child);
  return {
    addr,
    async stop() {
      const exited = new Promise((done) => child.once("exit", done));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

/** Reads the JSON log (on stderr) until the line announcing the address. */
function listeningAddress(child: ChildProcess): Promise<string> {
  return new Promise((found, failed) => {
    const lines = createInterface({ input: child.stderr! });
    child.once("exit", (code) => failed(new Error(`convene exited (${code}) before listening`)));
    lines.on("line", (line) => {
      let entry: { fields?: { message?: string; addr?: string } };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.fields?.message === "convene listening" && entry.fields.addr) found(entry.fields.addr);
    });
  });
}
