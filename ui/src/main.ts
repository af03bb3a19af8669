// Sextant's web UI: a single page over the HTTP API. The token is kept in the tab's session
// storage and sent as a Bearer header (no cookie, so no cross-site request can use it). Every
// element is built with the DOM API from text, never from HTML strings.

type Json = any;

const TOKEN_KEY = "sextant.token";
const REFRESH_MS = 5000;

// ---- small DOM helpers ------------------------------------------------------------------

type Child = Node | string | number | null | undefined | false;

function h(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === "object" ? c : String(c));
  }
  return el;
}

function svg(tag: string, attrs: Record<string, string | number> = {}): SVGElement {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

function on(el: HTMLElement, event: string, f: (e: Event) => void): HTMLElement {
  el.addEventListener(event, f);
  return el;
}

function when(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { hour12: false });
}

// ---- the API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(path: string, init: RequestInit = {}, signInOnRefusal = true): Promise<Json> {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token() ?? ""}`);
  if (init.body) headers.set("Content-Type", "application/json");
  const response = await fetch(path, { ...init, headers });
  const text = await response.text();
  let body: Json = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { message: text };
  }
  if (!response.ok) {
    if (response.status === 401 && signInOnRefusal) {
      sessionStorage.removeItem(TOKEN_KEY);
      location.hash = "#/login";
    }
    throw new ApiError(response.status, body?.message ?? response.statusText);
  }
  return body;
}

// ---- the time range and refresh ---------------------------------------------------------

const RANGES: [string, number][] = [
  ["15 minutes", 15 * 60],
  ["1 hour", 3600],
  ["6 hours", 6 * 3600],
  ["24 hours", 86400],
];
let rangeSeconds = 3600;
let autoRefresh = true;
let refreshTimer: number | undefined;

const LINES_PER_PAGE = 200;

/// The chosen range in words ("1 hour").
function humanRange(): string {
  return RANGES.find(([, seconds]) => seconds === rangeSeconds)?.[0] ?? `${rangeSeconds} s`;
}

function range(): { from: number; to: number } {
  const to = Math.floor(Date.now() / 1000) + 60;
  return { from: to - 60 - rangeSeconds, to };
}

// ---- the shell --------------------------------------------------------------------------

const app = document.getElementById("app")!;

function shell(active: string, content: HTMLElement): void {
  const nav = h(
    "nav",
    {},
    h("span", { class: "brand" }, "Sextant"),
    ...[
      ["incidents", "Incidents"],
      ["map", "Service map"],
      ["logs", "Logs"],
      ["metrics", "Metrics"],
      ["audit", "Audit"],
    ].map(([id, label]) =>
      h("a", { href: `#/${id}`, class: id === active ? "active" : "", "data-nav": id }, label),
    ),
    h("span", { class: "spacer" }),
  );
  const picker = h("select", { "aria-label": "time range", id: "range" });
  for (const [label, seconds] of RANGES) {
    const option = h("option", { value: String(seconds) }, `last ${label}`) as HTMLOptionElement;
    option.selected = seconds === rangeSeconds;
    picker.append(option);
  }
  on(picker, "change", () => {
    rangeSeconds = Number((picker as HTMLSelectElement).value);
    route();
  });
  const refresh = h("input", { type: "checkbox", id: "refresh" }) as HTMLInputElement;
  refresh.checked = autoRefresh;
  on(refresh, "change", () => {
    autoRefresh = refresh.checked;
    schedule();
  });
  const signOut = on(h("button", { class: "link" }, "Sign out"), "click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.hash = "#/login";
  });
  nav.append(picker, h("label", {}, refresh, " auto-refresh"), signOut);
  app.replaceChildren(nav, h("main", {}, content));
}

function failure(e: unknown): HTMLElement {
  return h("p", { class: "error" }, e instanceof Error ? e.message : String(e));
}

// ---- sign-in ----------------------------------------------------------------------------

