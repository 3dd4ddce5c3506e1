// The studio page: plain JS, no build step. Each action posts a job, then polls it; a running
// job's preview (the current estimate) fills the slots it redraws.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], slots: [], kept: [], editing: null, busy: false };
const mask = document.createElement("canvas"); // white = repaint, black = keep
mask.width = mask.height = 256;

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

// post a job, show its progress, call onPreview with each new preview; resolve with its result
async function runJob(path, body, onPreview) {
  return (await runJobWithId(path, body, onPreview)).result;
}

async function runJobWithId(path, body, onPreview) {
  state.busy = true;
  document.body.dataset.busy = "1";
  try {
    const { id } = await api(path, body);
    for (;;) {
      const job = await api(`/api/jobs/${id}`);
      if (job.status === "done") { setStatus(`done (${id})`); return { result: job.result, id }; }
      if (job.status === "error") throw new Error(job.error);
      if (job.status === "queued") setStatus(`queued (${job.position} ahead)`);
      else setStatus(`step ${job.step} / ${job.total}`);
      if (job.preview !== undefined && onPreview) onPreview(job.preview);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    state.busy = false;
    delete document.body.dataset.busy;
  }
}

function currentModel() { return state.models.find((m) => m.name === $("model").value); }

function sampling() {
  const steps = parseInt($("steps").value, 10);
  const label = $("label").value;
  return {
    model: $("model").value, seed: parseInt($("seed").value, 10) || 0,
    sampler: $("sampler").value || null, steps: Number.isNaN(steps) ? null : steps,
    guidance: parseFloat($("guidance").value) || 1, label: label === "" ? null : parseInt(label, 10),
  };
}

function renderGrid() {
  const grid = $("grid");
  grid.replaceChildren();
  state.slots.forEach((url, i) => {
    const slot = document.createElement("div");
    slot.className = "slot" + (state.kept[i] ? " kept" : "");
    slot.id = `slot-${i}`;
    const img = document.createElement("img");
    img.alt = `sample ${i}`;
    if (url) img.src = url;
    const keep = document.createElement("button");
    keep.className = "keep";
    keep.textContent = state.kept[i] ? "Kept" : "Keep";
    keep.setAttribute("aria-pressed", state.kept[i] ? "true" : "false");
    keep.onclick = () => { state.kept[i] = !state.kept[i]; renderGrid(); };
    const edit = document.createElement("button");
    edit.className = "edit";
    edit.textContent = "Edit";
    edit.onclick = () => openEditor(i);
    slot.append(img, keep, edit);
    grid.append(slot);
  });
  $("resample").disabled = state.slots.length === 0;
}

function showPreview(indices) {
  return (preview) => {
    preview.forEach((url, k) => {
      const img = document.querySelector(`#slot-${indices[k]} img`);
      if (img) img.src = url;
    });
  };
}

async function sample(resample) {
  const body = sampling();
  if (resample) {
    body.seed += 1;
    $("seed").value = body.seed;
    body.slots = state.slots.map((url, i) => (state.kept[i] ? url : null));
  } else {
    body.n = parseInt($("n").value, 10) || 1;
    state.slots = new Array(body.n).fill(null);
    state.kept = new Array(body.n).fill(false);
    renderGrid();
  }
  const redraw = state.slots.map((_, i) => i).filter((i) => !(resample && state.kept[i]));
  try {
    const result = await runJob("/api/image/sample", body, showPreview(redraw));
    state.slots = result.images;
    renderGrid();
    document.body.dataset.samples = String((parseInt(document.body.dataset.samples || "0", 10)) + 1);
  } catch (err) { setStatus(err.message, true); }
}

// the editor: the slot's image under a translucent view of the mask
function drawEditor() {
  const canvas = $("canvas");
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  const img = new Image();
  img.onload = () => {
    ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 0.45;
    ctx.globalCompositeOperation = "lighter";
    ctx.drawImage(tinted(), 0, 0);
    ctx.globalAlpha = 1;
    ctx.globalCompositeOperation = "source-over";
  };
  img.src = state.slots[state.editing];
}

function tinted() {
  const out = document.createElement("canvas");
  out.width = out.height = 256;
  const ctx = out.getContext("2d");
  ctx.drawImage(mask, 0, 0);
  ctx.globalCompositeOperation = "multiply";
  ctx.fillStyle = "#f00";
  ctx.fillRect(0, 0, 256, 256);
  return out;
}

function clearMask() {
  const ctx = mask.getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, mask.width, mask.height);
}

