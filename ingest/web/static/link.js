// Upload-link mode of the page, self-contained: opened as /?link=<secret> (/l/<secret> redirects
// here), the page keeps only its upload part, names the link's label and shows what is left of
// its limits. The secret becomes this tab's bearer token (session storage, the key app.js reads),
// so every upload the page makes carries it; it is taken out of the address bar at once.
(function () {
  "use strict";
  const TOKEN_KEY = "ingest.token";
  const MODE_KEY = "ingest.mode";

  const params = new URLSearchParams(location.search);
  const secret = params.get("link");
  if (secret) {
    sessionStorage.setItem(TOKEN_KEY, secret);
    sessionStorage.setItem(MODE_KEY, "link");
    params.delete("link");
    const query = params.toString();
    history.replaceState(null, "", location.pathname + (query ? `?${query}` : "") + location.hash);
  }
  if (sessionStorage.getItem(MODE_KEY) !== "link") return;

  function formatBytes(bytes) {
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[unit]}`;
  }

  function describe(link) {
    const parts = [];
    if (link.files_left !== null) parts.push(`${link.files_left} of ${link.max_files} files left`);
    if (link.bytes_left !== null) parts.push(`${formatBytes(link.bytes_left)} of ${formatBytes(link.max_size)} left`);
    if (link.accept.length) parts.push(`accepts ${link.accept.join(", ")}`);
    if (link.expires_at) parts.push(`until ${new Date(link.expires_at).toLocaleString()}`);
    if (link.single_use) parts.push("single use");
    return parts.join(" · ");
  }

  const STATES = { expired: "This link has expired.", revoked: "This link was revoked.",
                   used_up: "Nothing more can be sent with this link." };

  async function refresh(box) {
    let text;
    try {
      const response = await fetch("links/current", { headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` } });
      const body = await response.json();
      if (!response.ok) {
        text = { label: "", limits: body.detail || `The server answered ${response.status}.` };
      } else {
        text = { label: body.label, limits: STATES[body.state] || describe(body) };
      }
    } catch (ignored) {
      text = { label: "", limits: "The server cannot be reached." };
    }
    box.querySelector(".link-label").textContent = text.label;
    box.querySelector(".link-limits").textContent = text.limits;
  }

  function start() {
    document.body.dataset.mode = "link";
    // Only the upload part: no token form, no list of stored files (that needs a read token).
    const auth = document.getElementById("auth");
    if (auth) auth.style.display = "none";
    const stored = document.getElementById("stored-title");
    if (stored && stored.closest("section")) stored.closest("section").style.display = "none";

    const box = document.createElement("section");
    box.id = "link-info";
    box.setAttribute("aria-live", "polite");
    const label = document.createElement("h2");
    label.className = "link-label";
    const limits = document.createElement("p");
    limits.className = "link-limits";
    box.append(label, limits);
    const header = document.querySelector("header");
    if (header) header.after(box);
    refresh(box);
    // What is left changes as uploads finish: read it again whenever one ends.
    const queue = document.getElementById("queue");
    if (queue) {
      new MutationObserver(() => refresh(box)).observe(queue, { subtree: true, attributeFilter: ["data-state"] });
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