function login(): void {
  const input = h("input", {
    type: "password",
    id: "token",
    placeholder: "sxt_…",
    autocomplete: "off",
  }) as HTMLInputElement;
  const message = h("p", { class: "error" });
  const form = h(
    "form",
    { class: "login" },
    h("h1", {}, "Sextant"),
    h("label", { for: "token" }, "API token"),
    input,
    h("button", { type: "submit" }, "Sign in"),
    message,
  );
  on(form, "submit", async (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, input.value.trim());
    try {
      await api("/api/v1/incidents?limit=1", {}, false);
      location.hash = "#/incidents";
    } catch (err) {
      sessionStorage.removeItem(TOKEN_KEY);
      message.textContent = err instanceof ApiError && err.status === 401 ? "That token is not valid." : String(err);
    }
  });
  app.replaceChildren(form);
  input.focus();
}

// ---- incidents --------------------------------------------------------------------------

async function incidents(): Promise<HTMLElement> {
  const data = await api("/api/v1/incidents?limit=100");
  const rows = (data.incidents as Json[]).map((i) =>
    h(
      "tr",
      { class: `status-${i.status}` },
      h("td", {}, h("a", { href: `#/incidents/${i.id}`, "data-incident": String(i.id) }, `#${i.id}`)),
      h("td", {}, h("span", { class: `badge ${i.status}` }, i.status)),
      h("td", {}, i.severity),
      h("td", {}, i.title),
      h("td", {}, (i.services as string[]).join(", ")),
      h("td", {}, i.members),
      h("td", {}, when(i.opened_at)),
    ),
  );
  const s = data.stats ?? {};
  return h(
    "section",
    {},
    h("h2", {}, "Incidents"),
    h(
      "p",
      { class: "muted" },
      `${s.signals ?? 0} signals became ${s.incidents ?? 0} incidents (reduction ${((s.reduction ?? 0) * 100).toFixed(1)} %).`,
    ),
    rows.length
      ? h(
          "table",
          { id: "incidents" },
          h("thead", {}, h("tr", {}, ...["", "status", "severity", "title", "services", "signals", "opened"].map((c) => h("th", {}, c)))),
          h("tbody", {}, ...rows),
        )
      : h("p", { id: "no-incidents" }, "No incidents yet."),
  );
}

