// The session board: fetches the board's JSON and draws its charts and figures.
//
// Every request is tied to the filters that made it: a new one aborts the one before
// (its answer, however late, is never shown), the address always holds the filters on
// screen, and figures that do not answer those filters yet are dimmed (a request under
// way) or hidden (an error). Changes from the source menu and the date fields wait a
// moment for the next keypress, so arrowing through the menu sends one request.
"use strict";
(function () {
  const form = document.getElementById("board-filters");
  if (!form) return;
  const figures = document.getElementById("figures");
  const charts = document.getElementById("charts");
  const errorBox = document.getElementById("board-error");
  const emptyBox = document.getElementById("board-empty");
  const headline = document.getElementById("headline");
  const updated = document.getElementById("board-updated");
  const tz = form.dataset.timezone;
  const hasCharts = typeof window.Chart !== "undefined";
  const drawn = {};
  const ink = "#5b6472";
  const grid = "rgba(91, 100, 114, 0.15)";
  const WAIT_MS = 350;  // a pause in the keypresses before the figures are asked for
  let controller = null;  // the request under way, if any
  let timer = null;

  const { number, decimal, length } = window.lullFormat;
  const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
  const weekday = (iso) => WEEKDAYS[new Date(iso.slice(0, 10) + "T00:00:00Z").getUTCDay()];
  function bucket(b) {
    const short = (s) => (s >= 3600 ? s / 3600 + "h" : s >= 60 ? s / 60 + "m" : s + "s");
    if (b.to_s === null) return short(b.from_s) + "+";
    if (b.from_s === 0 && b.to_s === 1) return "0s";
    return short(b.from_s) + "–" + short(b.to_s);
  }
  // one date format everywhere: ISO days, with the weekday; hours as HH:00 in the zone
  const dayLong = (d) => weekday(d) + " " + d;
  const hourLong = (h) => weekday(h) + " " + h.slice(0, 10) + " " + h.slice(11, 16) + " " + tz;
  const dayTick = (d) => weekday(d) + " " + d.slice(5);
  const hourTick = (h) => (h.slice(11, 13) === "00" ? weekday(h) + " " + h.slice(5, 10) : h.slice(11, 16));

  function fillTable(id, rows) {
    const table = document.getElementById(id);
    table.tBodies[0].replaceChildren(
      ...rows.map(([label, labelKey, text, value]) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = label;
        th.dataset.sort = labelKey;
        th.dataset.csv = labelKey;
        const td = document.createElement("td");
        td.textContent = text;
        td.dataset.sort = value;
        td.dataset.csv = value;
        tr.append(th, td);
        return tr;
      })
    );
    window.lullUI.sortTable(table);  // keep the order the user picked
  }

  function axisTitle(labels) {
    // the year(s) of a day or hour axis, once, rather than on every label
    if (!labels.length || !/^\d{4}-/.test(labels[0])) return "";
    const a = labels[0].slice(0, 4);
    const b = labels[labels.length - 1].slice(0, 4);
    return (a === b ? a : a + "–" + b) + " · " + tz;
  }

  function chart(id, type, labels, values, color, o) {
    if (!hasCharts) return;
    const data = {
      labels: labels,
      datasets: [{
        label: o.label, data: values, backgroundColor: color + "cc", borderColor: color,
        borderWidth: type === "line" ? 2 : 0, borderRadius: 4, pointRadius: labels.length > 100 ? 0 : 2,
        fill: false, tension: 0.25, cubicInterpolationMode: "monotone",  // no swing below zero
      }],
    };
    const title = axisTitle(labels);
    if (drawn[id]) {
      const c = drawn[id];
      c.data = data;
      c.options.plugins.tooltip.callbacks = o.callbacks;
      if (o.tick) c.options.scales.x.ticks.callback = o.tick;
      c.options.scales.x.title = { display: !!title, text: title, color: ink };
      c.update();
      return;
    }
    drawn[id] = new window.Chart(document.getElementById(id), {
      type: type,
      data: data,
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: false }, tooltip: { callbacks: o.callbacks } },
        scales: {
          // every length bucket is labelled; days are thinned to fit
          x: { ticks: Object.assign({ color: ink, maxRotation: id === "c-dist" ? 50 : 0,
                                      autoSkip: id !== "c-dist" }, o.tick ? { callback: o.tick } : {}),
               title: { display: !!title, text: title, color: ink }, grid: { display: false } },
          y: { beginAtZero: true, ticks: { color: ink, callback: o.yTick }, grid: { color: grid } },
        },
      },
    });
  }

  // "+8% on the mean of 660" under a tooltip: peaks without arithmetic
  function versus(value, mean, write) {
    if (!mean) return "";
    const pct = Math.round((100 * (value - mean)) / mean);
    const how = pct === 0 ? "the" : (pct > 0 ? "+" : "") + pct + "% on the";
    return " " + how + " range's mean of " + write(mean);
  }

  function show(board) {
    const h = board.headline || {};
    const set = (id, text) => { document.getElementById(id).textContent = text; };
    set("hl-sessions", number(h.sessions));
    set("hl-users", number(h.users));
    set("hl-median", length(h.median_length_s));
    set("hl-p90", length(h.p90_length_s));
    set("hl-avg", length(h.average_length_s));
    set("hl-total", length(h.total_length_s));
    set("hl-spu", decimal(h.sessions_per_user));
    set("hl-eps", decimal(h.events_per_session));
    set("hl-late", number(h.late_events));

    const dist = board.length_distribution;
    const all = dist.reduce((a, b) => a + b.sessions, 0) || 1;
    chart("c-dist", "bar", dist.map(bucket), dist.map((b) => b.sessions), "#4f46e5", {
      label: "Sessions",
      callbacks: { label: (c) => " " + number(c.raw) + " sessions (" + decimal((100 * c.raw) / all) + "%)" },
      yTick: (v) => number(v),
    });
    fillTable("t-dist", dist.map((b) => [bucket(b), b.from_s, number(b.sessions), b.sessions]));

    const hourly = board.grain === "hour";
    const points = hourly ? board.per_hour : board.per_day;
    const when = (p) => (hourly ? p.hour : p.date);
    const long = hourly ? hourLong : dayLong;
    const tick = hourly ? hourTick : dayTick;
    const labels = points.map(when);
    const n = points.length || 1;
    const meanTotal = points.reduce((a, p) => a + p.total_length_s, 0) / n;
    const meanCount = points.reduce((a, p) => a + p.sessions, 0) / n;
    document.querySelectorAll("[data-day][data-hour]").forEach((el) => {
      el.textContent = hourly ? el.dataset.hour : el.dataset.day;
    });
    document.querySelectorAll("#t-total thead th:first-child button, #t-count thead th:first-child button")
      .forEach((b) => { b.textContent = hourly ? "Hour (" + tz + ")" : "Day"; });
    const title = (items) => long(labels[items[0].dataIndex]);
    chart("c-total", "bar", labels, points.map((p) => p.total_length_s / 3600), "#0d9488", {
      label: "Total length",
      callbacks: {
        title: title,
        label: (c) => " " + length(points[c.dataIndex].total_length_s) + " in all sessions",
        afterLabel: (c) => versus(points[c.dataIndex].total_length_s, meanTotal, length),
      },
      tick: function (v) { return tick(this.getLabelForValue(v)); }, yTick: (v) => decimal(v) + "h",
    });
    fillTable("t-total", points.map((p) => [long(when(p)), when(p), length(p.total_length_s), p.total_length_s]));

    chart("c-count", "line", labels, points.map((p) => p.sessions), "#db2777", {
      label: "Sessions",
      callbacks: {
        title: title,
        label: (c) => " " + number(c.raw) + " sessions",
        afterLabel: (c) => versus(c.raw, meanCount, decimal),
      },
      tick: function (v) { return tick(this.getLabelForValue(v)); }, yTick: (v) => number(v),
    });
    fillTable("t-count", points.map((p) => [long(when(p)), when(p), number(p.sessions), p.sessions]));
    const suffix = "-" + board.from + "-to-" + board.until + (board.source ? "-" + board.source : "");
    form.ownerDocument.querySelectorAll("button.csv").forEach((b) => {
      b.dataset.name = b.dataset.table.replace(/^t-/, "") + suffix;
    });

    emptyBox.hidden = h.sessions !== 0;
    if (h.sessions === 0) {
      const where = board.data_range;
      emptyBox.textContent = "No session ended from " + board.from + " to " + board.until +
        (board.source ? " on " + board.source : "") + ". " +
        (where ? "Sessions" + (board.source ? " on " + board.source : "") + " run from " +
          where.first + " to " + where.last + "." : "No session has ended in this project yet.");
      if (where) {
        const go = document.createElement("button");
        go.type = "button";
        go.className = "link-like";
        go.textContent = "Show the last 30 days with sessions";
        go.addEventListener("click", () => {
          const last = new Date(where.last + "T00:00:00Z");
          form.elements.until.value = where.last;
          last.setUTCDate(last.getUTCDate() - 29);
          form.elements.from.value = last.toISOString().slice(0, 10);
          load();
        });
        emptyBox.append(" ", go);
      }
    }
  }

  function filters() {
    const params = new URLSearchParams(new FormData(form));
    if (!params.get("source")) params.delete("source");
    return params.toString();
  }

  // figures: "ready" (they answer the filters on screen), "loading" (dimmed), "error" (hidden)
  function state(name) {
    figures.dataset.state = name;
    charts.dataset.state = name;
    headline.setAttribute("aria-busy", name === "loading" ? "true" : "false");
    if (name !== "ready") updated.textContent = name === "loading" ? "Updating…" : "";
  }

  // The filters changed: the address says so at once, the figures are dimmed until
  // their answer comes, and the request goes after `wait` ms without another change.
  function changed(wait) {
    const query = filters();
    history.replaceState(null, "", "?" + query);
    if (controller) controller.abort();  // its figures would answer other filters
    controller = null;
    if (figures.dataset.for !== query) state("loading");
    clearTimeout(timer);
    timer = setTimeout(load, wait);
  }

  async function load() {
    clearTimeout(timer);
    const query = filters();
    history.replaceState(null, "", "?" + query);
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    // the same filters again (Show, the minute's refresh): the figures still answer them
    if (figures.dataset.for !== query) state("loading");
    else updated.textContent = "Updating…";
    errorBox.hidden = true;
    try {
      // no extra headers: the first fetch is the one the page preloaded
      const answer = await fetch(form.dataset.api + "?" + query, { signal: mine.signal });
      if (answer.status === 401) {  // the session ended: sign in again, then come back
        location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
        return;
      }
      const body = await answer.json();
      if (controller !== mine) return;  // superseded while its body was read
      if (!answer.ok) throw new Error(body.error || "the board could not be loaded");
      show(body);
      figures.dataset.for = query;
      state("ready");
      const now = new Date().toLocaleTimeString("en-GB", { timeZone: tz, hour12: false });
      updated.textContent = "Updated " + now + " " + tz;
      // for bench/page.py: navigation to charts drawn
      if (!performance.getEntriesByName("lull:board-ready").length) performance.mark("lull:board-ready");
    } catch (e) {
      if (controller !== mine || mine.signal.aborted) return;  // a newer request owns the page
      errorBox.textContent = e.message;
      errorBox.hidden = false;
      emptyBox.hidden = true;
      figures.dataset.for = "";
      state("error");
    } finally {
      if (controller === mine) controller = null;
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  document.getElementById("source").addEventListener("change", () => changed(WAIT_MS));
  ["from", "until"].forEach((id) => document.getElementById(id).addEventListener("input", () => changed(WAIT_MS * 2)));
  form.querySelectorAll("[data-days]").forEach((b) => b.addEventListener("click", () => {
    const until = form.elements.until.value ? new Date(form.elements.until.value + "T00:00:00Z") : new Date();
    until.setUTCDate(until.getUTCDate() - (Number(b.dataset.days) - 1));
    form.elements.from.value = until.toISOString().slice(0, 10);
    load();
  }));
  if (form.dataset.error) {
    // the address's filters were refused: keep them in view with the reason, no figures
    state("error");
  } else {
    load();
  }
  // a live board: fetched again every minute while the tab is in view (and not failing)
  setInterval(() => {
    if (document.visibilityState === "visible" && figures.dataset.state === "ready") load();
  }, 60_000);
})();
