// The on-call page: polls /api/incidents each second, renders open incidents (grouped as they
// page) with their SLA countdown and what they are about, and acknowledges / resolves single
// incidents or whole groups through the API (which emits the recovery events).
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
  // The hint has an element of its own: the live refresh rewrites the status line every second
  // and would wipe it before anyone could read it. It goes once a name is entered.
  me.addEventListener("input", () => { if (me.value.trim()) $("hint").hidden = true; });
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

  // Human units, one style everywhere: 45 s, 12 min, 3 h 20 min, 2 d 4 h.
  function duration(s) {
    const a = Math.round(Math.abs(s));
    let text;
    if (a < 120) text = a + " s";
    else if (a < 3600) text = Math.floor(a / 60) + " min";
    else if (a < 86400) text = Math.floor(a / 3600) + " h" + (a % 3600 >= 60 ? " " + Math.floor(a % 3600 / 60) + " min" : "");
    else text = Math.floor(a / 86400) + " d" + (a % 86400 >= 3600 ? " " + Math.floor(a % 86400 / 3600) + " h" : "");
    return s < 0 ? "overdue " + text : text;
  }

  function cell(row, text, cls) {
    const td = row.insertCell();
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }

  function incidentRow(body, inc, skew, member) {
    const row = body.insertRow();
    row.dataset.incident = inc.incident_id;
    if (member) row.className = "member";
    const sev = cell(row, "");
    const badge = document.createElement("span");
    badge.className = "sev sev-" + inc.severity;
    badge.textContent = inc.severity + (inc.level ? " L" + inc.level : "");
    sev.append(badge);
    cell(row, inc.rule + " · " + inc.journey_id);
    const about = cell(row, inc.about || (inc.request_id ? "request " + inc.request_id : "—"), "about");
    if (inc.note) {
      const note = document.createElement("span");
      note.className = "note";
      note.textContent = "note: " + inc.note;
      about.append(note);
    }
    cell(row, inc.store_id || "—");
    const history = inc.customer_incidents_30d > 1 ? " (" + inc.customer_incidents_30d + " incidents in 30 d)" : "";
    cell(row, (inc.customer_id || "—") + history);
    cell(row, duration(inc.age_s + skew / 1000));
    const left = inc.time_left_s === null ? null : inc.time_left_s - skew / 1000;
    let due;
    if (inc.waiting_since) due = "waiting on the customer";
    else if (left === null) due = "—";
    else due = (inc.ack_due_in_s === null ? "resolve: " : "acknowledge: ") + duration(left);
    cell(row, due, "due");
    if (left !== null && left < 0) row.classList.add("overdue");
    cell(row, inc.status + (inc.acknowledged_by ? " by " + inc.acknowledged_by : "")
      + (inc.paged ? "" : " (not paged: " + inc.not_paged_because + ")"), "status");
    const actions = cell(row, "");
    const path = "/api/incidents/" + encodeURIComponent(inc.incident_id) + "/";
    if (inc.status === "open") actions.append(button("Acknowledge", path + "ack", null, inc.incident_id));
    actions.append(button("Resolve", path + "resolve", null, inc.incident_id));
  }

  function groupRow(body, key, members) {
    const row = body.insertRow();
    row.className = "group";
    row.dataset.group = key;
    const unacked = members.filter((m) => m.status === "open").length;
    const head = cell(row, "group " + key + " · " + members.length + " open, " + unacked + " unacknowledged");
    head.colSpan = 8;
    const actions = cell(row, "");
    if (unacked) actions.append(button("Acknowledge group", "/api/groups/ack", key, "group " + key));
    actions.append(button("Resolve group", "/api/groups/resolve", key, "group " + key));
  }

  function render() {
    if (!state) return;
    const skew = Date.now() - state.received;  // countdowns tick between polls
    const body = $("incidents").tBodies[0];
    body.replaceChildren();
    // Groups in the order of their most urgent member (the server sorts incidents by urgency).
    const groups = new Map();
    for (const inc of state.incidents) {
      const key = inc.group_size > 1 ? inc.group_key : "incident:" + inc.incident_id;
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(inc);
    }
    for (const [key, members] of groups) {
      const grouped = !key.startsWith("incident:");
      if (grouped) groupRow(body, key, members);
      for (const inc of members) incidentRow(body, inc, skew, grouped);
    }
    $("empty").hidden = state.incidents.length > 0;
    const problems = Object.entries(state.pipeline || {}).filter(([, p]) => p);
    $("pipeline").hidden = problems.length === 0;
    $("pipeline").textContent = problems.map(([, p]) => "Pipeline problem: " + p).join(" · ");
    const silences = state.silences || [];
    $("silences-box").hidden = silences.length === 0;
    $("silences").replaceChildren(...silences.map((s) => {
      const li = document.createElement("li");
      li.textContent = s.describe + " — until " + new Date(s.ends_at).toISOString().slice(0, 16).replace("T", " ")
        + " UTC" + (s.comment ? " — " + s.comment : "");
      return li;
    }));
    const list = $("alerts");
    list.replaceChildren(...state.recent_alerts.map((a) => {
      const li = document.createElement("li");
      li.textContent = new Date(a.at).toISOString().slice(11, 19) + "  " + a.message;
      return li;
    }));
  }

  function button(label, path, group, what) {
    const b = document.createElement("button");
    b.textContent = label;
    b.dataset.action = path.endsWith("/ack") ? "ack" : "resolve";
    b.addEventListener("click", async () => {
      const by = me.value.trim();
      if (!by) {
        me.focus();
        $("hint").textContent = "enter your name first";
        $("hint").hidden = false;
        return;
      }
      b.disabled = true;
      try {
        await api(path, { method: "POST", body: JSON.stringify(group ? { by, group } : { by }) });
        $("status").textContent = label.toLowerCase() + " sent for " + what;
      } catch (e) {
        $("hint").textContent = e.message;
        $("hint").hidden = false;
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