function ranking(rca: Json): HTMLElement {
  if (!rca || !rca.services?.length) return h("p", { class: "muted" }, "No root-cause ranking yet.");
  const items = (rca.services as Json[]).map((c, index) => {
    const series = (c.evidence?.series ?? []) as Json[];
    return h(
      "li",
      { class: index === 0 ? "first" : "", "data-rank": String(index + 1), "data-service": c.service },
      h("div", { class: "candidate" }, h("strong", {}, c.service), h("span", { class: "score" }, `score ${Number(c.score).toFixed(2)}`)),
      h("p", { class: "sentence" }, c.sentence),
      series.length
        ? h(
            "table",
            { class: "evidence" },
            h("thead", {}, h("tr", {}, ...["metric", "kind", "baseline", "peak", "deviation"].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              ...series.slice(0, 5).map((s) =>
                h(
                  "tr",
                  {},
                  h("td", {}, s.metric),
                  h("td", {}, s.kind),
                  h("td", {}, Number(s.baseline_median).toPrecision(4)),
                  h("td", {}, Number(s.peak).toPrecision(4)),
                  h("td", {}, `${Number(s.deviation).toFixed(1)} spreads ${s.direction}`),
                ),
              ),
            ),
          )
        : null,
    );
  });
  return h("ol", { class: "ranking", id: "ranking" }, ...items);
}

function runView(run: Json, reload: () => void): HTMLElement {
  const comment = h("input", { type: "text", placeholder: "comment (required)", class: "comment" }) as HTMLInputElement;
  const message = h("span", { class: "error" });
  const decide = (action: string) => async () => {
    if (!comment.value.trim()) {
      message.textContent = "A comment is required.";
      return;
    }
    try {
      await api(`/api/v1/runs/${run.id}/${action}`, { method: "POST", body: JSON.stringify({ comment: comment.value }) });
      reload();
    } catch (e) {
      message.textContent = String(e instanceof Error ? e.message : e);
    }
  };
  const waiting = run.status === "waiting_approval";
  const name = typeof run.runbook === "string" ? run.runbook : run.runbook?.name;
  return h(
    "div",
    { class: "run", "data-run": String(run.id), "data-status": run.status },
    h("div", {}, h("strong", {}, name), " ", h("span", { class: `badge ${run.status}` }, run.status)),
    h(
      "ol",
      { class: "steps" },
      ...((run.steps ?? []) as Json[]).map((s) =>
        h("li", {}, `${s.kind ?? "step"}: ${s.status ?? s.outcome ?? ""}${s.output ? ` — ${typeof s.output === "string" ? s.output : JSON.stringify(s.output)}` : ""}${s.error ? ` — ${s.error}` : ""}`),
      ),
    ),
    waiting
      ? h(
          "div",
          { class: "decide" },
          comment,
          on(h("button", { class: "approve" }, "Approve"), "click", decide("approve")),
          on(h("button", { class: "reject" }, "Reject"), "click", decide("reject")),
          message,
        )
      : null,
  );
}

async function incident(id: string): Promise<HTMLElement> {
  const [i, runs] = await Promise.all([api(`/api/v1/incidents/${id}`), api("/api/v1/runs")]);
  const mine = ((runs.runs ?? []) as Json[]).filter((r) => String(r.incident) === id || String(r.incident_id) === id);
  const section = h("section", {});
  const reload = () => route();
  const members = (i.members as Json[]).map((m) =>
    h(
      "tr",
      {},
      h("td", {}, m.kind),
      h("td", {}, m.service),
      h("td", {}, m.title),
      h("td", {}, m.status),
      h("td", {}, m.count),
      h("td", {}, when(m.first_seen)),
      h("td", { class: "muted" }, m.reason?.text ?? ""),
    ),
  );
  const timeline = (i.timeline as Json[]).map((e) =>
    h("li", {}, h("span", { class: "muted" }, when(e.at)), " ", h("strong", {}, e.actor), ` ${e.action}`, e.detail ? ` — ${typeof e.detail === "string" ? e.detail : JSON.stringify(e.detail)}` : ""),
  );
  section.append(
    h("p", {}, h("a", { href: "#/incidents" }, "← incidents")),
    h("h2", { id: "incident-title" }, `#${i.id} ${i.title}`),
    h("p", {}, h("span", { class: `badge ${i.status}` }, i.status), ` ${i.severity} · ${(i.services as string[]).join(", ")} · opened ${when(i.opened_at)}`),
    h("p", { class: "muted" }, i.explanation),
    h("h3", {}, "Likely root cause"),
    ranking(i.root_cause),
    h("h3", {}, "Runbook runs"),
    mine.length ? h("div", { id: "runs" }, ...mine.map((r) => runView(r, reload))) : h("p", { class: "muted" }, "No runbook has run for this incident."),
    h("h3", {}, "Grouped alerts and anomalies"),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ...["kind", "service", "title", "status", "count", "first seen", "why it joined"].map((c) => h("th", {}, c)))),
      h("tbody", {}, ...members),
    ),
    h("h3", {}, "Timeline"),
    h("ol", { class: "timeline" }, ...timeline),
  );
  return section;
}

// ---- the service map --------------------------------------------------------------------

