/*
 * leadrelay embed: takes over one form's submit and posts it to leadrelay.
 *
 *   <form id="contact">...</form>
 *   <script src="https://leads.example/v1/embed.js" data-form-key="fk_..." defer></script>
 *
 * Attributes of the script tag: data-form-key (required), data-form (a CSS selector;
 * default: the form around the script, else the page's only form), data-thank-you (the
 * message shown once the lead is received; default: the form's thank_you_message), unless
 * the form has a thank-you URL to go to.
 *
 * Each submission is logged to the developer console (one group: the lead id and, per
 * integration, its state, outcome, CRM reference, reason and deciding rule) and kept at
 * window.leadrelay.lastSubmission. Nothing global but window.leadrelay; no dependency.
 * Without fetch (a very old browser) the form posts as plain HTML, which also works.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || !window.fetch || !window.FormData || !window.JSON) return;

  var ns = (window.leadrelay = window.leadrelay || {});
  ns.version = "1";
  ns.lastSubmission = ns.lastSubmission || null;
  var SETTLED = { delivered: true, not_integrated: true };
  var DEFAULT_TIMEOUT = 15; // seconds, when the form's settings could not be read
  var CONFIRM_TIMEOUT = 8; // the one re-post (same key) after a timeout or network error
  var POLL_DELAYS = [1, 1, 2, 2, 3, 5]; // seconds; then every 5 s
  var POLL_FOR = 300; // seconds of polling at most
  var key = script.getAttribute("data-form-key") || "";
  var api = script.getAttribute("data-api") ||
    script.src.replace(/\/v1\/embed\.js(?:[?#].*)?$/, "");
  var DEFAULT_THANKS = "Thank you! We have received your details.";

  function say(level) {
    var args = Array.prototype.slice.call(arguments, 1);
    args[0] = "leadrelay: " + args[0];
    (console[level] || console.log).apply(console, args);
  }

  function findForm() {
    var selector = script.getAttribute("data-form");
    if (selector) return document.querySelector(selector);
    var around = script.closest && script.closest("form");
    if (around) return around;
    var marked = document.querySelector("form[data-leadrelay]");
    if (marked) return marked;
    var forms = document.querySelectorAll("form");
    return forms.length === 1 ? forms[0] : null;
  }

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b + 256).toString(16).slice(1);
    }).join("");
  }

  function collect(form) {
    var fields = {};
    new FormData(form).forEach(function (value, name) {
      if (!name || typeof value !== "string") return; // files are not sent
      if (Object.prototype.hasOwnProperty.call(fields, name)) {
        fields[name] = [].concat(fields[name], value);
      } else {
        fields[name] = value;
      }
    });
    return fields;
  }

  function post(body, idempotencyKey, seconds) {
    var abort = new AbortController();
    var timer = setTimeout(function () { abort.abort(); }, seconds * 1000);
    return fetch(api + "/v1/forms/" + encodeURIComponent(key) + "/leads", {
      method: "POST", mode: "cors", credentials: "omit", signal: abort.signal,
      headers: { "Content-Type": "application/json", "Idempotency-Key": idempotencyKey },
      body: body
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        clearTimeout(timer);
        return { status: response.status, body: json };
      });
    }, function (error) {
      clearTimeout(timer);
      throw error;
    });
  }

  function line(d) {
    var parts = [(d.integration || "integration " + d.integration_id) +
      (d.connector ? " [" + d.connector + "]" : "") + ": " + d.state];
    if (d.outcome) parts.push("outcome " + d.outcome);
    if (d.crm_reference) parts.push("CRM reference " + d.crm_reference);
    if (d.reason) parts.push("reason: " + d.reason);
    if (d.decided_by) parts.push("rule: " + d.decided_by);
    return parts.join(" · ");
  }

  function report(sub, title) {
    console.group("leadrelay: " + title);
    sub.deliveries.forEach(function (d) { console.log(line(d)); });
    if (!sub.deliveries.length) console.log("no active integration: the lead is stored");
    if (!sub.settled && sub.status_url) console.log("status URL: " + sub.status_url);
    console.log(title + ": window.leadrelay.lastSubmission =", sub);
    console.groupEnd();
  }

  function Embed(form) {
    this.form = form;
    this.busy = false;
    this.blocked = null; // a message: the form will not take leads from this page
    this.pending = null; // the last post whose fate is unknown: re-sent with its key
    this.timeout = DEFAULT_TIMEOUT;
    this.thankYouUrl = null;
    this.thanks = null;
    this.status = form.querySelector("[data-leadrelay-status]");
    if (!this.status) {
      this.status = document.createElement("p");
      this.status.className = "leadrelay-status";
      this.status.setAttribute("role", "status");
      this.status.setAttribute("aria-live", "polite");
      form.appendChild(this.status);
    }
    form.addEventListener("submit", this.submit.bind(this));
    this.settings();
  }

  Embed.prototype.settings = function () {
    var self = this;
    var ready = fetch(api + "/v1/forms/" + encodeURIComponent(key) + "/embed",
      { mode: "cors", credentials: "omit" });
    self.ready = ready.then(function (response) {
      return response.json().then(function (json) {
        if (response.ok) {
          self.timeout = json.client_timeout || DEFAULT_TIMEOUT;
          self.thankYouUrl = json.thank_you_url;
          self.thanks = json.thank_you_message;
        } else {
          self.refuse(response.status, json.error || {});
        }
      });
    }).catch(function (error) {
      say("warn", "could not read the form's settings (" + error + "); posting anyway");
    });
  };

  Embed.prototype.refuse = function (status, error) {
    if (status === 404) {
      this.blocked = "This form is no longer available: its key was changed.";
      say("error", "the form key " + key + " is unknown (a rotated key stops working): " +
        "put the form's current public key in data-form-key. " + (error.message || ""));
    } else if (status === 403 && error.field === "form") {
      this.blocked = "This form is not taking submissions at the moment.";
      say("error", "the form is inactive: " + (error.message || "refused"));
    } else if (status === 403) {
      this.blocked = "This form does not accept submissions from this site.";
      say("error", "the form refuses this page: " + (error.message || "refused") +
        " (origin " + location.origin + ")");
    } else {
      return;
    }
    ns.lastSubmission = { form_key: key, state: "refused", http_status: status,
      error: error, deliveries: [], settled: true };
    this.show(this.blocked, "error");
  };

  Embed.prototype.show = function (text, kind) {
    this.status.textContent = text;
    this.status.setAttribute("data-state", kind);
  };

  Embed.prototype.sending = function (on) {
    this.busy = on;
    this.form.setAttribute("aria-busy", on ? "true" : "false");
    var buttons = this.form.querySelectorAll("button, input[type=submit]");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = on;
    if (on) this.show("Sending…", "sending");
  };

  Embed.prototype.clearErrors = function () {
    var old = this.form.querySelectorAll(".leadrelay-field-error");
    for (var i = 0; i < old.length; i++) old[i].parentNode.removeChild(old[i]);
    var marked = this.form.querySelectorAll("[aria-invalid=true]");
    for (var j = 0; j < marked.length; j++) marked[j].removeAttribute("aria-invalid");
  };

  Embed.prototype.submit = function (event) {
    event.preventDefault();
    var self = this;
    if (self.busy) return; // a second click while sending sends nothing
    self.ready.then(function () {
      if (self.blocked) {
        self.show(self.blocked, "error");
        return;
      }
      var body = JSON.stringify(collect(self.form));
      // The same lead sent again (its first answer never came) keeps its key: the
      // server then stores it once and answers as it did the first time.
      var idem = self.pending && self.pending.body === body ? self.pending.key : newKey();
      self.pending = { body: body, key: idem };
      var sub = { form_key: key, state: "sending", http_status: null, lead_id: null,
        idempotency_key: idem, deliveries: [], status_url: null, settled: false,
        error: null, submitted_at: new Date().toISOString() };
      ns.lastSubmission = sub;
      self.clearErrors();
      self.sending(true);
      post(body, idem, self.timeout).catch(function (first) {
        say("warn", "no answer (" + (first.name === "AbortError" ? "timed out after " +
          self.timeout + " s" : first) + "); asking once more with the same key");
        return post(body, idem, CONFIRM_TIMEOUT);
      }).then(function (answer) {
        self.answered(sub, answer);
      }, function (error) {
        sub.state = "unconfirmed";
        sub.error = { code: "no_answer", message: String(error) };
        self.sending(false);
        self.show("We could not confirm that your details were received. Please try " +
          "again: they will not be recorded twice.", "error");
        say("error", "the post got no answer (" + error + "); it may or may not be " +
          "stored. Submitting again re-sends it with the same Idempotency-Key " + idem);
      });
    });
  };

  Embed.prototype.answered = function (sub, answer) {
    var body = answer.body || {};
    sub.http_status = answer.status;
    this.sending(false);
    if (answer.status >= 200 && answer.status < 300) {
      this.pending = null;
      sub.state = answer.status === 201 ? "answered" : "accepted";
      sub.lead_id = body.lead_id;
      sub.deliveries = body.deliveries || [];
      sub.status_url = body.status_url || null;
      sub.settled = sub.deliveries.every(function (d) { return SETTLED[d.state]; });
      report(sub, "lead " + sub.lead_id + " " + (sub.state === "answered"
        ? "answered by its real-time CRMs" : "received; deliveries queued") +
        " (HTTP " + answer.status + ")");
      this.form.dispatchEvent(new CustomEvent("leadrelay:submitted", { detail: sub }));
      if (!sub.settled && sub.status_url) this.poll(sub, 0, Date.now());
      this.thank();
      return;
    }
    var error = body.error || { code: "http_" + answer.status, message: "HTTP " +
      answer.status };
    sub.state = answer.status >= 500 ? "error" : "invalid";
    sub.error = error;
    if (answer.status === 404 || answer.status === 403) {
      this.pending = null;
      this.refuse(answer.status, error);
      ns.lastSubmission = sub;
      sub.state = "refused";
      return;
    }
    if (answer.status < 500) this.pending = null; // refused: nothing was stored
    say(answer.status >= 500 ? "error" : "warn", "the lead was not accepted (HTTP " +
      answer.status + "): " + error.message, sub);
    if (!this.fieldError(error)) {
      this.show(answer.status >= 500 ? "Your details could not be sent: please try " +
        "again in a moment." : error.message, "error");
    } else {
      this.show("Please check the highlighted field.", "error");
    }
  };

  Embed.prototype.fieldError = function (error) {
    var name = error.field;
    var input = name && this.form.elements.namedItem(name);
    if (!input) return false;
    if (input.length !== undefined && !input.tagName) input = input[0]; // radio group
    var note = document.createElement("span");
    note.className = "leadrelay-field-error";
    note.setAttribute("role", "alert");
    note.setAttribute("data-field", name);
    note.textContent = error.message.replace(new RegExp("^" + name.replace(
      /[.*+?^${}()|[\]\\]/g, "\\$&") + ": "), "");
    input.setAttribute("aria-invalid", "true");
    input.parentNode.insertBefore(note, input.nextSibling);
    if (input.focus) input.focus();
    return true;
  };

  Embed.prototype.thank = function () {
    if (this.thankYouUrl) {
      window.location.assign(this.thankYouUrl);
      return;
    }
    var note = document.querySelector("[data-leadrelay-thank-you]");
    if (!note) {
      note = document.createElement("p");
      note.className = "leadrelay-thank-you";
      note.textContent = script.getAttribute("data-thank-you") || this.thanks ||
        DEFAULT_THANKS;
      this.form.parentNode.insertBefore(note, this.form.nextSibling);
    }
    note.hidden = false;
    this.form.hidden = true;
  };

  Embed.prototype.poll = function (sub, round, started) {
    var self = this;
    if ((Date.now() - started) / 1000 > POLL_FOR) {
      say("info", "lead " + sub.lead_id + ": deliveries still not settled; follow them at " +
        sub.status_url);
      return;
    }
    var wait = POLL_DELAYS[Math.min(round, POLL_DELAYS.length - 1)];
    setTimeout(function () {
      fetch(sub.status_url, { mode: "cors", credentials: "omit" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      }).then(function (view) {
        sub.deliveries = view.deliveries;
        if (view.settled) {
          sub.settled = true;
          report(sub, "lead " + sub.lead_id + " settled");
          self.form.dispatchEvent(new CustomEvent("leadrelay:settled", { detail: sub }));
        } else {
          self.poll(sub, round + 1, started);
        }
      }).catch(function (error) {
        say("warn", "status of lead " + sub.lead_id + " unavailable (" + error + ")");
        self.poll(sub, round + 1, started);
      });
    }, wait * 1000);
  };

  function start() {
    var form = findForm();
    if (!form) {
      say("error", "no form to take over: add data-form=\"#your-form\" to the script tag");
      return;
    }
    if (!key) {
      say("error", "data-form-key is missing on the script tag");
      return;
    }
    if (form.getAttribute("data-leadrelay-bound")) return;
    form.setAttribute("data-leadrelay-bound", "1");
    new Embed(form);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
