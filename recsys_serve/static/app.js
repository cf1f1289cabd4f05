// The page over the recsys API: pick a user, see their history and every model's list side by side,
// the held-out test item highlighted where a model found it; the model comparison and the report's plots.
"use strict";

const $ = (id) => document.getElementById(id);
let MODELS = [];

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

function renderModels(data) {
  MODELS = data.models;
  const ndcg = (m) => (m.metrics.find((x) => x.split === "test" && x.metric === "ndcg" && x.k === 10) || {}).value ?? -1;
  const body = $("models").querySelector("tbody");
  body.replaceChildren(...[...MODELS].sort((a, b) => ndcg(b) - ndcg(a)).map((m) => el("tr", { "data-model": m.name },
    el("td", {}, m.name), el("td", {}, m.family), el("td", {}, m.run_date), el("td", { class: "num" }, m.users),
    metricCell(m, "hr", 10), metricCell(m, "ndcg", 10), metricCell(m, "mrr", 10), metricCell(m, "coverage", 10),
    metricCell(m, "rmse", null))));
  $("plots").replaceChildren(...data.report_plots.map((name) =>
    el("img", { src: `/report/${encodeURIComponent(name)}`, alt: name, title: name })));
  const withVectors = MODELS.filter((m) => m.similar_items);
  $("similar-model").replaceChildren(...withVectors.map((m) => el("option", { value: m.name }, m.name)));
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
  try {
    const lists = await Promise.all(MODELS.map((m) =>
      getJSON(`/users/${userId}/recommendations?model=${encodeURIComponent(m.name)}&k=${k}`)));
    $("user-id").textContent = userId;
    if (lists.length) renderHistory(lists[0]);
    $("lists").replaceChildren(...lists.map(renderList));
    $("user-view").hidden = false;
    history.replaceState(null, "", `?user=${userId}`);
  } catch (error) {
    showError(error.message);
  }
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
  $("similar-model").addEventListener("change", () => {
    const movie = $("similar-view").dataset.movie;
    if (movie) showSimilar(movie, $("similar-title").textContent);
  });
  document.body.dataset.ready = "true";
  const user = new URLSearchParams(location.search).get("user");
  if (user) { $("user-input").value = user; await showUser(user); }
}

start();