async function map(): Promise<HTMLElement> {
  const { from, to } = range();
  const [topology, open] = await Promise.all([
    api(`/api/v1/topology?from=${from}&to=${to}`),
    api("/api/v1/incidents?status=open&limit=100"),
  ]);
  const troubled = new Set<string>();
  for (const i of open.incidents as Json[]) for (const s of i.services as string[]) troubled.add(s);
  const edges = topology.edges as Json[];
  const names = new Set<string>();
  for (const n of (topology.nodes ?? []) as Json[]) names.add(typeof n === "string" ? n : n.name ?? n.id);
  for (const e of edges) {
    names.add(e.caller);
    names.add(e.callee);
  }
  const list = [...names].sort();
  const size = 560;
  const radius = 220;
  const at = new Map<string, [number, number]>();
  list.forEach((n, k) => {
    const angle = (2 * Math.PI * k) / Math.max(list.length, 1) - Math.PI / 2;
    at.set(n, [size / 2 + radius * Math.cos(angle), size / 2 + radius * Math.sin(angle)]);
  });
  const picture = svg("svg", { viewBox: `0 0 ${size} ${size}`, width: size, height: size, id: "map" });
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 22, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8a94a6" }));
  const defs = svg("defs");
  defs.append(marker);
  picture.append(defs);
  for (const e of edges) {
    const [x1, y1] = at.get(e.caller)!;
    const [x2, y2] = at.get(e.callee)!;
    const line = svg("line", { x1, y1, x2, y2, class: e.traffic?.error_rate > 0.05 ? "edge bad" : "edge", "marker-end": "url(#arrow)" });
    const title = svg("title");
    title.textContent = `${e.caller} → ${e.callee}: ${(e.traffic?.request_rate ?? 0).toFixed(2)}/s, errors ${((e.traffic?.error_rate ?? 0) * 100).toFixed(1)} %, p95 ${(e.traffic?.p95_ms ?? 0).toFixed(1)} ms`;
    line.append(title);
    picture.append(line);
  }
  for (const n of list) {
    const [x, y] = at.get(n)!;
    const g = svg("g", { class: troubled.has(n) ? "node troubled" : "node healthy", "data-service": n });
    g.append(svg("circle", { cx: x, cy: y, r: 16 }));
    const label = svg("text", { x, y: y + 32, "text-anchor": "middle" });
    label.textContent = n;
    g.append(label);
    picture.append(g);
  }
  return h(
    "section",
    {},
    h("h2", {}, "Service map"),
    h("p", { class: "muted" }, "From the spans in the range. Red: a service of an open incident."),
    picture as unknown as HTMLElement,
  );
}

// ---- logs -------------------------------------------------------------------------------

/// The points of whole buckets only: a bucket still filling would draw as a false drop.
function complete(points: [number, number][], stepSeconds: number): [number, number][] {
  const now = Date.now() / 1000;
  return points.filter((p) => p[0] + stepSeconds <= now);
}

function sparkline(points: [number, number][]): SVGElement {
  const width = 120;
  const height = 24;
  const picture = svg("svg", { width, height, class: "spark" });
  if (points.length < 2) return picture;
  const max = Math.max(...points.map((p) => p[1]), 1);
  const t0 = points[0][0];
  const t1 = points[points.length - 1][0];
  const d = points
    .map((p, k) => `${k ? "L" : "M"} ${(((p[0] - t0) / Math.max(t1 - t0, 1)) * width).toFixed(1)} ${(height - (p[1] / max) * (height - 2) - 1).toFixed(1)}`)
    .join(" ");
  picture.append(svg("path", { d, fill: "none", stroke: "currentColor" }));
  return picture;
}

