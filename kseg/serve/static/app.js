// kseg segmentation page: plain JS, no build step, no network beyond this service.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  file: null,        // the chosen File
  image: null,       // ImageBitmap of it (null when the browser cannot show the format)
  mask: null,        // canvas holding the red mask layer
  result: null,      // last JSON answer of /v1/segment
  classes: [],       // [{id, name, colour}] of the foreground classes (GET /v1/model)
  numClasses: 1,     // output channels: 1 = binary (threshold), K > 1 = argmax over K classes
  urls: [],          // object URLs to revoke
  seq: 0,            // request counter: only the newest answer is drawn
};

function token() { return sessionStorage.getItem("kseg-token") || ""; }
function authHeaders() { return token() ? { Authorization: "Bearer " + token() } : {}; }

function setStatus(kind, text) {
  const el = $("status");
  el.dataset.state = kind;
  el.textContent = text;
}

async function api(path, options = {}) {
  const resp = await fetch(path, { ...options, headers: { ...(options.headers || {}), ...authHeaders() } });
  let body = null;
  try { body = await resp.json(); } catch (e) { body = null; }
  if (resp.status === 401) $("token-box").hidden = false;
  if (!resp.ok) throw new Error((body && body.error) || `HTTP ${resp.status}`);
  return body;
}

async function loadModel() {
  try {
    const card = await api("/v1/model");
    $("model-name").textContent = `${card.name} - ${card.input_size}x${card.input_size}x${card.channels}`;
    $("threshold").value = card.threshold;
    $("threshold-out").textContent = Number(card.threshold).toFixed(2);
    state.classes = card.classes || [];
    state.numClasses = card.num_classes || 1;
    // K > 1 classes: the mask is the argmax over classes, a threshold does not apply
    $("threshold-box").hidden = state.numClasses > 1;
    showLegend();
    $("token-box").hidden = true;
  } catch (e) {
    $("model-name").textContent = "model: " + e.message;
  }
}

function showLegend() {
  const ul = $("legend");
  ul.replaceChildren();
  for (const c of state.classes) {
    const li = document.createElement("li");
    li.dataset.classId = String(c.id);
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = c.colour;
    sw.dataset.colour = c.colour;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = c.name;
    li.append(sw, name);
    ul.append(li);
  }
  ul.hidden = state.classes.length === 0;
}

function hexRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

function fmt(x, digits = 1) {
  if (x === null || x === undefined) return "-";
  return typeof x === "number" ? x.toLocaleString("en-US", { maximumFractionDigits: digits }) : String(x);
}

function showStats(res) {
  const s = res.stats || {};
  $("area-px").textContent = fmt(s.area_px, 0);
  $("area-mm2").textContent = s.area_mm2 === null || s.area_mm2 === undefined ? "- (no pixel spacing)" : fmt(s.area_mm2, 2);
  $("perimeter-px").textContent = fmt(s.perimeter_px, 1);
  $("components").textContent = fmt(s.component_count ?? s.components, 0);
  const b = s.bbox;
  $("bbox").textContent = b ? (Array.isArray(b) ? b.join(", ") : Object.values(b).join(", ")) : "-";
  $("image-size").textContent = `${res.image.width} x ${res.image.height} (${res.image.format})`;
  $("threshold-used").textContent = res.num_classes > 1 ? `argmax over ${res.num_classes} classes` : Number(res.threshold).toFixed(2);
  $("server-time").textContent = `${fmt(res.timing_ms.total_ms, 0)} ms`;
  showClassStats(res);
}

function showClassStats(res) {
  const table = $("class-stats");
  const body = table.querySelector("tbody");
  body.replaceChildren();
  const per = (res.stats && res.stats.classes) || null;
  if (!per) { table.hidden = true; return; }
  for (const c of res.classes || state.classes) {
    const s = per[String(c.id)] || {};
    const tr = document.createElement("tr");
    tr.dataset.classId = String(c.id);
    const name = document.createElement("td");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.cssText = `display:inline-block;width:0.8em;height:0.8em;margin-right:0.4em;border-radius:2px;background:${c.colour}`;
    name.append(sw, document.createTextNode(c.name));
    tr.append(name);
    for (const v of [fmt(s.area_px, 0), s.area_mm2 === undefined ? "-" : fmt(s.area_mm2, 2), fmt(s.component_count, 0)]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    body.append(tr);
  }
  table.hidden = false;
}

function b64ToBlob(b64, type) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Blob([bytes], { type });
}

function setDownloads(res) {
  state.urls.forEach((u) => URL.revokeObjectURL(u));
  const stem = (state.file && state.file.name ? state.file.name.replace(/\.[^.]*$/, "") : "image") || "image";
  const maskUrl = URL.createObjectURL(b64ToBlob(res.mask_png_base64, "image/png"));
  const geoUrl = URL.createObjectURL(new Blob([JSON.stringify(res.geojson)], { type: "application/geo+json" }));
  state.urls = [maskUrl, geoUrl];
  for (const [id, url, name] of [["download-mask", maskUrl, `${stem}_mask.png`], ["download-geojson", geoUrl, `${stem}_mask.geojson`]]) {
    const a = $(id);
    a.href = url;
    a.download = name;
    a.classList.remove("disabled");
    a.removeAttribute("aria-disabled");
  }
}

