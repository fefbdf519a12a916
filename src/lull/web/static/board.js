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

  // A change of the session's definition with no rebuild after it: a dashed line on
  // its day (or hour) and its label, from chart.$marks ([{index, label}]).
  const markColor = "#b45309";
  const marksPlugin = {
    id: "lullMarks",
    afterDatasetsDraw(c) {
      const marks = c.$marks || [];
      if (!marks.length) return;
      const { ctx, chartArea: area, scales: { x } } = c;
      ctx.save();
      ctx.font = "12px system-ui, sans-serif";
      ctx.textBaseline = "top";
      marks.forEach((m, i) => {
        const at = x.getPixelForValue(m.index);
        ctx.strokeStyle = markColor;
        ctx.setLineDash([4, 3]);
        ctx.lineWidth = 1.5;
        ctx.beginPath();
        ctx.moveTo(at, area.top);
        ctx.lineTo(at, area.bottom);
        ctx.stroke();
        // the short label where the long one would not fit the chart (a phone)
        const text = ctx.measureText(m.label).width > area.right - area.left - 8 ? m.short : m.label;
        const width = ctx.measureText(text).width;
        const left = at + 4 + width > area.right ? Math.max(area.left, at - 4 - width) : at + 4;
        ctx.fillStyle = "rgba(255, 255, 255, 0.85)";
        ctx.fillRect(left - 2, area.top + 2 + 16 * i, width + 4, 15);
        ctx.fillStyle = markColor;
        ctx.fillText(text, left, area.top + 3 + 16 * i);
      });
      ctx.restore();
    },
  };

  // the changes the board's range holds, placed on the chart's days or hours
  function marksOn(changes, labels, hourly) {
    return changes.map((ch) => ({ index: labels.indexOf(hourly ? ch.hour : ch.day), change: ch }))
      .filter((m) => m.index >= 0)
      .map((m) => {
        const ch = m.change;
        const when = hourly ? ch.local_time.slice(11) + " " + tz : ch.day;
        const what = ch.old_timeout !== ch.timeout ? ch.old_timeout + " → " + ch.timeout : "exclusions";
        return { index: m.index, change: ch, label: when + ": " + ch.label,
                 short: (hourly ? ch.local_time.slice(11) : ch.day.slice(5)) + " " + what + ", not rebuilt" };
      });
  }

  // the same changes beside a chart's table: a line each, and a flag on its row
  function noteTable(id, marks, hourly) {
    const table = document.getElementById(id);
    let list = table.parentNode.querySelector("ul.marks");
    if (!list) {
      list = document.createElement("ul");
      list.className = "marks";
      table.before(list);
    }
    list.hidden = !marks.length;
    list.replaceChildren(...marks.map((m) => {
      const li = document.createElement("li");
      li.textContent = "Settings changed " + m.change.local_time + " " + tz + ": " + m.change.label + ".";
      return li;
    }));
    const rows = Array.from(table.tBodies[0].rows);
    marks.forEach((m) => {
      const row = rows.find((r) => r.cells[0].dataset.sort === (hourly ? m.change.hour : m.change.day));
      if (!row) return;
      const flag = document.createElement("span");
      flag.className = "mark";
      flag.textContent = " · " + m.change.label;
      row.cells[0].append(flag);
    });
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
      c.$marks = o.marks || [];
      c.options.scales.x.title = { display: !!title, text: title, color: ink };
      c.update();
      return;
    }
    drawn[id] = new window.Chart(document.getElementById(id), {
      type: type,
      data: data,
      plugins: [marksPlugin],
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
    drawn[id].$marks = o.marks || [];
    drawn[id].draw();
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
    const marks = marksOn(board.settings_changes || [], labels, hourly);
    chart("c-total", "bar", labels, points.map((p) => p.total_length_s / 3600), "#0d9488", {
      label: "Total length",
      callbacks: {
        title: title,
        label: (c) => " " + length(points[c.dataIndex].total_length_s) + " in all sessions",
        afterLabel: (c) => versus(points[c.dataIndex].total_length_s, meanTotal, length),
      },
      tick: function (v) { return tick(this.getLabelForValue(v)); }, yTick: (v) => decimal(v) + "h",
      marks: marks,
    });
    fillTable("t-total", points.map((p) => [long(when(p)), when(p), length(p.total_length_s), p.total_length_s]));
    noteTable("t-total", marks, hourly);

    chart("c-count", "line", labels, points.map((p) => p.sessions), "#db2777", {
      label: "Sessions",
      callbacks: {
        title: title,
        label: (c) => " " + number(c.raw) + " sessions",
        afterLabel: (c) => versus(c.raw, meanCount, decimal),
      },
      tick: function (v) { return tick(this.getLabelForValue(v)); }, yTick: (v) => number(v),
      marks: marks,
    });
    fillTable("t-count", points.map((p) => [long(when(p)), when(p), number(p.sessions), p.sessions]));
    noteTable("t-count", marks, hourly);
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

  // One date format on every page: a day is YYYY-MM-DD, and a wrong one is named with it.
  function isDay(text) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(text)) return false;
    const d = new Date(text + "T00:00:00Z");
    return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === text;
  }
  function badDay() {
    let message = "";
    ["from", "until"].forEach((name) => {
      const input = form.elements[name];
      const text = input.value.trim();
      const bad = !isDay(text);
      input.setAttribute("aria-invalid", bad ? "true" : "false");
      if (bad && !message) {
        const label = name === "from" ? "From" : "Until";
        message = label + (text ? " “" + text + "”" : " is empty") + ": expected a date YYYY-MM-DD";
      }
    });
    return message;
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
    form.dispatchEvent(new CustomEvent("lull:changed", { detail: query }));  // figures.js too
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
      const bad = badDay();
      if (bad) throw new Error(bad);  // not worth a request
      form.dispatchEvent(new CustomEvent("lull:load", { detail: query }));  // figures.js follows
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
    if (form.elements.until.value && !isDay(form.elements.until.value.trim())) return load();
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
