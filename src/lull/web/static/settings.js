// Settings: the what-if preview of a new timeout, side by side with the current one.
"use strict";
(function () {
  const form = document.getElementById("settings-form");
  if (!form) return;
  const input = document.getElementById("timeout");
  const box = document.getElementById("whatif");
  const errorBox = document.getElementById("whatif-error");
  const table = document.getElementById("whatif-table");
  const status = document.getElementById("whatif-status");
  let timer = null;
  let asked = 0;  // only the answer to the latest question is shown

  const { number, length } = window.lullFormat;
  function row(cells, head) {
    const tr = document.createElement("tr");
    cells.forEach((text, i) => {
      const cell = document.createElement(i === 0 ? "th" : "td");
      if (i === 0) cell.scope = "row";
      cell.textContent = text;
      tr.append(cell);
    });
    if (head) tr.className = "total";
    return tr;
  }
  const cells = (label, x) => [label, number(x.current.sessions), number(x.proposed.sessions),
    length(x.current.median_length_s), length(x.proposed.median_length_s)];

  // The board's count for the same days beside the preview's "now": the late events'
  // difference in figures, not only in words.
  const boardLine = document.getElementById("whatif-board");
  async function compare(whatif, mine) {
    boardLine.hidden = true;
    const days = whatif.per_day.length;
    const query = "?until=" + whatif.until + "&days=" + days;
    try {
      const answer = await fetch(boardLine.dataset.board + query);
      if (!answer.ok || mine !== asked) return;
      const board = await answer.json();
      if (mine !== asked) return;
      const now = whatif.total.current.sessions;
      const diff = now - board.headline.sessions;
      boardLine.textContent = "The board counts " + number(board.headline.sessions) +
        " sessions over these days" + (diff === 0 ? ", as “now” does." :
          " (" + number(Math.abs(diff)) + (diff > 0 ? " fewer" : " more") + " than “now”; " +
          number(board.headline.late_events) + " late events in them).");
      boardLine.hidden = false;
    } catch (e) {
      // the comparison is a help, not the preview: leave it out
    }
  }

  async function preview() {
    const proposed = input.value.trim();
    if (!proposed) return;
    box.hidden = false;
    box.setAttribute("aria-busy", "true");
    box.dataset.state = "loading";
    status.textContent = "Computing the preview over the 30 days up to " + form.dataset.until + "…";
    const mine = ++asked;
    document.getElementById("whatif-proposed").textContent = proposed;
    table.querySelector(".cur").textContent = form.dataset.current;
    errorBox.hidden = true;
    try {
      const query = "?timeout=" + encodeURIComponent(proposed) + "&until=" + form.dataset.until;
      const answer = await fetch(form.dataset.whatif + query, { headers: { Accept: "application/json" } });
      if (answer.status === 401) {  // the session ended: sign in again, then come back
        location.href = "/signin?next=" + encodeURIComponent(location.pathname + location.search);
        return;
      }
      const body = await answer.json();
      if (mine !== asked) return;
      if (!answer.ok) throw new Error(body.error || "no preview");
      table.tBodies[0].replaceChildren(...body.per_day.map((d) => row(cells(d.day, d))));
      table.tFoot.replaceChildren(row(cells("All days", body.total), true));
      table.hidden = false;
      box.dataset.state = "ready";
      status.textContent = "";
      compare(body, mine);
    } catch (e) {
      if (mine !== asked) return;
      status.textContent = "";
      errorBox.textContent = e.message;
      errorBox.hidden = false;
      table.hidden = true;
      box.dataset.state = "error";
    } finally {
      box.setAttribute("aria-busy", "false");
    }
  }

  // A rebuild is asked for in a dialog that says what it changes and costs.
  const dialog = document.getElementById("rebuild-dialog");
  const rebuild = document.getElementById("rebuild");
  let confirmed = false;
  form.addEventListener("submit", (e) => {
    if (!rebuild.checked || confirmed || !dialog || !dialog.showModal) return;
    e.preventDefault();
    dialog.returnValue = "";
    dialog.showModal();
  });
  if (dialog) {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "rebuild") return;
      confirmed = true;
      form.requestSubmit();
    });
  }

  document.getElementById("preview").addEventListener("click", preview);
  input.addEventListener("input", () => {
    clearTimeout(timer);
    if (input.value.trim() !== form.dataset.current) timer = setTimeout(preview, 500);
  });
})();
