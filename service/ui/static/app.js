// lossweep's web page: a sweeps list, a sweep page and a submit page, drawn from the public /v1 API only.
// Every URL is relative to this page, so the service may sit behind a path prefix.
'use strict';
(() => {
  const API = new URL('../v1/', location.href.split('#')[0]);
  const TOKEN_KEY = 'lossweep.token';
  const POLL_MS = 3000;
  const REPORT_POLL_MS = 15000;
  const view = document.getElementById('view');
  const state = { me: null, readable: false, cleanup: [] };

  // ---------------------------------------------------------------------------------------------
  // The API
  // ---------------------------------------------------------------------------------------------
  const token = () => sessionStorage.getItem(TOKEN_KEY);

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body || {};
    }
  }

  async function api(path, { method = 'GET', body, query, raw = false } = {}) {
    const url = new URL(path, API);
    for (const [k, v] of Object.entries(query || {})) {
      for (const one of [].concat(v)) if (one !== undefined && one !== null && one !== '') url.searchParams.append(k, one);
    }
    const headers = {};
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (!res.ok) {
      let err = null;
      try { err = await res.json(); } catch (_) { /* not JSON */ }
      throw new ApiError(res.status, err);
    }
    return raw ? res : res.json();
  }

  async function download(path, query) {
    const res = await api(path, { query, raw: true });
    const name = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') || '');
    const url = URL.createObjectURL(await res.blob());
    const a = el('a', { href: url, download: name ? name[1] : path.split('/').pop() });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ---------------------------------------------------------------------------------------------
  // Small DOM helpers
  // ---------------------------------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
    return node;
  }
  const fmt = (v, d = 4) => (v === null || v === undefined || Number.isNaN(v) ? '–' : Number(v).toFixed(d));
  const fmtLr = (v) => (v === null || v === undefined ? '–' : Number(v).toExponential(0).replace('e-', 'e-'));
  const fmtTokens = (v) => {
    if (v === null || v === undefined) return '–';
    const units = [[1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
    for (const [n, u] of units) if (v >= n) return `${(v / n).toFixed(v >= 10 * n ? 0 : 1)}${u}`;
    return String(v);
  };
  const duration = (s) => {
    if (s === null || s === undefined) return '–';
    if (s < 90) return `${Math.round(s)} s`;
    if (s < 5400) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  };
  const age = (iso) => (iso ? `${duration((Date.now() - Date.parse(iso)) / 1000)} ago` : '–');
  const ended = (sweep) => Boolean(sweep.finished_at);
  const badge = (status) => el('span', { class: `badge ${status}`, 'data-status': status }, status);

  function every(ms, fn) {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      if (stopped) return;
      let again = true;
      try { again = (await fn()) !== false; } catch (e) { showError(e); }
      if (!stopped && again) timer = setTimeout(tick, ms);
    };
    timer = setTimeout(tick, ms);
    state.cleanup.push(() => { stopped = true; clearTimeout(timer); });
  }

  function showError(e, where) {
    const box = where || document.getElementById('page-error');
    if (box) box.textContent = e instanceof ApiError ? `${e.status}: ${e.message}` : String(e.message || e);
  }

  // ---------------------------------------------------------------------------------------------
  // Charts (Chart.js)
  // ---------------------------------------------------------------------------------------------
  const PALETTE = ['#0072B2', '#F0E442', '#999999', '#882255', '#44AA99', '#117733'];
  let colors = {};
  const colorOf = (method) => {
    if (!colors[method]) colors[method] = PALETTE[Object.keys(colors).length % PALETTE.length];
    return colors[method];
  };

  function chart(canvas, config) {
    const c = new Chart(canvas, config);
    state.cleanup.push(() => c.destroy());
    return c;
  }

  // Log axes label their powers of ten only (Chart.js labels every minor tick otherwise).
  const decade = (v) => { const e = Math.log10(v); return Math.abs(e - Math.round(e)) < 1e-9 ? `1e${Math.round(e)}` : ''; };
  const logX = (title) => ({ type: 'logarithmic', title: { display: true, text: title }, ticks: { callback: decade, maxRotation: 0, autoSkip: false } });
  const linY = (title) => ({ type: 'linear', title: { display: true, text: title } });
  const baseOptions = (extra = {}) => ({
    animation: false, responsive: true, maintainAspectRatio: false, parsing: false, normalized: true,
    plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } }, ...extra,
  });

  // ---------------------------------------------------------------------------------------------
  // Auth
  // ---------------------------------------------------------------------------------------------
  async function loadAuth() {
    state.me = null;
    if (token()) {
      try { state.me = await api('me'); } catch (e) {
        if (e.status === 401) sessionStorage.removeItem(TOKEN_KEY);
        renderAuth(`token refused: ${e.message}`);
        state.readable = false;
      }
    }
    if (state.me) state.readable = true;
    else {
      try { await api('sweeps', { query: { limit: 1 } }); state.readable = true; } catch (e) { state.readable = false; }
    }
    renderAuth();
  }

  function renderAuth(problem) {
    const box = document.getElementById('auth');
    box.replaceChildren();
    document.getElementById('nav-submit').hidden = !state.me;
    if (state.me) {
      box.append(el('span', { id: 'whoami' }, `${state.me.name}${state.me.is_admin ? ' (admin)' : ''}`),
        el('button', { onclick: () => { sessionStorage.removeItem(TOKEN_KEY); start(); } }, 'Forget token'));
      return;
    }
    const input = el('input', { id: 'token-input', type: 'password', placeholder: 'API token (lsw_…)', autocomplete: 'off' });
    const use = () => { if (input.value.trim()) { sessionStorage.setItem(TOKEN_KEY, input.value.trim()); start(); } };
    input.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') use(); });
    box.append(
      el('span', { id: 'whoami', class: 'muted' }, problem || (state.readable ? 'read-only' : 'no token')),
      input, el('button', { id: 'token-use', onclick: use }, 'Use token'));
  }

  // ---------------------------------------------------------------------------------------------
  // Sweeps list
  // ---------------------------------------------------------------------------------------------
  // The statuses and which are final come from the API (GET /v1/statuses), never from a list of this page's.
  let statusesPromise = null;
  function statuses() {
    if (!statusesPromise) statusesPromise = api('statuses').catch(() => ({ sweep: [], sweep_final: [], trial: [], trial_final: [] }));
    return statusesPromise;
  }

  async function sweepStatuses() {
    return (await statuses()).sweep;
  }

  function countsText(counts) {
    const parts = Object.entries(counts).filter(([k, v]) => v && k !== 'DIVERGED').map(([k, v]) => el('span', {}, `${k.toLowerCase()} ${v}`));
    if (counts.DIVERGED) parts.push(el('span', { class: 'd' }, `diverged ${counts.DIVERGED}`));
    return el('span', { class: 'counts' }, parts.length ? parts.flatMap((p, i) => (i ? [' ', p] : [p])) : '–');
  }

  async function listView() {
    const params = new URLSearchParams(location.hash.split('?')[1] || '');
    const statuses = await sweepStatuses();
    const chosen = new Set(params.getAll('status'));
    const owner = params.get('owner') || '';
    const apply = () => {
      const q = new URLSearchParams();
      for (const box of view.querySelectorAll('input[name=status]:checked')) q.append('status', box.value);
      const o = view.querySelector('#owner-filter').value.trim();
      if (o) q.set('owner', o);
      location.hash = `#/?${q}`;
    };
    const filters = el('div', { class: 'row card', id: 'filters' }, el('b', {}, 'Status'),
      statuses.map((s) => el('label', {}, el('input', { type: 'checkbox', name: 'status', value: s, checked: chosen.has(s), onchange: apply }), ` ${s.toLowerCase()}`)),
      el('b', {}, 'Owner'), el('input', { id: 'owner-filter', value: owner, placeholder: 'any', onchange: apply }));
    const body = el('tbody');
    const total = el('span', { class: 'muted', id: 'total' });
    view.replaceChildren(el('h1', {}, 'Sweeps'), filters, el('p', { id: 'page-error', class: 'error' }),
      el('div', { class: 'table-wrap' }, el('table', { id: 'sweeps' },
        el('thead', {}, el('tr', {}, ['name', 'owner', 'status', 'progress (trials per state)', 'best val CE', 'best method', 'age']
          .map((h) => el('th', {}, h)))), body)), total);
    const load = async () => {
      const data = await api('sweeps', { query: { status: [...chosen], owner, limit: 200 } });
      body.replaceChildren(...data.items.map((s) => el('tr', { 'data-id': s.id },
        el('td', {}, el('a', { href: `#/sweeps/${encodeURIComponent(s.id)}` }, s.name), el('br'), el('code', { class: 'muted' }, s.id)),
        el('td', {}, s.owner), el('td', {}, badge(s.status)),
        el('td', {}, `${Object.values(s.trial_counts).reduce((a, b) => a + b, 0)} / ${s.num_trials ?? '?'} `, countsText(s.trial_counts)),
        el('td', { class: 'num' }, fmt(s.best && s.best.val_loss)), el('td', {}, (s.best && s.best.method) || '–'),
        el('td', { title: s.created_at }, age(s.created_at)))));
      if (!data.items.length) body.append(el('tr', {}, el('td', { colspan: 7, class: 'muted' }, 'No sweeps.')));
      total.textContent = `${data.total} sweep(s)`;
      return data.items.some((s) => !ended(s));
    };
    if (await load()) every(POLL_MS, load);
  }

  // ---------------------------------------------------------------------------------------------
  // Sweep page
  // ---------------------------------------------------------------------------------------------
  async function sweepView(id) {
    let sweep = await api(`sweeps/${encodeURIComponent(id)}`);
    const head = el('div', { class: 'card', id: 'sweep-head' });
    const curvesCanvas = el('canvas', { id: 'curves' });
    const lrsCanvas = el('canvas', { id: 'lrs' });
    const parCanvas = el('canvas', { id: 'parallel' });
    const impCanvas = el('canvas', { id: 'importance' });
    const impTable = el('div', { id: 'importance-methods' });
    const mechBox = el('div', { class: 'grid4', id: 'mechanism' });
    const lambdaBox = el('div', { class: 'grid2', id: 'lambda' });
    const lambdaHead = el('div', {}, el('h2', {}, 'λ robustness'), el('p', { class: 'muted' }, 'Final loss against each coefficient swept on a grid, one line per peak LR joining the seed means; each dot one run (seed), the shaded band the 95% t-interval of the mean.'));
    const tableBox = el('div', { class: 'table-wrap', id: 'trials' });
    const reportNote = el('p', { class: 'muted', id: 'report-note' });
    const evidenceBox = el('div', { id: 'evidence' });
    const downstreamBox = el('div', { id: 'downstream' });
    const sizesBox = el('div', { id: 'sizes' });
    view.replaceChildren(head, el('p', { id: 'page-error', class: 'error' }), evidenceBox, sizesBox, downstreamBox,
      el('h2', {}, 'Validation curves'), el('p', { class: 'muted' }, 'Every trial against training tokens, coloured by method; ✕ marks where a trial diverged. Updated as trials report.'),
      el('div', { class: 'card chart tall' }, curvesCanvas), reportNote,
      el('div', { class: 'grid2' },
        el('div', {}, el('h2', {}, 'LR sensitivity'), el('p', { class: 'muted' }, 'Final loss against peak LR per method: each dot one run (seed), diverged counted as ln V (✕); lines join the seed means of a family of identical coefficients, the shaded band is the 95% t-interval of that mean.'), el('div', { class: 'card chart' }, lrsCanvas)),
        el('div', {}, el('h2', {}, 'Hyperparameter importance'), el('p', { class: 'muted', id: 'importance-rule' }), el('div', { class: 'card chart' }, impCanvas), impTable)),
      el('h2', {}, 'Coefficients × LR × seed → validation CE'), el('p', { class: 'muted' }, 'Parallel coordinates: one line per finished trial, each axis scaled to its range (log for LR and coefficients), coloured by validation CE (dark = low).'),
      el('div', { class: 'card chart' }, parCanvas),
      lambdaHead, lambdaBox,
      el('h2', {}, 'The mechanism against the learning rate'), el('p', { class: 'muted' }, 'Each run\'s last report (a diverged run\'s last finite one, ✕) against its peak LR.'), mechBox,
      el('h2', {}, 'Trials'), tableBox);

    const renderHead = () => {
      const c = sweep.trial_counts;
      const links = [];
      if (sweep.links.dashboard) links.push(el('a', { href: sweep.links.dashboard, target: '_blank', rel: 'noopener', id: 'link-dashboard' }, 'Ray dashboard job'));
      if (sweep.links.grafana) links.push(el('a', { href: sweep.links.grafana, target: '_blank', rel: 'noopener', id: 'link-grafana' }, 'Grafana'));
      const dl = (label, path, query) => el('button', { class: 'link', 'data-download': label, onclick: () => download(path, query).catch(showError) }, label);
      const base = `sweeps/${encodeURIComponent(sweep.id)}`;
      const downloads = [dl('report.html', `${base}/report`, { format: 'html' }), dl('report.md', `${base}/report`, { format: 'md' }),
        dl('report.json', `${base}/report`, { format: 'json' }), dl('best-config.yaml', `${base}/best-config`, { format: 'yaml' }),
        dl('best-config.json', `${base}/best-config`, { format: 'json' }), dl('trials.csv', `${base}/trials`, { format: 'csv' }),
        dl('trials.parquet', `${base}/trials`, { format: 'parquet' })];
      const cancel = sweep.can_cancel && !ended(sweep)
        ? el('button', { class: 'danger', id: 'cancel', onclick: (ev) => {
          if (ev.target.dataset.armed) cancelSweep(); else { ev.target.dataset.armed = '1'; ev.target.textContent = 'Confirm: cancel this sweep'; }
        } }, 'Cancel sweep') : null;
      head.replaceChildren(
        el('div', { class: 'row' }, el('h1', { id: 'sweep-name' }, sweep.name), badge(sweep.status), cancel),
        el('p', { class: 'muted' }, el('code', {}, sweep.id), ` · owner ${sweep.owner}`, sweep.preset ? ` · preset ${sweep.preset}` : '', ` · ${sweep.message}`),
        el('div', { class: 'stats' },
          [['trials', `${Object.values(c).reduce((a, b) => a + b, 0)} / ${sweep.num_trials ?? '?'}`],
            ['best val CE', sweep.best ? `${fmt(sweep.best.val_loss)} (${sweep.best.method})` : '–'],
            ['tokens', fmtTokens(sweep.tokens)], ['elapsed', duration(sweep.elapsed_s)],
            ['time left (est.)', ended(sweep) ? '–' : duration(sweep.eta_s)], ['submitted', age(sweep.created_at)]]
            .map(([k, v]) => el('div', { class: 'stat' }, el('b', {}, v), el('span', {}, k)))),
        el('p', {}, countsText(c)),
        el('p', { class: 'links' }, links, el('span', { class: 'muted' }, 'Downloads: '), downloads));
    };

    async function cancelSweep() {
      try {
        sweep = await api(`sweeps/${encodeURIComponent(sweep.id)}/cancel`, { method: 'POST' });
        sweep = await api(`sweeps/${encodeURIComponent(sweep.id)}`);
        renderHead();
      } catch (e) { showError(e); }
    }
    window.lossweepUI.cancel = cancelSweep;

    // Live curves: each trial's rows after the last step seen (the metrics endpoint's since_step).
    const curves = chart(curvesCanvas, {
      type: 'scatter', data: { datasets: [] },
      options: baseOptions({
        scales: { x: { type: 'linear', title: { display: true, text: 'training tokens' } }, y: linY('validation CE (nats)') },
        plugins: { legend: { position: 'bottom', labels: { boxWidth: 12, filter: (item, data) => data.datasets[item.datasetIndex].legend } } },
      }),
    });
    const seen = {}; // trial id -> {last, dataset, done}
    const divergedSet = { label: 'diverged', legend: true, data: [], pointStyle: 'crossRot', pointRadius: 9, pointBorderWidth: 3, borderColor: '#b22222', backgroundColor: '#b22222', showLine: false };
    curves.data.datasets.push(divergedSet);
    const methodsShown = new Set();
    let points = 0;
    const known = await statuses();
    const finalStatuses = new Set(known.trial_final);
    const liveStatuses = new Set(known.trial.filter((st) => !finalStatuses.has(st)));
    let trials = [];
    let report = null;

    async function pollCurves() {
      for (const t of trials) {
        const s = seen[t.trial_id] || (seen[t.trial_id] = { last: null, done: false, lastVal: null, dataset: null });
        if (s.done) continue;
        const m = await api(`sweeps/${encodeURIComponent(sweep.id)}/trials/${encodeURIComponent(t.trial_id)}/metrics`, { query: { since_step: s.last ?? undefined } });
        if (!s.dataset) {
          const first = !methodsShown.has(t.method);
          methodsShown.add(t.method);
          s.dataset = { label: t.method, legend: first, trial: t.trial_id, data: [], showLine: true, borderWidth: 1.5, pointRadius: 1.5,
            borderColor: colorOf(t.method), backgroundColor: colorOf(t.method) };
          curves.data.datasets.splice(curves.data.datasets.length - 1, 0, s.dataset);
        }
        for (const r of m.rows) {
          const v = r.val_loss;
          const finite = typeof v === 'number' && Number.isFinite(v) && !r.diverged;
          if (finite && r.tokens !== null && r.tokens !== undefined) { s.dataset.data.push({ x: r.tokens, y: v }); s.lastVal = v; points += 1; }
          if (r.diverged) divergedSet.data.push({ x: r.tokens, y: s.lastVal ?? v, trial: t.trial_id });
        }
        s.last = m.last_step;
        if (!liveStatuses.has(t.status)) s.done = true;
      }
      curves.update('none');
      curvesCanvas.dataset.points = String(points);
      curvesCanvas.dataset.trials = String(Object.keys(seen).length);
    }

    // The trial table, sortable by any column.
    let sortKey = 'trial_id';
    let sortDir = 1;
    function renderTable() {
      const coefs = [...new Set((report ? report.trials : []).flatMap((t) => Object.keys(t.coefficients || {})))];
      const sized = trials.some((t) => t.model);  // the model size is an axis of the sweep
      const cols = [['trial_id', 'trial'], ['method', 'method'], ...(sized ? [['model', 'size']] : []), ['lr', 'lr'], ...coefs.map((c) => [c, c]), ['seed', 'seed'], ['status', 'status'],
        ['stage', 'stage'], ['final_val_loss', 'final val CE'], ['best_val_loss', 'best val CE'], ['test_ce', 'test CE ± SE'], ['steps', 'steps'], ['tokens', 'tokens'], ['diverged_step', 'diverged at']];
      const numeric = (v) => typeof v === 'number';
      const rows = [...trials].sort((a, b) => {
        const x = a[sortKey]; const y = b[sortKey];
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (numeric(x) && numeric(y) ? x - y : String(x).localeCompare(String(y))) * sortDir;
      });
      const cell = (t, k) => {
        const v = t[k];
        if (k === 'lr' || coefs.includes(k)) return el('td', { class: 'num' }, v === null || v === undefined ? '–' : Number(v).toPrecision(3));
        if (k.endsWith('val_loss')) return el('td', { class: 'num' }, fmt(v));
        if (k === 'test_ce') return el('td', { class: 'num' }, v === null || v === undefined ? '–' : `${fmt(v)} ± ${fmt(t.test_ce_se)}`);
        if (k === 'tokens') return el('td', { class: 'num' }, fmtTokens(v));
        if (k === 'diverged_step') return el('td', { class: 'num' }, v !== null && v >= 0 ? `${v} (${t.diverged_cause || ''})` : '');
        return el('td', {}, v === null || v === undefined ? '–' : String(v));
      };
      tableBox.replaceChildren(el('table', {},
        el('thead', {}, el('tr', {}, cols.map(([k, label]) => el('th', {
          class: `sortable${k === sortKey ? (sortDir > 0 ? ' sorted-asc' : ' sorted-desc') : ''}`, 'data-key': k,
          onclick: () => { if (sortKey === k) sortDir = -sortDir; else { sortKey = k; sortDir = 1; } renderTable(); },
        }, label)))),
        el('tbody', {}, rows.map((t) => el('tr', { class: t.status === 'DIVERGED' ? 'diverged' : '', 'data-trial': t.trial_id }, cols.map(([k]) => cell(t, k)))))));
    }

    // Report-derived views: LR sensitivity, importance, parallel coordinates, mechanism.
    let lrsChart = null; let impChart = null; let parChart = null; const mechCharts = {};
    // Every comparison with its n, interval and verdict: the confirm stage's when the sweep has one.
    const ci = (m, lo, hi, sign = '') => (m === null || m === undefined ? '–'
      : `${sign && m >= 0 ? '+' : ''}${fmt(m)}${lo !== null && lo !== undefined ? ` [${sign && lo >= 0 ? '+' : ''}${fmt(lo)}, ${sign && hi >= 0 ? '+' : ''}${fmt(hi)}]` : ''}`);
    const powerText = (c) => (c.mde === null || c.mde === undefined ? 'needs ≥ 2 seeds'
      : `resolves ≥ ${Number(c.mde).toPrecision(3)}${c.verdict === 'not resolved' ? (c.seeds_needed ? `; ${c.seeds_needed} seeds for this Δ` : '; this Δ needs > 10000 seeds') : ''}`);
    const verdictCell = (v) => el('td', { class: `verdict ${v === 'better' || v === 'worse' ? v : 'unresolved'}` }, v || '');
    function renderEvidence() {
      const confirm = report.confirm || { configs: [] };
      const measured = report.measured || 'validation CE';
      if (confirm.configs.length) {
        const best = confirm.best;
        evidenceBox.replaceChildren(el('h2', {}, 'Confirmed on fresh seeds'),
          el('p', { class: 'muted' }, `Each method's best configuration re-trained on seeds the search never used; Δ is paired on the seed against the baseline. ${report.statistics.verdict}.`),
          best ? el('p', { id: 'confirmed-best' }, `Best confirmed: ${best.label}, ${ci(best.mean, best.low, best.high)} (${measured}, n = ${best.n}).`) : null,
          el('div', { class: 'table-wrap' }, el('table', { id: 'confirm-table' },
            el('thead', {}, el('tr', {}, ['configuration', 'n', `${measured} [95% CI]`, 'Δ vs baseline [95% CI]', 'p', 'verdict', 'power'].map((h) => el('th', {}, h)))),
            el('tbody', {}, confirm.configs.map((c) => { const d = c.comparison; return el('tr', {},
              el('td', {}, c.label), el('td', { class: 'num' }, String(c.n)), el('td', { class: 'num' }, ci(c.mean, c.low, c.high)),
              el('td', { class: 'num' }, d ? ci(d.mean, d.low, d.high, '+') : 'reference'), el('td', { class: 'num' }, d && d.p !== null ? Number(d.p).toPrecision(2) : ''),
              d ? verdictCell(d.verdict) : el('td', {}), el('td', {}, d ? powerText(d) : '')); })))));
        return;
      }
      const rows = (report.paired_deltas && report.paired_deltas.rows) || [];
      if (!rows.length) { evidenceBox.replaceChildren(); return; }
      evidenceBox.replaceChildren(el('h2', {}, 'Against the baseline (search seeds)'),
        el('p', { class: 'muted' }, `Paired on seed and learning rate; these seeds also chose the configurations, so add a confirm stage before trusting a winner. ${report.statistics.verdict}.`),
        el('div', { class: 'table-wrap' }, el('table', { id: 'delta-table' },
          el('thead', {}, el('tr', {}, ['method', 'lr', 'n', `Δ ${measured} [95% CI]`, 'p', 'verdict', 'power'].map((h) => el('th', {}, h)))),
          el('tbody', {}, rows.map((d) => el('tr', {}, el('td', {}, d.label), el('td', { class: 'num' }, String(d.lr)), el('td', { class: 'num' }, String(d.n_pairs)),
            el('td', { class: 'num' }, ci(d.delta_mean, d.delta_low, d.delta_high, '+')), el('td', { class: 'num' }, d.p !== null ? Number(d.p).toPrecision(2) : ''),
            verdictCell(d.verdict), el('td', {}, powerText(d))))))));
    }
    // Zero-shot accuracy of the evaluated trials, and each method's per-seed gain over the baseline.
    // A sweep over model sizes: per size and method, ours beside the paper's runs at the same size.
    function renderSizes() {
      const section = report.sizes;
      if (!section || !section.rows.length) { sizesBox.replaceChildren(); return; }
      const lr = (v) => (v === null || v === undefined ? '–' : Number(v).toPrecision(2));
      sizesBox.replaceChildren(el('h2', {}, 'Across model sizes'),
        el('p', { class: 'muted' }, `${section.rule}. ${section.paper_note}.`),
        el('div', { class: 'table-wrap' }, el('table', { id: 'sizes-table' },
          el('thead', {}, el('tr', {}, ['size', 'method', 'seeds', 'LRS [95% CI]', 'paper LRS', 'best LR', 'best loss', 'paper best LR', 'paper best loss'].map((h) => el('th', {}, h)))),
          el('tbody', {}, section.rows.map((r) => el('tr', { 'data-size': r.model },
            el('td', {}, r.paper_size ? `${r.model} (${r.paper_size})` : r.model), el('td', {}, r.method), el('td', { class: 'num' }, String(r.n_seeds)),
            el('td', { class: 'num' }, ci(r.lrs, r.lrs_low, r.lrs_high)), el('td', { class: 'num' }, fmt(r.paper_lrs, 3)),
            el('td', { class: 'num' }, lr(r.best_lr)), el('td', { class: 'num' }, fmt(r.best_loss, 3)),
            el('td', { class: 'num' }, lr(r.paper_best_lr)), el('td', { class: 'num' }, fmt(r.paper_best_loss, 3))))))));
    }
    function renderDownstream() {
      const section = report.downstream || { tasks: [], rows: [] };
      if (!section.rows || !section.rows.length) { downstreamBox.replaceChildren(); return; }
      const score = (s) => (s ? `${Number(s.acc).toFixed(3)} ± ${fmt(s.acc_se)} (n=${s.n})` : '—');
      const paired = section.paired || [];
      downstreamBox.replaceChildren(el('h2', {}, 'Downstream accuracy'),
        el('p', { class: 'muted' }, 'Zero-shot accuracy ± its standard error per task (lm-evaluation-harness).'),
        el('div', { class: 'table-wrap' }, el('table', { id: 'downstream-table' },
          el('thead', {}, el('tr', {}, ['trial', 'method', 'lr', 'seed', 'best val CE', ...section.tasks, 'evaluation'].map((h) => el('th', {}, h)))),
          el('tbody', {}, section.rows.map((r) => el('tr', { 'data-trial': r.trial_id }, el('td', {}, r.trial_id), el('td', {}, r.method),
            el('td', { class: 'num' }, r.lr === null ? '–' : Number(r.lr).toPrecision(3)), el('td', { class: 'num' }, String(r.seed)),
            el('td', { class: 'num' }, fmt(r.best_val_loss)), ...section.tasks.map((t) => el('td', { class: 'num' }, score(r.scores[t]))),
            el('td', {}, r.eval_error || r.eval_status || '')))))),
        paired.length ? el('p', { class: 'muted' }, `Per-seed differences against the baseline: ${section.rule}.`) : null,
        paired.length ? el('div', { class: 'table-wrap' }, el('table', { id: 'downstream-paired' },
          el('thead', {}, el('tr', {}, ['task', 'method', 'n', 'accuracy gain [95% CI]', 'p', 'verdict'].map((h) => el('th', {}, h)))),
          el('tbody', {}, paired.map((d) => el('tr', {}, el('td', {}, d.task), el('td', {}, d.method), el('td', { class: 'num' }, String(d.n)),
            el('td', { class: 'num' }, ci(d.mean, d.low, d.high, '+')), el('td', { class: 'num' }, d.p !== null && d.p !== undefined ? Number(d.p).toPrecision(2) : ''),
            verdictCell(d.verdict)))))) : null);
    }
    // λ robustness with its spread: per grid-swept coefficient, loss against λ, one line per learning rate.
    const lambdaCharts = {};
    const lrPalette = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'];
    function renderLambda() {
      const heat = (report.lambda_robustness && report.lambda_robustness.heatmaps) || {};
      const swept = Object.entries(heat).filter(([, m]) => m.kind === 'grid' && m.col === 'lr');
      lambdaHead.hidden = !swept.length;
      const seenMethods = new Set();
      for (const [method, matrix] of swept) {
        seenMethods.add(method);
        const coef = matrix.row;
        const fams = report.lr_sensitivity.families.filter((f) => f.method === method && f.coefficients && f.coefficients[coef] > 0);
        const byLr = {};
        for (const f of fams) for (const c of f.cells || []) (byLr[c.lr] = byLr[c.lr] || []).push({ x: f.coefficients[coef], c });
        const lrs = Object.keys(byLr).map(Number).sort((a, b) => a - b);
        const sets = lrs.flatMap((lr, i) => {
          const color = lrPalette[i % lrPalette.length];
          const pts = byLr[lr].sort((a, b) => a.x - b.x);
          const ci = pts.filter((p) => p.c.low !== null && p.c.high !== null);
          return [{ label: `lr ${lr}`, data: pts.map((p) => ({ x: p.x, y: p.c.mean })), showLine: true, borderColor: color, backgroundColor: color, pointRadius: 3, borderWidth: 1.5 },
            { label: `lr ${lr} seeds`, seeds: true, data: pts.flatMap((p) => Object.values(p.c.seeds || {}).map((y) => ({ x: p.x, y }))), pointRadius: 2.5, borderColor: color, backgroundColor: `${color}99` },
            { label: `lr ${lr} CI low`, band: true, data: ci.map((p) => ({ x: p.x, y: p.c.low })), showLine: true, pointRadius: 0, borderWidth: 0, borderColor: 'transparent' },
            { label: `lr ${lr} CI high`, band: true, data: ci.map((p) => ({ x: p.x, y: p.c.high })), showLine: true, pointRadius: 0, borderWidth: 0, borderColor: 'transparent', fill: '-1', backgroundColor: `${color}33` }];
        }).filter((d) => !d.band || d.data.length >= 2);
        if (!lambdaCharts[method]) {
          const canvas = el('canvas', { 'data-method': method });
          lambdaBox.append(el('div', { class: 'card chart' }, canvas));
          const legend = { position: 'bottom', labels: { boxWidth: 10, filter: (item, data) => !data.datasets[item.datasetIndex].band && !data.datasets[item.datasetIndex].seeds } };
          lambdaCharts[method] = { canvas, chart: chart(canvas, { type: 'scatter', data: { datasets: sets }, options: baseOptions({ plugins: { legend, title: { display: true, text: `${method}: ${coef}` } }, scales: { x: logX(coef), y: linY('final loss') } }) }) };
        } else { lambdaCharts[method].chart.data.datasets = sets; lambdaCharts[method].chart.update('none'); }
        const { canvas } = lambdaCharts[method];
        canvas.dataset.lines = String(lrs.length);
        canvas.dataset.points = String(sets.filter((d) => d.seeds).reduce((n, d) => n + d.data.length, 0));
        canvas.dataset.bands = String(sets.filter((d) => d.band).length / 2);
      }
    }
    function renderReport() {
      if (!report) return;
      colors = { ...colors, ...(report.mechanism.colors || {}) };
      for (const s of Object.values(seen)) if (s.dataset) { s.dataset.borderColor = s.dataset.backgroundColor = colorOf(s.dataset.label); }
      curves.update('none');
      reportNote.textContent = report.missing.length ? `Not shown yet: ${report.missing.join('; ')}.` : '';
      const rows = report.mechanism.rows;
      // Runs against their LR, a dataset per method (per size and method in a sweep over model sizes) and
      // one for its diverged runs (✕); the colour is the method's.
      const groupOf = (r) => (r.model ? `${r.model} · ${r.method}` : r.method);
      const runSets = (runs, y, diverged) => [...new Set(runs.map(groupOf))].flatMap((g) => {
        const group = runs.filter((r) => groupOf(r) === g);
        const m = group[0].method;
        const mine = group.filter((r) => y(r) !== null && y(r) !== undefined);
        return [{ label: g, data: mine.filter((r) => !diverged(r)).map((r) => ({ x: r.lr, y: y(r) })), backgroundColor: colorOf(m), borderColor: colorOf(m), pointRadius: 4 },
          { label: `${g} diverged`, data: mine.filter(diverged).map((r) => ({ x: r.lr, y: y(r) })), pointStyle: 'crossRot', pointRadius: 8, pointBorderWidth: 2, borderColor: colorOf(m), backgroundColor: colorOf(m) }];
      }).filter((d) => d.data.length);
      const scatterSets = (key) => runSets(rows, (r) => r[key], (r) => r.diverged);
      // LR sensitivity: every finished run, and a line per family that ran at two or more LRs.
      const families = report.lr_sensitivity.families.filter((f) => f.K >= 2 && f.lrs_grid && f.lrs_grid.length >= 2);
      const band = (f, key) => (f.cells || []).filter((c) => c.low !== null && c.high !== null).map((c) => ({ x: c.lr, y: c[key] }));
      // Every finished run at the loss the analysis counts for it (report.measured), as the family lines are.
      const lrsSets = [...runSets(report.trials, (t) => t.measured, (t) => t.status === 'DIVERGED'), ...families.flatMap((f) => [{
        label: f.label || f.method, family: true, data: f.lrs_grid.map((x, i) => ({ x, y: f.losses[i] })), showLine: true, pointRadius: 0, borderWidth: 1.5,
        borderColor: colorOf(f.method), backgroundColor: colorOf(f.method) },
      // The 95% interval of the seed mean: a lower edge, then an upper edge filled down to it.
      { label: `${f.label || f.method} CI low`, family: true, band: true, data: band(f, 'low'), showLine: true, pointRadius: 0, borderWidth: 0, borderColor: 'transparent' },
      { label: `${f.label || f.method} CI high`, family: true, band: true, data: band(f, 'high'), showLine: true, pointRadius: 0, borderWidth: 0, borderColor: 'transparent',
        fill: '-1', backgroundColor: `${colorOf(f.method)}33` }]).filter((d) => !d.band || d.data.length >= 2)];
      // One legend entry per method: not its diverged markers, not its family lines (same colour).
      const noDiverged = { position: 'bottom', labels: { boxWidth: 10, filter: (item, data) => !item.text.endsWith(' diverged') && !data.datasets[item.datasetIndex].family } };
      if (!lrsChart) lrsChart = chart(lrsCanvas, { type: 'scatter', data: { datasets: lrsSets }, options: baseOptions({ plugins: { legend: noDiverged }, scales: { x: logX('peak learning rate'), y: linY(`final ${report.measured}`) } }) });
      else { lrsChart.data.datasets = lrsSets; lrsChart.update('none'); }
      lrsCanvas.dataset.series = String(lrsSets.filter((d) => !d.band).length);
      lrsCanvas.dataset.bands = String(lrsSets.filter((d) => d.band).length / 2);
      renderEvidence();
      renderSizes();
      renderDownstream();
      renderLambda();
      // Importance.
      const imp = report.importance;
      document.getElementById('importance-rule').textContent = `Optuna's ${imp.evaluator} over ${imp.n_trials} finished trials; objective: ${imp.objective}.${imp.missing.length ? ' ' + imp.missing.join('; ') + '.' : ''}`;
      const impData = { labels: imp.overall.map((r) => r.param), datasets: [{ label: 'all trials', data: imp.overall.map((r) => r.importance), backgroundColor: '#2f5fd0' }] };
      if (!impChart) impChart = chart(impCanvas, { type: 'bar', data: impData, options: { ...baseOptions(), parsing: true, indexAxis: 'y', scales: { x: { min: 0, max: 1, title: { display: true, text: 'importance (sums to 1)' } } } } });
      else { impChart.data = impData; impChart.update('none'); }
      impCanvas.dataset.params = String(imp.overall.length);
      impTable.replaceChildren(...Object.entries(imp.per_method).map(([m, e]) => el('p', { class: 'muted' }, el('b', {}, m), ` (${e.n_trials} trials): `, e.importances.map((r) => `${r.param} ${r.importance.toFixed(2)}`).join(', '))));
      // Parallel coordinates over finished trials.
      const done = report.trials.filter((t) => t.final_val_loss !== null && finalStatuses.has(t.status));
      const coefs = [...new Set(done.flatMap((t) => Object.keys(t.coefficients || {})))];
      const methodIndex = [...new Set(done.map((t) => t.method))];
      const candidates = [['method', (t) => methodIndex.indexOf(t.method), false], ['lr', (t) => t.lr, true],
        ...coefs.map((c) => [c, (t) => (t.coefficients || {})[c], true]), ['seed', (t) => t.seed, false], ['val CE', (t) => t.final_val_loss, false]];
      const rangeOf = ([, get, log]) => {
        const vs = done.map(get).filter((v) => v !== null && v !== undefined && (!log || v > 0)).map((v) => (log ? Math.log10(v) : v));
        return [Math.min(...vs), Math.max(...vs)];
      };
      // An axis on which every trial sits at one value says nothing: only the objective's is always kept.
      const axes = candidates.filter((a, i) => i === candidates.length - 1 || rangeOf(a)[1] > rangeOf(a)[0]);
      const ranges = axes.map(rangeOf);
      const norm = (i, v, log) => {
        if (v === null || v === undefined) return null;
        const x = log ? Math.log10(v) : v; const [lo, hi] = ranges[i];
        return hi > lo ? (x - lo) / (hi - lo) : 0.5;
      };
      const [vlo, vhi] = ranges[ranges.length - 1];
      const shade = (v) => { const f = vhi > vlo ? (v - vlo) / (vhi - vlo) : 0; return `hsl(${220 - 180 * f}, 70%, ${30 + 30 * f}%)`; };
      const label = (i) => {
        const [name, , log] = axes[i]; const [lo, hi] = ranges[i];
        if (name === 'method') return [name, methodIndex.join(' · ')];
        if (!Number.isFinite(lo)) return [name, '–'];
        const show = (x) => (log ? Number(10 ** x).toExponential(0) : Number(x).toPrecision(3));
        return [name, `${show(lo)} … ${show(hi)}`];
      };
      const parData = { labels: axes.map((_, i) => label(i)), datasets: done.map((t) => ({
        label: `${t.trial_id} ${t.method}`, data: axes.map(([, get, log], i) => norm(i, get(t), log)), borderColor: shade(t.final_val_loss),
        backgroundColor: shade(t.final_val_loss), borderWidth: 1.5, pointRadius: 2, spanGaps: false, borderDash: t.status === 'DIVERGED' ? [4, 3] : [] })) };
      const parOptions = { ...baseOptions(), parsing: true, plugins: { legend: { display: false } }, scales: { y: { min: 0, max: 1, ticks: { display: false } } } };
      if (!parChart) parChart = chart(parCanvas, { type: 'line', data: parData, options: parOptions });
      else { parChart.data = parData; parChart.update('none'); }
      parCanvas.dataset.lines = String(done.length);
      // Mechanism: one small chart per diagnostic.
      for (const [key, title] of Object.entries(report.mechanism.metrics)) {
        const sets = scatterSets(key);
        if (!mechCharts[key]) {
          const canvas = el('canvas', { 'data-metric': key });
          mechBox.append(el('div', { class: 'card' }, el('b', {}, title), el('div', { class: 'chart small' }, canvas)));
          mechCharts[key] = chart(canvas, { type: 'scatter', data: { datasets: sets }, options: baseOptions({ plugins: { legend: { display: key === 'mu_norm', ...noDiverged } }, scales: { x: logX('peak learning rate'), y: { type: 'linear' } } }) });
        } else { mechCharts[key].data.datasets = sets; mechCharts[key].update('none'); }
        mechCharts[key].canvas.dataset.points = String(sets.reduce((n, d) => n + d.data.length, 0));
      }
    }

    const hasResults = () => Boolean(sweep.started_at) || Object.values(sweep.trial_counts).some((n) => n > 0);
    async function loadReport() {
      if (!hasResults()) return;
      try {
        report = await api(`sweeps/${encodeURIComponent(sweep.id)}/report`, { query: { format: 'json' } });
        renderReport();
        renderTable();
      } catch (e) { reportNote.textContent = `report not available yet: ${e.message}`; }
    }

    async function refresh() {
      const wasEnded = ended(sweep);
      sweep = await api(`sweeps/${encodeURIComponent(sweep.id)}`);
      renderHead();
      if (hasResults()) {
        trials = (await api(`sweeps/${encodeURIComponent(sweep.id)}/trials`)).trials;
        renderTable();
        await pollCurves();
      }
      if (ended(sweep) && !wasEnded) await loadReport();
      return !ended(sweep);
    }

    renderHead();
    renderTable();
    const live = await refresh();
    await loadReport();
    view.dataset.ready = '1';
    if (live) {
      every(POLL_MS, refresh);
      every(REPORT_POLL_MS, async () => { await loadReport(); return !ended(sweep); });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Submit page
  // ---------------------------------------------------------------------------------------------
  // The line of a YAML document that holds the value at ``path`` (keys and list indices), for placing an
  // error beside it; the nearest enclosing line when the exact one cannot be found.
  function lineOf(text, path) {
    const lines = text.split('\n');
    let start = 0; let end = lines.length; let indent = -1; let found = 0;
    const indentOf = (s) => s.length - s.trimStart().length;
    for (const key of path) {
      let hit = -1;
      if (typeof key === 'number' || /^\d+$/.test(String(key))) {
        let n = -1;
        for (let i = start; i < end; i++) {
          if (/^\s*- /.test(lines[i]) && indentOf(lines[i]) >= indent) { n += 1; if (n === Number(key)) { hit = i; break; } }
        }
      } else {
        const re = new RegExp(`^\\s*(- )?${String(key).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:(\\s|$)`);
        for (let i = start; i < end; i++) if (re.test(lines[i]) && indentOf(lines[i]) > indent) { hit = i; break; }
      }
      if (hit < 0) break;
      found = hit; indent = indentOf(lines[hit]); start = hit + 1;
      let stop = start;
      while (stop < end && (lines[stop].trim() === '' || indentOf(lines[stop]) > indent || /^\s*- /.test(lines[stop]) && indentOf(lines[stop]) === indent && !/^\s*- /.test(lines[hit]))) stop += 1;
      end = stop;
    }
    return found;
  }

  async function submitView() {
    if (!state.me) { view.replaceChildren(el('p', { class: 'notice' }, 'Submitting needs an API token: paste one at the top right.')); return; }
    const presets = await api('presets');
    const select = el('select', { id: 'preset' }, presets.map((p) => el('option', { value: p.name }, `${p.name} (${p.num_trials ?? '?'} trials)`)));
    const description = el('p', { class: 'muted', id: 'preset-description' });
    const text = el('textarea', { id: 'spec', spellcheck: 'false', 'aria-label': 'sweep spec (YAML)' });
    const gutter = el('div', { class: 'gutter', id: 'errors-beside' });
    const list = el('ul', { class: 'errors-list', id: 'errors' });
    const status = el('p', { id: 'submit-status', class: 'muted' });
    const submit = el('button', { class: 'primary', id: 'submit' }, 'Submit sweep');
    view.replaceChildren(el('h1', {}, 'Submit a sweep'),
      el('div', { class: 'row' }, el('label', {}, 'Start from preset ', select), submit, status), description, list,
      el('div', { class: 'editor' }, text, gutter));
    const lineHeight = 18;
    let marks = [];
    const place = () => { for (const [node, line] of marks) node.style.top = `${8 + line * lineHeight - text.scrollTop}px`; };
    text.addEventListener('scroll', place);
    const clear = () => { marks = []; gutter.replaceChildren(); list.replaceChildren(); };
    const showErrors = (items) => {
      clear();
      for (const item of items) {
        const path = (item.loc || []).filter((p, i) => !(i === 0 && p === 'body'));
        const line = item.line ?? lineOf(text.value, path);
        const field = item.field || path.join('.');
        const node = el('div', { class: 'field-error', 'data-field': field, 'data-line': String(line + 1), title: `${field}: ${item.message}` }, `${field}: ${item.message}`);
        gutter.append(node);
        marks.push([node, line]);
        list.append(el('li', {}, `line ${line + 1} · ${field || 'spec'}: ${item.message}`));
      }
      place();
    };
    const load = async () => {
      clear();
      const p = await api(`presets/${encodeURIComponent(select.value)}`);
      description.textContent = p.description;
      text.value = jsyaml.dump(p.spec, { lineWidth: 120, noRefs: true, sortKeys: false });
    };
    select.addEventListener('change', () => load().catch(showError));
    submit.addEventListener('click', async () => {
      let body;
      try { body = jsyaml.load(text.value); } catch (e) {
        showErrors([{ loc: [], field: 'yaml', message: e.reason || e.message, line: e.mark ? e.mark.line : 0 }]);
        return;
      }
      submit.disabled = true;
      status.textContent = 'submitting…';
      try {
        const sweep = await api('sweeps', { method: 'POST', body });
        location.hash = `#/sweeps/${encodeURIComponent(sweep.id)}`;
      } catch (e) {
        status.textContent = e instanceof ApiError ? `${e.status} ${e.body.error || ''}: ${e.message}` : String(e);
        showErrors((e.body && e.body.errors) || []);
      } finally { submit.disabled = false; }
    });
    await load();
    view.dataset.ready = '1';
  }

  // ---------------------------------------------------------------------------------------------
  // Routing
  // ---------------------------------------------------------------------------------------------
  async function route() {
    for (const stop of state.cleanup.splice(0)) stop();
    delete view.dataset.ready;
    const hash = location.hash.replace(/^#/, '') || '/';
    const path = hash.split('?')[0];
    for (const a of document.querySelectorAll('[data-nav]')) a.classList.toggle('on', (a.dataset.nav === 'submit') === path.startsWith('/submit'));
    view.replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
    if (!state.readable) {
      view.replaceChildren(el('p', { class: 'notice', id: 'need-token' }, 'This service needs an API token to read sweeps: paste one at the top right (`lossweep token create NAME`).'));
      return;
    }
    try {
      const m = /^\/sweeps\/(.+)$/.exec(path);
      if (m) await sweepView(decodeURIComponent(m[1]));
      else if (path.startsWith('/submit')) await submitView();
      else await listView();
    } catch (e) {
      view.append(el('p', { class: 'error', id: 'page-error' }, e instanceof ApiError ? `${e.status}: ${e.message}` : String(e)));
      view.dataset.ready = 'error';
    }
  }

  async function start() {
    await loadAuth();
    await route();
  }

  window.lossweepUI = { api, lineOf };
  window.addEventListener('hashchange', route);
  start();
})();