async function logs(query: URLSearchParams): Promise<HTMLElement> {
  const { from, to } = range();
  const q = query.get("q") ?? "";
  const section = h("section", {}, h("h2", {}, "Logs"));
  const input = h("input", { type: "search", id: "search", value: q, placeholder: 'words, "phrases", service:cart, -debug, template:ID' }) as HTMLInputElement;
  const form = h("form", { class: "search" }, input, h("button", { type: "submit" }, "Search"));
  on(form, "submit", (e) => {
    e.preventDefault();
    location.hash = `#/logs?q=${encodeURIComponent(input.value)}`;
  });
  section.append(form);
  if (q) {
    const page = (cursor: string | null) =>
      api(`/api/v1/logs/search?q=${encodeURIComponent(q)}&from=${from}&to=${to}&limit=${LINES_PER_PAGE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    const found = await page(null);
    const lines = found.logs as Json[];
    if (lines.length === 0) {
      // Say so, and where a query was one plain word that is also a severity, offer the field.
      const word = q.trim().toLowerCase();
      const severity = ["error", "warn", "warning", "fatal", "info", "debug"].includes(word);
      section.append(
        h(
          "p",
          { id: "no-lines", class: "empty" },
          `No lines match ${q} in the last ${humanRange()}.`,
          severity ? " Lines whose severity is " : "",
          severity ? h("a", { href: `#/logs?q=${encodeURIComponent(`severity:${word}`)}` }, `severity:${word}`) : "",
          severity ? " may not contain the word itself." : "",
        ),
      );
    } else {
      const body = h("tbody", {});
      const row = (l: Json) =>
        h("tr", { class: `sev-${l.severity_text}` }, h("td", {}, when(l.time)), h("td", {}, l.service), h("td", {}, l.severity_text), h("td", { class: "line" }, l.body));
      body.append(...lines.map(row));
      const count = h("p", { id: "line-count", class: "muted" }, `${lines.length} lines, newest first.`);
      section.append(count, h("table", { id: "lines" }, h("thead", {}, h("tr", {}, ...["time", "service", "severity", "line"].map((c) => h("th", {}, c)))), body));
      // Older lines, a page at a time, below the ones shown.
      let next: string | null = found.next_cursor ?? null;
      const more = h("button", { type: "button", id: "more-lines" }, "Older lines") as HTMLButtonElement;
      on(more, "click", async () => {
        if (!next) return;
        more.disabled = true;
        const older = await page(next);
        const rows = older.logs as Json[];
        body.append(...rows.map(row));
        next = older.next_cursor ?? null;
        count.textContent = `${body.children.length} lines, newest first.`;
        more.disabled = false;
        if (!next) more.remove();
      });
      if (next) section.append(more);
    }
  }
  const patterns = await api(`/api/v1/patterns?from=${from}&to=${to}&limit=50`);
  const list = patterns.patterns as Json[];
  const table = h(
    "table",
    { id: "patterns" },
    h("thead", {}, h("tr", {}, ...["pattern", "count", "severity", "lines over time", ""].map((c) => h("th", {}, c)))),
  );
  const body = h("tbody");
  table.append(body);
  for (const p of list) {
    const spark = h("td", {});
    const severities = Object.entries(p.severity ?? {}).map(([k, v]) => `${k} ${v}`).join(", ");
    body.append(
      h(
        "tr",
        {},
        h("td", { class: "line" }, p.template),
        h("td", {}, p.count),
        h("td", {}, severities),
        spark,
        h("td", {}, h("a", { href: `#/logs?q=${encodeURIComponent(`template:${p.id}`)}`, "data-pattern": String(p.id) }, "lines →")),
      ),
    );
    api(`/api/v1/patterns/${p.id}/series?from=${from}&to=${to}&step=${Math.max(60, Math.floor(rangeSeconds / 60))}s&time_format=unix`)
      .then((s) => spark.append(sparkline(complete(s.points as [number, number][], s.step_seconds))))
      .catch(() => {});
  }
  section.append(h("h3", {}, "Patterns"), table);
  return section;
}

// ---- metrics ----------------------------------------------------------------------------