function openEditor(i) {
  state.editing = i;
  $("edit-slot").textContent = String(i);
  $("editor").hidden = false;
  clearMask();
  drawEditor();
}

function paint(event) {
  const canvas = $("canvas");
  const rect = canvas.getBoundingClientRect();
  const x = ((event.clientX - rect.left) * mask.width) / rect.width;
  const y = ((event.clientY - rect.top) * mask.height) / rect.height;
  const ctx = mask.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.beginPath();
  ctx.arc(x, y, parseInt($("brush").value, 10) / 2, 0, 2 * Math.PI);
  ctx.fill();
  drawEditor();
}

async function edit(withMask) {
  const i = state.editing;
  const body = { ...sampling(), image: state.slots[i], strength: parseFloat($("strength").value) };
  // a seed of its own: the seed that drew the image would redraw the masked part the same way
  state.edits = (state.edits || 0) + 1;
  body.seed = (body.seed + 1) * 1000 + state.edits;
  if (withMask) body.mask = mask.toDataURL("image/png");
  try {
    const result = await runJob("/api/image/edit", body, showPreview([i]));
    state.slots[i] = result.images[0];
    renderGrid();
    clearMask();
    drawEditor();
    document.body.dataset.edits = String((parseInt(document.body.dataset.edits || "0", 10)) + 1);
  } catch (err) { setStatus(err.message, true); }
}

async function infill() {
  const steps = parseInt($("text-steps").value, 10);
  const body = {
    model: $("model").value, text: $("template").value,
    seed: parseInt($("text-seed").value, 10) || 0, steps: Number.isNaN(steps) ? null : steps,
  };
  try {
    const result = await runJob("/api/text/infill", body, (p) => { $("filled").textContent = p; });
    $("filled").textContent = result.texts[0];
    $("filled").dataset.done = "1";
  } catch (err) { setStatus(err.message, true); }
}

// audio: each clip plays beside its spectrogram; a span of it can be drawn again
function intValue(id) { const v = parseInt($(id).value, 10); return Number.isNaN(v) ? null : v; }

function audioBody() {
  const label = $("audio-label").value, speaker = $("audio-speaker").value;
  return {
    model: $("model").value, seed: intValue("audio-seed") || 0, steps: intValue("audio-steps"),
    label: label === "" ? null : label, speaker: speaker === "" ? null : speaker,
  };
}

function renderClips(result, job) {
  state.audioJob = job;
  state.clipJobs = {};
  $("clips").replaceChildren(...result.clips.map((clip, i) => {
    const row = document.createElement("div");
    row.className = "clip";
    row.id = `clip-${i}`;
    const player = document.createElement("audio");
    player.controls = true;
    player.src = clip.wav;
    const picture = document.createElement("img");
    picture.alt = `spectrogram ${i}`;
    picture.src = clip.spectrogram;
    const span = (name, value) => {
      const input = document.createElement("input");
      input.type = "number"; input.step = "0.05"; input.min = "0"; input.max = String(result.seconds);
      input.value = String(value); input.className = name;
      const label = document.createElement("label");
      label.append(`${name} (s) `, input);
      return label;
    };
    const redraw = document.createElement("button");
    redraw.className = "redraw";
    redraw.textContent = "Redraw span";
    redraw.onclick = () => redrawSpan(i);
    const caption = document.createElement("span");
    caption.textContent = `${clip.label} / ${clip.speaker}`;
    row.append(player, picture, caption, span("start", 0), span("end", (result.seconds / 2).toFixed(2)), redraw);
    return row;
  }));
}

async function audioSample() {
  const body = { ...audioBody(), n: intValue("audio-n") || 1 };
  const preview = (urls) => {
    $("clips").replaceChildren(...urls.map((url) => { const i = document.createElement("img"); i.src = url; return i; }));
  };
  try {
    const { result, id } = await runJobWithId("/api/audio/sample", body, preview);
    renderClips(result, id);
    document.body.dataset.audio = String((parseInt(document.body.dataset.audio || "0", 10)) + 1);
  } catch (err) { setStatus(err.message, true); }
}

