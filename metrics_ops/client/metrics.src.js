// metrics-ops metrics.js, readable source (MIT). tools/build_client.py minifies it into metrics.js and metrics.mjs.
// No cookies; honours Global Privacy Control and Do Not Track. Options: metrics.d.ts; README "The browser script".
((w, d, n, c = { endpoint: "/api/metrics/event", sampleRate: 1, sample: "visitor" }, q = [], v, t, last) => {
let configure = o => { for (let k in o) o[k] != null && (c[k] = o[k]) },
// The rate: a number or a string (an unset Vite variable is ""); empty, blank or not a number in 0..1 counts as 1.
rate = r => (r = (c.sampleRate + "").trim()) && (r = +r) >= 0 && r <= 1 ? r : 1,
// The visitor id: 32 random hex digits in localStorage, never a cookie. Its first 8 digits are a uniform
// number: per-visitor sampling keeps it when that number / 2^32 < rate (as metrics_ops/sampling.py models).
vid = () => {
  try { v = v || localStorage.mops_vid } catch (e) {}
  if (!/^[0-9a-f]{32}$/.test(v)) {
    v = [...crypto.getRandomValues(new Uint8Array(16))].map(b => (b + 256).toString(16).slice(1)).join("");
    try { localStorage.mops_vid = v } catch (e) {}
  }
  return v
},
// Query strings and fragments often carry e-mail addresses and tokens: left out unless keepQuery.
path = (l = location) => l.pathname + (c.keepQuery + "" == "true" ? l.search + l.hash : ""),
post = (u, b) => n.sendBeacon && n.sendBeacon(u, b) || fetch(u, { method: "POST", body: b, keepalive: !0 }).catch(e => 0),
flush = () => {
  for (clearTimeout(t), t = 0; q.length;) post(c.batchEndpoint || c.endpoint + "s", JSON.stringify(q.splice(0, 20)))
},
// now: sent at once (page views); otherwise queued and sent as one batch within 5 s or when the page hides.
send = (name, metadata, now, e) => {
  if (c.privacySignals + "" != "false" && (n.globalPrivacyControl || n.doNotTrack == 1 || w.doNotTrack == 1)
    || !((c.sample == "event" ? Math.random() : parseInt(vid().slice(0, 8), 16) / 2 ** 32) < rate())) return;
  e = { visitor_id: vid(), event: name, timestamp: Date.now(), sample_rate: rate(), metadata: { path: path(), ...metadata } };
  now ? post(c.endpoint, JSON.stringify(e)) : q.push(e) < 20 ? t = t || setTimeout(flush, 5e3) : flush()
},
sendEvent = (name, metadata) => send(name, metadata),
pageView = () => path() != last && send("page_view", {}, last = path()),
s = d.currentScript, h = history, p = h.pushState;
w.metricsOps = { configure, sendEvent, track: sendEvent, pageView, flush };
addEventListener("pagehide", flush);
d.addEventListener("visibilitychange", () => d.hidden && flush());
// The tag (<script defer src="/metrics.js" data-sample-rate="0.25">): data-* are the options; page views, SPAs too.
if (s) {
  configure(s.dataset);
  h.pushState = function () { p.apply(this, arguments); pageView() };
  addEventListener("popstate", pageView);
  pageView()
}
})(window, document, navigator);
