// Cookie sessions in a real browser: the official SDK in headless Chromium signs up from
// one origin and uses its cookie; a page from another origin on the same machine then tries
// to read and write with that cookie (which the browser does attach: same site) and must be
// refused. Usage: node browser.mjs <homeserver z32> <homeserver HTTP port>
// (run by run.sh after client.mjs; needs /usr/bin/chromium).
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import puppeteer from "puppeteer-core";

const [hs, hsPort] = process.argv.slice(2);
const here = path.dirname(new URL(import.meta.url).pathname);
const files = {
  "/app.html": [path.join(here, "browser/app.html"), "text/html"],
  "/other.html": [path.join(here, "browser/other.html"), "text/html"],
  "/app-worker.js": [path.join(here, "browser/app-worker.js"), "text/javascript"],
  "/pubky.js": [path.join(here, "node_modules/@synonymdev/pubky/index.js"), "text/javascript"],
};

// One static server per origin (http://localhost:<port>).
function serve() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const f = files[new URL(req.url, "http://x").pathname];
      if (!f) return res.writeHead(404).end();
      res.writeHead(200, { "content-type": f[1] });
      fs.createReadStream(f[0]).pipe(res);
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

async function result(page, what) {
  await page.waitForFunction("window.result !== undefined", { timeout: 30000 });
  const r = await page.evaluate("window.result");
  console.log(what, JSON.stringify(r));
  return r;
}

function fail(msg) {
  console.error("FAIL:", msg);
  process.exitCode = 1;
}

const [appSrv, otherSrv] = [await serve(), await serve()];
const appOrigin = `http://localhost:${appSrv.address().port}`;
const otherOrigin = `http://localhost:${otherSrv.address().port}`;
const base = `http://localhost:${hsPort}`;
const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu"],
});
try {
  const app = await browser.newPage();
  await app.goto(`${appOrigin}/app.html?hs=${hs}`);
  const signedUp = await result(app, "app:");
  if (!signedUp.ok || signedUp.back !== "only for the app that signed in") {
    throw new Error(`the app could not use its cookie session: ${JSON.stringify(signedUp)}`);
  }
  // Its own page can also read with the cookie directly.
  const own = await app.evaluate(
    async (url, user) => (await fetch(url, { headers: { "pubky-host": user }, credentials: "include" })).status,
    `${base}/priv/secret.txt`, signedUp.user);
  if (own !== 200) fail(`the app's own credentialed read got ${own}`);

  const other = await browser.newPage();
  // Record the cookies the browser really attached to the other page's requests.
  const cdp = await other.createCDPSession();
  await cdp.send("Network.enable");
  const sentCookies = [];
  cdp.on("Network.requestWillBeSentExtraInfo", (e) => {
    for (const c of e.associatedCookies || []) {
      if (c.blockedReasons.length === 0 && c.cookie.name === signedUp.user) sentCookies.push(c.cookie.name);
    }
  });
  await other.goto(`${otherOrigin}/other.html?user=${signedUp.user}&base=${encodeURIComponent(base)}`);
  const r = await result(other, "other origin:");
  if (sentCookies.length === 0) fail("the browser did not attach the app's cookie to the other page's requests, so this run proves nothing");
  for (const [name, got] of Object.entries(r)) {
    if (got.status === 200 || got.status === 201) fail(`another origin's ${name} succeeded with the app's cookie: ${JSON.stringify(got)}`);
  }
  if (r.readLegacy.body.includes("only for the app")) fail("another origin read the private file");

  // The write did not land: the app still reads its own text.
  const after = await app.evaluate(
    async (url, user) => (await fetch(url, { headers: { "pubky-host": user }, credentials: "include" })).text(),
    `${base}/priv/secret.txt`, signedUp.user);
  if (after !== "only for the app that signed in") fail(`the private file changed: ${after}`);
  if (!process.exitCode) {
    console.log(`OK: cookie attached ${sentCookies.length} times to the other origin's requests; all refused`);
  }
} finally {
  await browser.close();
  appSrv.close();
  otherSrv.close();
}
