// The Ringline admin console at /admin (docs/admin.md): live calls and their members'
// states, ending a call, call records, callback deliveries and this node. Plain ES
// module, no build step; everything it shows comes from the admin REST API (./api.js),
// signed with the admin user sig the operator gives.
//
//   import { mountAdmin } from "/admin/admin.js";
//   mountAdmin(document.getElementById("admin"));

import { AdminApi, AdminError, forgetCredentials, loadCredentials, saveCredentials, takeFragmentCredentials } from "./api.js";

/** How often the live calls, the deliveries and the node are read again (ms). */
export const POLL_MS = 1500;

const CALL_RESULTS = ["NormalEnd", "Cancel", "Reject", "NotAnswer", "CallBusy", "Interrupt", "Offline", "EndByServer"];
const DELIVERY_STATES = ["Pending", "InFlight", "Delivered", "GivenUp", "Gone"];

/** Create an element: h("button.primary", {onclick}, "text", child...). */
function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v !== null && v !== undefined) el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

const pad = (n) => String(n).padStart(2, "0");

/** Unix seconds as local "YYYY-MM-DD HH:MM:SS" ("—" for 0 / null). */
function when(s) {
  if (!s) return "—";
  const d = new Date(s * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds as "m:ss" or "h:mm:ss". */
function span(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  return hh ? `${hh}:${pad(mm)}:${pad(s % 60)}` : `${mm}:${pad(s % 60)}`;
}

/** A datetime-local input's value as unix seconds, or undefined when empty. */
function unix(input) {
  if (!input.value) return undefined;
  const t = new Date(input.value).getTime();
  return Number.isFinite(t) ? Math.floor(t / 1000) : undefined;
}

/** The readable words of a REST error. */
function explain(err) {
  if (err instanceof AdminError && err.code > 0) return `${err.message} (code ${err.code})`;
  return err && err.message ? err.message : String(err);
}

/**
 * Mount the console in `root`. Returns a controller {signIn(credentials), signOut(), refresh()}.
 */
export function mountAdmin(root, options = {}) {
  const base = new URL("/", options.serverUrl || import.meta.url).href;
  let api = null;
  let sdkAppId = 0;
  let timer = 0;
  let polling = false;
  const lastJson = new Map(); // section -> the JSON it was last drawn from (redraw only on change)
  let recordsPage = 1;
  let deliveriesPage = 1;

  // ---------------------------------------------------------------- layout
  root.classList.add("ad-page");
  const who = h("span.ad-who", { id: "ad-who" });
  const live = h("span.ad-live", { id: "ad-live", title: "live updates" }, "signed out");
  const signOutBtn = h("button.ghost", { id: "ad-signout", hidden: true, onclick: () => signOut("Signed out.") }, "Sign out");
  const header = h("header.ad-header", {}, h("strong", {}, "Ringline ", h("span.ad-dim", {}, "admin")), who, live, signOutBtn);

  const idInput = h("input", { id: "ad-identifier", value: "administrator", autocomplete: "username", required: true });
  const sigInput = h("textarea", { id: "ad-usersig", rows: 3, placeholder: "the admin user sig", required: true, spellcheck: "false" });
  const signInMsg = h("p.ad-error", { id: "ad-signin-error", role: "alert" });
  const signInForm = h("form.ad-card.ad-signin", { id: "ad-signin", onsubmit: (e) => { e.preventDefault(); signIn({ identifier: idInput.value.trim(), usersig: sigInput.value.trim() }); } },
    h("h2", {}, "Sign in"),
    h("p.ad-hint", {}, "Sign in as the server's admin identifier with a user sig minted for it (", h("code", {}, "ringline usersig administrator"), "). The sig is kept in this tab only."),
    h("label", { for: "ad-identifier" }, "Admin identifier"), idInput,
    h("label", { for: "ad-usersig" }, "Admin user sig"), sigInput,
    h("div.ad-row", {}, h("button.primary", { id: "ad-signin-btn", type: "submit" }, "Sign in")),
    signInMsg);

  const banner = h("p.ad-banner", { id: "ad-banner", role: "status", hidden: true });

  // Live calls
  const callsBody = h("tbody", { id: "ad-calls" });
  const callsCount = h("span.ad-count", { id: "ad-calls-count" }, "0");
  const callsEmpty = h("p.ad-empty", { id: "ad-calls-empty" }, "No call in progress.");
  const callsCard = h("section.ad-card", { id: "ad-calls-card" },
    h("div.ad-card-head", {}, h("h2", {}, "Live calls ", callsCount), h("span.ad-hint", { id: "ad-updated" })),
    h("table.ad-table", {}, h("thead", {}, h("tr", {}, ...["Call", "Type", "Caller", "Members", "Started", "Connected", ""].map((t) => h("th", {}, t)))), callsBody),
    callsEmpty);

  // Records
  const fromInput = h("input", { id: "ad-rec-from", type: "datetime-local", step: 1 });
  const toInput = h("input", { id: "ad-rec-to", type: "datetime-local", step: 1 });
  const resultSelect = h("select", { id: "ad-rec-result" }, h("option", { value: "" }, "any result"), ...CALL_RESULTS.map((r) => h("option", { value: r }, r)));
  const typeSelect = h("select", { id: "ad-rec-type" }, h("option", { value: "" }, "1v1 and group"), h("option", { value: "SingleCall" }, "1v1"), h("option", { value: "MultiCall" }, "group"));
  const userInput = h("input", { id: "ad-rec-user", placeholder: "user id", autocomplete: "off" });
  const recordsBody = h("tbody", { id: "ad-records" });
  const recordsInfo = h("span.ad-hint", { id: "ad-records-info" });
  const recPrev = h("button.small", { id: "ad-rec-prev", onclick: () => searchRecords(recordsPage - 1) }, "‹ Newer");
  const recNext = h("button.small", { id: "ad-rec-next", onclick: () => searchRecords(recordsPage + 1) }, "Older ›");
  const recordsCard = h("section.ad-card", { id: "ad-records-card" },
    h("div.ad-card-head", {}, h("h2", {}, "Call records")),
    h("form.ad-filters", { id: "ad-rec-form", onsubmit: (e) => { e.preventDefault(); searchRecords(1); } },
      h("label", {}, "From", fromInput), h("label", {}, "To", toInput), h("label", {}, "Result", resultSelect),
      h("label", {}, "Type", typeSelect), h("label", {}, "User", userInput),
      h("button.primary", { id: "ad-rec-search", type: "submit" }, "Search")),
    h("table.ad-table", {}, h("thead", {}, h("tr", {}, ...["Call", "Started", "Duration", "Type", "Caller", "Members", "Result"].map((t) => h("th", {}, t)))), recordsBody),
    h("div.ad-row.ad-pager", {}, recordsInfo, recPrev, recNext));

  // Deliveries
  const stateSelect = h("select", { id: "ad-dlv-state", onchange: () => { deliveriesPage = 1; refreshDeliveries(); } },
    h("option", { value: "" }, "not delivered (pending, failing, given up, gone)"), h("option", { value: "*" }, "every state"),
    ...DELIVERY_STATES.map((s) => h("option", { value: s }, s)));
  const countsRow = h("div.ad-counts", { id: "ad-dlv-counts" });
  const deliveriesBody = h("tbody", { id: "ad-deliveries" });
  const deliveriesInfo = h("span.ad-hint", { id: "ad-deliveries-info" });
  const dlvPrev = h("button.small", { onclick: () => { deliveriesPage = Math.max(1, deliveriesPage - 1); refreshDeliveries(); } }, "‹ Previous");
  const dlvNext = h("button.small", { onclick: () => { deliveriesPage += 1; refreshDeliveries(); } }, "Next ›");
  const deliveriesCard = h("section.ad-card", { id: "ad-deliveries-card" },
    h("div.ad-card-head", {}, h("h2", {}, "Callback deliveries"), h("label.ad-inline", {}, "Show ", stateSelect)),
    countsRow,
    h("table.ad-table", {}, h("thead", {}, h("tr", {}, ...["Event", "Call", "Callback", "State", "Attempts", "Last attempt", "Last error", ""].map((t) => h("th", {}, t)))), deliveriesBody),
    h("div.ad-row.ad-pager", {}, deliveriesInfo, dlvPrev, dlvNext));

  // Nodes
  let nodesMode = null;
  const nodesBody = h("tbody", { id: "ad-nodes" });
  const nodesCard = h("section.ad-card", { id: "ad-nodes-card" },
    h("div.ad-card-head", {}, h("h2", {}, "Nodes"), (nodesMode = h("span.ad-hint", { id: "ad-nodes-mode" }, "single node"))),
    h("table.ad-table", {}, h("thead", {}, h("tr", {}, ...["Node", "Status", "Uptime", "Sessions", "Live calls", "Callback workers"].map((t) => h("th", {}, t)))), nodesBody));

  const consoleView = h("main.ad-main", { id: "ad-console", hidden: true }, callsCard, recordsCard, deliveriesCard, nodesCard);
  root.append(header, banner, h("div.ad-center", {}, signInForm), consoleView);

  // ---------------------------------------------------------------- helpers
  function say(text, kind = "info") {
    banner.textContent = text;
    banner.dataset.kind = kind;
    banner.hidden = !text;
  }

  /** Run a REST command; an auth failure signs out with the reason. */
  async function call(command, body) {
    if (!api) throw new AdminError(-1, "not signed in");
    try {
      return await api.v4(command, body);
    } catch (err) {
      if (err instanceof AdminError && err.auth) signOut(`Signed out: the server refused the admin credentials: ${explain(err)}`, true);
      throw err;
    }
  }

  /** Redraw `section` only when its data changed (so buttons under the pointer stay put). */
  function changed(section, data) {
    const json = JSON.stringify(data);
    if (lastJson.get(section) === json) return false;
    lastJson.set(section, json);
    return true;
  }

  // ---------------------------------------------------------------- sign in / out
  async function config() {
    if (sdkAppId) return sdkAppId;
    const r = await fetch(new URL("app/config.json", base), { cache: "no-store" });
    sdkAppId = (await r.json()).sdkAppId;
    return sdkAppId;
  }

  async function signIn(credentials) {
    signInMsg.textContent = "";
    if (!credentials.usersig) {
      signInMsg.textContent = "Paste the admin user sig.";
      return false;
    }
    try {
      api = new AdminApi(base, await config(), credentials);
      await api.v4("call_engine_http_srv/get_live_calls", { NumberPerPage: 1 });
    } catch (err) {
      api = null;
      if (err instanceof AdminError && err.auth) forgetCredentials(); // refused; a server that is down: keep them
      const why = err instanceof AdminError && err.auth ? `The server refused these credentials: ${explain(err)}` : `Cannot sign in: ${explain(err)}`;
      signInMsg.textContent = why;
      root.dataset.state = "refused";
      return false;
    }
    saveCredentials(credentials);
    sigInput.value = "";
    who.textContent = credentials.identifier;
    signOutBtn.hidden = false;
    signInForm.hidden = true;
    consoleView.hidden = false;
    root.dataset.state = "signed-in";
    say("");
    lastJson.clear();
    await Promise.all([poll(), searchRecords(1)]);
    return true;
  }

  function signOut(message = "", refused = false) {
    clearTimeout(timer);
    timer = 0;
    api = null;
    forgetCredentials();
    lastJson.clear();
    for (const body of [callsBody, recordsBody, deliveriesBody, nodesBody]) body.replaceChildren();
    who.textContent = "";
    live.textContent = "signed out";
    live.dataset.state = "off";
    signOutBtn.hidden = true;
    consoleView.hidden = true;
    signInForm.hidden = false;
    signInMsg.textContent = refused ? message : "";
    root.dataset.state = refused ? "refused" : "signed-out";
    say(refused ? "" : message);
  }

  // ---------------------------------------------------------------- live calls
  function stateChip(m) {
    return h("span.ad-member", { dataset: { user: m.User_Account, state: m.State.toLowerCase() }, title: `${m.Role}, ${m.State}` },
      h("span.ad-member-name", {}, m.User_Account), h("span.ad-state", {}, m.State.toLowerCase()));
  }

  function drawCalls(res) {
    callsCount.textContent = String(res.TotalNum);
    callsEmpty.hidden = res.CallList.length > 0;
    const now = Date.now() / 1000;
    if (!changed("calls", res.CallList)) {
      // Same calls: only the "connected for" clocks move.
      for (const el of callsBody.querySelectorAll("[data-since]")) el.textContent = `for ${span(now - Number(el.dataset.since))}`;
      return;
    }
    callsBody.replaceChildren(...res.CallList.map((c) => {
      const i = c.CallInfo;
      const endBtn = h("button.danger.small", { dataset: { action: "end" }, onclick: () => endCall(i.CallId, endBtn) }, "End call");
      return h("tr", { dataset: { callId: i.CallId, status: i.CallStatus.toLowerCase() } },
        h("td", {}, h("code.ad-id", { title: i.CallId }, i.CallId.slice(0, 8)), h("div.ad-sub", {}, i.CallStatus)),
        h("td", {}, `${i.CallMediaType} · ${i.CallType === "SingleCall" ? "1v1" : "group"}`, i.ChatGroupId ? h("div.ad-sub", {}, `group ${i.ChatGroupId}`) : null),
        h("td", {}, i.Caller_Account),
        h("td", {}, h("div.ad-members", {}, ...c.MemberList.map(stateChip))),
        h("td", {}, when(i.StartTime)),
        h("td", {}, i.AcceptTime ? `${when(i.AcceptTime)}` : "—", i.AcceptTime ? h("div.ad-sub", { dataset: { since: i.AcceptTime } }, `for ${span(now - i.AcceptTime)}`) : null),
        h("td.ad-actions", {}, endBtn));
    }));
  }

  async function endCall(callId, btn) {
    if (options.confirm !== false && !confirm(`End call ${callId} for everyone?`)) return;
    btn.disabled = true;
    try {
      await call("call_engine_http_srv/end_call", { CallId: callId });
      say(`Call ${callId} ended.`);
    } catch (err) {
      if (api) say(`Could not end call ${callId}: ${explain(err)}`, "error");
      btn.disabled = false;
    }
    await refreshCalls().catch(() => {});
  }

  async function refreshCalls() {
    const res = await call("call_engine_http_srv/get_live_calls", { NumberPerPage: 100 });
    drawCalls(res);
    const d = new Date();
    document.getElementById("ad-updated").textContent = `updated ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  // ---------------------------------------------------------------- records
  async function searchRecords(page) {
    if (page < 1) return;
    const body = { NumberPerPage: 20, Page: page };
    const start = unix(fromInput);
    const end = unix(toInput);
    if (start !== undefined) body.StartTime = start;
    if (end !== undefined) body.EndTime = end;
    if (resultSelect.value) body.CallResult = resultSelect.value;
    if (typeSelect.value) body.CallType = typeSelect.value;
    if (userInput.value.trim()) body.User_Account = userInput.value.trim();
    let res;
    try {
      res = await call("call_record_http_srv/get_record_by_filter", body);
    } catch (err) {
      if (api) say(`Record search refused: ${explain(err)}`, "error");
      return;
    }
    recordsPage = page;
    const first = (page - 1) * 20;
    recordsInfo.textContent = res.TotalNum
      ? `${first + 1}–${first + res.CallRecordList.length} of ${res.TotalNum} records`
      : "no record matches";
    recPrev.disabled = page <= 1;
    recNext.disabled = first + res.CallRecordList.length >= res.TotalNum;
    recordsBody.replaceChildren(...res.CallRecordList.map((r) =>
      h("tr", { dataset: { callId: r.CallId, result: r.CallResult } },
        h("td", {}, h("code.ad-id", { title: r.CallId }, r.CallId.slice(0, 8))),
        h("td", {}, when(r.StartTime)),
        h("td", {}, r.AcceptTime ? span(r.EndTime - r.AcceptTime) : "—"),
        h("td", {}, `${r.MediaType} · ${r.CallType === "SingleCall" ? "1v1" : "group"}`),
        h("td", {}, r.Caller_Account),
        h("td", {}, h("div.ad-members", {}, ...r.MemberList.map((m) =>
          h("span.ad-member", { dataset: { user: m.User_Account, result: m.Result.toLowerCase() }, title: `${m.Role}: ${m.Result}` },
            h("span.ad-member-name", {}, m.User_Account), h("span.ad-state", {}, m.Result))))),
        h("td", {}, h("span.ad-result", { dataset: { result: r.CallResult } }, r.CallResult)))));
  }

  // ---------------------------------------------------------------- deliveries
  function deliveryQuery() {
    const v = stateSelect.value;
    const body = { NumberPerPage: 20, Page: deliveriesPage };
    if (v === "*") body.State = DELIVERY_STATES;
    else if (v) body.State = v;
    return body;
  }

  function drawDeliveries(res) {
    if (!changed("deliveries", res)) return;
    countsRow.replaceChildren(...DELIVERY_STATES.map((s) =>
      h("span.ad-badge", { dataset: { state: s, count: res.Counts[s] } }, `${s} `, h("b", {}, String(res.Counts[s])))),
    ...res.GoneUrls.map((g) => h("span.ad-badge", { dataset: { state: "Gone" } }, `410 Gone: ${g.Url}`)));
    const first = (res.Page - 1) * 20;
    deliveriesInfo.textContent = res.TotalNum
      ? `${first + 1}–${first + res.DeliveryList.length} of ${res.TotalNum} deliveries`
      : "no delivery in this state";
    dlvPrev.disabled = res.Page <= 1;
    dlvNext.disabled = first + res.DeliveryList.length >= res.TotalNum;
    deliveriesBody.replaceChildren(...res.DeliveryList.map((d) => {
      const btn = h("button.small", { dataset: { action: "redeliver" }, disabled: d.State === "InFlight", onclick: () => redeliver(d.EventId, btn) }, "Redeliver");
      return h("tr", { dataset: { eventId: d.EventId, callId: d.CallId, state: d.State } },
        h("td", {}, h("code.ad-id", { title: d.EventId }, d.EventId.length > 16 ? `…${d.EventId.slice(-12)}` : d.EventId)),
        h("td", {}, h("code.ad-id", { title: d.CallId }, d.CallId.slice(0, 8))),
        h("td", {}, d.CallbackCommand, h("div.ad-sub", { title: d.Url }, d.Url)),
        h("td", {}, h("span.ad-badge", { dataset: { state: d.State } }, d.State)),
        h("td", {}, String(d.Attempts)),
        h("td", {}, d.LastAttemptTime ? when(d.LastAttemptTime) : "—", d.LastStatus ? h("div.ad-sub", {}, `HTTP ${d.LastStatus}`) : null),
        h("td.ad-err", {}, d.LastError || ""),
        h("td.ad-actions", {}, btn));
    }));
  }

  async function redeliver(eventId, btn) {
    btn.disabled = true;
    try {
      await call("call_callback_http_srv/redeliver", { EventId: eventId });
      say(`Callback ${eventId} queued to be sent again.`);
    } catch (err) {
      if (api) say(`Could not redeliver ${eventId}: ${explain(err)}`, "error");
    }
    await refreshDeliveries().catch(() => {});
  }

  async function refreshDeliveries() {
    drawDeliveries(await call("call_callback_http_srv/get_deliveries", deliveryQuery()));
  }

  // ---------------------------------------------------------------- node
  async function refreshNodes() {
    const r = await call("call_engine_http_srv/get_nodes", {});
    const origin = new URL(base).host;
    const nodes = r.NodeList.map((n) => ({ ...n, UptimeSeconds: Math.floor(n.UptimeSeconds) }));
    if (!changed("nodes", { origin, mode: r.Mode, nodes })) return;
    nodesMode.textContent = r.Mode === "Single" ? "single node" : `${nodes.length} nodes`;
    nodesBody.replaceChildren(...nodes.map((n) => {
      const name = n.NodeId || origin;
      const single = r.Mode === "Single";
      // In a cluster: the node that owns the calls (and its epoch) or an edge that relays to it.
      const where = single ? `this node · ${origin}` : `${n.Role === "Owner" ? `owns the calls (epoch ${n.Epoch})` : "edge"} · ${n.Address}`;
      const ok = single || n.Lease === "Held";
      return h("tr", { dataset: { node: name, role: single ? "Single" : n.Role } },
        h("td", {}, name, h("div.ad-sub", {}, `${where}${n.Version ? ` · Ringline ${n.Version}` : ""}`)),
        h("td", {}, h("span.ad-badge", { dataset: { state: ok ? "Delivered" : "GivenUp" } }, ok ? "ok" : "lease expired")),
        h("td", {}, span(n.UptimeSeconds)),
        h("td", {}, single || n.Role === "Owner" ? String(n.Sessions) : `${n.Connections} relayed`),
        h("td", {}, String(n.LiveCalls)),
        h("td", {}, single ? (n.CallbackWorkers ? `${n.CallbackWorkers} worker processes` : "in the server process") : "from the shared outbox"));
    }));
  }

  // ---------------------------------------------------------------- polling
  async function poll() {
    if (!api || polling) return;
    polling = true;
    try {
      await Promise.all([refreshCalls(), refreshDeliveries(), refreshNodes()]);
      live.textContent = "live";
      live.dataset.state = "on";
    } catch (err) {
      if (api) {
        live.textContent = "reconnecting";
        live.dataset.state = "warn";
        say(`Cannot read the server: ${explain(err)}`, "error");
      }
    } finally {
      polling = false;
      if (api) {
        clearTimeout(timer);
        timer = setTimeout(poll, options.pollMs || POLL_MS);
      }
    }
  }

  // ---------------------------------------------------------------- start
  const handed = takeFragmentCredentials();
  const saved = handed || loadCredentials();
  if (saved) {
    idInput.value = saved.identifier;
    signIn(saved);
  } else {
    root.dataset.state = "signed-out";
  }

  return { signIn, signOut, refresh: poll, searchRecords };
}
