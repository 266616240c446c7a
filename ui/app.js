// The approver page (docs/ui.md). Everything the broker returns is shown
// with textContent, never parsed as HTML: agents write the binding message
// and the action preview, and must not be able to inject markup here.
'use strict';

(function () {
  const REFRESH_MS = 3000;
  let csrf = null;
  let me = null;          // the signed-in approver's name
  let current = null;     // id of the request in the detail view
  let shown = null;       // that request as last fetched
  let refreshTimer = null;
  let tickTimer = null;
  let listKey = null;     // what the list shows, to skip needless redraws

  const $ = (id) => document.getElementById(id);

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  function show(view) {
    for (const v of ['signin', 'list-view', 'detail-view']) $(v).hidden = v !== view;
    $('who').hidden = view === 'signin';
  }

  function notice(text) {
    $('notice').textContent = text || '';
    $('notice').hidden = !text;
  }

  // One JSON call. Errors come back as {error, error_description}. A
  // sign-in in another tab replaces the session and its CSRF token; a
  // change refused for the token is retried once with the new token, but
  // only if the new session is the same approver's: nobody's decision may
  // silently be recorded under another name.
  async function call(method, path, body) {
    let r = await send(method, path, body);
    if (r.status === 403 && method !== 'GET' && /X-CSRF-Token/.test(r.json.error_description || '')) {
      const s = await send('GET', '/ui/api/session');
      if (s.status === 200 && s.json.approver.name === me && s.json.csrf_token !== csrf) {
        csrf = s.json.csrf_token;
        r = await send(method, path, body);
      } else if (s.status === 200 && s.json.approver.name !== me) {
        r = { status: 401, json: { error: 'invalid_token', error_description: 'signed in as someone else in another tab' } };
      }
    }
    return r;
  }

  async function send(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
    let r;
    try {
      r = await fetch(path, {
        method, headers, credentials: 'same-origin', cache: 'no-store',
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      return { status: 0, json: { error: 'network', error_description: 'the broker cannot be reached' } };
    }
    let json = null;
    try { json = await r.json(); } catch (e) { json = null; }
    return { status: r.status, json: json || {} };
  }

  function sessionEnded(text) {
    csrf = me = null;
    stopTimers();
    show('signin');
    notice(text);
  }

  function stopTimers() {
    clearInterval(refreshTimer);
    clearInterval(tickTimer);
    refreshTimer = tickTimer = null;
  }

  function startTimers(fn) {
    stopTimers();
    refreshTimer = setInterval(fn, REFRESH_MS);
    tickTimer = setInterval(tick, 1000);
  }

  // ---- time left ---------------------------------------------------------

  function left(deadline) {
    const s = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    if (s === 0) return 'expired';
    const m = Math.floor(s / 60);
    return (m > 0 ? m + 'm ' : '') + (s % 60) + 's left';
  }

  // Redraw every countdown from the deadline stored on its element.
  function tick() {
    for (const e of document.querySelectorAll('[data-deadline]')) {
      const d = Number(e.getAttribute('data-deadline'));
      e.textContent = left(d);
      e.classList.toggle('urgent', d - Date.now() < 60000);
    }
  }

  function timeLeft(req) {
    if (req.state !== 'pending' && req.state !== 'approved') return el('span', { class: 'timeleft', text: '' });
    const deadline = Date.now() + req.expires_in * 1000;
    return el('span', { class: 'timeleft', 'data-deadline': String(deadline), text: left(deadline) });
  }

  // ---- pieces of a request ---------------------------------------------------

  function scopeList(req) {
    const ul = el('ul', { class: 'scopes' });
    for (const s of req.scopes || []) {
      const write = s.kind !== 'read';
      ul.append(el('li', { class: 'scope' + (write ? ' write' : ''), title: write ? 'write scope' : 'read scope',
        text: s.name + (write ? ' (write)' : '') }));
    }
    return ul;
  }

  function details(req) {
    return Array.isArray(req.authorization_details) ? req.authorization_details : [];
  }

  // What the broker found when it hashed a preview: true, it is exactly the
  // content the digest binds; false, it is NOT (the approver would be judging
  // one text while the service enforces another); null, nothing to compare.
  function previewNote(req, i) {
    const c = Array.isArray(req.preview_checks) ? req.preview_checks[i] : null;
    if (c === true) return el('p', { class: 'check ok', 'data-testid': 'preview-check', text: 'This is the exact content: its SHA-256 is the digest.' });
    if (c === false) return el('p', { class: 'check bad', 'data-testid': 'preview-check', text: 'Warning: this preview is NOT the content the digest binds. What would be done is not what is shown here.' });
    return el('p', { class: 'check', 'data-testid': 'preview-check', text: 'The agent\'s own description: nothing checks it against what would be done.' });
  }

  function field(dl, name, value) {
    if (value === null || value === undefined || value === '') return;
    dl.append(el('dt', { text: name }), el('dd', {}, value instanceof Node ? value : String(value)));
  }

  function lifetime(s) {
    if (!s) return 'default';
    return s >= 60 ? Math.floor(s / 60) + ' min' + (s % 60 ? ' ' + (s % 60) + ' s' : '') : s + ' s';
  }

  function stateBadge(req) {
    return el('span', { class: 'state ' + req.state, 'data-testid': 'state', text: req.state });
  }

  function decidedBy(req) {
    return (req.decisions || []).map((d) => d.approver + ' (' + d.decision + ')').join(', ');
  }

  // ---- list ------------------------------------------------------------------

  async function loadList() {
    const state = $('state-filter').value;
    const r = await call('GET', '/ui/api/approvals?state=' + encodeURIComponent(state));
    if (r.status === 401) return sessionEnded('Your session has ended; sign in again.');
    if (r.status !== 200) {
      $('list-status').textContent = 'Cannot load requests: ' + (r.json.error_description || r.status);
      return;
    }
    const items = r.json.approvals || [];
    // Rebuild the cards only when a request changed: replacing them on
    // every refresh would pull a card away from under a finger or a
    // pointer about to tap it. The countdowns run on by themselves.
    const key = state + JSON.stringify(items.map(({ expires_in: _, ...rest }) => rest));
    if (key !== listKey) {
      listKey = key;
      $('requests').replaceChildren(...items.map(card));
    }
    $('list-status').textContent = items.length === 0
      ? 'No ' + (state === 'all' ? '' : state + ' ') + 'requests. This list refreshes every few seconds.'
      : items.length + ' request' + (items.length === 1 ? '' : 's') + ', refreshed ' + new Date().toLocaleTimeString();
  }

  function card(req) {
    const dl = el('dl', { class: 'fields' });
    field(dl, 'Owner', req.owner);
    field(dl, 'Audience', req.audience);
    field(dl, 'Lifetime', lifetime(req.ttl));
    for (const [i, d] of details(req).entries()) {
      if (d.preview) field(dl, 'Action', el('div', {}, el('div', { class: 'preview', text: d.preview }), previewNote(req, i)));
      if (d.action_digest) field(dl, 'Digest', el('code', { class: 'digest', text: d.action_digest }));
    }
    if (req.state !== 'pending') field(dl, 'Decided by', decidedBy(req));
    const li = el('li', { class: 'card', tabIndex: 0, 'data-id': req.id, 'data-testid': 'request' },
      el('div', { class: 'card-head' },
        el('span', { class: 'agent', text: req.agent }),
        stateBadge(req),
        timeLeft(req)),
      scopeList(req),
      req.binding_message ? el('p', { class: 'message', text: req.binding_message }) : null,
      dl);
    const open = () => openDetail(req.id);
    li.addEventListener('click', open);
    li.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } });
    return li;
  }

  function showList() {
    current = shown = null;
    listKey = null;
    show('list-view');
    loadList();
    startTimers(loadList);
  }

  // ---- detail ----------------------------------------------------------------

  async function loadDetail() {
    if (!current) return;
    const r = await call('GET', '/ui/api/approvals/' + encodeURIComponent(current));
    if (r.status === 401) return sessionEnded('Your session has ended; sign in again.');
    if (r.status !== 200) {
      result(false, r.json.error_description || 'cannot load this request');
      return;
    }
    renderDetail(r.json);
  }

  function explainState(req) {
    // The sweeper marks expiry every few seconds; the deadline is what counts.
    if (req.state === 'pending' && req.expires_in <= 0) req = { ...req, state: 'expired' };
    switch (req.state) {
      case 'expired': return 'This request has expired: nobody decided in time. The agent must ask again.';
      case 'approved': return 'Approved by ' + decidedBy(req) + '. The agent can now collect its token.';
      case 'consumed': return 'Approved by ' + decidedBy(req) + '; the agent has collected its token.';
      case 'denied': return 'Denied by ' + decidedBy(req) + '.';
      default: return null;
    }
  }

  function renderDetail(req) {
    shown = req;
    const dl = el('dl', { class: 'fields' });
    field(dl, 'Agent', req.agent);
    field(dl, 'Owner', req.owner);
    field(dl, 'Audience', req.audience);
    field(dl, 'Lifetime', lifetime(req.ttl));
    field(dl, 'Approvals', req.approvals + ' of ' + req.approvals_required);
    field(dl, 'Requested', req.created_at);
    field(dl, 'Expires', req.expires_at);
    field(dl, 'Request id', el('code', { text: req.id }));
    field(dl, 'Parameters hash', el('code', { class: 'digest', text: req.params_hash }));
    const parts = [
      el('div', { class: 'card-head' }, el('h2', { text: 'Request from ' + req.agent }), stateBadge(req), timeLeft(req)),
      scopeList(req),
    ];
    if (req.binding_message) parts.push(el('p', { class: 'message', 'data-testid': 'binding-message', text: req.binding_message }));
    for (const [i, d] of details(req).entries()) {
      if (d.preview) parts.push(el('h3', { text: 'Action (' + (d.type || 'action') + ')' }), el('div', { class: 'preview', 'data-testid': 'preview', text: d.preview }), previewNote(req, i));
      if (d.action_digest) parts.push(el('p', {}, 'Digest: ', el('code', { class: 'digest', 'data-testid': 'digest', text: d.action_digest })));
    }
    parts.push(dl);
    if ((req.decisions || []).length > 0) {
      parts.push(el('h3', { text: 'Decisions' }), el('ul', { class: 'decisions' }, ...req.decisions.map((d) =>
        el('li', { text: d.approver + ': ' + d.decision + (d.reason ? ' (' + d.reason + ')' : '') + ' at ' + d.at }))));
    }
    $('detail').replaceChildren(...parts);
    const pending = req.state === 'pending' && req.expires_in > 0;
    $('decide').hidden = !pending;
    const why = explainState(req);
    if (why && $('result').hidden) result(req.state === 'approved' || req.state === 'consumed', why);
  }

  function result(good, text) {
    const p = $('result');
    p.textContent = text;
    p.className = 'result ' + (good ? 'good' : 'bad');
    p.hidden = false;
  }

  function openDetail(id) {
    current = id;
    shown = null;
    $('result').hidden = true;
    $('reason').value = '';
    $('detail').replaceChildren();
    $('decide').hidden = true;
    show('detail-view');
    loadDetail();
    startTimers(loadDetail);
  }

  // The decision repeats the parameters hash of what the approver was
  // shown, so a request that changed underneath is refused, not approved.
  async function decide(approve) {
    if (!shown) return;
    const reason = $('reason').value.trim();
    if (!approve && reason === '') {
      result(false, 'Give a reason to deny.');
      $('reason').focus();
      return;
    }
    const body = { params_hash: shown.params_hash };
    if (reason !== '') body.reason = reason;
    $('approve').disabled = $('deny').disabled = true;
    const r = await call('POST', '/ui/api/approvals/' + encodeURIComponent(shown.id) + (approve ? '/approve' : '/deny'), body);
    $('approve').disabled = $('deny').disabled = false;
    if (r.status === 401) return sessionEnded('Your session has ended; sign in again.');
    if (r.status === 200) {
      $('result').hidden = true;
      const who = decidedBy(r.json);
      result(approve, (approve ? 'Approved' : 'Denied') + '. Decided by ' + who + '.');
      renderDetail(r.json);
      return;
    }
    const why = r.json.error_description || ('error ' + r.status);
    if (/expired/.test(why)) result(false, 'This request has expired; it can no longer be decided. The agent must ask again.');
    else if (/already/.test(why)) result(false, 'This request was already decided: ' + why + '.');
    else result(false, 'Not recorded: ' + why + '.');
    $('result').setAttribute('data-error', r.json.error || '');
    loadDetail();
  }

  // ---- session ---------------------------------------------------------------

  function signedIn(doc) {
    csrf = doc.csrf_token;
    me = doc.approver.name;
    $('who-name').textContent = doc.approver.name;
    notice('');
    showList();
  }

  async function signIn(ev) {
    ev.preventDefault();
    const input = $('key');
    const key = input.value.trim();
    input.value = '';
    $('signin-error').hidden = true;
    const r = await call('POST', '/ui/api/session', { key });
    if (r.status === 200) return signedIn(r.json);
    $('signin-error').textContent = r.status === 401
      ? 'That key was not accepted (wrong, or the approver is disabled).'
      : (r.json.error_description || 'Sign-in failed (' + r.status + ').');
    $('signin-error').hidden = false;
  }

  async function signOut() {
    await call('DELETE', '/ui/api/session');
    sessionEnded('Signed out.');
  }

  async function start() {
    $('signin-form').addEventListener('submit', signIn);
    $('signout').addEventListener('click', signOut);
    $('back').addEventListener('click', showList);
    $('approve').addEventListener('click', () => decide(true));
    $('deny').addEventListener('click', () => decide(false));
    $('state-filter').addEventListener('change', loadList);
    const r = await call('GET', '/ui/api/session');
    if (r.status === 200) signedIn(r.json);
    else show('signin');
  }

  document.addEventListener('DOMContentLoaded', start);
}());
