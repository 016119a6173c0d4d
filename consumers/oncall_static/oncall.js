// The on-call page: polls /api/incidents each second, renders open incidents with their SLA
// countdown, and acknowledges / resolves through the API (which emits the recovery events).
"use strict";
(function () {
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.get("token")) {
    sessionStorage.setItem("journey-token", params.get("token"));
    history.replaceState(null, "", location.pathname);  // keep the token out of the address bar
  }
  const $ = (id) => document.getElementById(id);
  const me = $("me");
  me.value = localStorage.getItem("journey-me") || "";
  me.addEventListener("change", () => localStorage.setItem("journey-me", me.value.trim()));
  let state = null;

  function token() { return sessionStorage.getItem("journey-token") || ""; }

  async function api(path, options) {
    const response = await fetch(path, { ...options, headers: { "Authorization": "Bearer " + token(),
      "Content-Type": "application/json" } });
    if (response.status === 401) { $("login").hidden = false; throw new Error("token needed"); }
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    return body;
  }

  function duration(s) {
    const a = Math.abs(s);
    const text = a < 120 ? Math.round(a) + " s" : a < 7200 ? Math.round(a / 60) + " min" : (a / 3600).toFixed(1) + " h";
    return s < 0 ? "overdue " + text : text;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function render() {
    if (!state) return;
    const skew = Date.now() - state.received;  // countdowns tick between polls
    const body = $("incidents").tBodies[0];
    body.replaceChildren();
    for (const inc of state.incidents) {
      const row = body.insertRow();
      row.dataset.incident = inc.incident_id;
      const sev = cell(row, "");
      const badge = document.createElement("span");
      badge.className = "sev sev-" + inc.severity;
      badge.textContent = inc.severity + (inc.level ? " L" + inc.level : "");
      sev.append(badge);
      cell(row, inc.rule + " · " + inc.journey_id);
      cell(row, inc.store_id || "—");
      const history = inc.customer_incidents_30d > 1 ? " (" + inc.customer_incidents_30d + " incidents in 30 d)" : "";
      cell(row, (inc.customer_id || "—") + history);
      cell(row, duration(inc.age_s + skew / 1000));
      const due = inc.ack_due_in_s === null ? null : inc.ack_due_in_s - skew / 1000;
      cell(row, due === null ? "acknowledged" : duration(due), "due");
      if (due !== null && due < 0) row.classList.add("overdue");
      cell(row, inc.status + (inc.acknowledged_by ? " by " + inc.acknowledged_by : "")
        + (inc.paged ? "" : " (not paged: " + inc.not_paged_because + ")"), "status");
      const actions = cell(row, "");
      if (inc.status === "open") actions.append(button("Acknowledge", "ack", inc));
      actions.append(button("Resolve", "resolve", inc));
    }
    $("empty").hidden = state.incidents.length > 0;
    const problems = Object.entries(state.pipeline || {}).filter(([, p]) => p);
    $("pipeline").hidden = problems.length === 0;
    $("pipeline").textContent = problems.map(([, p]) => "Pipeline problem: " + p).join(" · ");
    const list = $("alerts");
    list.replaceChildren(...state.recent_alerts.map((a) => {
      const li = document.createElement("li");
      li.textContent = new Date(a.at).toISOString().slice(11, 19) + "  " + a.message;
      return li;
    }));
  }

  function button(label, action, inc) {
    const b = document.createElement("button");
    b.textContent = label;
    b.dataset.action = action;
    b.addEventListener("click", async () => {
      const by = me.value.trim();
      if (!by) { me.focus(); $("status").textContent = "enter your name first"; return; }
      b.disabled = true;
      try {
        await api("/api/incidents/" + encodeURIComponent(inc.incident_id) + "/" + action,
          { method: "POST", body: JSON.stringify({ by }) });
        $("status").textContent = label.toLowerCase() + " sent for " + inc.incident_id;
      } catch (e) {
        $("status").textContent = e.message;
        b.disabled = false;
      }
    });
    return b;
  }

  async function poll() {
    try {
      const data = await api("/api/incidents");
      state = { ...data, received: Date.now() };
      $("status").textContent = "live · " + data.incidents.length + " open";
      $("login").hidden = true;
      render();
    } catch (e) {
      $("status").textContent = "not updating: " + e.message;
    }
  }

  $("login").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem("journey-token", $("token").value);
    poll();
  });
  poll();
  setInterval(poll, 1000);
})();
