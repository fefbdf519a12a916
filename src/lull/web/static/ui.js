// What every page shares: menus that close on Esc and outside clicks, sortable tables,
// and a table's CSV download.
"use strict";
window.lullUI = (function () {
  // -- menus: <details data-menu> (and the project picker) close on Esc and outside clicks
  const menus = () => document.querySelectorAll("details[data-menu][open], details.picker[open]");
  document.addEventListener("click", (e) => {
    menus().forEach((d) => { if (!d.contains(e.target)) d.open = false; });
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    menus().forEach((d) => {
      const inside = d.contains(document.activeElement);
      d.open = false;
      if (inside) d.querySelector("summary").focus();
    });
  });

  // -- a definition's card is placed under its "?" and kept inside the window (it is
  // fixed, so it never widens the page), and closed when the page scrolls away from it
  document.querySelectorAll("details.def").forEach((d) => d.addEventListener("toggle", () => {
    if (!d.open) return;
    const card = d.querySelector("p");
    const at = d.querySelector("summary").getBoundingClientRect();
    const width = Math.min(288, window.innerWidth - 16);
    card.style.width = width + "px";
    card.style.left = Math.max(8, Math.min(at.left - 64, window.innerWidth - width - 8)) + "px";
    card.style.top = at.bottom + 6 + "px";
  }));
  window.addEventListener("scroll", () => {
    document.querySelectorAll("details.def[open]").forEach((d) => { d.open = false; });
  }, { passive: true });

  // -- sortable tables: a button in each column head; cells sort by data-sort, else text
  function key(cell) {
    const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
    const n = Number(raw);
    return raw !== "" && !Number.isNaN(n) ? n : raw.toLowerCase();
  }

  function sortTable(table) {
    const th = table.querySelector("thead th[aria-sort]");
    if (!th) return;
    const column = Array.from(th.parentNode.children).indexOf(th);
    const down = th.getAttribute("aria-sort") === "descending" ? -1 : 1;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a.cells[column]);
      const y = key(b.cells[column]);
      return (x < y ? -1 : x > y ? 1 : 0) * down;
    });
    body.replaceChildren(...rows);
  }

  function sortable(table) {
    table.querySelectorAll("thead th").forEach((th) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      th.replaceChildren(button);
      button.addEventListener("click", () => {
        const next = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
        table.querySelectorAll("thead th[aria-sort]").forEach((o) => o.removeAttribute("aria-sort"));
        th.setAttribute("aria-sort", next);
        sortTable(table);
      });
    });
  }
  document.querySelectorAll("table.sortable").forEach(sortable);

  // -- CSV: the table as shown (in its order), raw values where the cells keep them
  function csv(table) {
    const quote = (v) => (/[",\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v);
    const head = Array.from(table.querySelectorAll("thead th")).map((th) => quote(th.textContent.trim()));
    const lines = Array.from(table.tBodies[0].rows).map((tr) => Array.from(tr.cells)
      .map((c) => quote(c.dataset.csv !== undefined ? c.dataset.csv : c.textContent.trim())).join(","));
    return [head.join(","), ...lines].join("\n") + "\n";
  }

  function download(table, name) {
    const url = URL.createObjectURL(new Blob([csv(table)], { type: "text/csv" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = name + ".csv";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  document.querySelectorAll("button.csv[data-table]").forEach((b) => b.addEventListener("click", () => {
    download(document.getElementById(b.dataset.table), b.dataset.name || b.dataset.table);
  }));

  return { sortTable: sortTable, csv: csv };
})();
