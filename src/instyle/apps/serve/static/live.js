// Live tab: camera (getUserMedia) or a video file -> canvas -> JPEG over the /api/live WebSocket ->
// stylized JPEG drawn on a canvas beside the input. Protocol: see instyle/apps/serve/live.py.
// Pacing: at most MAX_IN_FLIGHT frames are on their way, so frames never queue up anywhere
// (the server also keeps only the newest waiting frame per viewer). No build step, no inline code.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const MAX_IN_FLIGHT = 1;
  const STALE_MS = 5000; // a frame with no answer by then is forgotten, so a lost reply cannot stall the stream
  const RESULT_HEADER = 12; // >III: frame number, server microseconds, frames dropped so far
  const JPEG_QUALITY = 0.85;

  const video = $("live-input");
  const output = $("live-output");
  const outCtx = output.getContext("2d");
  const capture = document.createElement("canvas");
  const captureCtx = capture.getContext("2d");

  let ws = null;
  let stream = null;
  let fileUrl = null;
  let running = false;
  let encoding = false;
  let refusal = null;
  let number = 0;
  let frames = 0;
  let latency = null;
  const sentAt = new Map(); // frame number -> performance.now() at capture
  const arrivals = []; // recent result arrival times, for frames/s
  let pumpTimer = null;

  function setStatus(text, isError = false) {
    $("live-status").textContent = text;
    $("live-status").className = isError ? "error" : "";
  }

  function setMode(live) {
    document.body.classList.toggle("mode-live", live);
    $("tab-photo").setAttribute("aria-selected", String(!live));
    $("tab-live").setAttribute("aria-selected", String(live));
    if (!live) stop();
  }

  function currentConfig() {
    const picked = document.querySelector('.style[aria-checked="true"]');
    return {
      type: "config",
      style: picked ? picked.dataset.name : undefined, // undefined: JSON drops it, the server keeps its own
      strength: Number($("strength").value),
      scale: Number($("scale").value),
      stroke: $("stroke-label").hidden ? null : strokeValue(), // app.js: shown for styles with stroke rows
      preserve_color: $("preserve").checked,
    };
  }

  function sendConfig() {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(currentConfig()));
  }

  function showReadout() {
    const now = performance.now();
    // the last 5 s, at most 30 frames: steady at 25 frames/s, still a number at 0.5, zero once stalled
    while (arrivals.length && (now - arrivals[0] > 5000 || arrivals.length > 30)) arrivals.shift();
    const span = arrivals.length > 1 ? (arrivals[arrivals.length - 1] - arrivals[0]) / 1000 : 0;
    const fps = span > 0 ? (arrivals.length - 1) / span : 0;
    $("live-fps").textContent = running || frames ? `${fps.toFixed(1)} frames/s` : "– frames/s";
    $("live-latency").textContent = latency === null ? "– ms latency" : `${Math.round(latency)} ms latency`;
  }

  function pump() {
    if (!running || encoding || !ws || ws.readyState !== WebSocket.OPEN) return;
    const now = performance.now();
    for (const [n, t] of sentAt) if (now - t > STALE_MS) sentAt.delete(n);
    if (sentAt.size >= MAX_IN_FLIGHT || video.readyState < 2 || !video.videoWidth) return;
    const [boxW, boxH] = $("live-size").value.split("x").map(Number);
    const s = Math.min(1, boxW / video.videoWidth, boxH / video.videoHeight); // fit the box, never enlarge
    capture.width = Math.max(1, Math.round(video.videoWidth * s));
    capture.height = Math.max(1, Math.round(video.videoHeight * s));
    captureCtx.drawImage(video, 0, 0, capture.width, capture.height);
    const n = number;
    number = (number + 1) >>> 0;
    sentAt.set(n, now);
    encoding = true;
    capture.toBlob(async (blob) => {
      try {
        const socket = ws; // Stop may close and clear ws while the frame is being read below
        if (!blob || !socket || socket.readyState !== WebSocket.OPEN) { sentAt.delete(n); return; }
        const body = new Uint8Array(await blob.arrayBuffer());
        if (socket !== ws || socket.readyState !== WebSocket.OPEN) { sentAt.delete(n); return; }
        const message = new Uint8Array(4 + body.length);
        new DataView(message.buffer).setUint32(0, n); // big-endian frame number, then the JPEG
        message.set(body, 4);
        socket.send(message);
      } finally {
        encoding = false;
      }
    }, "image/jpeg", JPEG_QUALITY);
  }

  async function onResult(buffer) {
    const head = new DataView(buffer, 0, RESULT_HEADER);
    const n = head.getUint32(0);
    const dropped = head.getUint32(8);
    const arrived = performance.now();
    if (sentAt.has(n)) latency = arrived - sentAt.get(n);
    for (const k of [...sentAt.keys()]) if (k <= n) sentAt.delete(k); // older ones were dropped as stale
    arrivals.push(arrived);
    pump(); // the next frame is captured while this one is drawn
    const bitmap = await createImageBitmap(new Blob([buffer.slice(RESULT_HEADER)], { type: "image/jpeg" }));
    if (output.width !== bitmap.width || output.height !== bitmap.height) {
      output.width = bitmap.width;
      output.height = bitmap.height;
    }
    outCtx.drawImage(bitmap, 0, 0);
    bitmap.close();
    frames += 1;
    output.dataset.frames = String(frames);
    $("live-dropped").textContent = dropped ? `${dropped} stale frames dropped` : "";
    showReadout();
  }

  function onText(msg) {
    if (msg.type === "hello") {
      if (!document.querySelector('.style[aria-checked="true"]')) {
        // nothing picked yet: take the server's live default (a -fast style when there is one)
        const el = document.querySelector(`.style[data-name="${CSS.escape(msg.config.style)}"]`);
        if (el) el.click();
      }
      sendConfig();
      setStatus(`Live: ${msg.config.style}`);
      pump();
    } else if (msg.type === "config") {
      setStatus(`Live: ${msg.style}`);
    } else if (msg.type === "busy" || msg.type === "unavailable") {
      refusal = msg.message;
      setStatus(msg.message, true);
    } else if (msg.type === "error") {
      setStatus(`Error: ${msg.message}`, true);
      if (msg.frame !== null && sentAt.delete(msg.frame)) pump();
    }
  }

  function connect() {
    refusal = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/api/live`);
    socket.binaryType = "arraybuffer";
    ws = socket;
    setStatus("Connecting…");
    socket.addEventListener("message", (ev) => {
      if (socket !== ws) return; // a stopped session's late messages
      if (typeof ev.data === "string") onText(JSON.parse(ev.data));
      else onResult(ev.data).catch((err) => setStatus(`Could not show a frame: ${err.message}`, true));
    });
    socket.addEventListener("close", (ev) => {
      if (socket !== ws) return;
      const was = running;
      stop();
      if (refusal) setStatus(refusal, true);
      else if (was && ev.code !== 1000) setStatus(`The live connection closed (code ${ev.code})`, true);
    });
  }

  async function start(setSource) {
    stop();
    try {
      await setSource();
      video.dataset.on = "1";
      await video.play();
    } catch (err) {
      stop();
      setStatus(`Could not start: ${err.message}`, true);
      return;
    }
    running = true;
    frames = 0;
    latency = null;
    arrivals.length = 0;
    sentAt.clear();
    $("live-stop").disabled = false;
    connect();
    pumpTimer = setInterval(() => { pump(); showReadout(); }, 250);
  }

  function stop() {
    running = false;
    if (pumpTimer) clearInterval(pumpTimer);
    pumpTimer = null;
    if (ws) {
      const old = ws;
      ws = null;
      if (old.readyState <= WebSocket.OPEN) old.close(1000, "stopped");
    }
    if (stream) for (const track of stream.getTracks()) track.stop();
    stream = null;
    video.pause();
    video.srcObject = null;
    if (fileUrl) {
      video.removeAttribute("src");
      URL.revokeObjectURL(fileUrl);
      fileUrl = null;
    }
    delete video.dataset.on;
    sentAt.clear();
    $("live-stop").disabled = true;
    showReadout();
  }

  $("tab-photo").addEventListener("click", () => setMode(false));
  $("tab-live").addEventListener("click", () => setMode(true));
  $("live-camera").addEventListener("click", () => start(async () => {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new Error("this browser gives no camera here (it needs https or localhost); try a video file");
    }
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: { ideal: 1280 }, height: { ideal: 720 } },
                                                         audio: false });
    video.srcObject = stream;
  }));
  $("live-file").addEventListener("change", () => {
    const file = $("live-file").files[0];
    if (!file) return;
    start(async () => {
      fileUrl = URL.createObjectURL(file);
      video.loop = true;
      video.src = fileUrl;
    });
  });
  $("live-stop").addEventListener("click", () => { stop(); setStatus("Stopped"); });
  // app.js's own listeners on each style element run first, so the picked style is already marked
  $("styles").addEventListener("click", sendConfig);
  $("styles").addEventListener("keydown", sendConfig);
  $("strength").addEventListener("input", sendConfig);
  $("scale").addEventListener("input", sendConfig);
  $("stroke").addEventListener("input", sendConfig);
  $("preserve").addEventListener("change", sendConfig);
  if (location.hash === "#live") setMode(true);
})();
