// Drives Debian's headless Chromium through the reader page with Playwright (playwright-core,
// no browser download) and prints what the page shows as one JSON document on stdout.
//
// Usage: node drive.mjs SCENARIO.json
// A scenario: { "steps": [...], "timeoutMs": N, "initScript": "js run before every page" }.
// Steps: {"goto": URL}, {"setFiles": {"selector": CSS, "path": FILE_OR_DIR}}, {"settle": true},
// {"snapshot": NAME}, {"evaluate": JS}. The page marks `data-state="idle"` on <body> when it has
// nothing in flight; "settle" waits for that (bounded by timeoutMs).
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

const scenario = JSON.parse(readFileSync(process.argv[2], "utf8"));
const timeout = scenario.timeoutMs ?? 30000;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  timeout,
});
const out = { snapshots: {}, requests: [], console: [], timings: {} };
try {
  const context = await browser.newContext({ acceptDownloads: true });
  if (scenario.initScript) await context.addInitScript(scenario.initScript);
  const page = await context.newPage();
  page.on("request", (r) => out.requests.push(r.url()));
  page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`));
  const settle = async () => {
    await page.waitForFunction(() => document.body && document.body.dataset.state === "idle", null, { timeout, polling: 50 });
  };
  for (const step of scenario.steps) {
    const started = performance.now();
    if (step.goto) {
      const sameDocument = page.url().split("#")[0] === step.goto.split("#")[0] && step.goto.includes("#");
      await page.goto(step.goto, { timeout });
      // A fragment change is handled on `hashchange`, after goto returns: wait for the page to
      // start on it (it marks itself busy) before waiting for it to be idle again.
      if (sameDocument) {
        await page.waitForFunction(() => document.body.dataset.state !== "idle", null, { timeout: 2000, polling: 10 }).catch(() => {});
      }
      await settle();
      out.timings[step.name ?? step.goto] = performance.now() - started;
    } else if (step.setFiles) {
      await page.setInputFiles(step.setFiles.selector, step.setFiles.path, { timeout });
      await page.waitForFunction(() => document.body.dataset.state !== "idle", null, { timeout: 2000, polling: 10 }).catch(() => {});
      await settle();
    } else if (step.settle) {
      await settle();
    } else if (step.evaluate) {
      out.snapshots[step.name ?? "evaluate"] = await page.evaluate(step.evaluate);
    } else if (step.snapshot) {
      out.snapshots[step.snapshot] = await page.evaluate(() => {
        const texts = (sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent);
        const article = document.querySelector("#view article");
        return {
          status: document.getElementById("status").textContent,
          statusClass: document.getElementById("status").className,
          badge: document.getElementById("badge")?.textContent ?? null,
          title: document.querySelector("#view header h2")?.textContent ?? null,
          article: article ? article.textContent : null,
          articleDir: article ? article.getAttribute("dir") : null,
          images: [...document.querySelectorAll("#view img")].map((i) => ({ src: i.src, width: i.naturalWidth, complete: i.complete })),
          problems: texts("#problems li"),
          mirrors: texts("#mirror-report li"),
          articles: texts("#articles li a"),
          save: document.getElementById("save")?.getAttribute("download") ?? null,
          viewText: document.getElementById("view").textContent,
        };
      });
    }
  }
} catch (e) {
  // Still print what the page said (console, errors): that is what explains a timeout.
  out.error = String(e && e.message ? e.message : e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