async function maskLayer(b64, width, height) {
  // the mask PNG becomes a colour layer, transparent where the mask is 0: binary 0/255 grey
  // is red; K classes are spread over 0..255 (class c at c * floor(255 / (K - 1))) and each gets
  // its legend colour
  const bitmap = await createImageBitmap(b64ToBlob(b64, "image/png"));
  const layer = document.createElement("canvas");
  layer.width = width; layer.height = height;
  const ctx = layer.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const px = ctx.getImageData(0, 0, width, height);
  const d = px.data;
  const k = state.numClasses;
  const step = k > 1 ? Math.floor(255 / (k - 1)) : 255;
  const colours = [[0, 0, 0], [255, 0, 0]];
  for (const c of state.classes) colours[c.id] = hexRgb(c.colour);
  let on = 0;
  for (let i = 0; i < d.length; i += 4) {
    const cls = k > 1 ? Math.round(d[i] / step) : (d[i] > 0 ? 1 : 0);
    const rgb = colours[cls] || [255, 0, 0];
    on += cls > 0 ? 1 : 0;
    d[i] = rgb[0]; d[i + 1] = rgb[1]; d[i + 2] = rgb[2]; d[i + 3] = cls > 0 ? 255 : 0;
  }
  ctx.putImageData(px, 0, 0);
  layer.dataset.pixels = String(on);
  return layer;
}

function draw() {
  const canvas = $("canvas");
  const res = state.result;
  if (!res) return;
  const { width, height } = res.image;
  if (canvas.width !== width || canvas.height !== height) { canvas.width = width; canvas.height = height; }
  const ctx = canvas.getContext("2d");
  ctx.globalAlpha = 1;
  if (state.image) ctx.drawImage(state.image, 0, 0, width, height);
  else { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, width, height); }
  if (state.mask) {
    ctx.globalAlpha = Number($("opacity").value) / 100;
    ctx.drawImage(state.mask, 0, 0);
    ctx.globalAlpha = 1;
  }
  canvas.dataset.overlay = "ready";
  canvas.dataset.maskPixels = state.mask ? state.mask.dataset.pixels : "0";
  $("placeholder").hidden = true;
}

async function segment() {
  if (!state.file) return;
  const seq = ++state.seq;
  const q = new URLSearchParams({
    fill_holes: $("fill-holes").checked ? "true" : "false",
    min_size: String(Math.max(0, parseInt($("min-size").value || "0", 10) || 0)),
  });
  if (state.numClasses === 1) q.set("threshold", $("threshold").value);
  const spacing = parseFloat($("spacing").value);
  if (spacing > 0) q.set("pixel_spacing_mm", String(spacing));
  setStatus("busy", "Segmenting...");
  $("canvas").dataset.overlay = "pending";
  try {
    const form = new FormData();
    form.append("file", state.file, state.file.name || "image");
    const res = await api("/v1/segment?" + q.toString(), { method: "POST", body: form });
    if (seq !== state.seq) return;  // a newer request is on its way
    const mask = await maskLayer(res.mask_png_base64, res.image.width, res.image.height);
    if (seq !== state.seq) return;
    state.result = res;
    state.mask = mask;
    draw();
    showStats(res);
    setDownloads(res);
    const per = res.stats.classes;
    const what = per
      ? (res.classes || []).map((c) => `${c.name} ${fmt((per[String(c.id)] || {}).area_px, 0)} px`).join(", ")
      : `${fmt(res.stats.area_px, 0)} px of foreground`;
    setStatus("done", `Done: ${what}.`);
  } catch (e) {
    if (seq !== state.seq) return;
    setStatus("error", e.message);
  }
}

async function choose(file) {
  if (!file) return;
  state.file = file;
  state.result = null;
  try { state.image = await createImageBitmap(file); } catch (e) { state.image = null; }  // e.g. TIFF
  await segment();
  if (!state.image && state.result) setStatus("done", "This browser cannot show the image format; the mask and statistics are from the service.");
}

function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => choose(e.target.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choose(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });
  $("opacity").addEventListener("input", () => {
    $("opacity-out").textContent = `${$("opacity").value} %`;
    draw();
  });
  const resegment = debounce(segment, 250);
  $("threshold").addEventListener("input", () => {
    $("threshold-out").textContent = Number($("threshold").value).toFixed(2);
    resegment();
  });
  $("fill-holes").addEventListener("change", segment);
  $("min-size").addEventListener("change", segment);
  $("spacing").addEventListener("change", segment);
  $("token-save").addEventListener("click", () => {
    sessionStorage.setItem("kseg-token", $("token").value.trim());
    loadModel().then(segment);
  });
  loadModel();
}

init();
