// The page of `fer serve`: send photos to POST /predict, draw a box and a label per face, and the
// seven probabilities per face as bars; a video to POST /video for its timeline; the live camera's
// frames to POST /frame a few times a second, each face's label smoothed over its last frames.
// Plain JS, no libraries, nothing fetched from elsewhere.
"use strict";
const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function describeModel(info) {
  if (!info) return "";
  if (info.version) return `${info.name} version ${info.version} (@${info.alias})`;
  if (info.chosen === "shipped") return `the model the package ships (trained on ${info.labels}, released ${info.released})`;
  const why = info.chosen && info.chosen !== "--model" ? `, ${info.chosen}` : "";
  return `${info.spec} (${info.source}${why})`;
}

let smoothFrames = 3;
fetch("/health").then((r) => r.json()).then((h) => {
  $("model").textContent = "model: " + describeModel(h.model_info);
  smoothFrames = h.smooth_frames || smoothFrames;
}).catch(() => { $("model").textContent = "model: the server does not answer"; });

function drawBox(frame, face, text, width, height) {
  const [x, y, w, h] = face.box;
  const box = el("div", "box");
  box.style.left = (100 * x / width) + "%";
  box.style.top = (100 * y / height) + "%";
  box.style.width = (100 * w / width) + "%";
  box.style.height = (100 * h / height) + "%";
  box.appendChild(el("span", "face-label", text));
  frame.appendChild(box);
}

function faceCard(title, probabilities, top) {
  const card = el("div", "face");
  card.appendChild(el("h3", null, title));
  Object.entries(probabilities).sort((a, b) => b[1] - a[1]).forEach(([name, p]) => {
    const bar = el("div", name === top ? "bar top" : "bar");
    bar.appendChild(el("span", "name", name));
    const track = el("span", "track");
    const fill = el("span", "fill");
    fill.style.display = "block";
    fill.style.width = (100 * p).toFixed(1) + "%";
    track.appendChild(fill);
    bar.appendChild(track);
    bar.appendChild(el("span", "pct", (100 * p).toFixed(1) + "%"));
    card.appendChild(bar);
  });
  return card;
}

function renderPhoto(photo, url) {
  const fig = el("figure", "photo");
  const frame = el("div", "frame");
  const img = el("img");
  img.src = url;
  img.alt = photo.file;
  frame.appendChild(img);
  const faces = el("div", "faces");
  photo.faces.forEach((face, i) => {
    const shown = face.uncertain ? `uncertain (${face.label}?)` : face.label;
    drawBox(frame, face, `${i + 1}: ${shown} ${Math.round(100 * face.score)}%`, photo.width, photo.height);
    faces.appendChild(faceCard(face.uncertain
      ? `Face ${i + 1}: uncertain (most likely ${face.label}, ${Math.round(100 * face.score)}%)`
      : `Face ${i + 1}: ${face.label}`, face.probabilities, face.label));
  });
  fig.appendChild(frame);
  const caption = el("figcaption", "muted", photo.faces.length
    ? `${photo.file}: ${photo.faces.length} face${photo.faces.length > 1 ? "s" : ""}` +
      (photo.faces_dropped ? ` (${photo.faces_dropped} smaller faces not shown)` : "")
    : `${photo.file}: no face found. Try a photo with a face seen from the front, not too small.`);
  fig.appendChild(caption);
  fig.appendChild(faces);
  return fig;
}

// POST a form; the parsed answer, or null after the error is shown (`what`: the error's subject).
async function postForm(url, form, what) {
  try {
    const r = await fetch(url, { method: "POST", body: form });
    const body = await r.json().catch(() => ({ detail: `the server answered ${r.status}` }));
    if (r.ok) return body;
    const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    showError(r.status === 413 ? `Too large: ${detail}` : `Could not analyse${what}: ${detail}`);
  } catch (e) {
    showError("The server could not be reached: " + e.message);
  }
  $("status").textContent = "";
  return null;
}

function isVideo(f) {
  return (f.type || "").startsWith("video/") || /\.(mp4|avi|mov|mkv|webm|m4v|mpe?g|wmv)$/i.test(f.name);
}

async function sendVideo(file) {
  showError("");
  $("status").textContent = `analysing the video ${file.name}...`;
  const form = new FormData();
  form.append("file", file, file.name);
  const body = await postForm("/video", form, ` ${file.name}`);
  if (!body) return;
  const fig = el("figure", "video");
  const img = el("img");
  img.src = body.figure;
  img.alt = `emotions over time in ${file.name}`;
  fig.appendChild(img);
  const lines = body.tracks.map((t) => `face ${t.track}: mostly ${t.dominant} (${Math.round(100 * t.dominant_share)}% ` +
    `of ${t.start.toFixed(1)}-${t.end.toFixed(1)} s), ${t.changes.length} change${t.changes.length === 1 ? "" : "s"}`);
  fig.appendChild(el("figcaption", "muted", `${file.name}: ${body.samples} frames sampled; ` +
    (lines.length ? lines.join("; ") : "no face found") + (body.complete ? "" : " (the file ended early)")));
  $("results").prepend(fig);
  $("status").textContent = `answered by ${describeModel(body.model)}`;
}

