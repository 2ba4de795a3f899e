// app.js - start-up (the session: is a token needed, may it write), the
// views (#/jobs, #/jobs/ID, #/generators), and the event stream feeding them.
'use strict';
D2.app = {
  latest: new Map(), // job id -> {job, at}: the last event of each job
  events: null,

  say(text) {
    document.getElementById('live').textContent = text;
  },

  async start() {
    try {
      D2.session = await D2.api('/v1/session');
    } catch (e) {
      this.say('the daemon did not answer: ' + e.message);
      return;
    }
    document.getElementById('token-change').hidden = !D2.session.auth;
    if (D2.session.auth && (!D2.session.scope || D2.session.scope === 'metrics')) {
      this.askToken(D2.token() ? 'That token cannot read jobs. Give one with the read or write scope.' : 'Give a token with the read scope (write to cancel jobs).');
      return;
    }
    document.getElementById('token-form').hidden = true;
    if (D2.session.auth) this.say('signed in as ' + D2.session.principal + ' (' + D2.session.scope + ')');
    if (!this.events) {
      this.events = new D2.Events((t, d) => this.onEvent(t, d), (s) => this.say('events: ' + s));
      this.events.run();
      setInterval(() => D2.jobs.tickAges(), 5000);
      setInterval(() => D2.jobs.sample(), 10000);
    }
    D2.jobs.sample();
    D2.jobs.generatorsFilter().catch(() => {});
    await this.route();
  },

  askToken(why) {
    const f = document.getElementById('token-form');
    document.getElementById('token-why').textContent = why;
    f.hidden = false;
    for (const v of ['jobs', 'job', 'generators']) document.getElementById('view-' + v).hidden = true;
    document.getElementById('token-input').focus();
  },

  onEvent(type, data) {
    if (type === 'job') {
      this.latest.set(data.id, { job: data, at: Date.now() });
      D2.jobs.onJob(data);
      D2.job.onJob(data);
    } else if (type === 'progress') {
      D2.jobs.onProgress(data);
      D2.job.onProgress(data);
    } else if (type === 'generator' || type === 'events_lost') {
      this.route(); // show the view afresh
    }
  },

  async route() {
    const h = location.hash || '#/jobs';
    const m = h.match(/^#\/jobs\/(j_[0-9a-f]{20})$/);
    const view = m ? 'job' : h === '#/generators' ? 'generators' : 'jobs';
    for (const v of ['jobs', 'job', 'generators']) document.getElementById('view-' + v).hidden = v !== view;
    document.getElementById('nav-jobs').toggleAttribute('aria-current', view !== 'generators');
    document.getElementById('nav-generators').toggleAttribute('aria-current', view === 'generators');
    for (const a of document.querySelectorAll('header nav a[aria-current]')) a.setAttribute('aria-current', 'page');
    D2.job.id = m ? m[1] : '';
    if (m) await D2.job.open(m[1]);
    else if (view === 'generators') await D2.generators.open();
    else await D2.jobs.load(D2.jobs.after).catch((e) => this.say(e.message));
  },

  wire() {
    window.addEventListener('hashchange', async () => {
      await this.route();
      const v = document.querySelector('main section:not([hidden]) h2');
      if (v) { v.tabIndex = -1; v.focus(); } // screen readers hear the new view
    });
    document.getElementById('token-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      D2.setToken(document.getElementById('token-input').value.trim());
      document.getElementById('token-input').value = '';
      if (this.events) { this.events.stop(); this.events = null; }
      this.start();
    });
    document.getElementById('token-change').addEventListener('click', () => this.askToken('Give another token.'));
    document.getElementById('filter-state').addEventListener('change', () => D2.jobs.load(''));
    document.getElementById('filter-generator').addEventListener('change', () => D2.jobs.render());
    document.getElementById('page-first').addEventListener('click', () => D2.jobs.load(''));
    document.getElementById('page-next').addEventListener('click', () => D2.jobs.load(D2.jobs.next));
  },
};

D2.app.wire();
D2.app.start();
