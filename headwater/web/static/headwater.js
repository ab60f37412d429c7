// headwater UI: local times, confirmation dialogs. No framework; htmx does the live fragments.
(function () {
  "use strict";
  const pad = (n) => String(n).padStart(2, "0");
  // Every <time datetime="...UTC ISO..."> is shown in the browser's time zone; its title keeps UTC.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      if (el.dataset.local) return;
      const d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
      const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
      const fmt = el.dataset.fmt || "datetime";
      el.textContent = fmt === "time" ? clock : fmt === "short" ? `${day.slice(5)} ${clock.slice(0, 5)}` : `${day} ${clock}`;
      el.title = d.toISOString().replace(".000Z", "Z") + " (UTC)";
      el.dataset.local = "1";
    });
  }
  // Forms with data-confirm ask first, in a <dialog> (the promote/reject gate, clear, mark).
  function confirmForms(root) {
    root.querySelectorAll("form[data-confirm]").forEach((form) => {
      if (form.dataset.bound) return;
      form.dataset.bound = "1";
      form.addEventListener("submit", (ev) => {
        if (form.dataset.confirmed) return;
        ev.preventDefault();
        // Keep the button that was clicked: its name/value (promote or reject) must be sent too.
        const submitter = ev.submitter || null;
        const dlg = document.getElementById("confirm");
        // The clicked button may say more precisely what is about to happen (promote vs reject).
        const say = (key) => (submitter && submitter.dataset[key]) || form.dataset[key] || "";
        document.getElementById("confirm-title").textContent = say("confirm");
        document.getElementById("confirm-text").textContent = say("confirmText");
        const ok = document.getElementById("confirm-ok");
        const cancel = document.getElementById("confirm-cancel");
        const done = (yes) => {
          dlg.close();
          ok.onclick = cancel.onclick = null;
          if (yes) { form.dataset.confirmed = "1"; form.requestSubmit(submitter); }
        };
        ok.onclick = () => done(true);
        cancel.onclick = () => done(false);
        dlg.showModal();
      });
    });
  }
  function init(root) { localTimes(root); confirmForms(root); }
  document.addEventListener("DOMContentLoaded", () => {
    const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const tzEl = document.getElementById("tzname");
    if (tz && tzEl) tzEl.textContent = tz;
    init(document);
    document.body.addEventListener("htmx:load", (ev) => init(ev.detail.elt));
  });
  // Grid cells carry only their state (a page has thousands): the task comes from the row, the run
  // from the column's bar; a click opens that task try, hovering tells which it is.
  function cellTarget(cell) {
    const td = cell.parentElement, tr = td.parentElement, table = tr.closest("table");
    const bar = table.tHead.rows[0].cells[td.cellIndex].querySelector("[data-run-id]");
    return { dag: table.dataset.dagId, task: tr.dataset.taskId, run: bar && bar.dataset.runId };
  }
  document.addEventListener("click", (ev) => {
    const cell = ev.target.closest && ev.target.closest("table[data-dag-id] a.cell");
    if (!cell) return;
    const t = cellTarget(cell);
    if (!t.run) return;
    const q = encodeURIComponent;
    window.location.href = `/dags/${q(t.dag)}/tasks/${q(t.task)}?run_id=${q(t.run)}`;
  });
  document.addEventListener("mouseover", (ev) => {
    const cell = ev.target.closest && ev.target.closest("table[data-dag-id] a.cell");
    if (!cell || cell.title) return;
    const t = cellTarget(cell);
    cell.title = `${t.task} · ${t.run} · ${cell.dataset.state.replace(/_/g, " ")}`;
  });
  // A log tail follows the end while the user has not scrolled up.
  document.addEventListener("htmx:beforeSwap", (ev) => {
    const log = document.getElementById("log");
    if (log && ev.detail.target.id === "log-tail") log.dataset.stick = String(log.scrollTop + log.clientHeight >= log.scrollHeight - 8);
  });
  document.addEventListener("htmx:afterSettle", () => {
    const log = document.getElementById("log");
    if (log && log.dataset.stick === "true") { log.scrollTop = log.scrollHeight; log.dataset.stick = ""; }
  });
  // Live fragments poll only while the user is not in the middle of something (an open trigger form, typing).
  window.hwIdle = () => !document.querySelector("details[open]") &&
    !(document.activeElement && ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName));
})();
