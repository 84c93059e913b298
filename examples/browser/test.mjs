// The userlane-server page in a real headless Chromium (Debian's
// /usr/bin/chromium, never a downloaded browser), driven by playwright-core.
//
//   node examples/browser/test.mjs <server url> <output dir>
//
// Two browser contexts sign in as two users (alice, bob) through the page
// (development mode mints tokens with POST /dev/token); alice opens a second
// tab with the page's own button. Alice's message must reach both of alice's
// tabs as the five agent events and none of them may reach bob; then bob's
// run reaches bob only. With SERVICE_TOKEN set, alice is force-disconnected
// through the service API and her tabs must show close code 4001 and
// reconnect by themselves. Screenshots go to <output dir>; the exit code is
// 0 only if every check passed.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const [url, outArg] = process.argv.slice(2);
if (!url || !outArg) {
  console.error("usage: node test.mjs <server url> <output dir>");
  process.exit(2);
}
const outdir = resolve(outArg);
mkdirSync(outdir, { recursive: true });
const serviceToken = process.env.SERVICE_TOKEN || "";
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const AGENT_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"];
const WAIT = 15_000;

// The whole run is bounded: a hung browser fails the test instead of blocking CI.
const watchdog = setTimeout(() => {
  console.error("FAIL: the browser test took longer than 120 s");
  process.exit(1);
}, 120_000);

let checks = 0;
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
  checks += 1;
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  timeout: 60_000,
  // launch() gives Chromium a fresh temporary user-data dir (removed on
  // close); these flags keep it from reaching out to the network or asking
  // anything.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
console.log(`chromium ${browser.version()} (${executablePath})`);

const pageErrors = [];
const consoleErrors = [];
function watch(page, name) {
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(`${name}: ${m.text()}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) consoleErrors.push(`${name}: ${r.status()} for ${r.url()}`);
  });
  return page;
}

// What a page's event log shows: the kinds (data-kind) and texts, oldest first.
async function logOf(page) {
  return page.$$eval("#log li", (lis) =>
    lis.reverse().map((li) => ({ kind: li.dataset.kind, text: li.textContent })),
  );
}
const count = (log, kind) => log.filter((e) => e.kind === kind).length;
const agentEvents = (log) => log.filter((e) => AGENT_EVENTS.includes(e.kind));

async function waitForCount(page, kind, n, what) {
  await page.waitForFunction(
    ([k, n]) => document.querySelectorAll(`#log li[data-kind="${k}"]`).length >= n,
    [kind, n],
    { timeout: WAIT },
  ).catch((e) => {
    throw new Error(`${what}: no ${n}× ${kind} within ${WAIT} ms (${e.message.split("\n")[0]})`);
  });
}

async function signIn(page, user) {
  await page.goto(url, { waitUntil: "load" });
  await page.fill("#user", user);
  await page.click("#connect");
  await waitConnected(page, user, 1);
}

async function waitConnected(page, user, greetings) {
  await page.waitForFunction(() => document.getElementById("state").textContent === "connected", null, { timeout: WAIT });
  await waitForCount(page, "system_message", greetings, `${user} greeting`);
  const log = await logOf(page);
  const greeting = log.filter((e) => e.kind === "system_message").at(-1);
  check(greeting.text.includes(`you are ${user} `), `${user}'s page is connected as ${user}`);
  check((await page.textContent("#who")) === `user ${user}`, `${user}'s page names its user`);
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.click("#send");
}

function checkRun(log, text, who) {
  const events = agentEvents(log);
  check(
    JSON.stringify(events.map((e) => e.kind)) === JSON.stringify(AGENT_EVENTS),
    `${who} shows the five agent events in order`,
  );
  check(events[0].text.includes(`"${text}"`), `${who}: agent_started is about "${text}"`);
  check(events[4].text.includes(text), `${who}: agent_completed carries the reply`);
}

