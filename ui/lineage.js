// lineage.js - a checkpoint's lineage as a small SVG graph:
// generator -> zoo -> data set -> job -> checkpoints (and a parent checkpoint
// feeding the job when it was derived). The same facts are in the title and
// description for screen readers.
'use strict';
D2.lineage = {
  NS: 'http://www.w3.org/2000/svg',

  node(svg, x, y, lines) {
    const g = document.createElementNS(this.NS, 'g');
    const r = document.createElementNS(this.NS, 'rect');
    Object.entries({ x, y, width: 150, height: 44, rx: 6 }).forEach(([k, v]) => r.setAttribute(k, v));
    g.append(r);
    lines.forEach((t, i) => {
      const tx = document.createElementNS(this.NS, 'text');
      tx.setAttribute('x', x + 8);
      tx.setAttribute('y', y + 17 + i * 16);
      tx.textContent = t;
      g.append(tx);
    });
    svg.append(g);
  },

  edge(svg, x1, y1, x2, y2) {
    const p = document.createElementNS(this.NS, 'path');
    const mx = (x1 + x2) / 2;
    p.setAttribute('d', `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 4},${y2}`);
    svg.append(p);
  },

  svg(lin, cks) {
    const g = lin.generator, d = lin.dataset, j = lin.job;
    const shown = cks.slice(0, 4);
    const more = cks.length - shown.length;
    const h = Math.max(80, shown.length * 54 + 20 + (more > 0 ? 16 : 0));
    const svg = document.createElementNS(this.NS, 'svg');
    const w = 5 * 180;
    Object.entries({ class: 'lineage', width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-labelledby': 'lin-t lin-d' })
      .forEach(([k, v]) => svg.setAttribute(k, v));
    const title = document.createElementNS(this.NS, 'title');
    title.id = 'lin-t';
    title.textContent = 'Lineage of ' + lin.checkpoint.id;
    const desc = document.createElementNS(this.NS, 'desc');
    desc.id = 'lin-d';
    desc.textContent = `generator ${g.name} (${g.spec}), trained on zoo ${D2.short(g.zoo_fingerprint)} of ${g.zoo_size} tasks; ` +
      `data set ${D2.short(d.id)} (${d.n} rows of ${d.dim}, ${d.classes} classes); job ${j.id}; ` +
      `checkpoints ${cks.map((c) => c.id + ' ' + c.method).join(', ')}` + (lin.parent ? `; derived from ${lin.parent}` : '');
    svg.append(title, desc, this.marker());
    const mid = h / 2 - 22;
    const cols = [
      ['generator ' + g.name, g.spec],
      ['zoo ' + D2.short(g.zoo_fingerprint), g.zoo_size + ' tasks'],
      ['data set ' + D2.short(d.id), `${d.n}×${d.dim}, ${d.classes} classes`],
      ['job ' + D2.short(j.id), 'seed ' + lin.seed],
    ];
    cols.forEach((lines, i) => {
      this.node(svg, i * 180 + 5, mid, lines);
      if (i > 0) this.edge(svg, i * 180 - 25, mid + 22, i * 180 + 5, mid + 22);
    });
    shown.forEach((c, i) => {
      const y = 10 + i * 54;
      this.node(svg, 4 * 180 + 5, y, ['#' + c.rank + ' ' + c.method, 'acc ' + D2.num(c.support_accuracy, 3)]);
      this.edge(svg, 3 * 180 + 155, mid + 22, 4 * 180 + 5, y + 22);
    });
    if (more > 0) {
      const t = document.createElementNS(this.NS, 'text');
      t.setAttribute('x', 4 * 180 + 5);
      t.setAttribute('y', h - 6);
      t.textContent = `+${more} more in the ranking`;
      svg.append(t);
    }
    return svg;
  },

  marker() {
    const defs = document.createElementNS(this.NS, 'defs');
    const m = document.createElementNS(this.NS, 'marker');
    Object.entries({ id: 'arrow', viewBox: '0 0 8 8', refX: 4, refY: 4, markerWidth: 8, markerHeight: 8, orient: 'auto' })
      .forEach(([k, v]) => m.setAttribute(k, v));
    const p = document.createElementNS(this.NS, 'path');
    p.setAttribute('d', 'M0,0 L8,4 L0,8 z');
    m.append(p);
    defs.append(m);
    return defs;
  },
};
