// The demo page in Chromium, against the real server: a host and two participants, each in
// their own browser context with a fake camera. Their peer connections come up, follow a move
// into a breakout room, chat reaches the room, and a reload resumes without losing a message.

import { expect, test, type Browser, type BrowserContext, type Page } from "@playwright/test";

import { startConvene, type Convene } from "./convene.js";

const short = (id: string) => id.slice(0, 8);

let convene: Convene;
/** The people of the running test, each in a context of their own; closed after it. */
let contexts: BrowserContext[] = [];

test.beforeAll(async () => {
  convene = await startConvene();
});

test.afterEach(async () => {
  await Promise.all(contexts.map((context) => context.close()));
  contexts = [];
});

test.afterAll(async () => {
  await convene?.stop();
});

interface Person {
  page: Page;
  id: string;
}

/** Opens the page in a fresh context (its own storage: a different person), signed in with a dev token. */
async function signIn(browser: Browser, role: string, hash = ""): Promise<Person> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  page.on("console", (message) => {
    // Refused connections are expected while the server restarts.
    if (message.type() === "error" && !message.text().includes("ERR_CONNECTION_REFUSED")) {
      console.log(`[${role}] ${message.text()}`);
    }
  });
  await page.goto(`${convene.url}/${hash}`);
  await page.selectOption("#role", role);
  await page.click("#dev-token");
  await expect(page.locator("#who")).toHaveAttribute("title", /[0-9a-f-]{36}/);
  const id = (await page.locator("#who").getAttribute("title"))!;
  return { page, id };
}

/** The people whose video this page shows over a connected peer connection. */
function connectedTo(person: Person, others: Person[]) {
  const tiles = person.page.locator('.tile[data-state="connected"]');
  return Promise.all([
    expect(tiles).toHaveCount(others.length),
    ...others.map((other) => expect(person.page.locator(`.tile[data-user="${other.id}"][data-state="connected"]`)).toHaveCount(1)),
  ]);
}

/** Whether this page plays each of `others`' video (frames decoded, not paused). */
async function watches(person: Person, others: Person[]): Promise<void> {
  for (const other of others) {
    await expect
      .poll(() =>
        person.page.evaluate((id) => {
          const video = document.querySelector<HTMLVideoElement>(`.tile[data-user="${id}"] video`);
          return video !== null && video.videoWidth > 0 && !video.paused;
        }, other.id),
      )
      .toBe(true);
  }
}

async function say(person: Person, text: string): Promise<void> {
  await person.page.fill("#chat-input", text);
  await person.page.press("#chat-input", "Enter");
}

test("a host and two participants see each other, and video follows a move into a breakout", async ({ browser }, info) => {
  const host = await signIn(browser, "therapist");
  await host.page.click("#create");
  await expect(host.page.locator("#room")).toBeVisible();
  const sessionId = new URLSearchParams((await host.page.evaluate(() => location.hash)).slice(1)).get("session")!;
  expect(sessionId).toMatch(/[0-9a-f-]{36}/);

  const ann = await signIn(browser, "patient", `#session=${sessionId}`);
  const bob = await signIn(browser, "patient", `#session=${sessionId}`);
  await expect(ann.page.locator("#room")).toBeVisible();
  await expect(bob.page.locator("#room")).toBeVisible();

  // Everyone in the main room: a mesh of three connections, each connected.
  await connectedTo(ann, [host, bob]);
  await connectedTo(bob, [host, ann]);
  await connectedTo(host, [ann, bob]);
  await watches(ann, [host, bob]);
  await watches(host, [ann, bob]);
  await host.page.screenshot({ path: info.outputPath("1-main-room-host.png") });
  // `CONVENE_DOCS_SCREENSHOT=../../docs/demo.png` refreshes the README's picture.
  const docsShot = process.env.CONVENE_DOCS_SCREENSHOT;
  if (docsShot) await host.page.screenshot({ path: docsShot });

  // A chat message reaches the others.
  await say(host, "welcome, both of you");
  await expect(ann.page.locator("#messages")).toContainText("welcome, both of you");
  await expect(bob.page.locator("#messages")).toContainText("welcome, both of you");

  // The host creates one breakout room and drags Ann into it: her connections close, Bob's
  // and the host's with her too.
  await host.page.fill("#host-controls input[type=number] >> nth=0", "1");
  await host.page.getByRole("button", { name: "Create breakout rooms" }).click();
  const breakout = host.page.locator(`.room:not([data-room="${sessionId}"])`);
  await expect(breakout).toHaveCount(1);
  await host.page.dragAndDrop(`.member[data-user="${ann.id}"]`, `.room:not([data-room="${sessionId}"])`);
  await expect(breakout.locator(`.member[data-user="${ann.id}"]`)).toHaveCount(1);
  await connectedTo(ann, []);
  await connectedTo(bob, [host]);
  await connectedTo(host, [bob]);

  // Bob follows her: they connect to each other, and the host is left alone.
  await host.page.dragAndDrop(`.member[data-user="${bob.id}"]`, `.room:not([data-room="${sessionId}"])`);
  await connectedTo(ann, [bob]);
  await connectedTo(bob, [ann]);
  await connectedTo(host, []);
  await watches(ann, [bob]);
  await host.page.screenshot({ path: info.outputPath("2-breakout-host.png") });
  await ann.page.screenshot({ path: info.outputPath("3-breakout-ann.png") });

  // Chat in the breakout stays in the breakout.
  await say(bob, "just us two in here");
  await expect(ann.page.locator("#messages")).toContainText("just us two in here");
  await expect(host.page.locator("#messages")).not.toContainText("just us two in here");

  // Ann reloads; what Bob says meanwhile is on her page when it is back, and her video with
  // him comes back.
  const reloaded = ann.page.reload();
  await say(bob, "said while ann was away");
  await reloaded;
  await expect(ann.page.locator("#room")).toBeVisible();
  await expect(ann.page.locator("#messages")).toContainText("just us two in here");
  await expect(ann.page.locator("#messages")).toContainText("said while ann was away");
  await connectedTo(ann, [bob]);
  await connectedTo(bob, [ann]);
  await ann.page.screenshot({ path: info.outputPath("4-after-reload-ann.png") });
});

