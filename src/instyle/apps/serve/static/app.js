// The whole front end: list styles, upload, call /api/stylize, show before/after. No build step.
"use strict";
const $ = (id) => document.getElementById(id);
let chosen = null;
let resultUrl = null;

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function refreshButton() {
  $("go").disabled = !(chosen && $("file").files.length);
}

const defaults = {};
const strokes = {};  // style -> the stroke sizes its model has rows for (only those styles get the slider)

// The stroke slider runs in log2(stroke), as the rows are interpolated: each step is the same ratio.
function strokeValue() {
  const rows = strokes[chosen];
  const v = Number((2 ** Number($("stroke").value)).toPrecision(4));
  return Math.min(rows[rows.length - 1], Math.max(rows[0], v));  // never outside the rows by rounding
}

function showStroke() {
  $("stroke-value").textContent = strokeValue().toFixed(2);
}

function setStrokeSlider(name) {
  const rows = strokes[name];
  $("stroke-label").hidden = !rows;
  if (!rows) return;
  $("stroke").min = Math.log2(rows[0]);
  $("stroke").max = Math.log2(rows[rows.length - 1]);
  $("stroke").value = Math.log2((defaults[name] && defaults[name].stroke) || 1);
  showStroke();
}

function setRange(id, value) {
  $(id).value = value;
  $(id + "-value").textContent = Number(value).toFixed(2);
}

function choose(name) {
  chosen = name;
  if (defaults[name]) {  // each style starts at the strength and stroke scale tuned for it
    setRange("strength", defaults[name].strength);
    setRange("scale", defaults[name].scale);
  }
  setStrokeSlider(name);
  for (const el of document.querySelectorAll(".style")) {
    el.setAttribute("aria-checked", String(el.dataset.name === name));
  }
  refreshButton();
}

async function loadStyles() {
  const res = await fetch("/api/styles");
  const body = await res.json();
  if (body.message) {
    $("styles-message").textContent = body.message;
    $("styles-message").hidden = false;
  }
  for (const s of body.styles) {
    if (s.defaults) defaults[s.name] = s.defaults;
    if (s.strokes) strokes[s.name] = s.strokes;
    const el = document.createElement("div");
    el.className = "style";
    el.dataset.name = s.name;
    el.setAttribute("role", "radio");
    el.setAttribute("aria-checked", "false");
    el.tabIndex = 0;
    el.title = s.title;
    const img = document.createElement("img");
    img.src = s.thumbnail;
    img.alt = s.title;
    img.loading = "lazy";
    const cap = document.createElement("div");
    cap.textContent = s.title;
    el.append(img, cap);
    el.addEventListener("click", () => choose(s.name));
    el.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") choose(s.name); });
    $("styles").append(el);
  }
  if (body.styles.length === 1) choose(body.styles[0].name);
}

function bindRange(id) {
  const update = () => { $(id + "-value").textContent = Number($(id).value).toFixed(2); };
  $(id).addEventListener("input", update);
  update();
}

$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) $("before").src = URL.createObjectURL(file);
  refreshButton();
});

$("go").addEventListener("click", async () => {
  const file = $("file").files[0];
  const form = new FormData();
  form.append("image", file);
  form.append("style", chosen);
  form.append("strength", $("strength").value);
  form.append("scale", $("scale").value);
  if (strokes[chosen]) form.append("stroke", String(strokeValue()));
  form.append("preserve_color", $("preserve").checked ? "true" : "false");
  form.append("format", "png");
  $("go").disabled = true;
  setStatus("Stylizing…");
  const started = performance.now();
  try {
    const res = await fetch("/api/stylize", { method: "POST", body: form });
    if (!res.ok) {
      let detail = res.statusText;
      try { detail = (await res.json()).detail; } catch (e) { /* not JSON */ }
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    const blob = await res.blob();
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = URL.createObjectURL(blob);
    $("after").src = resultUrl;
    const stem = file.name.replace(/\.[^.]*$/, "") || "image";
    $("download").href = resultUrl;
    $("download").download = `${stem}-${chosen}.png`;
    $("download").hidden = false;
    setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    setStatus(`Error: ${err.message}`, true);
  } finally {
    refreshButton();
  }
});

bindRange("strength");
bindRange("scale");
$("stroke").addEventListener("input", showStroke);
loadStyles().catch((err) => setStatus(`Could not load styles: ${err.message}`, true));
