// api.js - talking to d2nwgd: the token (sessionStorage), JSON requests, and
// the event stream (GET /v1/events read through fetch, so that the token
// goes in a header and never in a URL; reconnects with Last-Event-ID).
'use strict';
const D2 = (window.D2 = {});

D2.TOKEN_KEY = 'd2nwgd.token';
D2.token = () => sessionStorage.getItem(D2.TOKEN_KEY) || '';
D2.setToken = (t) => (t ? sessionStorage.setItem(D2.TOKEN_KEY, t) : sessionStorage.removeItem(D2.TOKEN_KEY));
D2.session = { auth: false, principal: null, scope: 'write' };
D2.canWrite = () => D2.session.scope === 'write';

D2.headers = (extra) => {
  const h = Object.assign({}, extra || {});
  if (D2.token()) h.Authorization = 'Bearer ' + D2.token();
  return h;
};

// A JSON request; throws an Error with .status and .code on an error answer.
D2.api = async (path, opts) => {
  const o = opts || {};
  const r = await fetch(path, { method: o.method || 'GET', headers: D2.headers(o.headers), body: o.body });
  const json = (r.headers.get('Content-Type') || '').startsWith('application/json');
  const body = json ? await r.json() : await r.text();
  if (!r.ok) {
    const e = new Error(body && body.error ? body.error.message : r.status + ' ' + r.statusText);
    e.status = r.status;
    e.code = body && body.error ? body.error.code : '';
    throw e;
  }
  return body;
};

// Download a file with the token (a plain link cannot send the header).
D2.download = async (url, name) => {
  const r = await fetch(url, { headers: D2.headers() });
  if (!r.ok) throw new Error('download failed: ' + r.status);
  const href = URL.createObjectURL(await r.blob());
  const a = Object.assign(document.createElement('a'), { href, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(href), 10000);
};

D2.sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// The event stream: onEvent(type, data, id) for each event, onStatus(text).
D2.Events = class {
  constructor(onEvent, onStatus) {
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.lastId = '';
    this.stopped = false;
  }
  async run() {
    while (!this.stopped) {
      this.ctl = new AbortController();
      try {
        const h = this.lastId ? { 'Last-Event-ID': this.lastId } : {};
        const r = await fetch('/v1/events', { headers: D2.headers(h), signal: this.ctl.signal });
        if (!r.ok) throw new Error('the event stream answered ' + r.status);
        this.onStatus('live', true);
        await this.read(r.body.getReader());
      } catch (e) {
        if (this.stopped) return;
      }
      this.onStatus('reconnecting…', false);
      await D2.sleep(2000);
    }
  }
  stop() {
    this.stopped = true;
    if (this.ctl) this.ctl.abort();
  }
  async read(reader) {
    const dec = new TextDecoder();
    let buf = '';
    const ev = { id: '', type: '', data: null };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        this.line(buf.slice(0, i).replace(/\r$/, ''), ev);
        buf = buf.slice(i + 1);
      }
    }
  }
  line(l, ev) {
    if (l === '') {
      if (ev.data !== null) {
        if (ev.id) this.lastId = ev.id;
        this.onEvent(ev.type || 'message', JSON.parse(ev.data), ev.id);
      }
      Object.assign(ev, { id: '', type: '', data: null });
    } else if (l.startsWith('id: ')) ev.id = l.slice(4);
    else if (l.startsWith('event: ')) ev.type = l.slice(7);
    else if (l.startsWith('data: ')) ev.data = l.slice(6);
  }
};

// ---- small DOM and formatting helpers ----
D2.el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
  return e;
};
D2.short = (id) => (id ? id.slice(0, 12) : '–');
D2.ago = (iso) => {
  if (!iso) return '–';
  const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return Math.floor(s) + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min';
  if (s < 86400) return Math.floor(s / 3600) + ' h';
  return Math.floor(s / 86400) + ' d';
};
D2.secs = (v) => (v === null || v === undefined ? '–' : v < 10 ? v.toFixed(2) + ' s' : v.toFixed(0) + ' s');
D2.num = (v, d) => (typeof v === 'number' ? v.toFixed(d) : '–');
D2.active = (state) => state === 'queued' || state === 'running';
D2.progress = (job) => {
  const pct = Math.round((job.progress || 0) * 100);
  return D2.el('progress', { max: '100', value: String(pct), 'aria-label': 'progress of ' + job.id, title: pct + '%' });
};
D2.stateCell = (state) => D2.el('span', { class: 'state state-' + state, text: state });
