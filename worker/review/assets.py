"""The console's static CSS and JavaScript, served from ``/static/`` (no build step, no inline script).

The script is the whole keyboard flow: ``a`` approve, ``r`` reject, ``b`` reject and ban (where offered),
``e`` escalate, space reveals the image,
``n`` starts reviewing from the queue page. A verdict is sent with ``fetch`` (the CSRF token in the
``X-CSRF-Token`` header) and the next item loads itself. The claim is renewed while the reviewer is active
(a key, a click or a pointer move since the last renewal). "Always reveal" is remembered per reviewer in the
browser's local storage.
"""

from __future__ import annotations

from typing import Final

CSS: Final = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1d1d1f; background: #f6f6f7; }
header { display: flex; gap: 1rem; align-items: center; padding: .5rem 1rem;
  background: #24292f; color: #fff; }
header a { color: #fff; } header .who { margin-left: auto; } header form { margin: 0; }
main { padding: 1rem; max-width: 1200px; margin: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #ddd; vertical-align: top; }
ul.reasons, ul.tags { margin: 0; padding-left: 1rem; }
.review { display: grid; grid-template-columns: minmax(300px, 1fr) minmax(280px, 1fr); gap: 1rem; }
figure.image { margin: 0; background: #fff; padding: .5rem; overflow: hidden; }
figure.image img { max-width: 100%; max-height: 70vh; display: block; margin: auto; transition: filter .2s; }
img.veiled { filter: blur(24px) grayscale(1); }
.verdict { grid-column: 1 / -1; display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; }
.verdict textarea { width: 24rem; }
.buttons button { font-size: 1.1rem; padding: .4rem 1rem; margin-right: .5rem; }
.approve { background: #2da44e; color: #fff; } .reject { background: #cf222e; color: #fff; }
.ban { background: #82071e; color: #fff; }
.escalate { background: #bf8700; color: #fff; }
kbd { border: 1px solid #999; border-radius: 3px; padding: 0 .3rem; font-size: .8em;
  background: #eee; color: #111; }
.error, .status { color: #cf222e; font-weight: 600; }
a.start { font-size: 1.2rem; }
.signin { display: flex; flex-direction: column; max-width: 24rem; gap: .5rem; }
"""

JS: Final = """
"use strict";
(function () {
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const start = document.getElementById("start");
  const again = document.getElementById("again");
  if (again) { setTimeout(() => location.assign(again.href), 10000); }
  const review = document.getElementById("review");
  if (!review) {
    if (start) {
      document.addEventListener("keydown", (event) => {
        if (event.key === "n" && !event.target.closest("input, select, textarea")) {
          location.assign(start.href);
        }
      });
    }
    return;
  }
  const ref = review.dataset.ref, next = review.dataset.next, reviewer = review.dataset.reviewer;
  let lease = review.dataset.lease;
  const image = document.getElementById("image"), status = document.getElementById("status");
  const always = document.getElementById("always-reveal"), form = document.getElementById("verdict");
  const preference = "review.reveal." + reviewer;
  let busy = false, active = false;

  function reveal(on) { image.classList.toggle("veiled", !on); review.dataset.revealed = on ? "yes" : "no"; }
  always.checked = localStorage.getItem(preference) === "1";
  reveal(always.checked);
  always.addEventListener("change", () => {
    localStorage.setItem(preference, always.checked ? "1" : "0");
    reveal(always.checked);
  });
  const toggle = () => reveal(image.classList.contains("veiled"));
  document.getElementById("reveal").addEventListener("click", toggle);

  async function post(path, fields) {
    const body = new URLSearchParams(fields);
    body.set("lease", lease);
    return fetch(path, { method: "POST", body, credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Accept": "application/json" } });
  }

  async function decide(verdict) {
    if (busy) { return; }
    busy = true;
    status.textContent = "Recording " + verdict + "...";
    const fields = { verdict, note: document.getElementById("note").value };
    if (verdict === "ban") { fields.verdict = "reject"; fields.ban = "1"; }
    if (fields.verdict === "approve") { fields.reason = document.getElementById("approve-reason").value; }
    if (fields.verdict === "reject") { fields.reason = document.getElementById("reject-reason").value; }
    try {
      const response = await post("/items/" + ref + "/verdict", fields);
      const answer = await response.json();
      if (response.ok) { status.textContent = "Recorded."; location.assign(answer.next || next); return; }
      status.textContent = answer.message || ("Refused (" + response.status + ")");
    } catch (error) {
      status.textContent = "The console did not answer; try again.";
    }
    busy = false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (event.submitter) { decide(event.submitter.value); }
  });
  document.addEventListener("keydown", (event) => {
    active = true;
    const typing = event.target.closest("input, select, textarea");
    if (typing || event.ctrlKey || event.metaKey || event.altKey) { return; }
    const keys = { a: "approve", r: "reject", b: "ban", e: "escalate" };
    const offered = { escalate: ".escalate", ban: ".ban" }[keys[event.key]];
    if (keys[event.key] && (!offered || form.querySelector(offered))) {
      event.preventDefault(); decide(keys[event.key]);
    } else if (event.key === " ") {
      event.preventDefault(); toggle();
    }
  });
  for (const kind of ["pointermove", "click", "scroll"]) {
    document.addEventListener(kind, () => { active = true; }, { passive: true });
  }

  const every = Math.max(5, Number(review.dataset.leaseS) / 3) * 1000;
  setInterval(async () => {
    if (!active || busy) { return; }
    active = false;
    const response = await post("/items/" + ref + "/renew", {});
    if (!response.ok) { status.textContent = (await response.json()).message || "Your claim ended."; }
  }, every);
})();
"""
