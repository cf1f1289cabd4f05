// The page over the recsys API: pick a user, see their history and the chosen models' lists side by side (the
// latest run or a chosen run date), the held-out test item highlighted where a model found it; search movies by
// title and pick a few to see the sequence models' lists scored now (POST /recommendations); the model comparison
// with each model's paired difference to the reference model (AR(2)), the report's plots, and the drift panel.
"use strict";

const $ = (id) => document.getElementById(id);
let MODELS = [];
const SHOWN = new Set();  // the models whose lists and comparison rows are shown
const PICKED = [];  // the real-time history: movies, oldest first
const REALTIME_MODELS = ["sasrec", "ss4rec", "markov", "ar2"];  // the models that score a posted history
let realtimeCall = 0;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function getJSON(url) {
  const response = await fetch(url);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

const fmt = (x, digits = 4) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));
const day = (seconds) => new Date(seconds * 1000).toISOString().slice(0, 10);
const movieLabel = (m) => `${m.title}${m.year ? ` (${m.year})` : ""}`;

// ---- model comparison ---------------------------------------------------------------------------------------

function metricCell(model, metric, k) {
  const row = model.metrics.find((m) => m.split === "test" && m.metric === metric && m.k === k);
  if (!row) return el("td", { class: "num" }, "");
  const ci = row.ci_low === null ? null : el("div", { class: "ci" }, `[${fmt(row.ci_low)}, ${fmt(row.ci_high)}]`);
  return el("td", { class: "num" }, fmt(row.value), ci);
}

function pairedCell(model) {
  const row = model.metrics.find((m) => m.split === "test" && m.metric.startsWith("ndcg_minus_") && m.k === 10);
  if (!row) return el("td", { class: "num paired" }, model.metrics.length ? "reference" : "");
  const noise = row.ci_low <= 0 && row.ci_high >= 0;
  const sign = (x) => (x >= 0 ? "+" : "") + fmt(x);
  return el("td", { class: `num paired${noise ? " noise" : ""}`, title: noise ? "the interval holds zero" : "" },
    sign(row.value), el("div", { class: "ci" }, `[${sign(row.ci_low)}, ${sign(row.ci_high)}]${noise ? " noise" : ""}`));
}

function referenceName() {
  for (const m of MODELS) {
    const row = m.metrics.find((x) => x.metric.startsWith("ndcg_minus_"));
    if (row) return row.metric.slice("ndcg_minus_".length);
  }
  return null;
}

function applyShown() {
  for (const node of document.querySelectorAll("#models tbody tr[data-model], .model-list[data-model]")) {
    node.hidden = !SHOWN.has(node.dataset.model);
  }
}

function renderModels(data) {
  MODELS = data.models;
  const wanted = new URLSearchParams(location.search).get("models");
  const names = MODELS.map((m) => m.name);
  for (const name of (wanted ? wanted.split(",").filter((n) => names.includes(n)) : names)) SHOWN.add(name);
  const ndcg = (m) => (m.metrics.find((x) => x.split === "test" && x.metric === "ndcg" && x.k === 10) || {}).value ?? -1;
  const reference = referenceName();
  $("paired-head").textContent = reference ? `NDCG@10 − ${reference === "ar2" ? "AR(2)" : reference} (paired)` : "NDCG@10 − reference";
  const body = $("models").querySelector("tbody");
  body.replaceChildren(...[...MODELS].sort((a, b) => ndcg(b) - ndcg(a)).map((m) => el("tr", { "data-model": m.name },
    el("td", {}, m.name), el("td", {}, m.family), el("td", {}, m.run_date), el("td", { class: "num" }, m.users),
    metricCell(m, "hr", 10), metricCell(m, "ndcg", 10), pairedCell(m), metricCell(m, "mrr", 10),
    metricCell(m, "coverage", 10), metricCell(m, "rmse", null))));
  $("plots").replaceChildren(...data.report_plots.map((name) =>
    el("img", { src: `/report/${encodeURIComponent(name)}`, alt: name, title: name })));
  const withVectors = MODELS.filter((m) => m.similar_items);
  $("similar-model").replaceChildren(...withVectors.map((m) => el("option", { value: m.name }, m.name)));
  $("model-picks").replaceChildren(...MODELS.map((m) => el("label", {},
    el("input", { type: "checkbox", value: m.name, ...(SHOWN.has(m.name) ? { checked: "" } : {}),
      onchange: (event) => { if (event.target.checked) SHOWN.add(m.name); else SHOWN.delete(m.name); applyShown(); } }),
    m.name)));
  const dates = [...new Set(MODELS.flatMap((m) => m.run_dates))].sort().reverse();
  $("run-date").replaceChildren(el("option", { value: "" }, "latest"), ...dates.map((d) => el("option", { value: d }, d)));
  applyShown();
}