const shots = {};
async function shoot(page, name) {
  const file = join(outdir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  shots[name] = file;
  return file;
}

let failed = null;
try {
  const viewport = { width: 720, height: 760 };
  const alice = await browser.newContext({ viewport });
  const bob = await browser.newContext({ viewport });

  const alice1 = watch(await alice.newPage(), "alice tab 1");
  await signIn(alice1, "alice");
  const bob1 = watch(await bob.newPage(), "bob");
  await signIn(bob1, "bob");
  // A third page: alice's second tab, opened with the page's own button.
  const [alice2] = await Promise.all([alice.waitForEvent("page", { timeout: WAIT }), alice1.click("#newtab")]);
  watch(alice2, "alice tab 2");
  await alice2.waitForLoadState("load");
  await waitConnected(alice2, "alice", 1);

  // Alice asks; both of her tabs see the run, bob sees nothing.
  const aliceText = "Hello from alice";
  await send(alice1, aliceText);
  await waitForCount(alice1, "agent_completed", 1, "alice tab 1");
  await waitForCount(alice2, "agent_completed", 1, "alice tab 2");
  checkRun(await logOf(alice1), aliceText, "alice tab 1");
  checkRun(await logOf(alice2), aliceText, "alice tab 2");
  check(count(await logOf(alice1), "you") === 1 && count(await logOf(alice2), "you") === 0, "only the sending tab echoes what it sent");
  await bob1.waitForTimeout(700);
  let bobLog = await logOf(bob1);
  check(agentEvents(bobLog).length === 0, "bob's page shows none of alice's events");
  check(!bobLog.some((e) => e.text.includes(aliceText)), "bob's page never shows alice's text");

  // Bob asks; only bob's page gets his run.
  const bobText = "Hi, bob here";
  await send(bob1, bobText);
  await waitForCount(bob1, "agent_completed", 1, "bob");
  checkRun(await logOf(bob1), bobText, "bob");
  await alice1.waitForTimeout(700);
  for (const [page, who] of [[alice1, "alice tab 1"], [alice2, "alice tab 2"]]) {
    const log = await logOf(page);
    check(agentEvents(log).length === 5, `${who} still shows only alice's five events`);
    check(!log.some((e) => e.text.includes(bobText)), `${who} never shows bob's text`);
  }
  bobLog = await logOf(bob1);
  check(!bobLog.some((e) => e.text.includes(aliceText)), "bob's page still has nothing of alice");

  await shoot(alice1, "alice-tab-1");
  await shoot(alice2, "alice-tab-2");
  await shoot(bob1, "bob");

  // The page shows close codes and reconnects with backoff.
  if (serviceToken) {
    const r = await fetch(`${url}/api/users/alice/connections`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${serviceToken}` },
    });
    const body = await r.json();
    check(r.status === 200 && body.closed === 2, `DELETE closes alice's two tabs (${r.status} ${JSON.stringify(body)})`);
    for (const [page, who] of [[alice1, "alice tab 1"], [alice2, "alice tab 2"]]) {
      // The log keeps the close (the status line clears once reconnected).
      await waitForCount(page, "close", 1, `${who} close`);
      const closes = (await logOf(page)).filter((e) => e.kind === "close");
      check(closes.length === 1 && closes[0].text.includes("code 4001 (disconnected by service)"), `${who} shows close code 4001: ${closes[0].text}`);
      await waitConnected(page, "alice", 2);
      check(true, `${who} reconnected by itself`);
    }
    check(count(await logOf(bob1), "close") === 0, "bob's page was not disconnected");
    await shoot(alice1, "alice-reconnected");
  } else {
    console.log("# SERVICE_TOKEN not set: the reconnect check is skipped");
  }

  check(pageErrors.length === 0, `no JavaScript errors on the pages ${pageErrors.join("; ")}`);
  check(consoleErrors.length === 0, `no errors in the consoles, no failed requests ${consoleErrors.join("; ")}`);

  // One picture for the README: alice's two tabs and bob's, side by side.
  const img = (name) => `data:image/png;base64,${readFileSync(shots[name]).toString("base64")}`;
  const column = (name, caption) => `<figure style="margin:0">
      <figcaption style="margin:0 0 8px 2px">${caption}</figcaption>
      <img src="${img(name)}" style="display:block;width:${viewport.width}px;border-radius:8px;box-shadow:0 2px 8px rgba(0,0,0,.2)">
    </figure>`;
  const board = await browser.newPage({ viewport: { width: 3 * viewport.width + 64, height: viewport.height + 80 } });
  await board.setContent(`<!doctype html><html><body style="margin:0;padding:16px;background:#d9dde6;font:600 17px system-ui,sans-serif;color:#1d2330">
    <div style="display:flex;gap:16px">
      ${column("alice-tab-1", "alice, tab 1: sent \u201cHello from alice\u201d")}
      ${column("alice-tab-2", "alice, tab 2: gets alice\u2019s events too")}
      ${column("bob", "bob: only his own run, nothing of alice\u2019s")}
    </div></body></html>`);
  const composite = join(outdir, "screenshot.png");
  await board.screenshot({ path: composite, fullPage: true });
  shots.composite = composite;
} catch (e) {
  failed = e;
} finally {
  await browser.close().catch(() => {});
  clearTimeout(watchdog);
}

writeFileSync(join(outdir, "result.json"), JSON.stringify({ ok: !failed, checks, screenshots: shots, error: failed && String(failed) }, null, 2));
for (const [name, file] of Object.entries(shots)) console.log(`screenshot ${name}: ${file}`);
if (failed) {
  console.error(`FAIL after ${checks} checks: ${failed.stack || failed}`);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join("; ")}`);
  process.exit(1);
}
console.log(`PASS: ${checks} checks, screenshots in ${outdir}`);
