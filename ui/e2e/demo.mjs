// End-to-end test of the web UI against `sextant demo`, in Debian's Chromium driven by
// playwright-core: sign in, wait for the demo's first incident, open the database incident and
// see postgres ranked first, see its latency anomaly on the metric chart with the expected
// band, follow a log pattern to its lines, approve payment's runbook run.
// Screenshots go to SCREENSHOTS (default ../target/ui-screenshots).
//
// Usage: SEXTANT_BIN=path/to/sextant node e2e/demo.mjs

import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";

const bin = process.env.SEXTANT_BIN;
if (!bin) throw new Error("set SEXTANT_BIN to the sextant binary");
const shots = path.resolve(process.env.SCREENSHOTS ?? path.join(import.meta.dirname, "../../target/ui-screenshots"));
mkdirSync(shots, { recursive: true });
const data = mkdtempSync(path.join(tmpdir(), "sextant-e2e-"));

const demo = spawn(bin, ["demo", "--listen", "127.0.0.1:0", "--data-dir", data], {
  env: { ...process.env, RUST_LOG: "warn" },
  stdio: ["ignore", "pipe", "inherit"],
});
const { base, token } = await new Promise((resolve, reject) => {
  let base;
  let token;
  const lines = readline.createInterface({ input: demo.stdout });
  lines.on("line", (line) => {
    if (line.startsWith("sextant listening on ")) base = `http://${line.slice(21).trim()}`;
    const at = line.indexOf("admin token ");
    if (at >= 0) token = line.slice(at + 12).trim();
    if (base && token) resolve({ base, token });
  });
  demo.on("exit", (code) => reject(new Error(`sextant demo exited with ${code}`)));
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  const started = Date.now();
  await page.goto(base + "/");
  await page.waitForSelector("#token");
  console.log(`first view in ${Date.now() - started} ms`);
  await page.fill("#token", "sxt_not_a_token");
  await page.click("button[type=submit]");
  await page.waitForSelector("text=That token is not valid.");
  // The refused sign-in's 401 is expected; any later error is not.
  problems.length = 0;
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForSelector("nav .brand");

  // The database incident: wait for it (the fault starts 20 s in) and for its ranking.
  const deadline = Date.now() + 150_000;
  let opened = false;
  while (!opened) {
    if (Date.now() > deadline) throw new Error("no ranked postgres incident within 150 s");
    await page.goto(base + "/#/incidents");
    const links = await page.$$eval("#incidents a[data-incident]", (as) => as.map((a) => a.getAttribute("data-incident")));
    for (const id of links) {
      await page.goto(`${base}/#/incidents/${id}`);
      await page.waitForSelector("#incident-title");
      const first = await page.$eval("#ranking li[data-rank='1']", (li) => li.getAttribute("data-service")).catch(() => null);
      if (first === "postgres") {
        opened = true;
        break;
      }
    }
    if (!opened) await page.waitForTimeout(3000);
  }
  await page.screenshot({ path: path.join(shots, "incident.png"), fullPage: true });
  const sentence = await page.textContent("#ranking li[data-rank='1'] .sentence");
  if (!sentence?.includes("postgres")) throw new Error(`the sentence does not name postgres: ${sentence}`);

  // The map shows the services, the troubled ones red.
  await page.click("a[data-nav=map]");
  await page.waitForSelector("#map g[data-service=postgres]");
  await page.screenshot({ path: path.join(shots, "map.png") });

  // The metric explorer: postgres's latency with its band and the anomaly marked.
  await page.goto(`${base}/#/metrics?service=postgres&name=http.server.duration_p95`);
  await page.waitForSelector("#chart path.series");
  await page.waitForSelector("#chart path.band");
  await page.waitForSelector("#chart circle.anomaly");
  await page.screenshot({ path: path.join(shots, "metrics.png") });

  // From a pattern to its lines.
  await page.click("a[data-nav=logs]");
  await page.waitForSelector("#patterns a[data-pattern]");
  const template = await page.textContent("#patterns tbody tr:first-child td.line");
  await page.click("#patterns tbody tr:first-child a[data-pattern]");
  await page.waitForSelector("#lines tbody tr");
  const lines = await page.$$eval("#lines tbody td.line", (tds) => tds.map((td) => td.textContent));
  const words = (template ?? "").split(" ").filter((w) => w && !w.includes("<*>"));
  if (!lines.length || !lines.every((l) => words.every((w) => l.includes(w)))) {
    throw new Error(`the lines do not follow the pattern \`${template}\`: ${lines.slice(0, 3)}`);
  }
  await page.screenshot({ path: path.join(shots, "logs.png") });
  // A search typed into the form.
  await page.fill("#search", '"placed" service:checkout');
  await page.press("#search", "Enter");
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll("#lines tbody td.line")];
    return cells.length > 0 && cells.every((td) => td.textContent.includes("placed"));
  });
  // A search that matches nothing says so, and the word `error` points to the severity field.
  await page.fill("#search", "error");
  await page.press("#search", "Enter");
  await page.waitForSelector("#no-lines, #lines");
  if (await page.$("#no-lines")) {
    await page.waitForSelector("#no-lines a[href*='severity%3Aerror']");
  }
  await page.fill("#search", '"no line says this" service:nowhere');
  await page.press("#search", "Enter");
  await page.waitForSelector("#no-lines");

  // Payment's incident proposes its rollback runbook: approve it.
  const runDeadline = Date.now() + 150_000;
  let approved = false;
  while (!approved) {
    if (Date.now() > runDeadline) throw new Error("no runbook run waiting for approval within 150 s");
    const response = await page.request.get(base + "/api/v1/runs", { headers: { Authorization: `Bearer ${token}` } });
    const run = (await response.json()).runs.find((r) => r.status === "waiting_approval");
    if (run) {
      await page.goto(`${base}/#/incidents/${run.incident}`);
      await page.waitForSelector(`.run[data-run='${run.id}'] button.approve`);
      await page.fill(`.run[data-run='${run.id}'] input.comment`, "roll back: v2.4.1 breaks charges");
      await page.click(`.run[data-run='${run.id}'] button.approve`);
      await page.waitForSelector(`.run[data-run='${run.id}']:not([data-status=waiting_approval])`, { timeout: 30_000 });
      await page.screenshot({ path: path.join(shots, "runbook.png"), fullPage: true });
      // The rollback is the operator's action from the demo's configuration: it runs, and
      // says what it rolled back.
      const doneBy = Date.now() + 30_000;
      for (;;) {
        const answer = await page.request.get(`${base}/api/v1/runs/${run.id}`, { headers: { Authorization: `Bearer ${token}` } });
        const done = await answer.json();
        if (done.status === "succeeded") {
          const stdout = done.steps.at(-1)?.output?.stdout ?? "";
          if (!stdout.startsWith(`rolling back ${done.context.root_cause} for incident ${run.incident}`)) {
            throw new Error(`the rollback action said ${JSON.stringify(stdout)}`);
          }
          break;
        }
        if (done.status !== "running" || Date.now() > doneBy) {
          throw new Error(`the approved rollback ended ${done.status}: ${JSON.stringify(done.steps)}`);
        }
        await page.waitForTimeout(500);
      }
      approved = true;
    } else {
      await page.waitForTimeout(3000);
    }
  }

  await page.click("a[data-nav=audit]");
  await page.waitForSelector("#audit td:text-is('run.approve')");
  await page.screenshot({ path: path.join(shots, "audit.png") });
  // The filter narrows the trail to one family of kinds.
  await page.selectOption("#audit-kind", "run");
  await page.click("form.search button");
  await page.waitForFunction(() => {
    const kinds = [...document.querySelectorAll("#audit tbody tr td:nth-child(3)")].map((td) => td.textContent);
    return location.hash.includes("kind=run") && kinds.length > 0 && kinds.every((k) => k.startsWith("run."));
  });
  if (problems.length) throw new Error(`the page reported errors: ${problems.join("; ")}`);
  console.log(`ui e2e: passed; screenshots in ${shots}`);
} catch (e) {
  failed = true;
  console.error(`ui e2e: FAILED: ${e.stack ?? e}`);
  const pages = browser.contexts().flatMap((c) => c.pages());
  if (pages[0]) await pages[0].screenshot({ path: path.join(shots, "failure.png"), fullPage: true }).catch(() => {});
} finally {
  await browser.close();
  demo.kill("SIGTERM");
  await new Promise((r) => demo.once("exit", r));
  rmSync(data, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