// ---- one user -----------------------------------------------------------------------------------------------

function renderHistory(first) {
  $("held-out").replaceChildren(first.held_out
    ? el("span", {}, movieLabel(first.held_out), " ", el("span", { class: "genres" },
      `rated ${first.held_out.rating} on ${day(first.held_out.timestamp)}`))
    : el("span", { class: "muted" }, "none"));
  $("history").querySelector("tbody").replaceChildren(...first.history.map((m) => el("tr", {},
    el("td", {}, movieLabel(m), el("div", { class: "genres" }, m.genres.join(", "))),
    el("td", { class: "num" }, m.rating), el("td", {}, day(m.timestamp)))));
}

function renderList(list) {
  const badge = list.fallback
    ? el("span", { class: "badge fallback", title: "the run did not cover this user" }, `fallback: ${list.fallback}`)
    : list.held_out_rank
      ? el("span", { class: "badge found" }, `test item at ${list.held_out_rank}`)
      : el("span", { class: "badge" }, list.run_date);
  return el("div", { class: "model-list", "data-model": list.model },
    el("h4", {}, list.model, badge),
    el("ol", {}, ...list.items.map((m) => el("li", {
      class: m.held_out ? "hit" : "", title: `${m.genres.join(", ")} · score ${fmt(m.score)}`,
      onclick: () => showSimilar(m.movieId, movieLabel(m)),
    }, movieLabel(m)))));
}

async function showUser(userId) {
  showError("");
  const k = Math.min(100, Math.max(1, parseInt($("k-input").value, 10) || 10));
  if (!/^[0-9]+$/.test(userId)) { showError("a userId is a number"); return; }
  const runDate = $("run-date").value;
  const when = runDate ? `&run_date=${runDate}` : "";
  // One model without that run date (or failing) shows its reason in its own card; the others still show.
  const lists = await Promise.all(MODELS.map((m) =>
    getJSON(`/users/${userId}/recommendations?model=${encodeURIComponent(m.name)}&k=${k}${when}`)
      .catch((error) => ({ model: m.name, error: error.message }))));
  const found = lists.filter((l) => !l.error);
  if (!found.length) { showError(lists.length ? lists[0].error : "no model to show"); return; }
  $("user-id").textContent = userId;
  renderHistory(found[0]);
  $("lists").replaceChildren(...lists.map((l) => (l.error
    ? el("div", { class: "model-list", "data-model": l.model }, el("h4", {}, l.model), el("p", { class: "note" }, l.error))
    : renderList(l))));
  applyShown();
  $("user-view").hidden = false;
  history.replaceState(null, "", `?user=${userId}`);
}

async function showSimilar(movieId, label) {
  const model = $("similar-model").value;
  if (!model) return;
  try {
    const data = await getJSON(`/items/${movieId}/similar?model=${encodeURIComponent(model)}&k=10`);
    $("similar-title").textContent = label;
    $("similar-source").textContent = `(${data.source})`;
    $("similar-list").replaceChildren(...data.items.map((m) =>
      el("li", { title: `cosine ${fmt(m.similarity, 3)}` }, movieLabel(m), " ",
        el("span", { class: "genres" }, m.genres.join(", ")))));
    $("similar-view").hidden = false;
    $("similar-view").dataset.movie = movieId;
  } catch (error) {
    showError(error.message);
  }
}

async function suggestUsers() {
  const prefix = $("user-input").value.trim();
  if (!/^[0-9]*$/.test(prefix)) return;
  const data = await getJSON(`/users?prefix=${prefix}&limit=20`).catch(() => ({ users: [] }));
  $("user-suggestions").replaceChildren(...data.users.map((u) =>
    el("option", { value: u.userId }, `${u.n_interactions} ratings`)));
}

async function randomUser() {
  const digit = String(1 + Math.floor(Math.random() * 9));
  const data = await getJSON(`/users?prefix=${digit}&limit=100`);
  if (!data.users.length) return;
  const user = data.users[Math.floor(Math.random() * data.users.length)];
  $("user-input").value = user.userId;
  await showUser(String(user.userId));
}

// ---- movies by title, and the real-time panel ----------------------------------------------------------------

let movieQuery = 0;
async function searchMovies() {
  const text = $("movie-input").value.trim();
  const call = ++movieQuery;
  if (!text) { $("movie-results").replaceChildren(); $("movie-total").textContent = ""; return; }
  const data = await getJSON(`/movies?q=${encodeURIComponent(text)}&limit=30`).catch((error) => {
    showError(error.message);
    return null;
  });
  if (!data || call !== movieQuery) return;  // a newer search answered first
  $("movie-total").textContent = `${data.total} found`;
  $("movie-results").replaceChildren(...data.movies.map((m) => el("li", { "data-movie": m.movieId },
    el("button", { type: "button", class: "add", title: "add to the real-time history", onclick: () => pick(m) }, "+"),
    el("span", { class: "title", onclick: () => showSimilar(m.movieId, movieLabel(m)) }, movieLabel(m)),
    el("span", { class: "genres" }, m.genres.join(", ")))));
}

