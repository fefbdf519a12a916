// The segment builder: rows of conditions (or a live segment's event and webhook) written
// as the definition's JSON into the textarea, which is what is previewed and saved.
"use strict";
(function () {
  const form = document.getElementById("segment-form");
  if (!form) return;
  const $ = (id) => document.getElementById(id);
  const text = $("definition");
  const list = $("conditions");
  const OPS = ["=", "!=", ">", ">=", "<", "<=", "contains", "exists", "not exists"];
  const TYPES = [
    ["did", "did the event"], ["did_not", "did not do the event"],
    ["sessions", "number of sessions"], ["session_time", "total session time (minutes)"],
    ["profile", "profile property"],
  ];

  function el(tag, attrs, children) {
    const e = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    });
    (children || []).forEach((c) => e.appendChild(c));
    return e;
  }
  function options(select, pairs) {
    pairs.forEach(([value, label]) => select.appendChild(el("option", { value, text: label })));
    return select;
  }
  // "12" and "1.5" are numbers, true/false booleans, "\"12\"" the text 12, anything else text
  function typed(raw) {
    const v = raw.trim();
    if (/^-?\d+(\.\d+)?$/.test(v)) return Number(v);
    if (v === "true" || v === "false") return v === "true";
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) return v.slice(1, -1);
    return raw;
  }
  function filterOf(prop, op, value) {
    if (!prop.value.trim()) return null;
    const f = { property: prop.value.trim(), op: op.value };
    if (op.value !== "exists" && op.value !== "not exists") f.value = typed(value.value);
    return f;
  }
  let counter = 0;

  function addCondition(kind) {
    const n = ++counter;
    const label = (text, id) => el("label", { for: id, text });
    const type = options(el("select", { id: `c${n}-type`, class: "c-type" }), TYPES);
    type.value = kind || "did";
    const event = el("input", { id: `c${n}-event`, class: "c-event", list: "event-names",
                                placeholder: "event name", autocomplete: "off" });
    const least = el("input", { id: `c${n}-least`, class: "c-least", type: "number", min: "0" });
    const most = el("input", { id: `c${n}-most`, class: "c-most", type: "number", min: "0" });
    const prop = el("input", { id: `c${n}-prop`, class: "c-prop", placeholder: "property", autocomplete: "off" });
    const op = options(el("select", { id: `c${n}-op`, class: "c-op" }), OPS.map((o) => [o, o]));
    const value = el("input", { id: `c${n}-value`, class: "c-value", placeholder: "value", autocomplete: "off" });
    const remove = el("button", { type: "button", class: "c-remove", "aria-label": `Remove condition ${n}`, text: "×" });
    const parts = {
      event: el("span", { class: "part" }, [label("Event", event.id), event]),
      count: el("span", { class: "part" }, [label("at least", least.id), least, label("at most", most.id), most]),
      filter: el("span", { class: "part" }, [label("where", prop.id), prop, label("is", op.id), op,
                                              label("value", value.id), value]),
    };
    const li = el("li", { class: "condition" }, [
      el("span", { class: "part" }, [label("Condition", type.id), type]),
      parts.event, parts.count, parts.filter, remove,
    ]);
    li.read = () => {
      const t = type.value;
      const count = {};
      const scale = t === "session_time" ? 60 : 1;
      if (least.value !== "") count.at_least = Math.round(Number(least.value) * scale);
      if (most.value !== "") count.at_most = Math.round(Number(most.value) * scale);
      const f = filterOf(prop, op, value);
      if (t === "profile") return f ? { type: "profile", ...f } : null;
      if (t === "sessions" || t === "session_time") return { type: t, ...count };
      const c = { type: "event", event: event.value };
      if (f) c.where = [f];
      if (t === "did_not") c.did = false; else Object.assign(c, count);
      return c;
    };
    const shape = () => {
      const t = type.value;
      parts.event.hidden = !(t === "did" || t === "did_not");
      parts.count.hidden = t === "did_not" || t === "profile";
      parts.filter.hidden = t === "sessions" || t === "session_time";
    };
    type.addEventListener("change", shape);
    remove.addEventListener("click", () => { li.remove(); write(); });
    shape();
    list.appendChild(li);
    return li;
  }

  function past() {
    const d = {};
    if ($("b-range").value === "days") d.days = Number($("b-days").value);
    else { d.from = $("b-from").value; d.until = $("b-until").value; }
    d.match = $("b-match").value;
    d.conditions = Array.from(list.children).map((li) => li.read()).filter(Boolean);
    return d;
  }
  function live() {
    const d = { event: $("l-event").value };
    const f = filterOf($("l-prop"), $("l-op"), $("l-value"));
    d.where = f ? [f] : [];
    d.first_time = $("l-first").checked;
    d.webhook = $("l-webhook").value;
    return d;
  }
  const isLive = () => form.querySelector("input[name=kind]:checked").value === "live";
  function write() {
    text.value = JSON.stringify(isLive() ? live() : past(), null, 2);
  }

  options($("l-op"), OPS.map((o) => [o, o]));
  form.querySelectorAll("input[name=kind]").forEach((r) => r.addEventListener("change", () => {
    kindShown();
    write();
  }));
  $("b-range").addEventListener("change", () => {
    const days = $("b-range").value === "days";
    $("b-days-field").hidden = !days;
    $("b-from-field").hidden = days;
    $("b-until-field").hidden = days;
  });
  ["past-builder", "live-builder"].forEach((id) => {
    $(id).addEventListener("input", write);
    $(id).addEventListener("change", write);
  });
  $("add-condition").addEventListener("click", () => { addCondition().querySelector(".c-event").focus(); write(); });

  const result = $("preview-result");
  $("preview-count").addEventListener("click", async () => {
    result.className = "";
    result.textContent = "Counting…";
    try {
      const url = form.dataset.preview + "?definition=" + encodeURIComponent(text.value);
      const answer = await fetch(url, { credentials: "same-origin" });
      const body = await answer.json();
      if (!answer.ok) throw new Error(body.error || answer.statusText);
      result.textContent = `${body.count.toLocaleString("en")} profiles (${body.from.slice(0, 10)} to ${body.until.slice(0, 10)}, ${body.timezone})`;
    } catch (e) {
      result.className = "error";
      result.textContent = e.message;
    }
  });

  function kindShown() {
    $("past-builder").hidden = isLive();
    $("live-builder").hidden = !isLive();
    $("preview-count").disabled = isLive();
  }
  if (!text.value.trim()) {
    addCondition("did");
    write();
  } else if (/"webhook"/.test(text.value)) {  // a live definition sent back after an error
    form.querySelector("input[name=kind][value=live]").checked = true;
    kindShown();
  }
})();