async function send(files) {
  files.filter(isVideo).forEach(sendVideo);
  files = files.filter((f) => !isVideo(f));
  if (!files.length) return;
  showError("");
  $("status").textContent = `analysing ${files.length} photo${files.length > 1 ? "s" : ""}...`;
  const form = new FormData();
  const urls = {};
  for (const f of files) {
    form.append("file", f, f.name);
    urls[f.name] = URL.createObjectURL(f);
  }
  const body = await postForm("/predict", form, "");
  if (!body) return;
  const results = $("results");
  results.textContent = "";
  body.photos.forEach((photo) => results.appendChild(renderPhoto(photo, urls[photo.file])));
  if (body.errors.length) showError(body.errors.join("; "));
  $("status").textContent = `answered by ${describeModel(body.model)} in ${body.seconds.toFixed(2)} s`;
}

$("files").addEventListener("change", (e) => send([...e.target.files]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  send([...e.dataTransfer.files]);
});

// Webcam snapshot, where the browser allows it (a secure context: https or localhost).
if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  const snap = $("snap");
  const cam = $("cam");
  snap.hidden = false;
  snap.addEventListener("click", async () => {
    try {
      if (cam.hidden) {
        cam.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
        cam.hidden = false;
        snap.textContent = "Take the snapshot";
        return;
      }
      const canvas = document.createElement("canvas");
      canvas.width = cam.videoWidth;
      canvas.height = cam.videoHeight;
      canvas.getContext("2d").drawImage(cam, 0, 0);
      canvas.toBlob((blob) => send([new File([blob], `webcam-${Date.now()}.png`, { type: "image/png" })]));
    } catch (e) {
      showError("No webcam available: " + e.message);
    }
  });
}

// Live camera: a frame to POST /frame up to six or seven times a second; each face followed by box overlap
// between frames, its label the mean of its last `smoothFrames` answers, so it does not flicker.
function overlap(a, b) {
  const w = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const union = a[2] * a[3] + b[2] * b[3] - w * h;
  return union > 0 ? (w * h) / union : 0;
}

const LIVE_PERIOD_MS = 150;   // at most one frame in flight, started at most this often
const live = { on: false, tracks: [], next: 1, frames: 0, since: 0 };

function follow(faces) {
  const kept = [];
  for (const face of faces) {
    let best = null;
    for (const t of live.tracks) {
      if (!kept.includes(t) && overlap(t.box, face.box) >= 0.3 && (!best || overlap(t.box, face.box) > overlap(best.box, face.box))) best = t;
    }
    const t = best || { id: live.next++, recent: [] };
    t.box = face.box;
    t.recent = [...t.recent, face.probabilities].slice(-smoothFrames);
    const mean = {};
    Object.keys(face.probabilities).forEach((k) => { mean[k] = t.recent.reduce((s, p) => s + p[k], 0) / t.recent.length; });
    t.smoothed = mean;
    t.label = Object.entries(mean).sort((a, b) => b[1] - a[1])[0][0];
    kept.push(t);
  }
  live.tracks = kept;
  return kept;
}

async function liveTick() {
  if (!live.on) return;
  const cam = $("live-cam");
  const t0 = performance.now();
  if (cam.videoWidth) {
    const scale = Math.min(1, 640 / cam.videoWidth);
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(cam.videoWidth * scale);
    canvas.height = Math.round(cam.videoHeight * scale);
    canvas.getContext("2d").drawImage(cam, 0, 0, canvas.width, canvas.height);
    const blob = await new Promise((ok) => canvas.toBlob(ok, "image/jpeg", 0.85));
    const form = new FormData();
    form.append("file", blob, "frame.jpg");
    try {
      const r = await fetch("/frame", { method: "POST", body: form });
      const body = await r.json();
      if (!r.ok) throw new Error(typeof body.detail === "string" ? body.detail : `status ${r.status}`);
      const frame = $("live-frame");
      frame.querySelectorAll(".box").forEach((b) => b.remove());
      const faces = $("live-faces");
      faces.textContent = "";
      follow(body.faces).forEach((t) => {
        drawBox(frame, t, `${t.id}: ${t.label}`, body.width, body.height);
        faces.appendChild(faceCard(`Face ${t.id}: ${t.label}`, t.smoothed, t.label));
      });
      live.frames += 1;
      const rate = live.frames / ((performance.now() - live.since) / 1000);
      $("live-status").textContent = `live: ${body.faces.length} face${body.faces.length === 1 ? "" : "s"}, ` +
        `${rate.toFixed(1)} frames/s, labels smoothed over ${smoothFrames} frames`;
      showError("");
    } catch (e) {
      showError("Live camera: " + e.message);
    }
  }
  setTimeout(liveTick, Math.max(0, LIVE_PERIOD_MS - (performance.now() - t0)));
}

if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
  const button = $("live");
  button.hidden = false;
  button.addEventListener("click", async () => {
    const cam = $("live-cam");
    if (live.on) {
      live.on = false;
      cam.srcObject.getTracks().forEach((t) => t.stop());
      $("live-view").hidden = true;
      button.textContent = "Live camera";
      return;
    }
    try {
      cam.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
    } catch (e) {
      showError("No webcam available: " + e.message);
      return;
    }
    $("live-view").hidden = false;
    button.textContent = "Stop the live camera";
    Object.assign(live, { on: true, tracks: [], frames: 0, since: performance.now() });
    liveTick();
  });
}
