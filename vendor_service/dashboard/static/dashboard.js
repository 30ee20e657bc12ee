// The vendor's usage page. Plain JavaScript, no library, nothing loaded from elsewhere.
//
// The token the reader types is kept in sessionStorage (this tab only, forgotten when it
// closes) and sent only as "Authorization: Bearer" to dashboard/api/usage, never in a URL.
// Every text from the server (key names above all) goes in as textContent, never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "vendor-dashboard-token";
  const API = "dashboard/api/usage";
  const SVG_NS = "http://www.w3.org/2000/svg"; // the SVG namespace name, not something fetched
  // Distinct on white and for the common colour-vision deficiencies (Okabe-Ito, then more).
  const COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00",
    "#F0E442", "#000000", "#7F3C8D", "#11A579", "#3969AC", "#F2B701"];

  let period = "hour";
  let loading = false;
  const $ = (id) => document.getElementById(id);
  const fmt = (n) => Number(n).toLocaleString("en-US");

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function showLogin(message) {
    $("report").hidden = true;
    $("sign-out").hidden = true;
    $("who").textContent = "";
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("token").focus();
  }

  async function load() {
    const t = token();
    if (!t) { showLogin(); return; }
    if (loading) return;
    loading = true;
    document.body.dataset.state = "loading";
    try {
      const resp = await fetch(`${API}?period=${encodeURIComponent(period)}`, {
        headers: { Authorization: `Bearer ${t}` },
        cache: "no-store",
        credentials: "omit",
      });
      const body = await resp.json().catch(() => null);
      if (resp.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(body && body.error ? body.error.message : "unknown token");
        return;
      }
      if (!resp.ok) {
        throw new Error(body && body.error ? body.error.message : `HTTP ${resp.status}`);
      }
      render(body);
      document.body.dataset.state = "ready";
    } catch (err) {
      $("report-error").textContent = `could not load the usage: ${err.message}`;
      document.body.dataset.state = "error";
    } finally {
      loading = false;
    }
  }

  function binLabel(iso) {
    const s = new Date(iso).toISOString();
    return period === "hour" ? s.slice(11, 16) : s.slice(5, 10);
  }

  function card(label, value, field) {
    return el("div", { class: "card" },
      el("div", { class: "label" }, label),
      el("div", { class: "value", "data-field": field, "data-value": value }, fmt(value)));
  }

  function render(data) {
    $("login").hidden = true;
    $("report").hidden = false;
    $("sign-out").hidden = false;
    $("report-error").textContent = "";
    const admin = data.role === "admin";
    document.body.dataset.role = data.role;
    $("who").textContent = admin ? "admin: every key"
      : `key ${data.keys[0] ? data.keys[0].key.name : ""}`;
    $("generated").textContent = `as of ${data.generated_at.replace("T", " ").slice(0, 19)} UTC`;
    for (const b of document.querySelectorAll("[data-period]")) {
      b.setAttribute("aria-pressed", String(b.dataset.period === data.period));
    }
    const sum = (f) => data.keys.reduce((a, k) => a + f(k), 0);
    const cards = $("cards");
    cards.replaceChildren();
    if (admin) {
      cards.append(card("keys", data.keys.length, "keys"));
    }
    cards.append(
      card(admin ? "budget, all keys" : "budget", sum((k) => k.key.budget.limit), "limit"),
      card("used", sum((k) => k.key.budget.used), "used"),
      card("remaining", sum((k) => k.key.budget.remaining), "remaining"),
      card(data.period === "hour" ? "queries, last 24 h" : "queries, last 30 days",
        sum((k) => k.series.reduce((a, b) => a + b, 0)), "window"));
    if (!admin && data.keys[0]) {
      const k = data.keys[0].key;
      cards.append(el("div", { class: "card" }, el("div", { class: "label" }, "rate limit"),
        el("div", { class: "value", "data-field": "rate" }, rateText(k))));
    }
    $("chart-title").textContent = data.period === "hour"
      ? "Queries charged per hour, last 24 hours (UTC)"
      : "Queries charged per day, last 30 days (UTC)";
    $("series-head").textContent = data.period === "hour" ? "last 24 h" : "last 30 days";
    renderChart(data);
    renderTable(data);
  }

  function rateText(k) {
    return `${k.rate_limit_rps.toLocaleString("en-US")} req/s, burst ${fmt(k.rate_limit_burst)}`;
  }

  function colour(i) { return COLOURS[i % COLOURS.length]; }

  // Whole-number axis ticks: a step of 1, 2 or 5 times a power of ten, about four of them.
  function ticks(max) {
    const raw = Math.max(1, max) / 4;
    const p = 10 ** Math.floor(Math.log10(raw));
    const step = Math.max(1, [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw));
    const top = step * Math.max(1, Math.ceil(max / step));
    const out = [];
    for (let v = 0; v <= top; v += step) out.push(v);
    return out;
  }

  // Stacked bars: one bar per bin, one colour per key; each segment carries its numbers.
  function renderChart(data) {
    const box = $("chart");
    box.replaceChildren();
    const n = data.bin_starts.length;
    const totals = data.bin_starts.map((_, i) => data.keys.reduce((a, k) => a + k.series[i], 0));
    const yTicks = ticks(Math.max(0, ...totals));
    const top = yTicks[yTicks.length - 1];
    const W = 960, H = 280, L = 64, R = 16, T = 14, B = 40;
    const pw = W - L - R, ph = H - T - B, bw = pw / n;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", id: "usage-chart",
      "aria-label": "queries charged per bin and key" });
    for (const v of yTicks) {
      const y = T + ph - (ph * v) / top;
      root.append(svg("line", { class: v ? "grid" : "axis", x1: L, x2: W - R, y1: y, y2: y }));
      root.append(svg("text", { x: L - 8, y: y + 4, "text-anchor": "end", "font-size": 12 },
        fmt(v)));
    }
    root.append(svg("text", { x: 14, y: T + ph / 2, "font-size": 12, "text-anchor": "middle",
      transform: `rotate(-90 14 ${T + ph / 2})` }, "queries"));
    const every = n > 12 ? Math.ceil(n / 12) : 1;
    data.bin_starts.forEach((iso, i) => {
      if ((n - 1 - i) % every === 0) {
        root.append(svg("text", { x: L + bw * (i + 0.5), y: H - B + 18, "font-size": 12,
          "text-anchor": "middle" }, binLabel(iso)));
      }
    });
    root.append(svg("text", { x: L + pw / 2, y: H - 4, "font-size": 12, "text-anchor": "middle" },
      data.period === "hour" ? "hour starting (UTC)" : "day (UTC)"));
    data.bin_starts.forEach((iso, i) => {
      let y = T + ph;
      data.keys.forEach((k, j) => {
        const c = k.series[i];
        if (!c) return;
        // at least 2 px, so a small count next to a large one is still seen
        const h = Math.max(2, (ph * c) / top);
        y -= h;
        const rect = svg("rect", { x: L + bw * i + bw * 0.12, y, width: bw * 0.76, height: h,
          fill: colour(j), class: "bar", "data-key-id": k.key.id, "data-bin": iso,
          "data-count": c });
        rect.append(svg("title", {}, `${k.key.name}, ${binLabel(iso)}: ${fmt(c)} queries`));
        root.append(rect);
      });
    });
    if (!totals.some((t) => t > 0)) {
      root.append(svg("text", { x: L + pw / 2, y: T + ph / 2, "text-anchor": "middle",
        "font-size": 14, id: "chart-empty" },
        data.period === "hour" ? "no queries charged in the last 24 hours"
          : "no queries charged in the last 30 days"));
    }
    box.append(root);
    const legend = $("legend");
    legend.replaceChildren();
    if (data.keys.length > 1) {
      data.keys.forEach((k, j) => {
        const sw = svg("svg", { width: 12, height: 12, class: "swatch-svg" });
        sw.append(svg("rect", { width: 12, height: 12, rx: 2, fill: colour(j) }));
        legend.append(el("span", {}, sw, ` ${k.key.name}`));
      });
    }
  }

  function sparkline(series, c) {
    const W = 120, H = 24, n = series.length, top = Math.max(1, ...series);
    const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "spark" });
    root.append(svg("line", { class: "axis", x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5 }));
    series.forEach((v, i) => {
      if (!v) return;
      const h = Math.max(2, ((H - 2) * v) / top);
      root.append(svg("rect", { x: (W * i) / n, y: H - h, width: Math.max(1, W / n - 1),
        height: h, fill: c, "data-count": v }));
    });
    return root;
  }

  function renderTable(data) {
    const body = document.querySelector("#keys tbody");
    body.replaceChildren();
    data.keys.forEach((k, j) => {
      const key = k.key, b = key.budget;
      const num = (field, v) => el("td", { class: "num", "data-field": field, "data-value": v },
        fmt(v));
      const meter = el("meter", { min: 0, max: Math.max(1, b.limit), value: b.used,
        title: `${fmt(b.used)} of ${fmt(b.limit)}` });
      const window = k.series.reduce((a, v) => a + v, 0);
      const row = el("tr", { "data-key-id": key.id, class: key.revoked ? "revoked" : "" },
        el("td", {},
          el("div", { "data-field": "name", class: "name" }, key.name),
          el("div", { class: "ids" }, el("code", { "data-field": "id" }, key.id), " · ",
            el("code", { "data-field": "prefix" }, `${key.prefix}…`))),
        el("td", { "data-field": "status", class: key.revoked ? "status-revoked" : "status-active" },
          key.revoked ? "revoked" : "active"),
        num("limit", b.limit),
        el("td", { class: "num", "data-field": "used", "data-value": b.used },
          el("div", {}, fmt(b.used)), meter),
        num("remaining", b.remaining),
        num("images", k.queries_by_endpoint.images || 0),
        num("texts", k.queries_by_endpoint.texts || 0),
        num("requests", k.requests),
        el("td", { "data-field": "rate", class: "rate", "data-rps": key.rate_limit_rps,
          "data-burst": key.rate_limit_burst }, rateText(key)),
        el("td", { "data-field": "series", "data-value": window,
          title: `${fmt(window)} queries in the chart's window` },
          el("div", { class: "series" }, sparkline(k.series, colour(j)),
            el("span", {}, fmt(window)))));
      body.append(row);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const value = $("token").value.trim();
      $("token").value = "";
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      load();
    });
    $("sign-out").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("signed out");
    });
    $("refresh").addEventListener("click", load);
    for (const b of document.querySelectorAll("[data-period]")) {
      b.addEventListener("click", () => { period = b.dataset.period; load(); });
    }
    load();
  });
})();