function pick(movie) {
  if (PICKED.some((m) => m.movieId === movie.movieId)) return;
  PICKED.push(movie);
  renderPicked();
}

function renderPicked() {
  $("rt-history").replaceChildren(...PICKED.map((m, i) => el("li", {
    "data-movie": m.movieId, title: "remove", onclick: () => { PICKED.splice(i, 1); renderPicked(); },
  }, movieLabel(m))));
  $("rt-empty").hidden = PICKED.length > 0;
  refreshRealtime();
}

async function realtimeList(model, history, k) {
  const response = await fetch("/recommendations", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model, history, k }),
  });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

async function refreshRealtime() {
  const call = ++realtimeCall;
  if (!PICKED.length) { $("rt-lists").replaceChildren(); return; }
  const history = PICKED.map((m) => m.movieId);
  const k = Math.min(100, Math.max(1, parseInt($("k-input").value, 10) || 10));
  const lists = await Promise.all(REALTIME_MODELS.map((model) => realtimeList(model, history, k)
    .catch((error) => ({ model, error: error.message }))));
  if (call !== realtimeCall) return;  // the history changed while these were scored
  $("rt-lists").replaceChildren(...lists.map((l) => el("div", { class: "model-list rt-list", "data-model": l.model },
    el("h4", {}, l.model, l.error ? null : el("span", { class: "badge" }, `${l.used ?? history.length} used`)),
    l.error ? el("p", { class: "note" }, l.error)
      : el("ol", {}, ...l.items.map((m) => el("li", { title: `${m.genres.join(", ")} · score ${fmt(m.score)}` },
        movieLabel(m)))))));
}

// ---- drift ------------------------------------------------------------------------------------------------------

async function loadDrift() {
  let data;
  try {
    data = await getJSON("/drift");
  } catch (error) {
    $("drift-sub").textContent = `(${error.message})`;
    return;
  }
  $("drift-sub").textContent = `(run ${data.run_date}: tonight against the last published run; thresholds in conf/drift.yaml)`;
  $("drift-warnings").replaceChildren(...data.warnings.map((w) => el("li", {}, w)));
  const number = (x) => (x === null || x === undefined ? "" : fmt(x));
  $("drift-table").querySelector("tbody").replaceChildren(...data.rows.map((r) => el("tr", {
    class: r.warning ? "warn" : "", "data-metric": r.metric, title: r.warning || "",
  }, el("td", {}, r.kind), el("td", {}, r.model || ""), el("td", {}, r.metric + (r.k ? `@${r.k}` : "")),
  el("td", { class: "num" }, number(r.value)), el("td", { class: "num" }, number(r.previous)),
  el("td", { class: "ci" }, r.ci_low === null ? "" : `[${fmt(r.ci_low)}, ${fmt(r.ci_high)}]`),
  el("td", { class: "note" }, r.compared_to || ""))));
}

async function start() {
  try {
    const [health, models] = await Promise.all([getJSON("/health"), getJSON("/models")]);
    $("status").textContent = `${health.models} models · ${health.users.toLocaleString()} users · ` +
      `${health.movies.toLocaleString()} movies · snapshot loaded ${health.loaded_at.slice(0, 19).replace("T", " ")} UTC`;
    renderModels(models);
  } catch (error) {
    $("status").textContent = "";
    showError(`cannot reach the API: ${error.message}`);
    return;
  }
  $("user-form").addEventListener("submit", (event) => { event.preventDefault(); showUser($("user-input").value.trim()); });
  $("user-input").addEventListener("input", suggestUsers);
  $("random-user").addEventListener("click", randomUser);
  $("run-date").addEventListener("change", () => { const u = $("user-id").textContent; if (u) showUser(u); });
  $("movie-form").addEventListener("submit", (event) => { event.preventDefault(); searchMovies(); });
  $("movie-input").addEventListener("input", searchMovies);
  $("rt-clear").addEventListener("click", () => { PICKED.length = 0; renderPicked(); });
  await loadDrift();
  $("similar-model").addEventListener("change", () => {
    const movie = $("similar-view").dataset.movie;
    if (movie) showSimilar(movie, $("similar-title").textContent);
  });
  document.body.dataset.ready = "true";
  const user = new URLSearchParams(location.search).get("user");
  if (user) { $("user-input").value = user; await showUser(user); }
}

start();
