#include "proxy/status_page.h"

#include <chrono>

#include "absl/synchronization/mutex.h"
#include "common/json.h"
#include "common/strings.h"
#include "proxy/server.h"

namespace pgshift::proxy {

absl::StatusOr<std::vector<TableStatus>> ReadServerStatus(Server& server) {
  // Held throughout: a reload (or a flip) may install other settings
  // meanwhile, and the config must outlive the reads.
  SettingsPtr current = server.settings();
  const routing::Config& config = *current->config;
  absl::flat_hash_map<std::string, ShadowEvidence> evidence;
  if (Coordinator* coordinator = server.coordinator()) {
    evidence = coordinator->FleetTotals();
  } else {
    for (const routing::TableConfig& t : config.tables) {
      evidence[t.name] = server.EvidenceSincePhase(t.name);
    }
  }
  return ReadStatus(config, {server.config_path(), &evidence}, server.backend_tls());
}

namespace {

std::string ReadStatusPageJson(Server& server) {
  SettingsPtr current = server.settings();
  auto tables = ReadServerStatus(server);
  std::string out =
      StrCat("{\"tables\":", tables.ok() ? StatusTablesJson(*tables) : "[]",
             ",\"error\":", tables.ok() ? "null" : JsonString(MessageOf(tables.status())),
             ",\"history\":[");
  auto history = ReadPhaseHistory(*current->config, server.backend_tls());
  if (history.ok()) {
    for (size_t i = 0; i < history->size(); ++i) {
      const PhaseRecord& r = (*history)[i];
      out += StrCat(i ? "," : "", "{\"at\":", JsonString(r.at), ",\"table\":", JsonString(r.table),
                    ",\"from\":", JsonString(r.from), ",\"to\":", JsonString(r.to),
                    ",\"forced\":", r.forced ? "true" : "false", "}");
    }
  }
  // The counters since start, as SHOW TABLES shows them.
  out += "],\"counters\":{";
  for (size_t i = 0; i < current->config->tables.size(); ++i) {
    const std::string& table = current->config->tables[i].name;
    const routing::TableCounters& c = server.table_counters().For(table);
    out += StrCat(i ? "," : "", JsonString(table), ":{\"rows_written\":", c.rows_written.load(),
                  ",\"mirror_failures\":", c.mirror_failures.load(),
                  ",\"shadow_compared\":", c.shadow_compared.load(),
                  ",\"shadow_persistent\":", c.shadow_persistent.load(),
                  ",\"shadow_dropped\":", c.shadow_dropped.load(), "}");
  }
  return StrCat(out, "},\"rates\":", server.rate_history().Json(), "}\n");
}

}  // namespace

std::string StatusPageJson(Server& server) {
  // Every open page polls; the reads (several connections to old per
  // table) are made at most once per kFresh, and one at a time.
  static constexpr auto kFresh = std::chrono::seconds(4);
  static absl::Mutex mutex;
  static std::string cached;                             // guarded by mutex
  static std::chrono::steady_clock::time_point read_at;  // guarded by mutex
  absl::MutexLock lock(&mutex);
  const auto now = std::chrono::steady_clock::now();
  if (cached.empty() || now - read_at >= kFresh) {
    cached = ReadStatusPageJson(server);
    read_at = now;
  }
  return cached;
}

std::string_view StatusPageHtml() {
  // Rendered by the script from /status.json with textContent only: no
  // value is ever read as HTML.
  static constexpr std::string_view kPage = R"html(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pgshift status</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em}h2{font-size:1.1em;margin:0 0 .4em}
.table{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:0 0 1em}
.phase{display:inline-block;padding:.1em .6em;border-radius:1em;background:#2a6;color:#fff;font-weight:600}
.met{color:#185}.notmet{color:#b22}.unknown{color:#a70}
.bar{height:.8em;background:#eee;border-radius:.4em;width:20em;display:inline-block;vertical-align:middle}
.bar>div{height:100%;background:#2a6;border-radius:.4em}
td{padding:.15em .8em .15em 0;vertical-align:top}code{background:#f0f0f0;padding:0 .3em}
svg{background:#fff;border:1px solid #eee;vertical-align:middle}.muted{color:#888}
.rates{display:flex;flex-wrap:wrap;gap:.3em 1.5em}
</style></head><body>
<h1>pgshift status</h1>
<p class="muted" id="updated">loading /status.json ...</p>
<div id="tables"></div>
<h2>Phase changes</h2>
<table id="history"><tbody></tbody></table>
<script>
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function row(tbody, label, value) {
  const tr = el('tr'); tr.appendChild(el('td', label));
  const td = el('td'); if (value instanceof Node) td.appendChild(value); else td.textContent = value;
  tr.appendChild(td); tbody.appendChild(tr);
}
// A small line chart of one rate over the last minutes.
function chart(points, field, label, unit = '/s') {
  const ns = 'http://www.w3.org/2000/svg', w = 160, h = 28;
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', w); svg.setAttribute('height', h);
  const max = Math.max(1e-9, ...points.map(p => p[field]));
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('fill', 'none'); line.setAttribute('stroke', '#2a6');
  line.setAttribute('points', points.map((p, i) =>
      (points.length < 2 ? 0 : i * w / (points.length - 1)) + ',' + (h - 2 - (h - 4) * p[field] / max)).join(' '));
  svg.appendChild(line);
  const last = points.length ? points[points.length - 1][field] : 0;
  const span = el('span'); span.appendChild(svg);
  const digits = unit ? 1 : 4;
  span.appendChild(el('span', ' ' + label + ': ' + last.toFixed(digits) + unit + ' (max ' + (max < 1e-6 ? 0 : max.toFixed(digits)) + unit + ')'));
  return span;
}
function render(s) {
  document.getElementById('updated').textContent =
      'updated ' + new Date().toLocaleTimeString() + (s.error ? ' — ' + s.error : '');
  const tables = document.getElementById('tables');
  tables.replaceChildren();
  for (const t of s.tables) {
    const box = el('div', null, 'table'); box.id = 'table-' + t.table;
    const h = el('h2', t.table + ' '); h.appendChild(el('span', t.phase, 'phase'));
    if (t.since) h.appendChild(el('span', ' since ' + t.since, 'muted'));
    box.appendChild(h);
    const body = el('tbody'); const tbl = el('table'); tbl.appendChild(body); box.appendChild(tbl);
    const b = t.backfill;
    if (b) {
      const share = b.done ? 1 : (b.estimated_rows > 0 ? Math.min(1, b.rows / b.estimated_rows) : 0);
      const span = el('span'); const bar = el('div', null, 'bar'); const fill = el('div');
      fill.style.width = (share * 100).toFixed(0) + '%'; bar.appendChild(fill); span.appendChild(bar);
      span.appendChild(el('span', b.done ? ' done: ' + b.rows + ' rows'
          : !b.saved_at ? ' not started (about ' + b.estimated_rows + ' rows, largest key ' + (b.largest_key || 'none') + ')'
          : ' ' + b.rows + ' of about ' + b.estimated_rows + ' rows' + (b.rate ? ', ' + b.rate + ' rows/s' : '') +
            (b.eta_seconds !== null ? ', ETA ' + b.eta_seconds + ' s' : '')));
      row(body, 'backfill', span);
    } else {
      row(body, 'backfill', '-');
    }
    const v = t.verify;
    row(body, 'last verify', v ? v.at + ': ' + ((v.missing + v.extra + v.different) === 0
        ? 'clean, ' + v.rows + ' rows' : (v.missing + v.extra + v.different) + ' differences' + (v.repaired ? ', repaired' : ''))
        : 'none recorded');
    const e = t.shadow;
    row(body, 'shadow reads', e && (t.phase === 'shadow-read' || t.phase === 'new-primary') ? e.compared + ' compared, ' + e.persistent + ' persistent mismatches (rate ' + e.mismatch_rate + ')' : '-');
    const c = s.counters[t.table];
    if (c) {
      row(body, 'since start', c.rows_written + ' rows written, ' + c.mirror_failures + ' mirror failures; shadow reads: ' +
          c.shadow_compared + ' compared, ' + c.shadow_persistent + ' persistent, ' + c.shadow_dropped + ' dropped');
    }
    const points = (s.rates.tables[t.table] || []);
    const rates = el('div', null, 'rates');
    for (const [field, label] of [['writes', 'mirrored rows'], ['mirror_failures', 'mirror failures'],
                                  ['shadow_compared', 'shadow compared'], ['shadow_persistent', 'persistent mismatches'],
                                  ['shadow_dropped', 'shadow dropped']]) {
      rates.appendChild(chart(points, field, label));
    }
    rates.appendChild(chart(points, 'mismatch_rate', 'mismatch rate', ''));
    row(body, 'rates, last ' + Math.round(points.length * s.rates.interval_s / 60) + ' min', rates);
    const changes = s.history.filter(c => c.table === t.table);
    row(body, 'phase changes', changes.length ? changes.map(c => c.at + ': ' + (c.from || '?') + ' → ' +
        (c.to || '?') + (c.forced ? ' (forced)' : '')).join('; ') : 'none recorded');
    if (t.next) {
      const rails = el('div');
      for (const r of t.guard_rails) {
        rails.appendChild(el('div', '[' + r.state + '] ' + r.rail + (r.numbers ? ': ' + r.numbers : '') + (r.why ? ': ' + r.why : ''),
                             r.state === 'met' ? 'met' : (r.state === 'not met' ? 'notmet' : 'unknown')));
      }
      row(body, 'next: ' + t.next, rails);
      row(body, 'run', el('code', t.command));
    }
    tables.appendChild(box);
  }
  const history = document.querySelector('#history tbody');
  history.replaceChildren();
  for (const c of s.history) {
    const tr = el('tr');
    tr.appendChild(el('td', c.at)); tr.appendChild(el('td', c.table));
    tr.appendChild(el('td', (c.from || '?') + ' → ' + (c.to || '?') + (c.forced ? ' (forced)' : '')));
    history.appendChild(tr);
  }
}
async function refresh() {
  try {
    const r = await fetch('status.json', {cache: 'no-store'});
    render(await r.json());
  } catch (err) {
    document.getElementById('updated').textContent = 'cannot read /status.json: ' + err;
  }
}
refresh();
setInterval(refresh, 5000);
</script></body></html>
)html";
  return kPage;
}

}  // namespace pgshift::proxy
