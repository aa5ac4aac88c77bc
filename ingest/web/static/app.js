// The ingest upload page: plain JavaScript, no build step.
//
// Uploads go through tus 1.0.0 (https://tus.io/protocols/resumable-upload) with the vendored
// tus-js-client when the server offers it at files/, so a dropped connection, a server restart
// or a page reload continues from the server's offset. Otherwise each file is one multipart
// POST to uploads (an interruption starts it over). All URLs are relative to the page, so it
// also works under a proxy's path prefix.
"use strict";

(function () {
  const TOKEN_KEY = "ingest.token";
  // One PATCH per 16 MiB: after an interruption at most one chunk is sent again even by a
  // server that keeps only whole requests, while the per-request overhead stays negligible.
  const TUS_CHUNK_SIZE = 16 * 1024 * 1024;
  // Waits between retries after a failed request; progress resets the count (tus-js-client).
  const RETRY_DELAYS = [0, 1000, 2000, 4000, 8000, 15000, 30000, 30000, 60000, 60000];
  const PARALLEL_UPLOADS = 3;
  const SPEED_WINDOW_MS = 5000;
  const PAGE_SIZE = 50;
  // Thumbnails come from the download endpoint (a plain GET, sized in CSS); past this size an
  // image is not fetched just to be shown small.
  const THUMBNAIL_MAX_BYTES = 20 * 1024 * 1024;

  const $ = (selector) => document.querySelector(selector);
  const params = new URLSearchParams(location.search);
  const jobs = [];
  let useTus = false;
  let nextCursor = null;

  // --- formatting ---------------------------------------------------------------------------

  function formatBytes(bytes) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${bytes} bytes` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
  }

  function formatDuration(seconds) {
    if (!isFinite(seconds)) return "";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function percent(sent, total) {
    return total > 0 ? Math.floor((sent / total) * 100) : 100;
  }

  function announce(text) {
    $("#announcer").textContent = text;
  }

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // --- what a stored file shows: shortened hash with a copy button, download link, thumbnail --

  async function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      await navigator.clipboard.writeText(text);
      return;
    }
    const scratch = element("textarea");
    scratch.value = text;
    scratch.setAttribute("readonly", "");
    scratch.className = "visually-hidden";
    document.body.append(scratch);
    scratch.select();
    document.execCommand("copy");
    scratch.remove();
  }

  function hashView(sha256, name) {
    const box = element("span", "hash");
    // Shown shortened; the whole hash stays in the text for screen readers, search and copy.
    const short = element("code");
    short.title = sha256;
    short.dataset.sha256 = sha256;
    const visible = element("span", "short", `${sha256.slice(0, 10)}…${sha256.slice(-6)}`);
    visible.setAttribute("aria-hidden", "true");
    short.append(visible, element("span", "visually-hidden", sha256));
    const copy = element("button", "copy", "Copy");
    copy.type = "button";
    copy.setAttribute("aria-label", `Copy the SHA-256 of ${name}`);
    copy.addEventListener("click", async () => {
      try {
        await copyText(sha256);
        copy.textContent = "Copied";
        announce(`SHA-256 of ${name} copied`);
      } catch (error) {
        copy.textContent = "Copy failed";
      }
      setTimeout(() => { copy.textContent = "Copy"; }, 2000);
    });
    box.append(short, copy);
    return box;
  }

  function wireDownload(link, item) {
    link.href = `uploads/${encodeURIComponent(item.id)}/content`;
    link.addEventListener("click", (event) => {
      if (!token()) return; // a plain link: the browser streams it to disk
      // A link cannot carry the Authorization header: fetch it, then save the blob. This holds
      // the whole file in memory, so very large files are better fetched with curl or the CLI.
      event.preventDefault();
      api(link.href).then((response) => response.blob()).then((blob) => {
        const save = document.createElement("a");
        save.href = URL.createObjectURL(blob);
        save.download = item.filename;
        save.click();
        setTimeout(() => URL.revokeObjectURL(save.href), 60000);
      }).catch((error) => {
        $("#stored-status").textContent = `${item.filename} could not be downloaded: ${error.message}`;
      });
    });
  }

  async function showThumbnail(img, item) {
    if (!item.content_type.startsWith("image/") || item.size > THUMBNAIL_MAX_BYTES) return false;
    const url = `uploads/${encodeURIComponent(item.id)}/content`;
    if (token()) {
      const blob = await (await api(url)).blob();
      img.addEventListener("load", () => URL.revokeObjectURL(img.src), { once: true });
      img.src = URL.createObjectURL(blob);
    } else {
      img.src = url;
    }
    img.hidden = false;
    return true;
  }

  // --- the API --------------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function authHeaders() {
    const value = token();
    return value ? { Authorization: `Bearer ${value}` } : {};
  }

  // The server's words for a failed response: the `detail` of its JSON error.
  function errorText(status, bodyText) {
    try {
      const body = JSON.parse(bodyText);
      if (body && body.detail) return `${body.detail} (${status})`;
    } catch (ignored) {
      // not JSON: fall through
    }
    if (status === 0) return "The connection to the server was lost.";
    return `The server answered ${status}.`;
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: { ...authHeaders(), ...(options.headers || {}) },
    });
    if (!response.ok) {
      const text = await response.text();
      if (response.status === 401) showAuth(errorText(401, text));
      throw new ApiError(response.status, errorText(response.status, text));
    }
    return response;
  }

  async function detectTus() {
    if (params.get("protocol") === "multipart") return false;
    if (!window.tus || !window.tus.isSupported) return false;
    try {
      const response = await fetch("files/", { method: "OPTIONS", headers: authHeaders() });
      return response.ok && response.headers.has("Tus-Version");
    } catch (ignored) {
      return false;
    }
  }

  // --- one upload -----------------------------------------------------------------------------

  class Job {
    constructor(file) {
      this.file = file;
      this.sent = 0;
      this.samples = [];
      this.state = "queued";
      this.el = $("#job-template").content.firstElementChild.cloneNode(true);
      this.el.dataset.name = file.name;
      this.el.querySelector(".job-name").textContent = file.name;
      this.el.querySelector(".job-size").textContent = formatBytes(file.size);
      this.el.querySelector("progress").setAttribute("aria-label", `Progress of ${file.name}`);
      this.pauseButton = this.el.querySelector(".job-pause");
      this.cancelButton = this.el.querySelector(".job-cancel");
      this.pauseButton.setAttribute("aria-label", `Pause ${file.name}`);
      this.cancelButton.setAttribute("aria-label", `Cancel ${file.name}`);
      this.pauseButton.addEventListener("click", () => this.togglePause());
      this.cancelButton.addEventListener("click", () => this.cancel());
    }

    get active() {
      return this.state === "uploading" || this.state === "retrying" || this.state === "finishing";
    }

    speed() {
      if (this.samples.length < 2) return 0;
      const first = this.samples[0];
      const last = this.samples[this.samples.length - 1];
      const seconds = (last.t - first.t) / 1000;
      return seconds > 0 ? (last.bytes - first.bytes) / seconds : 0;
    }

    progress(sent) {
      const now = performance.now();
      this.sent = sent;
      this.samples.push({ t: now, bytes: sent });
      while (this.samples.length > 2 && now - this.samples[0].t > SPEED_WINDOW_MS) this.samples.shift();
      if (this.state === "retrying") this.setState("uploading");
      scheduleRender();
    }

    setState(state, message) {
      const previous = this.state;
      this.state = state;
      this.el.dataset.state = state;
      this.el.querySelector(".job-error").textContent = state === "error" ? message : "";
      this.message = message || "";
      if (state !== "uploading") this.samples = [];
      const labels = { paused: "Resume", error: "Retry" };
      this.pauseButton.textContent = labels[state] || "Pause";
      this.pauseButton.setAttribute("aria-label", `${this.pauseButton.textContent} ${this.file.name}`);
      this.pauseButton.hidden = !this.canPause && state !== "error";
      if (state !== previous) {
        const words = { done: "uploaded", error: `failed: ${message}`, paused: "paused",
                        cancelled: "cancelled", uploading: "uploading", retrying: message };
        if (words[state]) announce(`${this.file.name}: ${words[state]}`);
      }
      scheduleRender();
      if (state === "done" || state === "error" || state === "cancelled" || state === "paused") pump();
    }

    statusText() {
      const pct = `${percent(this.sent, this.file.size)} %`;
      switch (this.state) {
        case "queued": return "Waiting";
        case "uploading": {
          const speed = this.speed();
          const left = speed > 0 ? `, ${formatDuration((this.file.size - this.sent) / speed)} left` : "";
          return `${pct} · ${formatBytes(this.sent)} of ${formatBytes(this.file.size)} · ${formatBytes(speed)}/s${left}`;
        }
        case "finishing": return `${pct} · the server is storing the file`;
        case "retrying": return `${pct} · ${this.message}`;
        case "paused": return `${pct} · paused`;
        case "done": return "100 % · uploaded";
        case "cancelled": return "Cancelled";
        case "error": return `${pct} · failed`;
        default: return "";
      }
    }

    render() {
      this.el.querySelector("progress").value = percent(this.sent, this.file.size);
      this.el.querySelector(".job-status").textContent = this.statusText();
    }

    // The stored file as the server describes it: name, size, SHA-256, a download link and,
    // for an image, a thumbnail.
    showResult(item) {
      this.stored = item;
      this.el.dataset.id = item.id;
      const result = this.el.querySelector(".job-result");
      result.querySelector(".job-stored-name").textContent = item.filename;
      const size = result.querySelector(".job-stored-size");
      size.textContent = formatBytes(item.size);
      size.title = `${item.size} bytes`;
      result.querySelector(".job-sha256").replaceChildren(hashView(item.sha256, item.filename));
      result.hidden = false;
      const link = this.el.querySelector(".job-download");
      link.setAttribute("aria-label", `Download ${item.filename}, just uploaded`);
      wireDownload(link, item);
      link.hidden = false;
      const img = this.el.querySelector(".job-thumb");
      showThumbnail(img, item).then((shown) => {
        if (shown) this.el.classList.add("has-thumb");
      }).catch(() => undefined);
    }

    togglePause() {
      if (this.state === "paused" || this.state === "error") {
        this.setState("queued");
        pump();
      } else if (this.active) {
        this.pause();
      }
    }
  }

  // Resumable: tus-js-client keeps the upload URL under the file's fingerprint in localStorage,
  // so choosing the same file again (even after a reload) continues at the server's offset.
  class TusJob extends Job {
    get canPause() {
      return true;
    }

    async start() {
      this.setState("uploading");
      const job = this;
      this.upload = new window.tus.Upload(this.file, {
        endpoint: new URL("files/", location.href).href,
        chunkSize: TUS_CHUNK_SIZE,
        retryDelays: RETRY_DELAYS,
        metadata: { filename: this.file.name, filetype: this.file.type || "application/octet-stream" },
        removeFingerprintOnSuccess: true,
        onBeforeRequest(request) {
          const value = token();
          if (value) request.setHeader("Authorization", `Bearer ${value}`);
        },
        onProgress(sent) {
          job.progress(sent);
        },
        onAfterResponse(request, response) {
          const fileId = response.getHeader("Ingest-File-Id");
          if (fileId) job.fileId = fileId;
        },
        onShouldRetry(error) {
          const status = error.originalResponse ? error.originalResponse.getStatus() : 0;
          // The request itself was refused (too large, bad token...): sending again will not help.
          // 409/423 mean the offset moved or the upload is busy; 5xx but a full disk may pass.
          const refused = (status >= 400 && status < 500 && status !== 409 && status !== 423) || status === 507;
          if (refused || navigator.onLine === false) return false;
          job.setState("retrying", status ? `the server answered ${status}, trying again`
            : "connection lost, trying again");
          return true;
        },
        onSuccess() {
          job.sent = job.file.size;
          job.setState("done");
          refreshStoredSoon();
          showUnfinished();
          if (job.fileId) {
            api(`uploads/${encodeURIComponent(job.fileId)}`).then((response) => response.json())
              .then((item) => job.showResult(item)).catch(() => undefined);
          }
        },
        onError(error) {
          const response = error.originalResponse;
          job.setState("error", response ? errorText(response.getStatus(), response.getBody())
            : "The connection to the server was lost.");
          if (response && response.getStatus() === 401) showAuth(errorText(401, response.getBody()));
        },
      });
      const previous = await this.upload.findPreviousUploads();
      if (previous.length > 0) this.upload.resumeFromPreviousUpload(previous[0]);
      this.upload.start();
    }

    pause() {
      this.upload.abort(false);
      this.setState("paused");
    }

    cancel() {
      const upload = this.upload;
      this.setState("cancelled");
      // Terminate on the server (DELETE) and forget the fingerprint; a server without the
      // termination extension keeps the partial upload until it expires.
      if (upload) upload.abort(true).catch(() => undefined).then(showUnfinished);
    }
  }

  // Not resumable: one multipart/form-data POST per file; "pause" is not offered.
  class FormJob extends Job {
    get canPause() {
      return false;
    }

    start() {
      this.setState("uploading");
      const xhr = new XMLHttpRequest();
      this.xhr = xhr;
      xhr.open("POST", "uploads");
      for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
      xhr.upload.addEventListener("progress", (event) => {
        this.progress(event.loaded);
        if (event.loaded >= event.total) this.setState("finishing");
      });
      xhr.addEventListener("load", () => {
        if (xhr.status === 201) {
          this.sent = this.file.size;
          this.setState("done");
          refreshStoredSoon();
          try {
            this.showResult(JSON.parse(xhr.responseText).files[0]);
          } catch (ignored) {
            // stored all the same; the list below shows it
          }
        } else {
          this.setState("error", errorText(xhr.status, xhr.responseText));
          if (xhr.status === 401) showAuth(errorText(401, xhr.responseText));
        }
      });
      xhr.addEventListener("error", () => this.setState("error", "The connection to the server was lost."));
      const form = new FormData();
      form.append("file", this.file, this.file.name);
      xhr.send(form);
    }

    cancel() {
      this.setState("cancelled");
      if (this.xhr) this.xhr.abort();
    }
  }

  // --- the queue ------------------------------------------------------------------------------

  function addFiles(files) {
    if (files.length === 0) return;
    $("#uploads").hidden = false;
    for (const file of files) {
      const job = useTus ? new TusJob(file) : new FormJob(file);
      jobs.push(job);
      $("#queue").append(job.el);
      job.setState("queued");
    }
    pump();
  }

  function pump() {
    let running = jobs.filter((job) => job.active).length;
    for (const job of jobs) {
      if (running >= PARALLEL_UPLOADS) break;
      if (job.state === "queued") {
        running += 1;
        Promise.resolve(job.start()).catch((error) => job.setState("error", String(error)));
      }
    }
  }

  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      renderPending = false;
      render();
    });
  }

  let announcedQuarter = 0;
  function render() {
    for (const job of jobs) job.render();
    // A failed file counts again once retried; until then it is named, not summed.
    const counted = jobs.filter((job) => job.state !== "cancelled" && job.state !== "error");
    const failed = jobs.length - counted.length - jobs.filter((job) => job.state === "cancelled").length;
    const total = counted.reduce((sum, job) => sum + job.file.size, 0);
    const sent = counted.reduce((sum, job) => sum + job.sent, 0);
    const speed = counted.reduce((sum, job) => sum + (job.state === "uploading" ? job.speed() : 0), 0);
    const done = counted.filter((job) => job.state === "done").length;
    const pct = percent(sent, total);
    $("#total-progress").value = pct;
    let text = `${pct} % · ${done} of ${counted.length} files · ${formatBytes(sent)} of ${formatBytes(total)}`;
    if (speed > 0) text += ` · ${formatBytes(speed)}/s, ${formatDuration((total - sent) / speed)} left`;
    if (failed > 0) text += ` · ${failed} failed`;
    $("#total-text").textContent = text;
    // Announce the total at each quarter only, so screen readers are not flooded.
    const quarter = Math.floor(pct / 25);
    if (quarter !== announcedQuarter && counted.length > 0) {
      announcedQuarter = quarter;
      announce(`All files: ${pct} %`);
    }
  }

  // --- unfinished uploads from earlier visits (tus only) ---------------------------------------

  async function showUnfinished() {
    if (!useTus) return;
    const storage = window.tus.defaultOptions.urlStorage;
    const entries = await storage.findAllUploads();
    const list = $("#unfinished-list");
    list.replaceChildren();
    const running = new Set(jobs.filter((job) => job.upload && job.upload.url && job.state !== "cancelled")
      .map((job) => job.upload.url));
    const waiting = entries.filter((entry) => !running.has(entry.uploadUrl));
    for (const entry of waiting) {
      const item = document.createElement("li");
      const name = (entry.metadata && entry.metadata.filename) || "a file";
      item.textContent = `${name} (${formatBytes(entry.size)}), started ${new Date(entry.creationTime).toLocaleString()} `;
      const discard = document.createElement("button");
      discard.type = "button";
      discard.textContent = "Discard";
      discard.setAttribute("aria-label", `Discard the unfinished upload of ${name}`);
      discard.addEventListener("click", async () => {
        await window.tus.Upload.terminate(entry.uploadUrl, { headers: authHeaders() }).catch(() => undefined);
        await storage.removeUpload(entry.urlStorageKey);
        showUnfinished();
      });
      item.append(discard);
      list.append(item);
    }
    $("#unfinished").hidden = waiting.length === 0;
  }

  // --- stored files ---------------------------------------------------------------------------

  let refreshTimer = null;
  function refreshStoredSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => loadStored(false), 200);
  }

  async function loadStored(append) {
    const status = $("#stored-status");
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (append && nextCursor) query.set("cursor", nextCursor);
    try {
      const page = await (await api(`uploads?${query}`)).json();
      const body = $("#stored tbody");
      if (!append) body.replaceChildren();
      for (const item of page.items) body.append(storedRow(item));
      nextCursor = page.next_cursor;
      $("#more").hidden = !nextCursor;
      status.textContent = body.children.length === 0 ? "No files stored yet." : "";
      status.classList.remove("error");
      return true;
    } catch (error) {
      status.textContent = `The list could not be loaded: ${error.message}`;
      status.classList.add("error");
      return false;
    }
  }

  function storedRow(item) {
    const row = document.createElement("tr");
    row.dataset.id = item.id;
    // data-label names each cell where narrow screens show rows as cards.
    const cell = (className, label, ...children) => {
      const td = document.createElement("td");
      td.className = className;
      td.dataset.label = label;
      td.append(...children);
      row.append(td);
      return td;
    };
    cell("name", "Name", item.filename);
    cell("size", "Size", formatBytes(item.size)).title = `${item.size} bytes`;
    const created = document.createElement("time");
    created.dateTime = item.created_at;
    created.textContent = new Date(item.created_at).toLocaleString();
    cell("created", "Uploaded", created);
    cell("sha256", "SHA-256", hashView(item.sha256, item.filename));

    const download = element("a", "", "Download");
    const id = encodeURIComponent(item.id);
    download.setAttribute("aria-label", `Download ${item.filename}`);
    wireDownload(download, item);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "Delete";
    remove.setAttribute("aria-label", `Delete ${item.filename}`);
    remove.addEventListener("click", async () => {
      if (!window.confirm(`Delete ${item.filename}? This cannot be undone.`)) return;
      try {
        await api(`uploads/${id}`, { method: "DELETE" });
        row.remove();
        announce(`${item.filename} deleted`);
      } catch (error) {
        $("#stored-status").textContent = `${item.filename} could not be deleted: ${error.message}`;
        $("#stored-status").classList.add("error");
      }
    });
    cell("actions", "", download, remove);
    return row;
  }

  // --- token ----------------------------------------------------------------------------------

  function showAuth(message) {
    $("#auth").hidden = false;
    $("#auth-status").textContent = message;
  }

  async function useToken(value) {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    if (await loadStored(false)) {
      $("#auth-status").textContent = value ? "Token accepted." : "";
      await detectProtocol();
    }
  }

  // --- start-up -------------------------------------------------------------------------------

  async function detectProtocol() {
    useTus = await detectTus();
    document.body.dataset.protocol = useTus ? "tus" : "multipart";
    $("#protocol").textContent = useTus
      ? "Resumable uploads (tus): an interrupted upload continues where it stopped."
      : "Plain uploads: an interrupted upload has to start over.";
    await showUnfinished();
  }

  function wireUp() {
    const input = $("#files");
    input.addEventListener("change", () => {
      addFiles(Array.from(input.files));
      input.value = "";
    });
    const zone = $("#dropzone");
    // The whole zone is one target: a click anywhere opens the file picker (the label and the
    // hidden input, which keyboards reach, do so themselves).
    zone.addEventListener("click", (event) => {
      if (!event.target.closest("label, input, button, a")) input.click();
    });
    for (const name of ["dragenter", "dragover"]) {
      zone.addEventListener(name, (event) => {
        event.preventDefault();
        zone.classList.add("dragging");
      });
    }
    zone.addEventListener("dragleave", (event) => {
      if (!zone.contains(event.relatedTarget)) zone.classList.remove("dragging");
    });
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      addFiles(Array.from(event.dataTransfer.files));
    });
    // A file dropped beside the zone must not make the browser navigate away from the uploads.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());

    $("#token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      useToken($("#token").value.trim());
    });
    $("#token-forget").addEventListener("click", () => {
      $("#token").value = "";
      useToken("");
    });
    $("#refresh").addEventListener("click", () => loadStored(false));
    $("#more").addEventListener("click", () => loadStored(true));
  }

  async function main() {
    wireUp();
    if (token()) $("#auth").hidden = false;
    await loadStored(false);
    await detectProtocol();
    document.body.dataset.ready = "true";
  }

  main();
})();
