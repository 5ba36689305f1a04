// Times the verifying reader page against the mirror's own server-rendered article page in the
// same headless Chromium (benches/reader_page.sh drives it; see there for what is measured).
//
// Usage: node bench.mjs CONFIG.json
// CONFIG: { "rounds": N, "cases": [{ "name", "page": URL of page#read=NAME, "plain": URL }] }
// Every load is in a fresh browser context (empty cache and localStorage), so each verified
// load fetches and checks the index, its pieces and the bundle from scratch. Prints one JSON
// document: per case, the page and plain times (ms) of every round and the page's longest
// main-thread stall (the gap between 10 ms timer ticks), which says whether the tab stayed
// responsive while it verified.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const timeout = config.timeoutMs ?? 60000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  timeout,
});
// Records the longest gap between timer ticks: a page busy on the main thread delays them.
const STALL_PROBE = `
  window.__maxStall = 0;
  (() => { let last = performance.now();
    setInterval(() => { const now = performance.now(); window.__maxStall = Math.max(window.__maxStall, now - last - 10); last = now; }, 10);
  })();`;

async function timeLoad(url, verified) {
  const context = await browser.newContext();
  try {
    await context.addInitScript(STALL_PROBE);
    const page = await context.newPage();
    const started = performance.now();
    if (verified) {
      await page.goto(url, { timeout, waitUntil: "domcontentloaded" });
      await page.waitForFunction(
        () => document.getElementById("badge") && document.body.dataset.state === "idle" && [...document.querySelectorAll("#view img")].every((i) => i.complete),
        null,
        { timeout, polling: "raf" },
      );
    } else {
      await page.goto(url, { timeout, waitUntil: "load" });
    }
    const ms = performance.now() - started;
    const status = verified ? await page.evaluate(() => document.getElementById("status").className) : "plain";
    if (verified && status !== "good") throw new Error(`the page did not verify ${url}: ${status}`);
    const stall = await page.evaluate(() => window.__maxStall);
    return { ms, stall };
  } finally {
    await context.close();
  }
}

const out = { cases: [] };
try {
  // One warm-up of each, not counted: Chromium's first context pays its own start-up.
  await timeLoad(config.cases[0].plain, false);
  await timeLoad(config.cases[0].page, true);
  for (const c of config.cases) {
    const result = { name: c.name, page: [], plain: [], stall: [] };
    for (let i = 0; i < (c.rounds ?? config.rounds ?? 5); i++) {
      // Alternate which goes first, so drifting machine load falls on both.
      const order = i % 2 === 0 ? [true, false] : [false, true];
      for (const verified of order) {
        const r = await timeLoad(verified ? c.page : c.plain, verified);
        if (verified) {
          result.page.push(r.ms);
          result.stall.push(r.stall);
        } else {
          result.plain.push(r.ms);
        }
      }
    }
    out.cases.push(result);
  }
} catch (e) {
  out.error = String(e && e.message ? e.message : e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
