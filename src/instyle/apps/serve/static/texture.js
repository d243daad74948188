// Texture tab: list /api/textures, sample one at a size and seed, show it (and repeated 2x2), download.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  let chosen = null;
  let multiple = 1;
  let url = null;

  function setStatus(text, isError = false) {
    $("texture-status").textContent = text;
    $("texture-status").className = isError ? "error" : "";
  }

  function setMode(on) {
    document.body.classList.toggle("mode-texture", on);
    $("tab-texture").setAttribute("aria-selected", String(on));
    if (on) $("tab-photo").setAttribute("aria-selected", "false");
  }

  function choose(entry) {
    chosen = entry.name;
    multiple = entry.size_multiple;
    for (const el of document.querySelectorAll(".texture")) {
      el.setAttribute("aria-checked", String(el.dataset.name === entry.name));
    }
    $("texture-go").disabled = false;
  }

  async function loadTextures() {
    const body = await (await fetch("/api/textures")).json();
    if (body.message) {
      $("textures-message").textContent = body.message;
      $("textures-message").hidden = false;
    }
    for (const t of body.textures) {
      const el = document.createElement("div");
      el.className = "texture";  // not .style: the photo and live tabs pick among those
      el.dataset.name = t.name;
      el.setAttribute("role", "radio");
      el.setAttribute("aria-checked", "false");
      el.tabIndex = 0;
      el.title = t.title;
      const img = document.createElement("img");
      img.src = t.thumbnail;
      img.alt = t.title;
      img.loading = "lazy";
      const cap = document.createElement("div");
      cap.textContent = t.title;
      el.append(img, cap);
      el.addEventListener("click", () => choose(t));
      el.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") choose(t); });
      $("textures").append(el);
    }
    if (body.textures.length === 1) choose(body.textures[0]);
  }

  function drawTiled(img) {
    const canvas = $("texture-tiled");
    const side = Math.min(512, 2 * Math.max(img.naturalWidth, img.naturalHeight));
    const scale = side / (2 * Math.max(img.naturalWidth, img.naturalHeight));
    const w = Math.round(img.naturalWidth * scale);
    const h = Math.round(img.naturalHeight * scale);
    canvas.width = 2 * w;
    canvas.height = 2 * h;
    const ctx = canvas.getContext("2d");
    for (const [x, y] of [[0, 0], [w, 0], [0, h], [w, h]]) ctx.drawImage(img, x, y, w, h);
  }

  async function sample() {
    const width = Number($("texture-width").value);
    const height = Number($("texture-height").value);
    const seed = Number($("texture-seed").value);
    const tile = $("texture-tile").checked;
    if (tile && (width % multiple || height % multiple)) {
      setStatus(`Tileable sides must be multiples of ${multiple} px`, true);
      return;
    }
    const query = new URLSearchParams({ width, height, seed, tile });
    $("texture-go").disabled = true;
    setStatus("Sampling…");
    const started = performance.now();
    try {
      const res = await fetch(`/api/textures/${encodeURIComponent(chosen)}/sample?${query}`);
      if (!res.ok) {
        let detail = res.statusText;
        try { detail = (await res.json()).detail; } catch (e) { /* not JSON */ }
        throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
      }
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(await res.blob());
      const img = $("texture-out");
      img.onload = () => drawTiled(img);
      img.src = url;
      $("texture-download").href = url;
      $("texture-download").download = `${chosen}-seed${seed}-${width}x${height}${tile ? "-tile" : ""}.png`;
      $("texture-download").hidden = false;
      setStatus(`Done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (err) {
      setStatus(`Error: ${err.message}`, true);
    } finally {
      $("texture-go").disabled = !chosen;
    }
  }

  // The Photo tab's handler (live.js) stops a live stream and leaves live mode; then this one takes over.
  $("tab-texture").addEventListener("click", () => { $("tab-photo").click(); setMode(true); });
  $("tab-photo").addEventListener("click", () => setMode(false));
  $("tab-live").addEventListener("click", () => setMode(false));
  $("texture-new-seed").addEventListener("click", () => { $("texture-seed").value = Math.floor(Math.random() * 2 ** 31); });
  $("texture-go").addEventListener("click", sample);
  loadTextures().catch((err) => setStatus(`Could not load textures: ${err.message}`, true));
})();
