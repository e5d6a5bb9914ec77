// The page of `fer serve`: send photos to POST /predict, draw a box and a label per face, and the
// seven probabilities per face as bars. Plain JS, no libraries, nothing fetched from elsewhere.
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
  return `${info.spec} (${info.source})`;
}

fetch("/health").then((r) => r.json()).then((h) => {
  $("model").textContent = "model: " + describeModel(h.model_info);
}).catch(() => { $("model").textContent = "model: the server does not answer"; });

function renderPhoto(photo, url) {
  const fig = el("figure", "photo");
  const frame = el("div", "frame");
  const img = el("img");
  img.src = url;
  img.alt = photo.file;
  frame.appendChild(img);
  const faces = el("div", "faces");
  photo.faces.forEach((face, i) => {
    const [x, y, w, h] = face.box;
    const box = el("div", "box");
    box.style.left = (100 * x / photo.width) + "%";
    box.style.top = (100 * y / photo.height) + "%";
    box.style.width = (100 * w / photo.width) + "%";
    box.style.height = (100 * h / photo.height) + "%";
    const shown = face.uncertain ? `uncertain (${face.label}?)` : face.label;
    box.appendChild(el("span", "face-label", `${i + 1}: ${shown} ${Math.round(100 * face.score)}%`));
    frame.appendChild(box);
    const card = el("div", "face");
    card.appendChild(el("h3", null, face.uncertain
      ? `Face ${i + 1}: uncertain (most likely ${face.label}, ${Math.round(100 * face.score)}%)`
      : `Face ${i + 1}: ${face.label}`));
    Object.entries(face.probabilities).sort((a, b) => b[1] - a[1]).forEach(([name, p]) => {
      const bar = el("div", name === face.label ? "bar top" : "bar");
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
    faces.appendChild(card);
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

async function send(files) {
  if (!files.length) return;
  showError("");
  $("status").textContent = `analysing ${files.length} photo${files.length > 1 ? "s" : ""}...`;
  const form = new FormData();
  const urls = {};
  for (const f of files) {
    form.append("file", f, f.name);
    urls[f.name] = URL.createObjectURL(f);
  }
  let body;
  try {
    const r = await fetch("/predict", { method: "POST", body: form });
    body = await r.json().catch(() => ({ detail: `the server answered ${r.status}` }));
    if (!r.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      showError(r.status === 413 ? `Too large: ${detail}` : `Could not analyse: ${detail}`);
      $("status").textContent = "";
      return;
    }
  } catch (e) {
    showError("The server could not be reached: " + e.message);
    $("status").textContent = "";
    return;
  }
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
