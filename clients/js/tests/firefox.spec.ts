// The demo page in Firefox (Debian's firefox-esr, driven over WebDriver BiDi by puppeteer-core,
// since Playwright drives only its own Firefox builds): a host and a participant with fake
// cameras see each other's video and chat.

import { expect, test } from "@playwright/test";
import puppeteer, { type Browser, type Page } from "puppeteer-core";

import { startConvene, type Convene } from "./convene.js";

const firefox = process.env.CONVENE_FIREFOX ?? "/usr/bin/firefox-esr";
const WAIT = { timeout: 20_000 };

let convene: Convene;
let browser: Browser;

test.beforeAll(async () => {
  convene = await startConvene();
  browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: firefox,
    headless: true,
    extraPrefsFirefox: { "media.navigator.streams.fake": true, "media.navigator.permission.disabled": true },
  });
});

test.afterAll(async () => {
  await browser?.close();
  await convene?.stop();
});

/** A tab of its own (its own session storage: its own person), signed in with a dev token. */
async function signIn(role: string, hash = ""): Promise<{ page: Page; id: string }> {
  const page = await browser.newPage();
  await page.goto(`${convene.url}/${hash}`);
  await page.select("#role", role);
  await page.click("#dev-token");
  await page.waitForFunction(() => /[0-9a-f-]{36}/.test(document.getElementById("who")?.title ?? ""), WAIT);
  const id = await page.$eval("#who", (who) => (who as HTMLElement).title);
  return { page, id };
}

/** Waits until `page` plays `user`'s video over a connected peer connection. */
async function watches(page: Page, user: string): Promise<void> {
  await page.waitForFunction(
    (id) => {
      const video = document.querySelector<HTMLVideoElement>(`.tile[data-user="${id}"][data-state="connected"] video`);
      return video !== null && video.videoWidth > 0 && !video.paused;
    },
    WAIT,
    user,
  );
}

test("in Firefox a host and a participant see each other's video and chat", async ({}, info) => {
  const host = await signIn("therapist");
  await host.page.waitForSelector("#create:not([hidden])", WAIT);
  await host.page.click("#create");
  await host.page.waitForFunction(() => location.hash.includes("session="), WAIT);
  const hash = await host.page.evaluate(() => location.hash);

  const guest = await signIn("patient", hash);
  await watches(guest.page, host.id);
  await watches(host.page, guest.id);

  await guest.page.type("#chat-input", "hello from firefox");
  await guest.page.keyboard.press("Enter");
  await host.page.waitForFunction(
    () => document.getElementById("messages")?.textContent?.includes("hello from firefox"),
    WAIT,
  );
  const chat = await host.page.$eval("#messages", (messages) => messages.textContent);
  expect(chat).toContain("hello from firefox");
  await host.page.screenshot({ path: info.outputPath("firefox-host.png") });
});