/// A line chart of `points` with the expected band, anomaly markers and the forecast.
function chart(
  points: [number, number][],
  band: [number, number | null, number | null, number | null][],
  forecast: [number, number, number, number][],
  anomalies: number[],
): SVGElement {
  const width = 900;
  const height = 280;
  const pad = 40;
  const picture = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, id: "chart" });
  const all = [
    ...points.map((p) => p[1]),
    ...band.flatMap((b) => [b[2], b[3]]).filter((v): v is number => v !== null),
    ...forecast.flatMap((f) => [f[2], f[3]]),
  ];
  const times = [...points.map((p) => p[0]), ...forecast.map((f) => f[0])];
  if (!points.length) return picture;
  const [t0, t1] = [Math.min(...times), Math.max(...times)];
  const [v0, v1] = [Math.min(...all, 0), Math.max(...all, 1e-9)];
  const x = (t: number) => pad + ((t - t0) / Math.max(t1 - t0, 1)) * (width - 2 * pad);
  const y = (v: number) => height - pad - ((v - v0) / Math.max(v1 - v0, 1e-9)) * (height - 2 * pad);
  const path = (ps: [number, number][]) => ps.map((p, k) => `${k ? "L" : "M"} ${x(p[0]).toFixed(1)} ${y(p[1]).toFixed(1)}`).join(" ");
  const area = (rows: [number, number, number][], cls: string) => {
    if (rows.length < 2) return;
    const upper = rows.map((r) => [r[0], r[2]] as [number, number]);
    const lower = rows.map((r) => [r[0], r[1]] as [number, number]).reverse();
    picture.append(svg("path", { d: `${path(upper)} ${path(lower).replace(/^M/, "L")} Z`, class: cls }));
  };
  area(
    band.filter((b) => b[2] !== null && b[3] !== null).map((b) => [b[0], b[2] as number, b[3] as number]),
    "band",
  );
  area(forecast.map((f) => [f[0], f[2], f[3]]), "forecast-band");
  picture.append(svg("path", { d: path(points), class: "series" }));
  // A line needs two points: a lone one is drawn as a dot.
  if (points.length === 1) picture.append(svg("circle", { cx: x(points[0][0]), cy: y(points[0][1]), r: 3, class: "point" }));
  if (forecast.length) picture.append(svg("path", { d: path(forecast.map((f) => [f[0], f[1]])), class: "forecast" }));
  for (const t of anomalies) {
    const near = points.reduce((best, p) => (Math.abs(p[0] - t) < Math.abs(best[0] - t) ? p : best), points[0]);
    picture.append(svg("circle", { cx: x(near[0]), cy: y(near[1]), r: 5, class: "anomaly" }));
  }
  for (const v of [v0, (v0 + v1) / 2, v1]) {
    const label = svg("text", { x: 4, y: y(v) + 4, class: "axis" });
    label.textContent = Number(v.toPrecision(3)).toString();
    picture.append(label);
  }
  for (const t of [t0, (t0 + t1) / 2, t1]) {
    const label = svg("text", { x: x(t), y: height - 12, "text-anchor": "middle", class: "axis" });
    label.textContent = new Date(t * 1000).toLocaleTimeString(undefined, { hour12: false, hour: "2-digit", minute: "2-digit" });
    picture.append(label);
  }
  return picture;
}

/// How `query_range` aggregated a series, in words.
const AGG_WORDS: Record<string, string> = {
  avg: "average",
  rate: "rate per second",
  mean: "mean observation",
  sum: "sum",
  min: "minimum",
  max: "maximum",
  count: "points",
};

