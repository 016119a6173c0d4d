/* journey.js: send a web shop's touchpoints to the journey tracker's HTTP collector.
 * No dependencies. Include it and start a tracker:
 *
 *   <script src="https://COLLECTOR/journey.js"></script>
 *   <script>
 *     var jt = JourneyTracker.init({key: "WEB_SHOP_KEY", customerId: "c-77", storeId: "web"});
 *     jt.browse({page: location.pathname});           // BROWSE
 *     jt.cart({sku: "spoon-3", qty: "2"});             // CART_UPDATED
 *     jt.checkout();                                   // CHECKOUT_STARTED
 *     jt.track("CHECKOUT_COMPLETED", {attrs: {order: "o-9"}});
 *   </script>
 *
 * Events are batched (up to `batchSize`, or every `flushMs`) and POSTed as text/plain, the key
 * in the query string, so the browser sends no CORS preflight. When the page is hidden or left,
 * what is queued goes with navigator.sendBeacon. A batch the collector could not take (429,
 * 503, network down) is kept and retried; event ids stay the same, so a repeat is harmless.
 */
(function (global) {
  "use strict";
  var script = document.currentScript;
  var scriptOrigin = script && script.src ? new URL(script.src).origin : global.location.origin;
  var BEACON_BYTES = 60000; // browsers cap a page's pending beacons at 64 KiB

  function uuid() {
    if (global.crypto && global.crypto.randomUUID) return global.crypto.randomUUID();
    var b = new Uint8Array(16);
    global.crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return (x + 256).toString(16).slice(1); }).join("");
  }

  function sessionJourney() {
    // one journey per browser tab session, kept across page loads of the shop
    try {
      var id = global.sessionStorage.getItem("journey.id");
      if (!id) { id = "web-" + uuid(); global.sessionStorage.setItem("journey.id", id); }
      return id;
    } catch (e) { return "web-" + uuid(); }
  }

  function Tracker(options) {
    if (!options || !options.key) throw new Error("JourneyTracker.init needs {key: ...}");
    this.url = (options.endpoint || scriptOrigin).replace(/\/$/, "") + "/v1/touchpoints?key=" +
      encodeURIComponent(options.key);
    this.journeyId = options.journeyId || sessionJourney();
    this.customerId = options.customerId || null;
    this.storeId = options.storeId || null;
    this.batchSize = options.batchSize || 20;
    this.flushMs = options.flushMs || 2000;
    this.queue = [];
    this.sending = false;
    this.retryAt = 0;
    this.backoffMs = 1000;
    this.onAnswer = options.onAnswer || null; // called with each parsed answer (tests, debugging)
    var self = this;
    this.timer = global.setInterval(function () { self.flush(); }, this.flushMs);
    global.addEventListener("pagehide", function () { self.beacon(); });
    global.document.addEventListener("visibilitychange", function () {
      if (global.document.visibilityState === "hidden") self.beacon();
    });
  }

  Tracker.prototype.track = function (type, fields) {
    var event = {event_id: uuid(), journey_id: this.journeyId, type: type, channel: "web",
                 occurred_at: new Date().toISOString()};
    if (this.customerId) event.customer_id = this.customerId;
    if (this.storeId) event.store_id = this.storeId;
    for (var name in fields || {}) event[name] = fields[name];
    this.queue.push(event);
    if (this.queue.length >= this.batchSize) this.flush();
    return event.event_id;
  };
  Tracker.prototype.browse = function (attrs) { return this.track("BROWSE", {attrs: attrs || {}}); };
  Tracker.prototype.cart = function (attrs) { return this.track("CART_UPDATED", {attrs: attrs || {}}); };
  Tracker.prototype.checkout = function (attrs) { return this.track("CHECKOUT_STARTED", {attrs: attrs || {}}); };

  Tracker.prototype.flush = function () {
    if (this.sending || !this.queue.length || Date.now() < this.retryAt) return;
    var batch = this.queue.splice(0, this.batchSize), self = this;
    this.sending = true;
    fetch(this.url, {method: "POST", body: JSON.stringify(stampSent(batch)), keepalive: true})
      .then(function (response) {
        if (response.status === 429 || response.status >= 500) {
          self.retryAfter(parseInt(response.headers.get("Retry-After") || "0", 10) * 1000);
          throw new Error("collector answered " + response.status);
        }
        return response.json().then(function (answer) {
          self.backoffMs = 1000;
          // 4xx other than 429 will not get better by retrying (a bad key, a bad event): say why
          if (answer.error) console.warn("journey.js: batch refused:", response.status, answer.error);
          (answer.results || []).forEach(function (r) {
            if (r.status === "rejected") console.warn("journey.js: event rejected:", r.reason);
          });
          if (self.onAnswer) self.onAnswer(response.status, answer);
        });
      })
      .catch(function (error) {
        // not taken: keep the batch (same event ids) at the front and try again later
        self.queue = batch.concat(self.queue);
        if (Date.now() >= self.retryAt) self.retryAfter(0);
        if (self.onAnswer) self.onAnswer(0, {error: String(error)});
      })
      .then(function () { self.sending = false; });
  };

  Tracker.prototype.retryAfter = function (ms) {
    this.retryAt = Date.now() + Math.max(ms, this.backoffMs);
    this.backoffMs = Math.min(this.backoffMs * 2, 30000);
  };

  Tracker.prototype.beacon = function () {
    // the page is going away: hand everything queued to the browser in beacon-sized chunks
    while (this.queue.length) {
      var chunk = [];
      while (this.queue.length && JSON.stringify(chunk.concat([this.queue[0]])).length < BEACON_BYTES &&
             chunk.length < this.batchSize) chunk.push(this.queue.shift());
      if (!chunk.length) chunk.push(this.queue.shift()); // one oversized event: let the collector judge it
      var blob = new Blob([JSON.stringify(stampSent(chunk))], {type: "text/plain"});
      if (!navigator.sendBeacon(this.url, blob)) { this.queue = chunk.concat(this.queue); return; }
    }
  };

  function stampSent(batch) {
    // this device's clock when the batch leaves: the collector's receive time minus this is the
    // device's clock skew, which the tracker corrects (a retry is stamped again: sent anew)
    var now = new Date().toISOString();
    return batch.map(function (event) {
      var copy = {};
      for (var k in event) if (Object.prototype.hasOwnProperty.call(event, k)) copy[k] = event[k];
      copy.sent_at = now;
      return copy;
    });
  }

  global.JourneyTracker = {init: function (options) { return new Tracker(options); }};
})(window);
