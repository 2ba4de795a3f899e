// generators.js - the resident generators: target spec, dimensions, ways,
// zoo, defaults and provenance.
'use strict';
D2.generators = {
  async open() {
    const body = document.getElementById('gens-body');
    let list;
    try {
      list = (await D2.api('/v1/generators')).generators;
    } catch (e) {
      body.replaceChildren(D2.el('p', { class: 'error', role: 'alert', text: e.message }));
      return;
    }
    body.replaceChildren(...list.map((g) => this.card(g)));
  },

  card(g) {
    const el = D2.el;
    const d = g.defaults || {};
    const rows = [
      ['Id', g.id], ['Target spec', g.spec], ['Input / feature dim', g.input_dim + ' / ' + g.feature_dim],
      ['Ways', g.min_way === g.max_way ? String(g.min_way) : g.min_way + '–' + g.max_way],
      ['Parameters of a target', g.params], ['Zoo', g.zoo_size + ' tasks, ' + D2.short(g.zoo_fingerprint)],
      ['Defaults', `${d.candidates} candidates, ${d.steps} ${d.sampler} steps, guidance ${d.guidance}`],
      ['Loaded', g.loaded_at || '–'],
    ];
    return el('article', { 'aria-labelledby': 'gen-' + g.name },
      el('h3', { id: 'gen-' + g.name, text: g.name }),
      el('dl', { class: 'kv' }, rows.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { class: k === 'Id' ? 'id' : null, text: String(v) })])),
      el('details', {}, el('summary', { text: 'Provenance' }), el('pre', { text: JSON.stringify(g.provenance, null, 2) })));
  },
};
