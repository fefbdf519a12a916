// The session board: fetches the board's JSON and draws its three charts and figures.
"use strict";
(function () {
  const form = document.getElementById("board-filters");
  if (!form) return;
  const charts = document.getElementById("charts");
  const errorBox = document.getElementById("board-error");
  const headline = document.getElementById("headline");
  const updated = document.getElementById("board-updated");
  const hasCharts = typeof window.Chart !== "undefined";
  const drawn = {};
  const ink = "#5b6472";
  const grid = "rgba(91, 100, 114, 0.15)";

  const { number, decimal, length } = window.lullFormat;
  function bucket(b) {
    const short = (s) => (s >= 3600 ? s / 3600 + "h" : s >= 60 ? s / 60 + "m" : s + "s");
    if (b.to_s === null) return short(b.from_s) + "+";
    if (b.from_s === 0 && b.to_s === 1) return "0s";
    return short(b.from_s) + "–" + short(b.to_s);
  }
  const shortDay = (d) => d.slice(5);

  function fillTable(id, rows) {
    const body = document.querySelector("#" + id + " tbody");
    body.replaceChildren(
      ...rows.map(([a, b]) => {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = a;
        const td = document.createElement("td");
        td.textContent = b;
        tr.append(th, td);
        return tr;
      })
    );
  }

  function chart(id, type, labels, values, color, label, tooltip, yTick) {
    if (!hasCharts) return;
    const data = {
      labels: labels,
      datasets: [{
        label: label, data: values, backgroundColor: color + "cc", borderColor: color,
        borderWidth: type === "line" ? 2 : 0, borderRadius: 4, pointRadius: 2, fill: false,
        tension: 0.25, cubicInterpolationMode: "monotone",  // no swing below zero
      }],
    };
    if (drawn[id]) {
      drawn[id].data = data;
      drawn[id].update();
      return;
    }
    drawn[id] = new window.Chart(document.getElementById(id), {
      type: type,
      data: data,
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { display: false },
          tooltip: { callbacks: { label: tooltip } },
        },
        scales: {
          // every length bucket is labelled; days are thinned to fit
          x: { ticks: { color: ink, maxRotation: type === "bar" && id === "c-dist" ? 50 : 0,
                        autoSkip: id !== "c-dist" }, grid: { display: false } },
          y: { beginAtZero: true, ticks: { color: ink, callback: yTick }, grid: { color: grid } },
        },
      },
    });
  }

  function show(board) {
    const h = board.headline || {};
    const set = (id, text) => { document.getElementById(id).textContent = text; };
    set("hl-sessions", number(h.sessions));
    set("hl-users", number(h.users));
    set("hl-median", length(h.median_length_s));
    set("hl-p90", length(h.p90_length_s));
    set("hl-spu", decimal(h.sessions_per_user));
    set("hl-eps", decimal(h.events_per_session));
    set("hl-late", number(h.late_events));

    const dist = board.length_distribution;
    const all = dist.reduce((a, b) => a + b.sessions, 0) || 1;
    chart("c-dist", "bar", dist.map(bucket), dist.map((b) => b.sessions), "#4f46e5", "Sessions",
      (c) => " " + number(c.raw) + " sessions (" + decimal((100 * c.raw) / all) + "%)",
      (v) => number(v));
    fillTable("t-dist", dist.map((b) => [bucket(b), number(b.sessions)]));

    const days = board.per_day;
    chart("c-total", "bar", days.map((d) => shortDay(d.date)), days.map((d) => d.total_length_s / 3600),
      "#0d9488", "Total length",
      (c) => " " + length(days[c.dataIndex].total_length_s) + " in all sessions",
      (v) => decimal(v) + "h");
    fillTable("t-total", days.map((d) => [d.date, length(d.total_length_s)]));

    chart("c-count", "line", days.map((d) => shortDay(d.date)), days.map((d) => d.sessions),
      "#db2777", "Sessions", (c) => " " + number(c.raw) + " sessions", (v) => number(v));
    fillTable("t-count", days.map((d) => [d.date, number(d.sessions)]));
  }

  async function load() {
    const params = new URLSearchParams(new FormData(form));
    if (!params.get("source")) params.delete("source");
    charts.dataset.state = "loading";
    headline.setAttribute("aria-busy", "true");
    errorBox.hidden = true;
    try {
      // no extra headers: the first fetch is the one the page preloaded
      const answer = await fetch(form.dataset.api + "?" + params);
      if (answer.status === 401) {  // the session ended: sign in again, then come back
        location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
        return;
      }
      const body = await answer.json();
      if (!answer.ok) throw new Error(body.error || "the board could not be loaded");
      show(body);
      history.replaceState(null, "", "?" + params);
      charts.dataset.state = "ready";
      updated.textContent = "Updated " + new Date().toLocaleTimeString("en-GB");
      // for bench/page.py: navigation to charts drawn
      if (!performance.getEntriesByName("lull:board-ready").length) performance.mark("lull:board-ready");
    } catch (e) {
      errorBox.textContent = e.message;
      errorBox.hidden = false;
      charts.dataset.state = "error";
    } finally {
      headline.setAttribute("aria-busy", "false");
    }
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); load(); });
  document.getElementById("source").addEventListener("change", load);
  form.querySelectorAll("[data-days]").forEach((b) => b.addEventListener("click", () => {
    const until = form.elements.until.value ? new Date(form.elements.until.value + "T00:00:00Z") : new Date();
    until.setUTCDate(until.getUTCDate() - (Number(b.dataset.days) - 1));
    form.elements.from.value = until.toISOString().slice(0, 10);
    load();
  }));
  load();
  // a live board: fetched again every minute while the tab is in view
  setInterval(() => { if (document.visibilityState === "visible") load(); }, 60_000);
})();
