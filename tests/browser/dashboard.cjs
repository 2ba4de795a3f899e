// dashboard.cjs - the browser test of the page at / (run by dashboard.sh,
// which starts d2nwgd with a write and a read token). Prints TAP. Checks:
//   1. the page asks for a token, keeps it in sessionStorage, and loads with
//      no console error (none at all by the end: checked last);
//   2. a job submitted through the API appears and reaches succeeded on the
//      page without a reload (events, not polling);
//   3. its job page shows the ranking (every checkpoint) and the lineage graph;
//   4. cancel from the page cancels a running job;
//   5. a read-only token sees no cancel button;
//   6. the generators view; keyboard (skip link first, every control
//      labelled) and text contrast (WCAG AA, 4.5:1) on every view.
// A screenshot of each view goes to $SHOTS.
'use strict';
const puppeteer = require('puppeteer-core');

const URL0 = process.env.D2NWG_URL;
const SHOTS = process.env.SHOTS;
let n = 0;
let failed = 0;
const ok = (cond, name, detail) => {
  n++;
  console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}`);
  if (!cond) {
    failed++;
    if (detail) console.log('# ' + String(detail).replace(/\n/g, '\n# '));
  }
};

async function api(path, token, body) {
  const r = await fetch(URL0 + path, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const v = await r.json();
  if (!r.ok) throw new Error(path + ': ' + r.status + ' ' + JSON.stringify(v));
  return v;
}

// The quick generator's data: 5 classes x 3 rows of 128-value embeddings.
function jobBody(candidates, steps, seed) {
  const rows = [], labels = [];
  let s = seed * 2654435761 + 1;
  for (let c = 0; c < 5; c++)
    for (let k = 0; k < 3; k++) {
      const row = [];
      for (let j = 0; j < 128; j++) {
        s = (s * 1664525 + 1013904223) % 4294967296;
        row.push((s / 4294967296 - 0.5) * 2 + (j % 5 === c ? 1.5 : 0));
      }
      rows.push(row);
      labels.push(c);
    }
  return { generator: 'default', dataset: { embeddings: rows, labels }, candidates, steps, seed };
}

async function signIn(page, token) {
  await page.goto(URL0 + '/', { waitUntil: 'load' });
  await page.waitForSelector('#token-form:not([hidden])', { timeout: 10000 });
  await page.type('#token-input', token);
  await page.click('#token-form button[type=submit]');
  await page.waitForSelector('#view-jobs:not([hidden])', { timeout: 10000 });
}

const rowState = (page, id) => page.$eval('#row-' + id, (tr) => tr.dataset.state).catch(() => '');

async function waitFor(fn, timeoutMs, what) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out waiting for ' + what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// In the page: unlabelled controls and text under 4.5:1 contrast.
function audit() {
  const problems = [];
  const visible = (e) => !e.closest('[hidden]') && e.getClientRects().length > 0;
  for (const c of document.querySelectorAll('input, select, button, textarea')) {
    if (!visible(c)) continue;
    const named = (c.labels && c.labels.length) || c.getAttribute('aria-label') || c.getAttribute('aria-labelledby') ||
      (c.tagName === 'BUTTON' && c.textContent.trim());
    if (!named) problems.push('unlabelled control ' + c.outerHTML.slice(0, 80));
  }
  const rgba = (s) => (s.match(/[\d.]+/g) || [0, 0, 0, 0]).map(Number);
  const lum = (c) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4));
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const bgOf = (e) => {
    for (; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  for (const e of document.querySelectorAll('body *')) {
    const text = [...e.childNodes].some((x) => x.nodeType === 3 && x.textContent.trim());
    if (!text || !visible(e) || e.disabled || e.closest('svg')) continue;
    const a = lum(rgba(getComputedStyle(e).color)), b = lum(bgOf(e));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for <${e.tagName.toLowerCase()} class="${e.className}">${e.textContent.trim().slice(0, 30)}`);
  }
  return problems;
}