async function metrics(query: URLSearchParams): Promise<HTMLElement> {
  const { from, to } = range();
  const names = await api("/api/v1/sql", {
    method: "POST",
    body: JSON.stringify({ sql: "SELECT DISTINCT service, name FROM metrics ORDER BY service, name", format: "json" }),
  });
  const pairs = (names.rows as Json[]).map((r) => [r.service as string, r.name as string]);
  const service = query.get("service") ?? pairs[0]?.[0] ?? "";
  const name = query.get("name") ?? pairs.find((p) => p[0] === service)?.[1] ?? "";
  const pick = (id: string, values: string[], selected: string) => {
    const el = h("select", { id }) as HTMLSelectElement;
    for (const v of values) {
      const option = h("option", { value: v }, v) as HTMLOptionElement;
      option.selected = v === selected;
      el.append(option);
    }
    return el;
  };
  const services = pick("metric-service", [...new Set(pairs.map((p) => p[0]))], service);
  const metricNames = pick("metric-name", pairs.filter((p) => p[0] === service).map((p) => p[1]), name);
  const go = () => {
    location.hash = `#/metrics?service=${encodeURIComponent(services.value)}&name=${encodeURIComponent(services.value === service ? metricNames.value : "")}`;
  };
  on(services, "change", go);
  on(metricNames, "change", go);
  const section = h("section", {}, h("h2", {}, "Metrics"), h("div", { class: "search" }, services, metricNames));
  if (!name) return section;
  const step = Math.max(60, Math.floor(rangeSeconds / 120 / 60) * 60);
  const match = encodeURIComponent(`service=${service}`);
  const [answer, forecast, anomalies] = await Promise.all([
    api(`/api/v1/metrics/query_range?name=${encodeURIComponent(name)}&match=${match}&from=${from}&to=${to}&step=${step}s&band=true&time_format=unix`),
    api(`/api/v1/forecast?name=${encodeURIComponent(name)}&match=${match}&from=${from}&to=${to}&step=${step}s&horizon=${Math.max(step * 10, Math.floor(rangeSeconds / 4))}s&time_format=unix`).catch(() => ({ series: [] })),
    api(`/api/v1/anomalies?service=${encodeURIComponent(service)}&from=${from}&to=${to}&limit=200`),
  ]);
  const series = (answer.series as Json[])[0];
  if (!series) return section;
  const marks = (anomalies.anomalies as Json[])
    .filter((a) => a.explanation?.series?.name === name)
    .map((a) => Number(a.explanation.window.start_unix_nano) / 1e9);
  section.append(
    h("p", { class: "muted" }, `${name} of ${service}, ${AGG_WORDS[series.agg] ?? series.agg} per ${step / 60} min: the line, its expected band (grey), anomalies (red), the forecast (dashed, with its 95 % interval).`),
    chart(series.points, series.band ?? [], (forecast.series as Json[])[0]?.points ?? [], marks) as unknown as HTMLElement,
    h("p", { id: "anomaly-count" }, `${marks.length} anomalies in the range.`),
  );
  return section;
}

// ---- audit ------------------------------------------------------------------------------

/// The families of audit kinds the API filters on.
const AUDIT_KINDS = ["incident", "correlation", "rca", "anomaly", "silence", "inhibit", "runbook", "runbooks", "run", "secret", "token", "key", "retention", "tenant", "approval"];

/// An audit record's details in words: its sentence when it has one, else `key: value` pairs
/// (nested values compact).
function details(detail: Json): HTMLElement {
  if (detail === null || typeof detail !== "object") return h("span", {}, detail === null ? "" : String(detail));
  if (typeof detail.sentence === "string") return h("span", {}, detail.sentence);
  const reason = detail.decision?.reason?.text;
  const list = h("dl", { class: "details" });
  for (const [key, value] of Object.entries(detail)) {
    if (value === null || value === "" || (Array.isArray(value) && value.length === 0)) continue;
    const text = typeof value === "object" ? JSON.stringify(value) : String(value);
    list.append(h("dt", {}, key.replace(/_/g, " ")), h("dd", {}, text.length > 200 ? `${text.slice(0, 200)}…` : text));
  }
  return reason ? h("div", {}, h("span", {}, reason), list) : list;
}

