// The admin page: every figure comes from the admin routes, called with the caller's own authorisation.
// No data is ever written as HTML (textContent only); the function key stays in this tab's memory.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  // API field names (error "target", or "field" before it was renamed) -> the input that shows the message
  const FIELDS = {
    orgId: "org-id", clientId: "client-id", accessTokenKey: "token-key", accessTokenSecret: "token-secret",
    region: "region", webinarIds: "webinar-ids", dataverseUrl: "dataverse-url", email: "forget-email",
    functionKey: "function-key", "x-functions-key": "function-key",
  };
  // errors without a field that still belong to one
  const CODE_FIELDS = { on24_rejected_credentials: "accessTokenSecret", credentials_unreadable: "accessTokenSecret" };
  const OUTCOME_ORDER = ["registered", "updated", "cancelled", "in_progress", "failed", "skipped", "parked"];
  const state = { appServiceAuth: false, keyNeeded: true, lastOrg: "" };
  const KEY_REFUSED = "The function key was not accepted: check it (it may have been renewed) and try again.";

  function words(value) {
    return String(value).replace(/_/g, " ");
  }
  function show(el, on) { el.hidden = !on; }
  function text(el, value) { el.textContent = value == null || value === "" ? "—" : String(value); return el; }
  function make(tag, value, cls) {
    const el = document.createElement(tag);
    if (value !== undefined) text(el, value);
    if (cls) el.className = cls;
    return el;
  }
  function when(iso) {
    if (!iso) return "—";
    const date = new Date(iso);
    return isNaN(date) ? String(iso) : date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  }
  function badge(status) {
    const value = words(status || "unknown");
    const good = ["active", "ok", "registered", "deleted"], bad = ["error", "rejected", "expired", "failed", "disabled"];
    const tone = good.includes(value) ? "good" : bad.includes(value) ? "bad" : value === "warning" ? "warn" : "neutral";
    return make("span", value, "badge " + tone);
  }

  // ---- messages ------------------------------------------------------------------------------------------
  function clearErrors() {
    show($("alert"), false);
    $("alert").textContent = "";
    document.querySelectorAll(".field-error").forEach((el) => { el.textContent = ""; show(el, false); });
    document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  }
  function notify(message) { $("notice").textContent = message; }
  function alertPage(message) {
    $("alert").textContent = message;
    show($("alert"), true);
  }
  function fieldError(field, message) {
    const base = String(field || "").split(/[.[]/)[0];
    const id = FIELDS[base];
    const input = id && $(id);
    if (!input || input.closest("[hidden]")) return false;
    const slot = $(id + "-error");
    slot.textContent = message;
    show(slot, true);
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return true;
  }
  function showError(problem) {
    notify("");
    if (fieldError(problem.target, fieldMessage(problem.message, problem.target))) return;
    alertPage(problem.message);
  }
  // next to its field, "dataverseUrl: Value error, must be ..." reads "Must be ..."
  function fieldMessage(message, target) {
    let shown = String(message);
    if (target && shown.startsWith(target + ": ")) shown = shown.slice(target.length + 2);
    shown = shown.replace(/^Value error, /, "");
    return shown.charAt(0).toUpperCase() + shown.slice(1);
  }

  // ---- calls ---------------------------------------------------------------------------------------------
  class ApiProblem extends Error {
    constructor(status, code, message, target) { super(message); Object.assign(this, { status, code, target }); }
  }
  function showAccess() {
    show($("function-key-field"), state.keyNeeded);
    show($("signed-in"), !state.keyNeeded && state.appServiceAuth);
    show($("open-locally"), !state.keyNeeded && !state.appServiceAuth);
  }
  function key() { return $("function-key").value.trim(); }

  async function call(method, path, body) {
    // App Service authentication answers 401 (not a redirect to the sign-in page) to such a request
    const headers = { Accept: "application/json", "X-Requested-With": "XMLHttpRequest" };
    if (state.keyNeeded) {
      if (!key()) throw new ApiProblem(401, "key_missing", "Enter the function key first.", "functionKey");
      headers["x-functions-key"] = key();
    }
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin", cache: "no-store", redirect: "follow" });
    } catch (exc) {
      throw new ApiProblem(0, "network", "The app could not be reached: check the connection and try again.");
    }
    let payload = null;
    const raw = await response.text();
    if (raw) { try { payload = JSON.parse(raw); } catch (exc) { payload = null; } }
    const keyRefused = payload && payload.error && payload.error.target === "x-functions-key";
    if (response.status === 401 && state.appServiceAuth && !keyRefused) {
      throw new ApiProblem(401, "signed_out", "Your sign-in has ended: reload the page to sign in again.");
    }
    if (response.status === 401 && (keyRefused || !(payload && payload.error))) {
      // the app refused the admin key (or something in front of it answered 401 without a body)
      if (!state.keyNeeded) { state.keyNeeded = true; showAccess(); }
      throw new ApiProblem(401, "unauthorized", KEY_REFUSED, "functionKey");
    }
    if (!response.ok) {
      const error = (payload && payload.error) || {};
      const code = error.code || "http_" + response.status;
      const target = error.target || error.field || CODE_FIELDS[code] || null;
      const message = error.message || `The app answered ${response.status} ${response.statusText}.`;
      const retry = response.headers.get("Retry-After");
      throw new ApiProblem(response.status, code, retry ? `${message} (try again in ${retry} s)` : message, target);
    }
    return { status: response.status, body: payload || {}, location: response.headers.get("Location"),
      retryAfter: response.headers.get("Retry-After") };
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  // 202: follow Location, honouring Retry-After (2 s when absent), until the operation answers 200; after
  // FOLLOW_FOR_MS the page stops waiting (the operation goes on; the caller says so and Refresh shows it)
  const FOLLOW_FOR_MS = 120000;
  async function settle(answer, what) {
    let current = answer;
    const until = Date.now() + FOLLOW_FOR_MS;
    while (current.status === 202 && current.location) {
      const seconds = Math.min(Math.max(parseFloat(current.retryAfter) || 2, 0.5), 60);
      if (Date.now() + seconds * 1000 > until) break;
      notify(`${what}: still running…`);
      await sleep(seconds * 1000);
      current = await call("GET", current.location);
    }
    return current;
  }

  function orgPath(suffix) {
    const org = $("org-id").value.trim();
    if (!org) throw new ApiProblem(400, "missing", "Enter the org ID.", "orgId");
    return "/api/orgs/" + encodeURIComponent(org) + suffix;
  }

  async function busy(button, work) {
    clearErrors();
    button.disabled = true;
    try { await work(); } catch (exc) {
      if (exc instanceof ApiProblem) showError(exc); else { alertPage("Unexpected error in the page: " + exc.message); }
    } finally { button.disabled = false; }
  }

  // ---- status ----------------------------------------------------------------------------------------------
  function facts(dl, rows) {
    dl.replaceChildren();
    for (const [name, value] of rows) {
      if (value == null || value === "") continue;  // nothing to say: no row
      dl.append(make("dt", name));
      const dd = make("dd");
      if (value instanceof Node) dd.append(value); else text(dd, value);
      dl.append(dd);
    }
  }
  // A webinar's last reconciliation (CRM, the ledger and ON24 compared): counts per class, never an id or email.
  function driftText(reconciliation) {
    if (!reconciliation || !reconciliation.counts) {
      return reconciliation && reconciliation.requested ? "check asked for" : "not checked yet";
    }
    const c = reconciliation.counts;
    const parts = [];
    if (c.missingInOn24) parts.push(`${c.missingInOn24} missing in ON24`);
    if (c.goneInCrm) parts.push(`${c.goneInCrm} gone in CRM`);
    if (c.different) parts.push(`${c.different} different`);
    const drift = parts.length ? parts.join(", ") : "none";
    const ours = c.notOurs ? `; ${c.notOurs} registered on ON24's own page` : "";
    return `${drift}${ours} (${c.agreed} agree; checked ${when(reconciliation.lastReconciledAt)})`;
  }

  function warningText(warning) {
    if (warning && typeof warning === "object") return [warning.message || warning.code || "", warning.code || ""];
    return [String(warning), ""];
  }
  function renderStatus(view, credentials) {
    show($("status-empty"), false);
    show($("status"), true);
    $("as-of").textContent = "As of " + when(view.asOf) + " for org " + (view.orgId || "");
    const warnings = $("warnings");
    warnings.replaceChildren();
    for (const warning of view.warnings || []) {
      const [message, code] = warningText(warning);
      const li = make("li", message);
      if (code) li.append(make("code", code));
      warnings.append(li);
    }
    if (!warnings.children.length) warnings.append(make("li", "None: everything looks fine.", "none"));

    const cred = view.credentials || credentials || {};
    if (!view.configured) {
      facts($("credentials"), [["State", badge("disabled")], ["Note", "No ON24 credentials are stored: connect to switch the integration on."]]);
    } else {
      const metrics = cred.metrics || {};
      facts($("credentials"), [
        ["State", badge(cred.status)], ["Reason", cred.statusReason], ["ON24 client ID", cred.clientId],
        ["Region", cred.region], ["Dataverse URL", cred.dataverseUrl],
        ["Webinar IDs", (cred.webinarIds || []).join(", ")], ["Stored", when(cred.updatedAt) + (cred.updatedBy ? " by " + cred.updatedBy : "")],
        ["Last metrics run", metrics.status ? words(metrics.status) + " at " + when(metrics.at) + (metrics.reason ? ": " + metrics.reason : "") : "not yet"],
      ]);
    }
    if (cred.purge) {
      facts($("credentials"), [["Purge", badge(cred.purge.status)], ["Requested", when(cred.purge.requestedAt)]]);
    }
    const token = view.token;
    facts($("token"), token ? [
      ["State", badge(token.state)],
      ["Token age", token.idleDays == null ? "unknown" : `${token.idleDays} days since its last successful use (ON24 disables it after ${token.disabledAfterDays || 60} unused days)`],
      ["Last successful use", when(token.lastSuccessfulUse)], ["Note", token.message],
    ] : [["State", "no token stored"]]);

    const rows = $("webinars");
    rows.replaceChildren();
    for (const webinar of view.webinars || []) {
      const tr = make("tr");
      const counts = webinar.counts || {};
      const head = make("th", webinar.webinarId);
      head.scope = "row";
      head.id = "webinar-" + webinar.webinarId;
      tr.append(head);
      const stateCell = make("td");
      stateCell.append(badge(webinar.status || (webinar.lastPull ? "ok" : "never pulled")));
      tr.append(stateCell, make("td", webinar.lastPull ? when(webinar.lastPull) : "never"), make("td", when(webinar.nextDue)));
      for (const name of ["pulled", "matched", "written", "unmatched", "failed"]) {
        tr.append(make("td", counts[name] == null ? "—" : counts[name], "num"));
      }
      tr.append(make("td", driftText(webinar.reconciliation)));
      tr.append(make("td", webinar.lastError || ""));
      const action = make("td");
      const button = make("button", "Pull now");
      button.type = "button";
      button.setAttribute("aria-describedby", head.id);
      button.addEventListener("click", () => busy(button, () => pull(webinar.webinarId)));
      action.append(button);
      tr.append(action);
      rows.append(tr);
    }
    if (!rows.children.length) {
      const tr = make("tr");
      const td = make("td", "No webinar yet: list its ID under Webinar IDs, or wait for the first registration.");
      td.colSpan = 12;
      tr.append(td);
      rows.append(tr);
    }

    const registrations = view.registrations || {};
    const total = registrations.total || {}, day = registrations.last24h || {};
    const names = Object.keys(Object.assign({}, total, day));
    names.sort((a, b) => rank(a) - rank(b));
    const body = $("registrations");
    body.replaceChildren();
    for (const name of names) {
      const tr = make("tr");
      tr.append(make("th", words(name)), make("td", count(total[name]), "num"), make("td", count(day[name]), "num"));
      tr.firstChild.scope = "row";
      body.append(tr);
    }
    $("registrations-note").textContent = (registrations.inOn24 != null ? `${registrations.inOn24} registrants in ON24. ` : "") +
      (registrations.countedAt ? "Counted " + when(registrations.countedAt) + "." : "");

    const rejected = view.rejectedMessages || {};
    const parking = registrations.parking;
    facts($("parked"), [
      ["Parked registrations", count(total.parked)],
      ["Parking", parking ? `ON24 or CRM unreachable (${parking.failedAttempts} attempts); next attempt ${when(parking.nextAttempt)}` : "not parking"],
      ["Rejected messages", `${count(rejected.total)} in total, ${count(rejected.waiting)} waiting, ${count(rejected.last24h)} in the last 24 hours`],
      ["Latest rejected", rejected.latest ? when(rejected.latest.at) + ": " + rejected.latest.reason : "none"],
      ["Recent failures", (registrations.recentFailures || []).map((f) => `${f.registrationId}: ${f.reason}`).join("; ") || "none"],
    ]);
  }
  function rank(name) {
    const index = OUTCOME_ORDER.indexOf(String(name).replace(/ /g, "_"));
    return index < 0 ? OUTCOME_ORDER.length : index;
  }
  // null: the API says it has not counted yet; absent: this view does not track it
  function count(value) { return value === null ? "not counted yet" : value === undefined ? "—" : value; }

  async function refresh() {
    const answer = await call("GET", orgPath("/webinar/status"));
    state.lastOrg = $("org-id").value.trim();
    renderStatus(answer.body);
    return answer.body;
  }

  // ---- actions ---------------------------------------------------------------------------------------------
  async function connect() {
    const body = { clientId: $("client-id").value.trim(), accessTokenKey: $("token-key").value.trim(),
      accessTokenSecret: $("token-secret").value, region: $("region").value };
    const ids = $("webinar-ids").value.split(/[\s,;]+/).filter(Boolean);
    if (ids.length) body.webinarIds = ids;
    const url = $("dataverse-url").value.trim();
    if (url) body.dataverseUrl = url;
    const path = orgPath("/webinar/credentials");
    const answer = await call("PUT", path, body);
    $("token-secret").value = "";  // never kept, never shown back
    notify(`Connected: ON24 accepted the credentials of client ${answer.body.clientId || body.clientId}; they are stored encrypted.`);
    await refresh();
  }

  async function pull(webinarId) {
    notify(`Pulling webinar ${webinarId}…`);
    let answer = await call("POST", orgPath("/webinars/" + encodeURIComponent(webinarId) + "/pull"));
    answer = await settle(answer, `Pull of webinar ${webinarId}`);
    const result = answer.body.result || answer.body;
    const counts = result.counts;
    await refresh();
    if (answer.status === 200 && counts) {
      notify(`Webinar ${webinarId} pulled: ${counts.pulled || 0} attendees, ${counts.written || 0} check-ins written, ${counts.unchanged || 0} unchanged, ${counts.unmatched || 0} without a CRM registration.`);
    } else {
      notify(`Webinar ${webinarId}: the pull continues in the background; the status shows its progress.`);
    }
  }

  function confirmStep(title, message, confirmLabel) {
    const dialog = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = message;
    $("confirm-ok").textContent = confirmLabel;
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  async function forget() {
    const email = $("forget-email").value.trim();
    const path = orgPath("/webinar/forget");
    if (!email) throw new ApiProblem(400, "missing", "Enter the email address of the person to forget.", "email");
    if (!(await confirmStep("Forget this person?", `Everything this org's integration holds about ${email} is erased, here and in ON24. This cannot be undone.`, "Yes, forget"))) return;
    const answer = await call("POST", path, { email });
    const found = answer.body.registrationsFound || 0;
    $("forget-email").value = "";
    const result = $("forget-result");
    const others = (answer.body.registrations || []).filter((r) => r.outcome !== "forgotten")
      .map((r) => `${r.registrationId}: ${words(r.outcome)}${r.reason ? " (" + r.reason + ")" : ""}`);
    result.textContent = found
      ? `Forgotten: ${found} registration${found === 1 ? "" : "s"} erased, ${answer.body.rejectedMessagesDeleted || 0} rejected and ${answer.body.parkedMessagesDeleted || 0} parked messages deleted.` +
        (others.length ? " Not finished: " + others.join("; ") + "." : "")
      : "Nothing was held about this person for this org.";
    show(result, true);
    notify("The person was forgotten.");
    await refresh();
  }

  async function switchOff(purge) {
    const path = orgPath("/webinar/credentials" + (purge ? "?purge=true" : ""));
    const org = $("org-id").value.trim();
    const ok = purge
      ? await confirmStep("Leave and delete all data?", `The integration is switched off for org ${org} and every row it keeps for this org is deleted (registrations, sync state, parked and rejected messages). CRM and ON24 keep their own records. This cannot be undone.`, "Yes, delete all data")
      : await confirmStep("Switch off the integration?", `The ON24 credentials of org ${org} are deleted: no registration is sent to ON24 and no check-in is pulled until you connect again.`, "Yes, switch off");
    if (!ok) return;
    let answer = await call("DELETE", path);
    if (purge) answer = await settle(answer, "Deleting the org's data");
    const purgeView = answer.body.purge;
    const result = $("off-result");
    result.textContent = purge
      ? (answer.status === 202 || (purgeView && purgeView.status === "running")
        ? "Switched off; the org's data is being deleted (a timer finishes it). Refresh to follow it."
        : "Switched off and every row of this org deleted.")
      : (answer.body.removed ? "Switched off: the credentials are deleted; nothing more is sent to ON24 for this org." : "It was already off.");
    show(result, true);
    notify(result.textContent);
    await refresh();
  }

  // ---- start ---------------------------------------------------------------------------------------------
  async function start() {
    $("org-form").addEventListener("submit", (e) => { e.preventDefault(); busy($("refresh"), async () => { await refresh(); notify("Status refreshed."); }); });
    $("connect-form").addEventListener("submit", (e) => { e.preventDefault(); busy($("connect"), connect); });
    $("forget-form").addEventListener("submit", (e) => { e.preventDefault(); busy($("forget"), forget); });
    $("switch-off").addEventListener("click", () => busy($("switch-off"), () => switchOff(false)));
    $("leave").addEventListener("click", () => busy($("leave"), () => switchOff(true)));
    try {
      const response = await fetch("/api/admin/config.json", { cache: "no-store", credentials: "same-origin" });
      const config = await response.json();
      if (!response.ok) throw new Error((config.error && config.error.message) || response.statusText);
      state.appServiceAuth = config.appServiceAuth === true;
      state.keyNeeded = config.keyRequired === true;
    } catch (exc) {
      alertPage("The page's configuration could not be read: " + exc.message);
    }
    showAccess();
    document.body.dataset.ready = "true";
  }
  start();
})();