async function checkAudit(page, view) {
  const p = await page.evaluate(audit);
  ok(p.length === 0, `${view}: every control labelled, text contrast at least 4.5:1`, p.join('\n'));
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const errors = [];
  const watch = (page) => {
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(e.message));
  };
  try {
    const page = await browser.newPage();
    watch(page);
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(URL0 + '/', { waitUntil: 'load' });
    await page.waitForSelector('#token-form:not([hidden])', { timeout: 10000 });
    await page.screenshot({ path: SHOTS + '/token.png' });
    ok(true, 'with tokens on, the page asks for one');
    await checkAudit(page, 'token form');
    await signIn(page, process.env.WRITE_TOKEN);
    const kept = await page.evaluate(() => sessionStorage.getItem('d2nwgd.token'));
    ok(kept === process.env.WRITE_TOKEN, 'the token is kept in sessionStorage');
    await page.reload({ waitUntil: 'load' });
    await page.waitForSelector('#view-jobs:not([hidden])', { timeout: 10000 });
    ok(await page.$eval('#token-form', (f) => f.hidden), 'after a reload the tab still has its token: no prompt');
    await page.keyboard.press('Tab');
    const first = await page.evaluate(() => document.activeElement.className + ':' + document.activeElement.textContent);
    ok(first.startsWith('skip:'), 'keyboard: the first Tab reaches the skip link', first);
    await page.keyboard.press('Tab');
    const second = await page.evaluate(() => document.activeElement.textContent);
    ok(second === 'd2nwgd', 'keyboard: Tab goes on through the page in order', second);
    await page.waitForFunction(() => document.getElementById('live').textContent.includes('live'), { timeout: 10000 })
      .catch(() => {});
    const live = await page.$eval('#live', (e) => e.textContent);
    ok(live.includes('events: live'), 'the event stream is connected', live);

    // 2. a job submitted through the API appears and succeeds, no reload
    await page.evaluate(() => { window.__loaded = 'yes'; });
    const job = await api('/v1/jobs', process.env.WRITE_TOKEN, jobBody(8, 400, 5));
    const seen = [];
    await waitFor(async () => {
      const st = await rowState(page, job.id);
      if (st && seen[seen.length - 1] !== st) seen.push(st);
      return st === 'succeeded';
    }, 90000, 'the job to reach succeeded on the page');
    const same = await page.evaluate(() => window.__loaded === 'yes');
    ok(same, `job ${job.id} appeared and reached succeeded without a reload (states seen: ${seen.join(' → ')})`);
    await page.screenshot({ path: SHOTS + '/jobs.png', fullPage: true });
    await checkAudit(page, 'job list');

    // 3. the job page: ranking and lineage
    await page.click(`#row-${job.id} a`);
    await page.waitForSelector('#ranking tbody tr', { timeout: 10000 });
    await page.waitForSelector('#lineage svg.lineage', { timeout: 10000 });
    const full = await api('/v1/jobs/' + job.id, process.env.WRITE_TOKEN);
    const rows = await page.$$eval('#ranking tbody tr', (t) => t.length);
    ok(rows === full.result.checkpoints.length && rows > 0, `the job page ranks all ${rows} checkpoints`);
    const lin = await page.$eval('#lineage svg.lineage', (s) => s.textContent);
    ok(lin.includes('generator default') && lin.includes('zoo ') && lin.includes('data set ') && lin.includes('job '),
      'the lineage graph shows generator, zoo, data set, job and checkpoints', lin.slice(0, 200));
    const dl = await page.$eval('#ranking tbody tr a', (a) => a.getAttribute('href'));
    ok(dl === full.result.checkpoints[0].weights_url, 'download links point at the weights', dl);
    await page.screenshot({ path: SHOTS + '/job.png', fullPage: true });
    await checkAudit(page, 'job page');

    // 4. cancel from the page
    const long = await api('/v1/jobs', process.env.WRITE_TOKEN, jobBody(64, 1000, 6));
    await page.goto(URL0 + '/#/jobs/' + long.id, { waitUntil: 'load' });
    await page.waitForSelector('#cancel', { timeout: 10000 });
    await page.click('#cancel');
    await page.waitForFunction(() => {
      const st = document.querySelector('#job-state .state');
      return st && st.textContent === 'cancelled';
    }, { timeout: 60000 });
    const after = await api('/v1/jobs/' + long.id, process.env.WRITE_TOKEN);
    ok(after.state === 'cancelled', 'cancel from the page cancelled the job', after.state);
    await page.screenshot({ path: SHOTS + '/cancelled.png', fullPage: true });

    // 6. generators
    await page.click('#nav-generators');
    await page.waitForSelector('#gens-body article', { timeout: 10000 });
    const gens = await page.$eval('#gens-body', (e) => e.textContent);
    ok(gens.includes('default') && gens.includes('pca:128'), 'the generators view lists the generator and its target spec');
    await page.screenshot({ path: SHOTS + '/generators.png', fullPage: true });
    await checkAudit(page, 'generators');

    // 5. a read-only token (a new tab: its own sessionStorage) sees no cancel
    const ro = await browser.newPage();
    watch(ro);
    await signIn(ro, process.env.READ_TOKEN);
    const third = await api('/v1/jobs', process.env.WRITE_TOKEN, jobBody(64, 1000, 7));
    await ro.goto(URL0 + '/#/jobs/' + third.id, { waitUntil: 'load' });
    await ro.waitForSelector('#job-state', { timeout: 10000 });
    ok((await ro.$('#cancel')) === null, 'a read-only token sees no cancel button');
    await ro.screenshot({ path: SHOTS + '/read-only.png', fullPage: true });
    await api('/v1/jobs/' + third.id + ':cancel', process.env.WRITE_TOKEN, {});
  } catch (e) {
    ok(false, 'the browser test ran to its end', e.stack);
  }
  ok(errors.length === 0, 'no console error on any page', errors.join('\n'));
  await browser.close();
  console.log('1..' + n);
  process.exit(failed ? 1 : 0);
}

main();