async function audit(query: URLSearchParams): Promise<HTMLElement> {
  const { from, to } = range();
  const filters = ["kind", "actor", "subject"].filter((k) => query.get(k));
  const asked = filters.map((k) => `&${k}=${encodeURIComponent(query.get(k)!)}`).join("");
  const data = await api(`/api/v1/audit?limit=200&from=${from}&to=${to}${asked}`);
  const kind = h("select", { id: "audit-kind", "aria-label": "kind" }, h("option", { value: "" }, "every kind")) as HTMLSelectElement;
  for (const k of AUDIT_KINDS) {
    const option = h("option", { value: k }, k) as HTMLOptionElement;
    option.selected = query.get("kind") === k;
    kind.append(option);
  }
  const actor = h("input", { id: "audit-actor", placeholder: "actor (token id, sextant.correlator)", value: query.get("actor") ?? "" }) as HTMLInputElement;
  const subject = h("input", { id: "audit-subject", placeholder: "subject (incident number, run id)", value: query.get("subject") ?? "" }) as HTMLInputElement;
  const form = h("form", { class: "search" }, kind, actor, subject, h("button", { type: "submit" }, "Filter"));
  on(form, "submit", (e) => {
    e.preventDefault();
    const chosen = new URLSearchParams();
    for (const [name, el] of [["kind", kind], ["actor", actor], ["subject", subject]] as [string, HTMLInputElement | HTMLSelectElement][]) {
      if (el.value.trim()) chosen.set(name, el.value.trim());
    }
    location.hash = `#/audit?${chosen}`;
  });
  const records = (data.records ?? []) as Json[];
  const link = (name: string, value: string) => h("a", { href: `#/audit?${new URLSearchParams({ [name]: value })}` }, value);
  return h(
    "section",
    {},
    h("h2", {}, "Audit trail"),
    form,
    h("p", { class: "muted", id: "audit-count" }, `${records.length} records in the last ${humanRange()}${records.length === 200 ? " (the newest 200)" : ""}.`),
    h(
      "table",
      { id: "audit" },
      h("thead", {}, h("tr", {}, ...["time", "actor", "kind", "subject", "details"].map((c) => h("th", {}, c)))),
      h(
        "tbody",
        {},
        ...records.map((r) =>
          h(
            "tr",
            {},
            h("td", {}, when(r.at)),
            h("td", {}, link("actor", r.actor)),
            h("td", {}, r.kind),
            h("td", {}, r.subject ? link("subject", r.subject) : ""),
            h("td", { class: "muted" }, details(r.detail)),
          ),
        ),
      ),
    ),
  );
}

// ---- routing ----------------------------------------------------------------------------

let routing = 0;

async function route(refreshing = false): Promise<void> {
  const ticket = ++routing;
  const [path, search] = location.hash.replace(/^#/, "").split("?");
  const parts = (path || "/incidents").split("/").filter(Boolean);
  if (!token() || parts[0] === "login") {
    clearTimeout(refreshTimer);
    login();
    return;
  }
  const query = new URLSearchParams(search ?? "");
  let view: Promise<HTMLElement>;
  switch (parts[0]) {
    case "incidents":
      view = parts[1] ? incident(parts[1]) : incidents();
      break;
    case "map":
      view = map();
      break;
    case "logs":
      view = logs(query);
      break;
    case "metrics":
      view = metrics(query);
      break;
    case "audit":
      view = audit(query);
      break;
    default:
      view = incidents();
  }
  let content: HTMLElement;
  try {
    content = await view;
  } catch (e) {
    content = failure(e);
  }
  if (ticket !== routing) return;
  // An automatic refresh keeps what the user is typing.
  const typing = document.activeElement instanceof HTMLInputElement && document.activeElement.type !== "checkbox";
  if (refreshing && typing && document.querySelector("main")) {
    schedule();
    return;
  }
  shell(parts[0] ?? "incidents", content);
  schedule();
}

function schedule(): void {
  clearTimeout(refreshTimer);
  if (autoRefresh && token()) refreshTimer = window.setTimeout(() => route(true), REFRESH_MS);
}

window.addEventListener("hashchange", () => route());
route();
