// ringtail dashboard: sources with counts, a log-volume chart (a Loki
// metric query drawn on a canvas) and a live tail over server-sent events.
// No library and nothing from the network but this ringtail's own API.
'use strict';

(() => {
  /** The most lines the page keeps: a 1M-entry ring never reaches the DOM. */
  const MAX_LINES = 2000;
  /** Lines of history shown when the tail (re)starts. */
  const BACKLOG = 200;
  /** Bars in the volume chart. */
  const BARS = 60;
  const REFRESH_MS = 5000;
  /** Forwarders' lag moves faster than the chart: refreshed more often. */
  const FWD_REFRESH_MS = 2000;

  const $ = (id) => document.getElementById(id);
  const state = {
    source: '',
    text: '',
    regex: false,
    paused: false,
    range: 900,
    token: sessionStorage.getItem('ringtail-token') || '',
    sources: [],
    /** Lines received while paused (at most MAX_LINES), and how many more. */
    held: [],
    heldDropped: 0,
    /** Entries waiting for the next animation frame. */
    incoming: [],
    frame: 0,
    lines: 0,
    received: 0,
    follow: null,
    chart: null,
  };

  // ---- colours: stable per source, readable on light and dark ----
  const PALETTE = [
    '#3b82f6', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4',
    '#ec4899', '#84cc16', '#f97316', '#6366f1', '#14b8a6', '#a855f7',
    '#eab308', '#0ea5e9', '#22c55e', '#e11d48',
  ];
  const colors = new Map();
  const used = new Set();
  /** A source keeps its colour for the life of the page; the first 16
   *  sources seen get 16 different ones (hash, then the next free). */
  function colorOf(name) {
    let c = colors.get(name);
    if (!c) {
      let h = 2166136261;
      for (let i = 0; i < name.length; i++) {
        h = Math.imul(h ^ name.charCodeAt(i), 16777619);
      }
      let i = (h >>> 0) % PALETTE.length;
      while (used.size < PALETTE.length && used.has(PALETTE[i])) i = (i + 1) % PALETTE.length;
      c = PALETTE[i];
      used.add(c);
      colors.set(name, c);
    }
    return c;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function swatch(name) {
    const s = el('span', 'swatch');
    s.style.background = colorOf(name);
    return s;
  }

  function compact(n) {
    if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + 'G';
    if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + 'M';
    if (n >= 1e4) return (n / 1e3).toFixed(n >= 1e5 ? 0 : 1) + 'k';
    return String(Math.round(n));
  }

  function setStatus(kind, text) {
    $('status').dataset.state = kind;
    $('status-text').textContent = text;
  }

  // ---- HTTP with the optional bearer token ----
  function headers(extra) {
    const h = Object.assign({}, extra);
    if (state.token) h.Authorization = 'Bearer ' + state.token;
    return h;
  }

  let asking = false;
  function askToken() {
    if (asking) return;
    asking = true;
    const d = $('token-dialog');
    d.showModal();
    d.addEventListener('close', () => {
      asking = false;
      const t = $('token-input').value.trim();
      if (t) {
        state.token = t;
        sessionStorage.setItem('ringtail-token', t);
        restart();
      }
    }, { once: true });
  }

  async function api(path) {
    const r = await fetch(path, { headers: headers(), cache: 'no-store' });
    if (r.status === 401) {
      askToken();
      throw new Error('this ringtail needs a token');
    }
    if (!r.ok) throw new Error((await r.text()).trim() || r.statusText);
    return r.json();
  }

  // ---- LogQL for the chart, from the same filters as the tail ----
  function logqlString(s) {
    if (!s.includes('`')) return '`' + s + '`';
    return '"' + s.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
  }

  function regexEscape(s) {
    return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }

  function selector() {
    const sel = state.source
      ? '{source=~' + logqlString(regexEscape(state.source).replace(/\\\*/g, '.*').replace(/\\\?/g, '.')) + '}'
      : '{source=~".+"}';
    if (!state.text) return sel;
    return sel + (state.regex ? ' |~ ' : ' |= ') + logqlString(state.text);
  }

  // ---- sources ----
  async function refreshSources() {
    let answer;
    try {
      answer = await api('/api/v1/sources');
    } catch (e) {
      $('ringinfo').textContent = String(e.message || e);
      return;
    }
    state.sources = answer.sources || [];
    const total = state.sources.reduce((a, s) => a + s.entries, 0);
    const rate = state.sources.reduce((a, s) => a + (s.rate_per_sec || 0), 0);
    $('ringinfo').textContent =
      `${total.toLocaleString()} entries in the ring · ${state.sources.length} sources · ` +
      `${rate >= 10 ? Math.round(rate).toLocaleString() : rate.toFixed(1)} lines/s`;
    renderSources();
    const dl = $('source-names');
    dl.replaceChildren(...state.sources.map((s) => {
      const o = document.createElement('option');
      o.value = s.source;
      return o;
    }));
  }

  function renderSources() {
    const q = $('source-search').value.trim().toLowerCase();
    const list = $('sources');
    const sorted = state.sources
      .filter((s) => !q || s.source.toLowerCase().includes(q))
      .sort((a, b) => b.entries - a.entries || a.source.localeCompare(b.source));
    const items = [];
    const all = el('li', 'all' + (state.source ? '' : ' on'));
    all.append(el('span'), el('span', 'name', 'All sources'),
      el('span', 'count', compact(state.sources.reduce((a, s) => a + s.entries, 0))));
    all.addEventListener('click', () => setSource(''));
    items.push(all);
    for (const s of sorted) {
      const li = el('li', s.source === state.source ? 'on' : '');
      li.title = `${s.source}\n${s.entries.toLocaleString()} entries, ${compact(s.bytes)}B` +
        `\nlast ${s.last_time}`;
      li.dataset.source = s.source;
      const count = el('span', 'count');
      count.append(el('b', null, compact(s.entries)));
      if (s.rate_per_sec >= 0.05) {
        count.append(' · ' + (s.rate_per_sec >= 10 ? Math.round(s.rate_per_sec) : s.rate_per_sec.toFixed(1)) + '/s');
      }
      li.append(swatch(s.source), el('span', 'name', s.source), count);
      li.addEventListener('click', () => setSource(s.source === state.source ? '' : s.source));
      items.push(li);
    }
    list.replaceChildren(...items);
    $('source-count').textContent = state.sources.length ? String(state.sources.length) : '';
  }

  function setSource(name) {
    state.source = name;
    $('f-source').value = name;
    renderSources();
    restart();
  }

  // ---- forwarders: each sink's state and lag, from /api/v1/stats ----
  const STATE_WORDS = {
    idle: 'caught up', sending: 'sending', backing_off: 'backing off', failed: 'failed', stopped: 'stopped',
  };

  function seconds(s) {
    if (s < 1) return s > 0 ? '<1 s' : '0 s';
    if (s < 120) return Math.round(s) + ' s';
    if (s < 7200) return Math.round(s / 60) + ' min';
    return (s / 3600).toFixed(1) + ' h';
  }

  function numCell(key, value, extra) {
    const td = el('td', 'num');
    td.dataset.k = key;
    td.dataset.v = String(value);
    td.append(el('span', 'n', value.toLocaleString('en-US')));
    if (extra) td.append(el('span', 'sub', extra));
    return td;
  }

  async function refreshForwarders() {
    let answer;
    try {
      answer = await api('/api/v1/stats');
    } catch (_) {
      return; // the source list shows why the API does not answer
    }
    const sinks = answer.sinks || [];
    $('forwarders').hidden = !sinks.length;
    if (!sinks.length) return;
    const behind = sinks.filter((s) => s.lag_entries > 0).length;
    $('fwd-sub').textContent = `${sinks.length} ${sinks.length === 1 ? 'sink' : 'sinks'}` +
      (behind ? ` · ${behind} behind` : ' · all caught up');
    $('fwd-rows').replaceChildren(...sinks.map((s) => {
      const tr = el('tr');
      tr.dataset.sink = s.name;
      tr.dataset.state = s.state;
      const name = el('td');
      name.append(el('span', 'sink', s.name));
      if (s.target) {
        const t = el('span', 'target', '→ ' + s.target);
        t.title = `${s.kind} → ${s.target}`;
        name.append(t);
      }
      const state = el('td');
      let word = STATE_WORDS[s.state] || s.state;
      if (s.state === 'backing_off' && s.retry_in_seconds != null) {
        word += `, retry in ${seconds(s.retry_in_seconds)}`;
      }
      const pill = el('span', 'pill', word);
      pill.dataset.state = s.state;
      if (s.last_error) pill.title = s.last_error;
      state.append(pill);
      const lag = numCell('lag-entries', s.lag_entries, s.lag_entries ? '· ' + seconds(s.lag_seconds) : '');
      lag.dataset.seconds = String(s.lag_seconds);
      lag.title = `${s.lag_entries.toLocaleString('en-US')} entries behind; the oldest not shipped is ${s.lag_seconds.toFixed(1)} s old`;
      const shipped = numCell('shipped', s.delivered_entries_total, compact(s.delivered_bytes_total) + 'B');
      if (s.rejected_total) {
        shipped.title = `refused for good: ${Object.entries(s.rejected_by_reason).map(([r, n]) => `${r} ${n}`).join(', ')}`;
      }
      const retries = numCell('retries', s.retries_total);
      const evicted = numCell('evicted', s.evicted_total);
      if (s.evicted_total) evicted.classList.add('bad');
      tr.append(name, state, lag, shipped, retries, evicted);
      return tr;
    }));
  }

  // ---- the volume chart ----
  async function refreshChart() {
    const range = state.range;
    const step = Math.max(1, Math.round(range / BARS));
    const now = Date.now() / 1000;
    // Points fall on multiples of the step; ending one step ahead puts the
    // newest entries in the last bar.
    const end = now + step;
    const start = end - range;
    const query = `sum by (source) (count_over_time(${selector()} [${step}s]))`;
    const url = '/loki/api/v1/query_range?' + new URLSearchParams({
      query, start: start.toFixed(3), end: end.toFixed(3), step: step + 's',
    });
    let answer;
    try {
      answer = await api(url);
      $('filter-error').hidden = true;
    } catch (e) {
      $('filter-error').textContent = String(e.message || e);
      $('filter-error').hidden = false;
      return;
    }
    const first = Math.floor(start / step) * step;
    const n = Math.floor((Math.floor(end / step) * step - first) / step) + 1;
    const series = answer.data.result.map((r) => {
      const values = new Float64Array(n);
      let total = 0;
      for (const [t, v] of r.values) {
        const i = Math.round((t - first) / step);
        if (i >= 0 && i < n) {
          values[i] = Number(v);
          total += Number(v);
        }
      }
      return { source: r.metric.source || '', values, total };
    }).sort((a, b) => b.total - a.total);
    state.chart = { first, step, n, series };
    drawChart();
    const total = series.reduce((a, s) => a + s.total, 0);
    $('chart-sub').textContent =
      `${total.toLocaleString()} entries in the last ${rangeLabel(range)}, ${step}s per bar` +
      (state.source || state.text ? ' · filtered' : '');
    renderLegend(series);
  }

  function rangeLabel(secs) {
    return secs >= 3600 ? secs / 3600 + 'h' : secs / 60 + ' min';
  }

  function renderLegend(series) {
    const legend = $('legend');
    const items = series.slice(0, 12).map((s) => {
      const item = el('span', 'item');
      item.append(swatch(s.source), s.source);
      item.title = `${s.total.toLocaleString()} entries — click to follow this source`;
      item.addEventListener('click', () => setSource(s.source));
      return item;
    });
    if (series.length > 12) items.push(el('span', 'muted', `+${series.length - 12} more`));
    legend.replaceChildren(...items);
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function timeLabel(secs, withSeconds) {
    const d = new Date(secs * 1000);
    const two = (x) => String(x).padStart(2, '0');
    return two(d.getHours()) + ':' + two(d.getMinutes()) + (withSeconds ? ':' + two(d.getSeconds()) : '');
  }

  const geometry = { left: 46, right: 8, top: 8, bottom: 22 };

  function drawChart() {
    const canvas = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (!w || !h) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const c = state.chart;
    const g = geometry;
    const pw = w - g.left - g.right;
    const ph = h - g.top - g.bottom;
    ctx.font = '11px ' + cssVar('--sans');
    ctx.textBaseline = 'middle';
    if (!c) return;
    const totals = new Float64Array(c.n);
    for (const s of c.series) for (let i = 0; i < c.n; i++) totals[i] += s.values[i];
    const max = niceMax(Math.max(0, ...totals));
    // Grid and y labels.
    ctx.strokeStyle = cssVar('--grid');
    ctx.fillStyle = cssVar('--muted');
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    for (let k = 0; k <= 4; k++) {
      const y = Math.round(g.top + ph - (ph * k) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(g.left, y);
      ctx.lineTo(g.left + pw, y);
      ctx.stroke();
      ctx.fillText(compact((max * k) / 4), g.left - 6, y);
    }
    // Stacked bars, the biggest sources at the bottom.
    const slot = pw / c.n;
    const barW = Math.max(1, slot * 0.78);
    let bars = 0;
    for (let i = 0; i < c.n; i++) {
      if (!totals[i]) continue;
      bars++;
      let y = g.top + ph;
      const x = g.left + i * slot + (slot - barW) / 2;
      for (const s of c.series) {
        const v = s.values[i];
        if (!v) continue;
        const bh = (v / max) * ph;
        ctx.fillStyle = colorOf(s.source);
        ctx.fillRect(x, y - bh, barW, Math.max(bh, 0.5));
        y -= bh;
      }
    }
    canvas.dataset.bars = String(bars);
    // Time labels.
    ctx.fillStyle = cssVar('--muted');
    ctx.textAlign = 'center';
    const ticks = Math.min(6, c.n);
    for (let k = 0; k < ticks; k++) {
      const i = Math.round((k * (c.n - 1)) / Math.max(1, ticks - 1));
      const x = g.left + i * slot + slot / 2;
      ctx.fillText(timeLabel(c.first + i * c.step, c.step < 60), Math.min(Math.max(x, g.left + 20), w - 24), h - g.bottom / 2 + 2);
    }
    if (!bars) {
      ctx.fillStyle = cssVar('--muted');
      ctx.font = '13px ' + cssVar('--sans');
      ctx.fillText('No entries in this range', g.left + pw / 2, g.top + ph / 2);
    }
  }

  function chartHover(ev) {
    const c = state.chart;
    const tip = $('tooltip');
    if (!c) return;
    const rect = $('chart').getBoundingClientRect();
    const x = ev.clientX - rect.left;
    const pw = rect.width - geometry.left - geometry.right;
    const i = Math.floor(((x - geometry.left) / pw) * c.n);
    const rows = i >= 0 && i < c.n ? c.series.filter((s) => s.values[i] > 0) : [];
    if (!rows.length) {
      tip.hidden = true;
      return;
    }
    const total = rows.reduce((a, s) => a + s.values[i], 0);
    const t = c.first + i * c.step;
    const head = el('div', 't', `${timeLabel(t - c.step, true)} – ${timeLabel(t, true)} · ${total.toLocaleString()} entries`);
    const list = rows.sort((a, b) => b.values[i] - a.values[i]).slice(0, 8).map((s) => {
      const row = el('div', 'row');
      row.append(swatch(s.source), el('span', null, s.source), el('span', 'n', s.values[i].toLocaleString()));
      return row;
    });
    tip.replaceChildren(head, ...list);
    tip.hidden = false;
    const left = Math.min(x + 14, rect.width - tip.offsetWidth - 4);
    tip.style.left = Math.max(4, left) + 'px';
    tip.style.top = '6px';
  }

  // ---- the live tail ----
  function followUrl() {
    const p = new URLSearchParams({ tail: String(BACKLOG) });
    if (state.source) p.set('source', state.source);
    if (state.text) p.set(state.regex ? 'regex' : 'contains', state.text);
    return '/api/v1/follow?' + p;
  }

  /** Reads an SSE stream with fetch (so that a bearer token can be sent),
   *  reconnecting with Last-Event-ID so that nothing is lost or repeated. */
  function startFollow() {
    const ctl = new AbortController();
    const run = { ctl, lastId: null, backoff: 500 };
    state.follow = run;
    (async () => {
      while (!ctl.signal.aborted) {
        try {
          const h = headers({ Accept: 'text/event-stream' });
          if (run.lastId !== null) h['Last-Event-ID'] = run.lastId;
          const r = await fetch(followUrl(), { headers: h, signal: ctl.signal, cache: 'no-store' });
          if (r.status === 401) {
            askToken();
            setStatus('error', 'needs a token');
            return;
          }
          if (!r.ok) {
            const msg = (await r.text()).trim();
            let text = msg;
            try { text = JSON.parse(msg).error || msg; } catch (_) { /* plain text */ }
            $('filter-error').textContent = text;
            $('filter-error').hidden = false;
            setStatus('error', 'refused');
            if (r.status === 400) return;
            throw new Error(text);
          }
          $('filter-error').hidden = true;
          setStatus(state.paused ? 'paused' : 'live', state.paused ? 'paused' : 'live');
          run.backoff = 500;
          await readEvents(r.body, run);
        } catch (e) {
          if (ctl.signal.aborted) return;
        }
        if (ctl.signal.aborted) return;
        setStatus('error', 'reconnecting…');
        await new Promise((res) => setTimeout(res, run.backoff));
        run.backoff = Math.min(run.backoff * 2, 10000);
      }
    })();
  }

  async function readEvents(body, run) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      // ringtail ends lines with \n; a lone \r is folded the same way.
      buf += value.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = 'message';
        let id = null;
        const data = [];
        for (const line of block.split('\n')) {
          if (!line || line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? '' : line.slice(colon + 1);
          if (val.startsWith(' ')) val = val.slice(1);
          if (field === 'event') event = val;
          else if (field === 'data') data.push(val);
          else if (field === 'id') id = val;
        }
        if (id !== null) run.lastId = id;
        if (!data.length) continue;
        let obj;
        try { obj = JSON.parse(data.join('\n')); } catch (_) { continue; }
        if (event === 'entry') receive({ kind: 'entry', e: obj });
        else if (event === 'gap') receive({ kind: 'gap', text: `missed ${obj.missed.toLocaleString()} entries (first seq ${obj.first_seq}): the ring evicted them before this page read them` });
        else if (event === 'reset') receive({ kind: 'gap', text: 'the daemon restarted with a fresh ring: starting over' });
      }
    }
  }

  function receive(item) {
    state.received++;
    if (state.paused) {
      state.held.push(item);
      if (state.held.length > MAX_LINES) {
        state.held.shift();
        state.heldDropped++;
      }
      updateInfo();
      return;
    }
    state.incoming.push(item);
    if (!state.frame) state.frame = requestAnimationFrame(flush);
  }

  function lineFor(item) {
    if (item.kind === 'gap') {
      const d = el('div', 'line gap');
      d.append(el('span', 'ts', timeOf(Date.now() * 1e6)), el('span', 'msg', item.text));
      return d;
    }
    const e = item.e;
    const d = el('div', 'line' + (e.stream === 'stderr' ? ' stderr' : ''));
    const src = el('span', 'src', e.source);
    src.style.color = colorOf(e.source);
    src.title = e.labels ? Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join('\n') : e.source;
    const msg = el('span', 'msg', e.msg);
    if (e.partial) msg.append(el('span', 'more', '↩ continues'));
    if (e.truncated) msg.append(el('span', 'more', '… cut'));
    d.title = `seq ${e.seq} · ${e.time}`;
    d.append(el('span', 'ts', timeOf(e.time_ns)), src, el('span', 'lvl ' + (e.level || ''), e.level || ''), msg);
    return d;
  }

  function timeOf(ns) {
    const ms = Number(ns) / 1e6;
    const d = new Date(ms);
    const two = (x) => String(x).padStart(2, '0');
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(Math.floor(ms % 1000)).padStart(3, '0')}`;
  }

  function atBottom(log) {
    return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  function flush() {
    state.frame = 0;
    const log = $('log');
    const stick = atBottom(log);
    const items = state.incoming.length > MAX_LINES ? state.incoming.slice(-MAX_LINES) : state.incoming;
    state.incoming = [];
    const empty = log.querySelector('.empty');
    if (empty && items.length) empty.remove();
    const frag = document.createDocumentFragment();
    for (const item of items) frag.append(lineFor(item));
    log.append(frag);
    state.lines += items.length;
    while (state.lines > MAX_LINES) {
      log.firstElementChild.remove();
      state.lines--;
    }
    if (stick) log.scrollTop = log.scrollHeight;
    $('jump').hidden = stick || atBottom(log);
    updateInfo();
  }

  function updateInfo() {
    const parts = [`${state.lines.toLocaleString()} lines shown (the newest ${MAX_LINES.toLocaleString()} are kept)`];
    if (state.paused) {
      parts.push(`paused: ${(state.held.length + state.heldDropped).toLocaleString()} new entries waiting`);
    }
    $('tail-info').textContent = parts.join(' · ');
  }

  function clearLog() {
    const log = $('log');
    log.replaceChildren(el('div', 'empty', 'Waiting for entries…'));
    state.lines = 0;
    state.incoming = [];
    updateInfo();
  }

  function setPaused(on) {
    state.paused = on;
    const b = $('pause');
    b.textContent = on ? 'Resume' : 'Pause';
    b.classList.toggle('paused', on);
    if (!on) {
      if (state.heldDropped) {
        state.incoming.push({ kind: 'gap', text: `${state.heldDropped.toLocaleString()} entries arrived while paused and are not shown (the newest ${MAX_LINES.toLocaleString()} are)` });
      }
      state.incoming.push(...state.held);
      state.held = [];
      state.heldDropped = 0;
      if (!state.frame) state.frame = requestAnimationFrame(flush);
      setStatus('live', 'live');
    } else {
      setStatus('paused', 'paused');
    }
    updateInfo();
  }

  function restart() {
    if (state.follow) state.follow.ctl.abort();
    state.held = [];
    state.heldDropped = 0;
    clearLog();
    setStatus('connecting', 'connecting');
    startFollow();
    if (state.paused) setStatus('paused', 'paused');
    refreshChart();
    refreshSources();
    refreshForwarders();
  }

  // ---- wiring ----
  function debounce(f, ms) {
    let t = 0;
    return () => {
      clearTimeout(t);
      t = setTimeout(f, ms);
    };
  }

  function readFilters() {
    state.source = $('f-source').value.trim();
    state.text = $('f-text').value;
    state.regex = $('f-regex').checked;
    renderSources();
    restart();
  }

  function init() {
    const apply = debounce(readFilters, 350);
    $('f-source').addEventListener('input', apply);
    $('f-text').addEventListener('input', apply);
    $('f-regex').addEventListener('change', readFilters);
    $('filters').addEventListener('submit', (e) => {
      e.preventDefault();
      readFilters();
    });
    $('pause').addEventListener('click', () => setPaused(!state.paused));
    $('clear').addEventListener('click', clearLog);
    $('source-search').addEventListener('input', renderSources);
    $('jump').addEventListener('click', () => {
      const log = $('log');
      log.scrollTop = log.scrollHeight;
      $('jump').hidden = true;
    });
    $('log').addEventListener('scroll', () => {
      if (atBottom($('log'))) $('jump').hidden = true;
    });
    $('log').addEventListener('click', (ev) => {
      const src = ev.target.closest('.src');
      if (src) setSource(src.textContent);
    });
    for (const b of document.querySelectorAll('#range button')) {
      b.addEventListener('click', () => {
        for (const o of document.querySelectorAll('#range button')) o.classList.toggle('on', o === b);
        state.range = Number(b.dataset.range);
        refreshChart();
      });
    }
    const canvas = $('chart');
    canvas.addEventListener('mousemove', chartHover);
    canvas.addEventListener('mouseleave', () => { $('tooltip').hidden = true; });
    new ResizeObserver(() => drawChart()).observe($('chart-wrap'));
    window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', drawChart);
    restart();
    setInterval(() => {
      if (document.hidden) return;
      refreshSources();
      refreshChart();
    }, REFRESH_MS);
    setInterval(() => {
      if (!document.hidden) refreshForwarders();
    }, FWD_REFRESH_MS);
  }

  // For tests and the curious: what the page holds now.
  window.ringtail = {
    lines: () => state.lines,
    received: () => state.received,
    bars: () => Number($('chart').dataset.bars || 0),
  };

  init();
})();
