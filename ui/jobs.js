// jobs.js - the live job list: a page of /v1/jobs (filtered by state on the
// daemon, by generator here), kept current by the event stream, plus the
// queue panel (queue depth, jobs finished and throughput over the last 10
// minutes, from /metrics every 10 s and after each job event).
'use strict';
D2.jobs = {
  PAGE: 20,
  rows: new Map(), // id -> job shown on this page
  after: '', // the page's cursor ('' = newest)
  loadedAt: 0,
  samples: [], // {t, depth, finished}

  matches(job) {
    const st = document.getElementById('filter-state').value;
    const gen = document.getElementById('filter-generator').value;
    return (!st || job.state === st) && (!gen || (job.generator && job.generator.name === gen));
  },

  async load(after) {
    this.after = after || '';
    const st = document.getElementById('filter-state').value;
    const q = new URLSearchParams({ limit: String(this.PAGE) });
    if (st) q.set('state', st);
    if (this.after) q.set('after', this.after);
    const started = Date.now();
    const page = await D2.api('/v1/jobs?' + q);
    this.rows = new Map(page.jobs.map((j) => [j.id, j]));
    this.next = page.next_after || '';
    // events that came while the page was on its way are newer than it
    const recent = [...D2.app.latest.values()].filter((x) => x.at >= started).map((x) => x.job);
    recent.sort((a, b) => Date.parse(a.created_at) - Date.parse(b.created_at));
    for (const j of recent) this.onJob(j, true);
    this.render();
  },

  render() {
    const body = document.getElementById('jobs-body');
    const shown = [...this.rows.values()].filter((j) => this.matches(j));
    body.replaceChildren(...shown.map((j) => this.row(j)));
    document.getElementById('jobs-empty').hidden = shown.length > 0;
    document.getElementById('page-first').disabled = !this.after;
    document.getElementById('page-next').disabled = !this.next;
  },

  row(j) {
    const el = D2.el;
    const method = j.gate && j.gate.chosen ? j.gate.chosen : '–';
    const dur = j.run_seconds ?? (j.started_at ? (Date.now() - Date.parse(j.started_at)) / 1000 : null);
    return el('tr', { id: 'row-' + j.id, 'data-state': j.state },
      el('td', {}, el('a', { href: '#/jobs/' + j.id, class: 'id', text: j.id })),
      el('td', {}, D2.stateCell(j.state), j.cancel_requested && D2.active(j.state) ? ' (cancelling)' : ''),
      el('td', {}, D2.progress(j)),
      el('td', { text: j.generator ? j.generator.name : '–' }),
      el('td', { class: 'id', text: D2.short(j.dataset_id) }),
      el('td', { class: 'num', 'data-created': j.created_at, text: D2.ago(j.created_at) }),
      el('td', { class: 'num', text: D2.secs(dur) }),
      el('td', { text: method }));
  },

  // A job event: update its row, or put a new job at the top of the first
  // page (quiet: the caller renders).
  onJob(job, quiet) {
    if (!this.rows.has(job.id)) {
      const newest = this.rows.values().next().value;
      if (this.after || (newest && Date.parse(job.created_at) < Date.parse(newest.created_at))) return;
      this.rows = new Map([[job.id, job], ...this.rows].slice(0, this.PAGE));
    } else {
      this.rows.set(job.id, job);
    }
    if (!quiet) this.render();
    clearTimeout(this.sampleSoon); // the queue panel follows at once
    this.sampleSoon = setTimeout(() => this.sample(), 300);
  },

  onProgress(p) {
    const job = this.rows.get(p.id);
    if (!job) return;
    job.progress = p.progress;
    const bar = document.querySelector('#row-' + CSS.escape(p.id) + ' progress');
    if (bar) {
      bar.value = Math.round(p.progress * 100);
      bar.title = bar.value + '%';
    }
  },

  tickAges() {
    for (const td of document.querySelectorAll('#jobs-body td[data-created]')) td.textContent = D2.ago(td.dataset.created);
  },

  // ---- the queue panel ----
  async sample() {
    let text;
    try {
      text = await D2.api('/metrics');
    } catch (e) {
      return; // a token without the metrics scope: no panel numbers
    }
    const v = (re) => [...text.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
    const s = {
      t: Date.now(),
      pending: v(/^d2nwgd_jobs_pending (\S+)$/gm),
      running: v(/^d2nwgd_jobs_running (\S+)$/gm),
      finished: v(/^d2nwgd_jobs_finished_total\{[^}]*\} (\S+)$/gm),
    };
    this.samples = this.samples.filter((x) => s.t - x.t <= 600000).concat([s]);
    document.getElementById('stat-pending').textContent = s.pending;
    document.getElementById('stat-running').textContent = s.running;
    document.getElementById('stat-done').textContent = s.finished;
    const first = this.samples[0], mins = (s.t - first.t) / 60000;
    document.getElementById('stat-rate').textContent = mins > 0.1 ? ((s.finished - first.finished) / mins).toFixed(1) + ' jobs/min' : '–';
    this.spark();
  },

  spark() {
    const svg = document.getElementById('spark');
    const ns = 'http://www.w3.org/2000/svg';
    const n = this.samples.length;
    const max = Math.max(1, ...this.samples.map((x) => x.pending + x.running));
    const pts = this.samples.map((x, i) => `${n > 1 ? (i * 236) / (n - 1) + 2 : 2},${38 - ((x.pending + x.running) * 34) / max}`);
    for (const old of svg.querySelectorAll('polyline, line')) old.remove();
    const base = document.createElementNS(ns, 'line');
    Object.entries({ x1: 0, y1: 38, x2: 240, y2: 38 }).forEach(([k, v]) => base.setAttribute(k, v));
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.append(base, line);
  },

  async generatorsFilter() {
    const sel = document.getElementById('filter-generator');
    const list = await D2.api('/v1/generators');
    sel.replaceChildren(D2.el('option', { value: '', text: 'any' }), ...list.generators.map((g) => D2.el('option', { text: g.name })));
  },
};
