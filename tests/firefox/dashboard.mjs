// The dashboard in the Debian firefox-esr, driven over Firefox's built-in WebDriver
// BiDi by puppeteer-core (no geckodriver). tests/api/test_firefox.py runs it as
//   node dashboard.mjs FIREFOX URL TOKEN MACHINE
// It prints one JSON line per step with what the page shows, and judges nothing: the
// test asserts. Before the live step it waits for a line on stdin, once the test has
// changed the machine's state behind the open page.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const [firefox, url, token, machine] = process.argv.slice(2);
const input = createInterface({ input: process.stdin });
const lines = input[Symbol.asyncIterator]();
const report = (step, seen) => console.log(JSON.stringify({ step, ...seen }));
const WAIT = { timeout: 20000 };

// What a tile shows, with the colour Firefox computed for it.
const TILE = (id) => {
  const el = document.getElementById(`machine-${id}`);
  return el && { category: el.dataset.category, background: getComputedStyle(el).backgroundColor,
                 text: el.innerText, oee: el.querySelector(".oee")?.dataset.value ?? "" };
};

// uPlot draws the temperature chart on a canvas: its painted (non-transparent) pixels.
const DRAWN = () => {
  const canvas = document.querySelector("#chart-temp canvas");
  if (!canvas?.width) return 0;
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return pixels.filter((v, i) => i % 4 === 3 && v > 0).length;
};

const browser = await puppeteer.launch({ browser: "firefox", executablePath: firefox,
                                         headless: true, defaultViewport: { width: 1600, height: 1000 } });
try {
  const page = await browser.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`uncaught on ${page.url()}: ${e.stack}`));

  // The machine page: its state band and axis, its losses and a uPlot chart per number
  // signal.
  await page.goto(`${url}/machine?id=${encodeURIComponent(machine)}#token=${token}`);
  // Its last request fills the downtime table: leaving earlier would abort requests
  // in flight, which Firefox reports as uncaught errors.
  await page.waitForSelector("#downtime tr", WAIT);
  await page.waitForFunction(DRAWN, WAIT);
  const shown = await page.evaluate(() => ({
    band: [...document.querySelectorAll("#band .seg")].map((d) => ({
      id: d.dataset.id ?? null, kind: d.dataset.kind, category: d.dataset.category,
      background: getComputedStyle(d).backgroundColor, left: d.getBoundingClientRect().left,
      width: d.getBoundingClientRect().width })),
    bandLeft: document.getElementById("band").getBoundingClientRect().left,
    bandWidth: document.getElementById("band").getBoundingClientRect().width,
    ticks: [...document.querySelectorAll("#band-axis .tick")].map((e) => e.textContent),
    chart: document.querySelector("#chart-temp .u-title")?.textContent,
    losses: document.getElementById("losses").innerText,
  }));
  report("machine", { ...shown, drawn: await page.evaluate(DRAWN) });

  // The overview, once the stream's first KPI refresh gave the tile its OEE.
  await page.goto(`${url}/`);  // the token stayed in the browser
  await page.waitForFunction((id) => document.querySelector(`#machine-${id} .oee`)?.dataset.value,
                             WAIT, machine);
  const before = await page.evaluate(TILE, machine);
  await page.evaluate(() => { window.notReloaded = true; });
  report("overview", { ...before, tiles: await page.$$eval("#tiles .tile", (t) => t.map((e) => e.id)),
                       url: page.url() });

  // Live: the test changed the machine's state; the open page follows without reload.
  await lines.next();
  await page.waitForFunction((id, category) =>
    document.getElementById(`machine-${id}`)?.dataset.category !== category, WAIT, machine, before.category);
  report("live", { ...(await page.evaluate(TILE, machine)), url: page.url(),
                   notReloaded: await page.evaluate(() => window.notReloaded === true) });

  // The language switch: French labels, in the header and in the tiles.
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "fr", WAIT);
  report("french", { ...(await page.evaluate(TILE, machine)),
                     heading: await page.$eval("h1", (h) => h.textContent),
                     button: await page.$eval("#lang", (b) => b.textContent) });
  report("errors", { errors });
} finally {
  input.close();
  await browser.close();
}
