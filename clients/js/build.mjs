// Builds the demo page into the server's assets, which the `convene` binary embeds: the page's
// script bundled from the client and the demo, its HTML and CSS copied as they are.
// `node build.mjs --check` fails when the committed assets differ from a fresh build.

import { build } from "esbuild";
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
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
for (const file of ["index.html", "demo.css"]) await copyFile(join("demo", file), join(out, file));

if (check) {
  const stale = [];
  for (const file of ["demo.js", "index.html", "demo.css"]) {
    const [fresh, committed] = await Promise.all([readFile(join(out, file), "utf8"), readFile(join(assets, file), "utf8").catch(() => "")]);
    if (fresh !== committed) stale.push(file);
  }
  await rm(out, { recursive: true });
  if (stale.length) {
    console.error(`server/assets is out of date (${stale.join(", ")}): run \`npm run build\` in clients/js and commit it`);
    process.exit(1);
  }
}