test("after a server restart the pages reconnect by themselves, and a message sent meanwhile arrives", async ({ browser }, info) => {
  const host = await signIn(browser, "mentor");
  await host.page.click("#create");
  await expect(host.page.locator("#room")).toBeVisible();
  const sessionId = new URLSearchParams((await host.page.evaluate(() => location.hash)).slice(1)).get("session")!;
  const mia = await signIn(browser, "mentee", `#session=${sessionId}`);
  await connectedTo(mia, [host]);
  await say(mia, "before the restart");
  await expect(host.page.locator("#messages")).toContainText("before the restart");

  // The server goes away: both pages see it and wait to reconnect; Mia writes meanwhile.
  const restarted = convene.restart();
  await expect(mia.page.locator("#connection")).toHaveText(/reconnecting/);
  await say(mia, "written while the server was away");
  await restarted;

  // They come back by themselves, rejoin, and what Mia wrote is delivered, once.
  await expect(mia.page.locator("#connection")).toHaveText("open");
  await expect(host.page.locator("#connection")).toHaveText("open");
  await expect(host.page.locator("#messages")).toContainText("written while the server was away");
  await expect(mia.page.locator("#messages li", { hasText: "written while the server was away" })).toHaveCount(1);
  await connectedTo(mia, [host]);
  await connectedTo(host, [mia]);
  await host.page.screenshot({ path: info.outputPath("after-restart-host.png") });
});

test("with the lobby on a newcomer waits until the host admits them", async ({ browser }) => {
  const host = await signIn(browser, "therapist");
  await host.page.click("#create");
  await expect(host.page.locator("#room")).toBeVisible();
  const sessionId = new URLSearchParams((await host.page.evaluate(() => location.hash)).slice(1)).get("session")!;
  await host.page.getByRole("button", { name: "Turn lobby on" }).click();
  await expect(host.page.getByRole("button", { name: "Turn lobby off" })).toBeVisible();

  const kim = await signIn(browser, "patient", `#session=${sessionId}`);
  await expect(kim.page.locator("#banner")).toContainText("Waiting in the lobby");
  await expect(kim.page.locator("#room")).toBeHidden();
  const waiting = host.page.locator("#host-controls li", { hasText: short(kim.id) });
  await waiting.getByRole("button", { name: "Admit" }).click();
  await expect(kim.page.locator("#room")).toBeVisible();
  await connectedTo(kim, [host]);
  await connectedTo(host, [kim]);
});

test("a mentee opens a conversation with their mentor from the side panel, and they write one to one", async ({ browser }) => {
  const mentor = await signIn(browser, "mentor");
  const mentee = await signIn(browser, "mentee");
  await mentee.page.fill("#conversation-user", mentor.id);
  await mentee.page.click("#conversation-form button");
  await expect(mentee.page.locator("#conversations li")).toHaveCount(1);
  await mentee.page.fill("#conversation input", "could we talk about my plan?");
  await mentee.page.press("#conversation input", "Enter");
  await expect(mentee.page.locator("#conversation")).toContainText("could we talk about my plan?");

  // The mentor, in no session, sees the conversation arrive and reads it.
  const conversation = mentor.page.locator("#conversations li", { hasText: short(mentee.id) });
  await expect(conversation).toHaveCount(1);
  await conversation.locator("a").click();
  await expect(mentor.page.locator("#conversation")).toContainText("could we talk about my plan?");
  await mentor.page.fill("#conversation input", "yes, tomorrow at ten");
  await mentor.page.press("#conversation input", "Enter");
  await expect(mentee.page.locator("#conversation")).toContainText("yes, tomorrow at ten");
});
