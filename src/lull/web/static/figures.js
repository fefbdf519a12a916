// More of the board (templates/_figures.html): bounce rate, events per session, sessions
// per user, session interval, entry and exit events, and a breakdown by a property of the
// first event, each beside the period of the same length before the range.
//
// It follows the board's filters as board.js does: board.js announces each request
// ("lull:load", with its query) and each change of the filters ("lull:changed"); a new
// request aborts the one before, so an answer for other filters is never shown, and the
// figures are dimmed until the answer for the filters on screen is in.
"use strict";
(function () {
  const form = document.getElementById("board-filters");
  const more = document.getElementById("more");
  if (!form || !more) return;
  const errorBox = document.getElementById("more-error");
  const pick = document.getElementById("bd-property");
  const drawn = {};
  const ink = "#5b6472";
  const grid = "rgba(91, 100, 114, 0.15)";
  const NOW = "#4f46e5";
  const BEFORE = "#9ca3af";
  let controller = null;  // the requests under way, if any
  let query = null;  // the filters of the figures on screen (or asked for)

  const fmt = () => window.lullFormat;
  const pct = (r) => (r === null || r === undefined ? "–" : (100 * r).toFixed(1) + "%");
  const short = (s) => (s >= 86400 ? s / 86400 + "d" : s >= 3600 ? s / 3600 + "h" : s >= 60 ? s / 60 + "m" : s + "s");
  function range(lo, hi, unit) {
    const w = unit ? short : String;
    if (hi === null) return w(lo) + "+";
    if (!unit && hi === lo + 1) return String(lo);
    return w(lo) + "–" + (unit ? w(hi) : String(hi - 1));
  }

  // "17.2% · 16.9% the 30 days before (+0.3 pts)": the change is not coloured, since
  // whether more is better depends on the figure (more bounces, fewer sessions per user)
  function versus(id, now, before, write, delta, days) {
    const el = document.getElementById(id);
    const strong = document.createElement("strong");
    strong.textContent = write(now);
    let change = "";
    if (now !== null && before !== null && now !== undefined && before !== undefined) {
      const d = now - before;
      change = " (" + (d > 0 ? "+" : d < 0 ? "−" : "±") + delta(Math.abs(d)) + ")";
    }
    const rest = document.createElement("span");
    rest.textContent = " · " + write(before) + " the " + days + " days before" + change;
    el.replaceChildren(strong, rest);
  }

  function table(id, rows) {
    const t = document.getElementById(id);
    t.tBodies[0].replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      cells.forEach(([text, value], i) => {
        const c = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) c.scope = "row";
        c.textContent = text;
        c.dataset.sort = value;
        c.dataset.csv = value;
        tr.append(c);
      });
      return tr;
    }));
    window.lullUI.sortTable(t);
  }

  function chart(id, type, labels, sets, yTick, tooltip) {
    if (typeof window.Chart === "undefined") return;
    const data = {
      labels: labels,
      datasets: sets.map((s) => ({
        label: s.label, data: s.values, backgroundColor: s.color + (type === "bar" ? "cc" : "33"),
        borderColor: s.color, borderWidth: type === "line" ? 2 : 0, borderRadius: 3,
        borderDash: s.dashed ? [5, 4] : [], pointRadius: labels.length > 60 ? 0 : 2,
        fill: false, tension: 0.25, cubicInterpolationMode: "monotone", spanGaps: true,
      })),
    };
    if (drawn[id]) {
      drawn[id].data = data;
      drawn[id].options.plugins.tooltip.callbacks = tooltip;
      drawn[id].update();
      return;
    }
    drawn[id] = new window.Chart(document.getElementById(id), {
      type: type,
      data: data,
      options: {
        animation: false, responsive: true, maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: { legend: { display: true, labels: { color: ink, boxWidth: 12 } }, tooltip: { callbacks: tooltip } },
        scales: {
          x: { ticks: { color: ink, maxRotation: 50, autoSkip: true }, grid: { display: false } },
          y: { beginAtZero: true, ticks: { color: ink, callback: yTick }, grid: { color: grid } },
        },
      },
    });
  }

  function showBounce(f, days) {
    versus("v-bounce", f.current.bounce_rate, f.previous.bounce_rate, pct,
           (d) => (100 * d).toFixed(1) + " pts", days);
    const hourly = f.grain === "hour";
    document.getElementById("c-bounce-t").textContent =
      document.getElementById("c-bounce-t").dataset[hourly ? "hour" : "day"];
    const when = (p) => (hourly ? p.hour.slice(5, 10) + " " + p.hour.slice(11) : p.date);
    const labels = f.trend.map(when);
    chart("c-bounce", "line", labels, [
      { label: "Range", values: f.trend.map((p) => p.bounce_rate === null ? null : 100 * p.bounce_rate), color: NOW },
      { label: "Period before", values: f.previous_trend.map((p) => p.bounce_rate === null ? null : 100 * p.bounce_rate),
        color: BEFORE, dashed: true },
    ], (v) => v + "%", {
      title: (items) => labels[items[0].dataIndex] + " · " + (f.previous_trend[items[0].dataIndex] || {})[hourly ? "hour" : "date"],
      label: (c) => " " + c.dataset.label + ": " + (c.raw === null ? "no session" : c.raw.toFixed(1) + "%"),
    });
    table("t-bounce", f.trend.map((p, i) => [
      [hourly ? p.hour : p.date, hourly ? p.hour : p.date], [fmt().number(p.sessions), p.sessions],
      [fmt().number(p.bounces), p.bounces], [pct(p.bounce_rate), p.bounce_rate === null ? "" : p.bounce_rate],
      [pct(f.previous_trend[i].bounce_rate), f.previous_trend[i].bounce_rate === null ? "" : f.previous_trend[i].bounce_rate],
    ]));
  }

  function showSpread(key, f, days, what, unit) {
    const write = unit ? fmt().length : fmt().decimal;
    versus("v-" + key, f.current.median, f.previous.median, (m) => "median " + write(m), write, days);
    const el = document.getElementById("v-" + key);
    const mean = document.createElement("span");
    mean.className = "muted";
    mean.textContent = " · mean " + write(f.current.mean);
    el.append(mean);
    const label = (b) => range(b[unit ? "from_s" : "from"], b[unit ? "to_s" : "to"], unit);
    const labels = f.distribution.map(label);
    chart("c-" + key, "bar", labels, [
      { label: "Range", values: f.distribution.map((b) => b[what]), color: NOW },
      { label: "Period before", values: f.distribution.map((b) => b["previous_" + what]), color: BEFORE },
    ], (v) => fmt().number(v), {
      label: (c) => " " + c.dataset.label + ": " + fmt().number(c.raw) + " " + what,
    });
    table("t-" + key, f.distribution.map((b) => [
      [label(b), b[unit ? "from_s" : "from"]], [fmt().number(b[what]), b[what]],
      [fmt().number(b["previous_" + what]), b["previous_" + what]],
    ]));
  }

  function showEntry(f) {
    ["entry", "exit"].forEach((kind) => table("t-" + kind, f[kind].map((r) => [
      [r.name, r.name], [fmt().number(r.sessions), r.sessions], [pct(r.share), r.share],
      [pct(r.previous_share), r.previous_share === null ? "" : r.previous_share],
    ])));
  }

  function showBreakdown(f) {
    const row = (label, r) => [
      [label, label], [fmt().number(r.sessions), r.sessions],
      [fmt().length(r.median_length_s), r.median_length_s === null ? "" : r.median_length_s],
      [fmt().length(r.total_length_s), r.total_length_s],
      [fmt().number(r.previous_sessions), r.previous_sessions],
      [fmt().length(r.previous_median_length_s), r.previous_median_length_s === null ? "" : r.previous_median_length_s],
      [fmt().length(r.previous_total_length_s), r.previous_total_length_s],
    ];
    const rows = f.values.map((r) => row(r.value, r));
    if (f.other.sessions || f.other.previous_sessions) rows.push(row("(all other values)", f.other));
    if (f.missing.sessions || f.missing.previous_sessions) rows.push(row("(no " + f.property + ")", f.missing));
    table("t-breakdown", rows);
  }

  function choices(list) {
    const kept = pick.value;
    const names = list.properties.map((p) => p.name);
    pick.replaceChildren(...(names.length ? names : [""]).map((n) => {
      const o = document.createElement("option");
      o.value = n;
      o.textContent = n || "(no property in the range)";
      return o;
    }));
    pick.value = names.includes(kept) ? kept : names[0] || "";
  }

  function state(name) {
    more.dataset.state = name;
    more.setAttribute("aria-busy", name === "loading" ? "true" : "false");
  }

  async function get(name, q, signal, extra) {
    const answer = await fetch(more.dataset.api + "/" + name + "?" + q + (extra || ""), { signal: signal });
    const body = await answer.json();
    if (!answer.ok) throw new Error(body.error || "the figures could not be loaded");
    return body;
  }

  const property = () => (pick.value ? "&property=" + encodeURIComponent(pick.value) : "");

  async function breakdown(q, signal) {
    if (!pick.value) {
      document.getElementById("t-breakdown").tBodies[0].replaceChildren();
      return;
    }
    showBreakdown(await get("breakdown", q, signal, property()));
  }

  async function load(q) {
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    if (more.dataset.for !== q) state("loading");
    query = q;
    errorBox.hidden = true;
    try {
      const [bounce, eps, spu, gaps, ends, props] = await Promise.all(
        ["bounce", "events_per_session", "sessions_per_user", "interval", "entry_exit", "properties"]
          .map((n) => get(n, q, mine.signal)));
      if (controller !== mine) return;
      const n = Math.round((Date.parse(bounce.until) - Date.parse(bounce.from)) / 86400000) + 1;
      document.getElementById("more-vs").textContent = "Each figure beside the " + n + " days before the range (" +
        bounce.previous_from + " to " + bounce.previous_until + ").";
      showBounce(bounce, n);
      showSpread("eps", eps, n, "sessions", false);
      showSpread("spu", spu, n, "users", false);
      showSpread("interval", gaps, n, "sessions", true);
      showEntry(ends);
      choices(props);
      await breakdown(q, mine.signal);
      if (controller !== mine) return;
      more.dataset.for = q;
      state("ready");
    } catch (e) {
      if (controller !== mine || mine.signal.aborted) return;  // a newer request owns the figures
      errorBox.textContent = e.message;
      errorBox.hidden = false;
      more.dataset.for = "";
      state("error");
    } finally {
      if (controller === mine) controller = null;
    }
  }

  form.addEventListener("lull:load", (e) => load(e.detail));
  form.addEventListener("lull:changed", (e) => {
    if (controller) controller.abort();  // its figures would answer other filters
    controller = null;
    if (more.dataset.for !== e.detail) state("loading");
  });
  pick.addEventListener("change", async () => {
    if (query === null) return;
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    state("loading");
    try {
      await breakdown(query, mine.signal);
      if (controller === mine) state("ready");
    } catch (e) {
      if (controller !== mine || mine.signal.aborted) return;
      errorBox.textContent = e.message;
      errorBox.hidden = false;
      state("error");
    } finally {
      if (controller === mine) controller = null;
    }
  });
  if (form.dataset.error) state("error");  // refused filters: no figures (board.js says why)
})();