async function redrawSpan(i) {
  const row = $(`clip-${i}`);
  // a clip redrawn before lives in its redraw's job (as clip 0): later redraws start from it
  const source = state.clipJobs[i] || { job: state.audioJob, index: i };
  const body = {
    ...audioBody(), ...source,
    start: parseFloat(row.querySelector(".start").value), end: parseFloat(row.querySelector(".end").value),
  };
  state.redraws = (state.redraws || 0) + 1;
  body.seed = (body.seed + 1) * 1000 + state.redraws; // a new draw of the span, not the old one
  try {
    const { result, id } = await runJobWithId("/api/audio/redraw", body, null);
    state.clipJobs[i] = { job: id, index: 0 };
    row.querySelector("audio").src = result.clips[0].wav;
    row.querySelector("img").src = result.clips[0].spectrogram;
    document.body.dataset.redraws = String(state.redraws);
  } catch (err) { setStatus(err.message, true); }
}

// proteins: sample, with a motif kept in place and highlighted
function motifPositions(text) {
  const kept = new Set();
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = part.match(/^(\d+)(?:-(\d+))?:([A-Za-z]+)$/);
    if (!m) continue;
    const start = parseInt(m[1], 10);
    for (let k = 0; k < m[3].length; k++) kept.add(start - 1 + k);
  }
  return kept;
}

function showSequences(rows, motif) {
  const kept = motifPositions(motif);
  $("sequences").replaceChildren(...rows.map((text, i) => {
    const line = document.createElement("div");
    line.id = `sequence-${i}`;
    [...text].forEach((letter, k) => {
      if (kept.has(k)) { const mark = document.createElement("mark"); mark.textContent = letter; line.append(mark); }
      else line.append(letter);
    });
    return line;
  }));
}

async function proteinSample() {
  const family = $("protein-family").value, motif = $("protein-motif").value.trim();
  const body = {
    model: $("model").value, n: intValue("protein-n") || 1, seed: intValue("protein-seed") || 0,
    steps: intValue("protein-steps"), family: family === "" ? null : family,
    length: intValue("protein-length"), motif: motif === "" ? null : motif,
  };
  try {
    const { result } = await runJobWithId("/api/protein/sample", body, (rows) => showSequences(rows, motif));
    showSequences(result.sequences.map((r) => r.sequence), motif);
    document.body.dataset.proteins = String((parseInt(document.body.dataset.proteins || "0", 10)) + 1);
  } catch (err) { setStatus(err.message, true); }
}

function selectModel() {
  const model = currentModel();
  for (const domain of ["image", "text", "audio", "protein"]) {
    $(`${domain}-panel`).hidden = !model || model.domain !== domain;
  }
  if (!model) return;
  if (model.domain === "audio") {
    $("audio-label").replaceChildren(new Option("(any)", ""), ...model.classes.map((c) => new Option(c, c)));
    $("audio-speaker").replaceChildren(new Option("(any)", ""), ...model.speakers.map((c) => new Option(c, c)));
  }
  if (model.domain === "protein") {
    $("protein-family").replaceChildren(new Option("(any)", ""), ...model.families.map((f) => new Option(f, f)));
  }
  if (model.domain === "image") {
    $("sampler").replaceChildren(new Option("(model's default)", ""),
      ...model.samplers.map((s) => new Option(s, s)));
    $("label").replaceChildren(new Option("(none)", ""),
      ...model.classes.map((c, i) => new Option(c, String(i))));
  }
}

async function init() {
  try {
    state.models = await api("/api/models");
  } catch (err) { setStatus(err.message, true); return; }
  $("model").replaceChildren(...state.models.map((m) => new Option(`${m.name} (${m.domain})`, m.name)));
  const wanted = new URLSearchParams(location.search).get("model");
  if (wanted) $("model").value = wanted;
  selectModel();
  setStatus(state.models.length ? "ready" : "no models: start the studio with --model DIR");
  document.body.dataset.ready = "1";
}

$("model").onchange = selectModel;
$("sample").onclick = () => sample(false);
$("resample").onclick = () => sample(true);
$("inpaint").onclick = () => edit(true);
$("refine").onclick = () => edit(false);
$("clear-mask").onclick = () => { clearMask(); drawEditor(); };
$("strength").oninput = () => { $("strength-value").textContent = $("strength").value; };
$("infill").onclick = infill;
$("audio-sample").onclick = audioSample;
$("protein-sample").onclick = proteinSample;
let drawing = false;
$("canvas").addEventListener("pointerdown", (e) => { drawing = true; paint(e); });
$("canvas").addEventListener("pointermove", (e) => { if (drawing) paint(e); });
window.addEventListener("pointerup", () => { drawing = false; });
init();
