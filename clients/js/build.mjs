// Bundles the demo page's script (the demo and the client) into server/assets/demo.js, which the
// `convene` binary embeds with the page's HTML and CSS (those as written, from demo/).
// `node build.mjs --check` fails when the committed bundle differs from a fresh build.

import { build } from "esbuild";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const assets = new URL("../../server/assets/", import.meta.url).pathname;
const check = process.argv.includes("--check");
const out = check ? await mkdtemp(join(tmpdir(), "convene-assets-")) : assets;

await build({
  entryPoints: ["demo/app.ts"],
  outfile: join(out, "demo.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  charset: "utf8",
  legalComments: "none",
  logLevel: "warning",
});

if (check) {
  const [fresh, committed] = await Promise.all([
    readFile(join(out, "demo.js"), "utf8"),
    readFile(join(assets, "demo.js"), "utf8").catch(() => ""),
  ]);
  await rm(out, { recursive: true });
  if (fresh !== committed) {
    console.error("server/assets/demo.js is out of date: run `npm run build` in clients/js and commit it");
    process.exit(1);
  }
}
