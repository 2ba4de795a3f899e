// job.js - one job: state, parameters, the gate's decision, the ranked
// checkpoints with their downloads, the lineage graph, and cancel (shown only
// to a token that may write, while the job is queued or running).
'use strict';
D2.job = {
  id: '',
  job: null,

  async open(id) {
    this.id = id;
    this.job = null;
    document.getElementById('job-title').textContent = 'Job ' + id;
    const body = document.getElementById('job-body');
    body.replaceChildren(D2.el('p', { class: 'muted', text: 'loading…' }));
    try {
      this.job = await D2.api('/v1/jobs/' + encodeURIComponent(id));
    } catch (e) {
      body.replaceChildren(D2.el('p', { class: 'error', role: 'alert', text: e.message }));
      return;
    }
    await this.render();
  },

  async render() {
    const j = this.job;
    const el = D2.el;
    const body = document.getElementById('job-body');
    const parts = [this.head(j), this.params(j)];
    if (j.error) parts.push(el('p', { class: 'error', role: 'alert', text: j.error.code + ': ' + j.error.message }));
    for (const w of j.warnings || []) parts.push(el('p', { class: 'warning', text: w.message }));
    if (j.gate) parts.push(el('h3', { text: 'Method chosen by the gate' }), el('p', {}, el('strong', { text: j.gate.chosen || 'none' }), ' – ' + (j.gate.reason || '')));
    const cks = j.result && j.result.checkpoints ? j.result.checkpoints : [];
    if (cks.length) {
      parts.push(el('h3', { id: 'ranking-title', text: 'Ranking' }), this.ranking(cks));
      parts.push(el('h3', { id: 'lineage-title', text: 'Lineage' }), el('div', { id: 'lineage' }, el('p', { class: 'muted', text: 'loading…' })));
    }
    body.replaceChildren(...parts);
    if (cks.length) await this.lineage(cks);
  },

  head(j) {
    const el = D2.el;
    const p = el('p', { id: 'job-state' }, 'State ', D2.stateCell(j.state), ' ', D2.progress(j), ' ', el('span', { id: 'job-pct', text: Math.round((j.progress || 0) * 100) + '%' }));
    if (j.cancel_requested && D2.active(j.state)) p.append(' (cancel requested)');
    if (D2.active(j.state) && D2.canWrite() && !j.cancel_requested)
      p.append(' ', el('button', { type: 'button', class: 'danger', id: 'cancel', onclick: () => this.cancel() }, 'Cancel job'));
    return p;
  },

  params(j) {
    const el = D2.el;
    const rows = [
      ['Generator', j.generator ? j.generator.name + ' (' + D2.short(j.generator.id) + ')' : '–'],
      ['Data set', (j.dataset_id || '–') + (j.dataset_kind ? ' (' + j.dataset_kind + ')' : '')],
      ['Candidates', j.params.candidates], ['Steps', j.params.steps], ['Sampler', j.params.sampler],
      ['Guidance', j.params.guidance], ['Seed', j.params.seed], ['Gate', j.params.gate ? 'on' : 'off'],
      ['Priority', j.priority], ['Parent checkpoint', j.parent_checkpoint || '–'], ['Attempts', j.attempts],
      ['Created', j.created_at], ['Started', j.started_at || '–'], ['Finished', j.finished_at || '–'],
      ['Queued for', D2.secs(j.queue_seconds)], ['Ran for', D2.secs(j.run_seconds)],
    ];
    return el('dl', { class: 'kv', 'aria-label': 'Parameters' }, rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v ?? '–') })]));
  },

  ranking(cks) {
    const el = D2.el;
    const head = ['Rank', 'Checkpoint', 'Method', 'Support accuracy', 'Support loss', 'Zoo distance', 'Weights'];
    return el('table', { 'aria-labelledby': 'ranking-title', id: 'ranking' },
      el('thead', {}, el('tr', {}, head.map((h, i) => el('th', { scope: 'col', class: i === 0 || (i >= 3 && i <= 5) ? 'num' : null, text: h })))),
      el('tbody', {}, cks.map((c) => el('tr', {},
        el('td', { class: 'num', text: String(c.rank) }), el('td', { class: 'id', text: c.id }),
        el('td', { text: c.method }), el('td', { class: 'num', text: D2.num(c.support_accuracy, 3) }),
        el('td', { class: 'num', text: D2.num(c.support_loss, 4) }), el('td', { class: 'num', text: D2.num(c.zoo_distance, 3) }),
        el('td', {}, this.downloadLink(c))))));
  },

  downloadLink(c) {
    const name = c.id + '.safetensors';
    const a = D2.el('a', { href: c.weights_url, download: name, text: 'safetensors', 'aria-label': 'download ' + name });
    if (D2.token())
      a.addEventListener('click', (ev) => {
        ev.preventDefault();
        D2.download(c.weights_url, name).catch((e) => D2.app.say(e.message));
      });
    return a;
  },

  async lineage(cks) {
    const box = document.getElementById('lineage');
    try {
      const lin = await D2.api(cks[0].lineage_url);
      box.replaceChildren(D2.lineage.svg(lin, cks));
    } catch (e) {
      box.replaceChildren(D2.el('p', { class: 'error', text: e.message }));
    }
  },

  async cancel() {
    const b = document.getElementById('cancel');
    b.disabled = true;
    try {
      this.job = await D2.api('/v1/jobs/' + encodeURIComponent(this.id) + ':cancel', { method: 'POST' });
      D2.app.say('cancel requested for ' + this.id);
      await this.render();
    } catch (e) {
      b.disabled = false;
      D2.app.say('cancel failed: ' + e.message);
    }
  },

  // A job event for the job on screen: reload it when it finished (the
  // event has no checkpoints), else show the new state.
  async onJob(job) {
    if (job.id !== this.id) return;
    if (D2.active(job.state)) {
      this.job = Object.assign({}, this.job, job);
      await this.render();
    } else {
      await this.open(job.id);
    }
  },

  onProgress(p) {
    if (p.id !== this.id || !this.job) return;
    this.job.progress = p.progress;
    const bar = document.querySelector('#job-state progress');
    if (bar) bar.value = Math.round(p.progress * 100);
    const pct = document.getElementById('job-pct');
    if (pct) pct.textContent = Math.round(p.progress * 100) + '%';
  },
};
