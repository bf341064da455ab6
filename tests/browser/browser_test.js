// Drives Debian's Chromium through the example upload page (run by
// test_browser.py, which starts the servers). Arguments come in the
// environment: SU_PAGE (the page served by Apache beside the module),
// SU_CROSS (the page served from an allowed origin), SU_DENIED (served from
// an origin that is not allowed), SU_FILE (the file to upload), SU_SHOTS
// (where screenshots go). Prints one JSON line of results; any failed check
// throws, and the exit status is 1.
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const env = (name) => {
  if (!process.env[name]) throw new Error(name + " is not set");
  return process.env[name];
};

function check(cond, what) {
  if (!cond) throw new Error("check failed: " + what);
}

// Headless, no sandbox (root in CI), nothing that would reach the network
const ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
  "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

async function uploadThroughPage(page, url, file) {
  await page.goto(url);
  await page.setInputFiles("#chooser", file);
  const status = page.locator(".status").last();
  await status.waitFor({ state: "visible", timeout: 20000 });
  await page.waitForFunction(() => {
    const s = [...document.querySelectorAll(".status")].pop();
    return s && s.textContent !== "";
  }, null, { timeout: 20000 });
  return {
    status: await status.textContent(),
    id: await status.getAttribute("data-id"),
    answer: await page.locator(".answer").last().textContent(),
    progress: await page.locator("progress").last().evaluate((p) => p.value),
    href: await page.locator("a.download").last().getAttribute("href")
      .catch(() => null),
  };
}

// The page's own download link, as a user clicks it: the bytes come back
async function downloadBack(page, file) {
  const [dl] = await Promise.all([
    page.waitForEvent("download", { timeout: 20000 }),
    page.locator("a.download").last().click(),
  ]);
  const got = fs.readFileSync(await dl.path());
  check(Buffer.compare(got, fs.readFileSync(file)) === 0,
        "the downloaded bytes are the uploaded ones");
  return dl.suggestedFilename();
}

// From the other origin: read the file with fetch (CORS), and the headers
// the module exposes
async function fetchCross(page, href) {
  return page.evaluate(async (u) => {
    const r = await fetch(u);
    return { status: r.status, text: await r.text(),
      disposition: r.headers.get("Content-Disposition"),
      requestId: r.headers.get("X-Request-Id") };
  }, href);
}

async function main() {
  const file = env("SU_FILE");
  const shots = env("SU_SHOTS");
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "secupload-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.SU_CHROMIUM || "/usr/bin/chromium",
    headless: true, args: ARGS, acceptDownloads: true,
  });
  const out = {};
  try {
    const page = await context.newPage();
    const same = await uploadThroughPage(page, env("SU_PAGE"), file);
    check(same.id && /^[0-9a-f]{32}$/.test(same.id), "same origin: an id: " + same.status);
    check(JSON.parse(same.answer).id === same.id, "the JSON answer is shown");
    check(same.progress === 100, "the progress bar is full");
    out.same = same;
    out.same.downloaded_as = await downloadBack(page, file);
    out.shot = path.join(shots, "upload-page.png");
    await page.screenshot({ path: out.shot, fullPage: true });

    const cross = await uploadThroughPage(page, env("SU_CROSS"), file);
    check(cross.id && /^[0-9a-f]{32}$/.test(cross.id), "cross origin: an id: " + cross.status);
    check(cross.href.startsWith(new URL(env("SU_PAGE")).origin + "/"),
          "the link is the module's origin (Location exposed): " + cross.href);
    const read = await fetchCross(page, cross.href);
    check(read.status === 200 && read.text === fs.readFileSync(file, "utf8"),
          "cross origin: the file read back with fetch");
    check(read.disposition && read.requestId !== undefined, "exposed headers");
    out.cross = Object.assign(cross, { read_status: read.status,
      disposition: read.disposition });
    out.cross_shot = path.join(shots, "cross-origin-page.png");
    await page.screenshot({ path: out.cross_shot, fullPage: true });

    const denied = await uploadThroughPage(page, env("SU_DENIED"), file);
    check(!denied.id && /not allowed by CORS/.test(denied.status),
          "an origin not allowed cannot upload: " + denied.status);
    out.denied = denied;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
