/* Servicedesk pages: small progressive enhancements over plain server-rendered forms.
 *
 * - CSRF header on htmx requests (double submit; the forms also carry the hidden field).
 * - Relative times ("3 hours ago") on <time data-rel>, the absolute time stays in the title.
 * - Form validation in the browser with the messages next to the fields (the server checks
 *   everything again and answers the same way).
 * - File pickers: size, count and type checked before upload; progress while uploading.
 * - Cost-item rows, confirmations, focus management and announcements for screen readers.
 * - Live updates (the last section): one socket per page, fragments fetched on events.
 *
 * No inline scripts or styles anywhere (the CSP forbids them); no eval.
 */
(function () {
  "use strict";

  // --- CSRF --------------------------------------------------------------------------------
  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)sd_csrf=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = csrfToken();
  });

  // --- Announcements and toasts --------------------------------------------------------------
  function announce(text) {
    var live = document.getElementById("live");
    if (!live) return;
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  function toast(text) {
    var box = document.getElementById("toast");
    if (!box) return;
    box.textContent = text;
    box.hidden = false;
    window.clearTimeout(toast.timer);
    toast.timer = window.setTimeout(function () { box.hidden = true; }, 8000);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    var id = xhr && xhr.getResponseHeader("X-Request-ID");
    toast("Something went wrong (" + (xhr ? xhr.status : "?") + "). " +
      "Reload the page and try again." + (id ? " Request id: " + id : ""));
  });
  document.addEventListener("htmx:sendError", function () {
    toast("The server could not be reached. Check your connection and try again.");
  });

  // --- Relative times ------------------------------------------------------------------------
  var rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60]];

  function relative(date) {
    var seconds = (date.getTime() - Date.now()) / 1000;
    var abs = Math.abs(seconds);
    if (abs < 45) return "just now";
    if (abs > 7 * 86400 || !rtf) return null;
    for (var i = 0; i < UNITS.length; i++) {
      if (abs >= UNITS[i][1] || UNITS[i][0] === "minute") {
        return rtf.format(Math.round(seconds / UNITS[i][1]), UNITS[i][0]);
      }
    }
    return null;
  }

  function updateTimes(root) {
    var nodes = (root || document).querySelectorAll("time[data-rel]");
    for (var i = 0; i < nodes.length; i++) {
      var node = nodes[i];
      if (!node.dataset.abs) node.dataset.abs = node.textContent;
      var text = relative(new Date(node.getAttribute("datetime")));
      node.textContent = text || node.dataset.abs;
    }
  }

  // --- Validation with messages next to the fields ---------------------------------------------
  function errorNode(field) {
    var id = field.id || (field.closest("fieldset") || {}).id;
    return id ? document.getElementById(id + "-error") : null;
  }

  function messageFor(field) {
    var v = field.validity;
    if (v.valueMissing && field.dataset.requiredMessage) return field.dataset.requiredMessage;
    if (v.patternMismatch && field.dataset.patternMessage) return field.dataset.patternMessage;
    if (v.customError) return field.validationMessage;
    if (v.valueMissing) return field.tagName === "SELECT" ? "Choose an option." : "This field is required.";
    return field.validationMessage;
  }

  function customChecks(field) {
    field.setCustomValidity("");
    if (field.dataset.match) {
      var other = document.getElementById(field.dataset.match);
      if (other && field.value && other.value !== field.value) {
        field.setCustomValidity(field.dataset.matchMessage || "The values do not match.");
      }
    }
    if (field.type === "file" && field.dataset.fileError) field.setCustomValidity(field.dataset.fileError);
    var amount = parseFloat(field.value);
    if (field.value && !isNaN(amount)) {
      if (field.dataset.min && amount < parseFloat(field.dataset.min)) field.setCustomValidity("Must be at least " + field.dataset.min + ".");
      if (field.dataset.max && amount > parseFloat(field.dataset.max)) field.setCustomValidity("Must be at most " + field.dataset.max + ".");
    }
  }

  function showError(field, message) {
    var node = errorNode(field);
    if (message) field.setAttribute("aria-invalid", "true"); else field.removeAttribute("aria-invalid");
    var wrapper = field.closest(".field");
    if (wrapper) wrapper.classList.toggle("has-error", !!message);
    if (node) { node.textContent = message || ""; node.hidden = !message; }
  }

  function checkField(field) {
    if (!field.willValidate) return true;
    customChecks(field);
    var ok = field.checkValidity();
    showError(field, ok ? "" : messageFor(field));
    return ok;
  }

  function checkGroups(form) {
    var ok = true;
    var groups = form.querySelectorAll("[data-required-group]");
    for (var i = 0; i < groups.length; i++) {
      var checked = groups[i].querySelector("input:checked");
      var node = document.getElementById(groups[i].id + "-error");
      groups[i].classList.toggle("has-error", !checked);
      if (node) { node.textContent = checked ? "" : "Choose at least one."; node.hidden = !!checked; }
      if (!checked) ok = false;
    }
    return ok;
  }

  function validateForm(form) {
    var fields = form.querySelectorAll("input, select, textarea");
    var first = null;
    for (var i = 0; i < fields.length; i++) {
      if (!checkField(fields[i]) && !first) first = fields[i];
    }
    if (!checkGroups(form) && !first) first = form.querySelector("[data-required-group] input");
    if (first) {
      first.focus();
      announce("Please correct the highlighted fields.");
      return false;
    }
    return true;
  }

  function enhanceForms(root) {
    var forms = (root || document).querySelectorAll("form[data-validate]");
    for (var i = 0; i < forms.length; i++) forms[i].noValidate = true;  // our messages, not bubbles
  }

  // Capture phase: runs before htmx's own submit handler on the form.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    if (submitter && submitter.dataset.confirm && !window.confirm(submitter.dataset.confirm)) {
      event.preventDefault(); event.stopPropagation(); return;
    }
    if (form.matches("[data-validate]") && !validateForm(form)) {
      event.preventDefault(); event.stopPropagation(); return;
    }
    var button = form.querySelector("[data-busy-label]");
    if (button && !form.hasAttribute("hx-post")) {
      button.dataset.label = button.textContent;
      button.textContent = button.dataset.busyLabel;
      button.setAttribute("aria-disabled", "true");
    }
  }, true);

  document.addEventListener("change", function (event) {
    var field = event.target;
    if (!(field instanceof HTMLElement) || !field.closest("form[data-validate]")) return;
    if (field.matches("input, select, textarea") && field.getAttribute("aria-invalid")) checkField(field);
  });
  document.addEventListener("input", function (event) {
    var field = event.target;
    if (field.matches && field.matches("[aria-invalid='true']")) checkField(field);
    if (field.matches && field.matches("[data-cost]")) costTotal(field.closest("[data-rows-field]"));
  });

  // --- File pickers ----------------------------------------------------------------------------
  function formatSize(bytes) {
    if (bytes < 1024) return bytes + " B";
    if (bytes < 1048576) return Math.round(bytes / 1024) + " KB";
    var mb = bytes / 1048576;
    return (Number.isInteger(mb) ? mb : mb.toFixed(1)) + " MB";
  }

  function checkFiles(input) {
    var max = parseInt(input.dataset.maxBytes, 10);
    var maxFiles = parseInt(input.dataset.maxFiles || "5", 10);
    var allowed = (input.getAttribute("accept") || "").split(",");
    var list = input.closest("[data-file-field]").querySelector("[data-file-list]");
    var problems = [];
    list.textContent = "";
    if (input.files.length > maxFiles) problems.push("Attach at most " + maxFiles + " files.");
    for (var i = 0; i < input.files.length; i++) {
      var file = input.files[i];
      var dot = file.name.lastIndexOf(".");
      var ext = dot >= 0 ? file.name.slice(dot).toLowerCase() : "";
      var item = document.createElement("li");
      var name = document.createElement("span");
      name.textContent = file.name;
      var size = document.createElement("span");
      size.className = "muted";
      size.textContent = formatSize(file.size);
      item.appendChild(name); item.appendChild(size);
      if (file.size > max) {
        problems.push(file.name + " is " + formatSize(file.size) + "; the limit is " + formatSize(max) + ".");
        item.className = "bad";
      } else if (file.size === 0) {
        problems.push(file.name + " is empty.");
        item.className = "bad";
      } else if (allowed.length && allowed[0] && allowed.indexOf(ext) < 0) {
        problems.push(file.name + ": this type of file can't be attached.");
        item.className = "bad";
      }
      list.appendChild(item);
    }
    input.dataset.fileError = problems.join(" ");
    checkField(input);
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches("input[type=file][data-max-bytes]")) checkFiles(event.target);
  });

  function progressOf(form) { return form && form.querySelector("[data-progress]"); }

  document.addEventListener("htmx:xhr:loadstart", function (event) {
    var box = progressOf(event.target.closest && event.target.closest("form[data-upload]"));
    var input = box && box.parentNode.querySelector("input[type=file]");
    if (box && input && input.files.length) box.hidden = false;
  });
  document.addEventListener("htmx:xhr:progress", function (event) {
    var box = progressOf(event.target.closest && event.target.closest("form[data-upload]"));
    if (!box || box.hidden || !event.detail.lengthComputable) return;
    var percent = Math.round((event.detail.loaded / event.detail.total) * 100);
    box.querySelector("progress").value = percent;
    box.querySelector("[data-progress-text]").textContent = "Uploading… " + percent + "%";
  });
  document.addEventListener("htmx:beforeRequest", function (event) {
    var button = event.target.querySelector && event.target.querySelector("[data-busy-label]");
    if (button) { button.dataset.label = button.textContent; button.textContent = button.dataset.busyLabel; button.disabled = true; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var button = event.target.querySelector && event.target.querySelector("[data-busy-label]");
    if (button && button.dataset.label) { button.textContent = button.dataset.label; button.disabled = false; }
  });

  // --- Cost items ------------------------------------------------------------------------------
  var rowCounter = 0;

  function costTotal(fieldset) {
    if (!fieldset) return;
    var total = 0;
    var rows = fieldset.querySelectorAll(".cost-row");
    for (var i = 0; i < rows.length; i++) {
      var q = parseFloat((rows[i].querySelector("[data-cost=quantity]") || {}).value);
      var u = parseFloat((rows[i].querySelector("[data-cost=unit]") || {}).value);
      if (!isNaN(q) && !isNaN(u)) total += q * u;
    }
    var out = fieldset.querySelector("[data-cost-total]");
    if (out) out.textContent = total.toFixed(2);
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest && event.target.closest("[data-add-row]");
    if (add) {
      var fieldset = add.closest("[data-rows-field]");
      var template = fieldset.querySelector("template[data-row-template]");
      var row = template.content.firstElementChild.cloneNode(true);
      rowCounter += 1;
      var inputs = row.querySelectorAll("[id]");
      for (var i = 0; i < inputs.length; i++) {
        var old = inputs[i].id;
        inputs[i].id = old + "n" + rowCounter;
        var label = row.querySelector('label[for="' + old + '"]');
        if (label) label.setAttribute("for", inputs[i].id);
      }
      fieldset.querySelector("[data-rows]").appendChild(row);
      row.querySelector("input").focus();
      return;
    }
    var remove = event.target.closest && event.target.closest("[data-remove-row]");
    if (remove) {
      var set = remove.closest("[data-rows-field]");
      var rows = set.querySelectorAll(".cost-row");
      var current = remove.closest(".cost-row");
      if (rows.length > 1) {
        var next = current.nextElementSibling || current.previousElementSibling;
        current.remove();
        if (next) next.querySelector("input").focus();
      } else {
        var fields = current.querySelectorAll("input");
        for (var j = 0; j < fields.length; j++) fields[j].value = "";
      }
      costTotal(set);
      announce("Item removed.");
    }
  });

  // --- Time zone suggestion on the account page ------------------------------------------------
  function suggestZone(root) {
    var select = (root || document).querySelector("select[data-suggest-zone]");
    if (!select || !window.Intl) return;
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone || select.value === zone || !select.querySelector('option[value="' + zone + '"]')) return;
    var help = document.getElementById(select.id + "-help");
    if (!help || help.querySelector("button")) return;
    var button = document.createElement("button");
    button.type = "button";
    button.className = "link-button";
    button.textContent = "Use " + zone.replace(/_/g, " ") + " (this device)";
    button.addEventListener("click", function () { select.value = zone; announce("Time zone set to " + zone + "; save to keep it."); });
    help.appendChild(document.createTextNode(" "));
    help.appendChild(button);
  }

  // --- Focus after page loads and swaps ---------------------------------------------------------
  function autofocus(root) {
    var target = (root || document).querySelector("[data-autofocus]");
    if (target) {
      if (!target.hasAttribute("tabindex") && !/^(INPUT|TEXTAREA|SELECT|BUTTON|A)$/.test(target.tagName)) target.setAttribute("tabindex", "-1");
      target.focus();
    }
  }

  function init(root) {
    enhanceForms(root);
    updateTimes(root);
    suggestZone(root);
    var sets = (root || document).querySelectorAll("[data-rows-field]");
    for (var i = 0; i < sets.length; i++) costTotal(sets[i]);
  }

  document.addEventListener("htmx:afterSettle", function (event) {
    init(event.target);
    if (event.target.matches && event.target.matches("form")) autofocus(event.target);
  });
  document.addEventListener("htmx:oobAfterSwap", function (event) { updateTimes(event.target); });

  // For the live client below: times and announcements in the fragments it inserts.
  window.servicedesk = { updateTimes: updateTimes, announce: announce };

  document.addEventListener("DOMContentLoaded", function () {
    document.documentElement.classList.add("js");
    init(document);
    autofocus(document);
    window.setInterval(function () { updateTimes(document); }, 60000);
  });
})();

/* agent workspace: keyboard navigation of the queue (j/k move, o/Enter open, a assign to me,
 * / search), bulk selection, r focuses the reply box, focus after property edits. */
(function () {
  "use strict";

  function csrf() {
    var match = document.cookie.match(/(?:^|;\s*)sd_csrf=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function typing(target) {
    return target && (/^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName) || target.isContentEditable);
  }

  function rows() { return Array.prototype.slice.call(document.querySelectorAll("[data-row]")); }

  function current() { return document.querySelector('[data-row][aria-current="true"]'); }

  function select(row) {
    var old = current();
    if (old) old.removeAttribute("aria-current");
    if (!row) return;
    row.setAttribute("aria-current", "true");
    row.scrollIntoView({ block: "nearest" });
    var link = row.querySelector(".ticket-link");
    if (link) link.focus({ preventScroll: true });
  }

  function move(step) {
    var list = rows();
    if (!list.length) return;
    var index = list.indexOf(current());
    var next = index < 0 ? 0 : Math.min(list.length - 1, Math.max(0, index + step));
    select(list[next]);
  }

  function say(text) {
    var live = document.getElementById("live");
    if (live) { live.textContent = ""; window.setTimeout(function () { live.textContent = text; }, 50); }
  }

  function assignToMe(row) {
    var form = document.getElementById("bulk-form");
    if (!row || !form) return;
    var body = new FormData();
    body.append("csrf_token", csrf());
    body.append("ticket_ids", row.dataset.id);
    body.append("action", "assign_me");
    body.append("back", form.querySelector('[name="back"]').value);
    fetch(form.getAttribute("action"), { method: "POST", body: body, credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } })
      .then(function (response) {
        if (!response.ok) throw new Error(String(response.status));
        var cell = row.querySelector("[data-assignee]");
        if (cell) cell.textContent = "You";
        say("Assigned to you.");
      })
      .catch(function (error) { say("The ticket could not be assigned (" + error.message + "). Reload and try again."); });
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var key = event.key;
    if (key === "r") {
      var reply = document.querySelector(".agent-editor textarea");
      if (reply) {
        event.preventDefault();
        var mode = document.querySelector('.agent-editor input[name="internal"][value="0"]');
        if (mode) mode.checked = true;
        reply.focus();
      }
      return;
    }
    if (!document.querySelector("[data-row]") && key !== "/") return;
    if (key === "j") { event.preventDefault(); move(1); }
    else if (key === "k") { event.preventDefault(); move(-1); }
    else if ((key === "o" || key === "Enter") && current()) {
      event.preventDefault();
      window.location.assign(current().dataset.href);
    } else if (key === "a" && current()) { event.preventDefault(); assignToMe(current()); }
    else if (key === "/") {
      var search = document.querySelector("[data-agent-search]");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    }
  });

  document.addEventListener("click", function (event) {
    var row = event.target.closest && event.target.closest("[data-row]");
    if (row) {
      var old = current();
      if (old) old.removeAttribute("aria-current");
      row.setAttribute("aria-current", "true");
    }
  });

  function countSelected() {
    var label = document.querySelector("[data-selected-count]");
    if (!label) return;
    var n = document.querySelectorAll(".row-check:checked").length;
    label.textContent = n + " selected";
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target.matches && target.matches("[data-select-all]")) {
      var boxes = document.querySelectorAll(".row-check");
      for (var i = 0; i < boxes.length; i++) boxes[i].checked = target.checked;
    }
    if (target.matches && (target.matches(".row-check") || target.matches("[data-select-all]"))) countSelected();
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "props") {
      var focus = event.target.querySelector("[data-autofocus]");
      if (focus) focus.focus();
    }
  });

})();

/* admin console --------------------------------------------------------------------------------- */
(function () {
  "use strict";

  function announce(text) {
    var live = document.getElementById("live");
    if (!live) return;
    live.textContent = "";
    window.setTimeout(function () { live.textContent = text; }, 50);
  }

  // The category field editor: add, remove and move rows (the server reads them in order).
  var fieldRowCounter = 0;

  function fieldRowsChanged(list) {
    var empty = list.parentNode.querySelector("[data-fields-empty]");
    if (empty) empty.hidden = list.children.length > 0;
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-row-add], [data-row-remove], [data-row-up], [data-row-down]");
    if (!target) return;
    var section = target.closest("section") || document;
    var list = section.querySelector("[data-field-rows]");
    if (!list) return;
    if (target.matches("[data-row-add]")) {
      var template = section.querySelector("template[data-field-template]");
      fieldRowCounter += 1;
      var index = String(1000 + fieldRowCounter);
      var row = template.content.firstElementChild.cloneNode(true);
      var nodes = row.querySelectorAll("[id], [name], [for], [aria-describedby]");
      for (var i = 0; i < nodes.length; i++) {
        ["id", "name", "for", "aria-describedby"].forEach(function (attr) {
          var value = nodes[i].getAttribute(attr);
          if (value) nodes[i].setAttribute(attr, value.split("__i__").join(index));
        });
      }
      row.id = row.id.split("__i__").join(index);
      list.appendChild(row);
      fieldRowsChanged(list);
      row.querySelector("input").focus();
      announce("Field added.");
      return;
    }
    var current = target.closest("[data-field-row]");
    if (target.matches("[data-row-remove]")) {
      var next = current.nextElementSibling || current.previousElementSibling;
      current.remove();
      fieldRowsChanged(list);
      var focus = next ? next.querySelector("input") : section.querySelector("[data-row-add]");
      if (focus) focus.focus();
      announce("Field removed; save to keep the change.");
    } else if (target.matches("[data-row-up]") && current.previousElementSibling) {
      list.insertBefore(current, current.previousElementSibling);
      target.focus();
      announce("Field moved up.");
    } else if (target.matches("[data-row-down]") && current.nextElementSibling) {
      list.insertBefore(current.nextElementSibling, current);
      target.focus();
      announce("Field moved down.");
    }
  });
})();

/* Markdown preview: a Write / Preview switch on the textareas the macro renders with
 * markdown=true (the reply and note editors, a new ticket's description). Preview posts the
 * text to /preview and shows the answer, rendered by the same function that renders stored
 * comments (core.text.render_markdown), in the editor's aria-live area. It uses fetch, not
 * htmx: an htmx request from inside the form would send the whole form, files included. The
 * textarea is only hidden, so its text is kept and still submitted; a submit switches back to
 * Write first (capture on window: before the validation above). Without JS the switch stays
 * hidden and the textarea works as before. */
(function () {
  "use strict";
  if (!window.fetch || !window.FormData) return;

  function csrf() {
    var match = document.cookie.match(/(?:^|;\s*)sd_csrf=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  function parts(editor) {
    return {
      text: editor.querySelector("textarea"),
      area: editor.querySelector(".md-preview"),
      write: editor.querySelector('[data-md-mode="write"]'),
      preview: editor.querySelector('[data-md-mode="preview"]')
    };
  }

  function setMode(editor, previewing) {
    var p = parts(editor);
    p.text.hidden = previewing;
    p.area.hidden = !previewing;
    p.write.setAttribute("aria-pressed", String(!previewing));
    p.preview.setAttribute("aria-pressed", String(previewing));
    editor.classList.toggle("md-previewing", previewing);
  }

  function message(area, text, isError) {
    var node = document.createElement("p");
    node.className = "md-preview-message " + (isError ? "md-preview-error" : "muted");
    node.textContent = text;
    area.textContent = "";
    area.appendChild(node);
  }

  function load(editor) {
    var p = parts(editor);
    var seq = String(Number(editor.dataset.mdSeq || "0") + 1);
    editor.dataset.mdSeq = seq;
    p.area.setAttribute("aria-busy", "true");
    message(p.area, "Loading preview…", false);
    var body = new FormData();
    body.append("csrf_token", csrf());
    body.append("text", p.text.value);
    fetch(editor.dataset.previewUrl, {
      method: "POST", body: body, credentials: "same-origin", redirect: "manual",
      headers: { "X-CSRF-Token": csrf() }
    }).then(function (response) {
      var isHtml = (response.headers.get("content-type") || "").indexOf("text/html") === 0;
      if (isHtml && [200, 422, 429].indexOf(response.status) >= 0) {
        return response.text().then(function (html) { return { html: html }; });
      }
      if (response.type === "opaqueredirect" || response.status === 401) {
        return { error: "Your session has ended. Sign in again in another tab (this text stays here), then preview again." };
      }
      return { error: "The preview could not be loaded (" + response.status + "). Try again." };
    }, function () {
      return { error: "The server could not be reached. Check your connection and try again." };
    }).then(function (result) {
      if (editor.dataset.mdSeq !== seq || p.area.hidden) return;  // switched back, or a newer one
      p.area.removeAttribute("aria-busy");
      // The fragment is the server's sanitised HTML (the same as a stored comment's).
      if (result.html !== undefined) p.area.innerHTML = result.html;
      else message(p.area, result.error, true);
    });
  }

  function toWrite(editor) {
    var p = parts(editor);
    if (!editor.classList.contains("md-previewing")) { p.text.focus(); return; }
    setMode(editor, false);
    editor.dataset.mdSeq = String(Number(editor.dataset.mdSeq || "0") + 1);  // drop late answers
    p.text.focus();
    var at = (editor.dataset.mdSelection || "").split(",");
    if (at.length === 2) p.text.setSelectionRange(Number(at[0]), Number(at[1]));
  }

  function toPreview(editor) {
    var p = parts(editor);
    if (!editor.classList.contains("md-previewing")) {
      editor.dataset.mdSelection = p.text.selectionStart + "," + p.text.selectionEnd;
      setMode(editor, true);
    }
    load(editor);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-md-mode]");
    var editor = button && button.closest("[data-md-editor]");
    if (!editor) return;
    if (button.dataset.mdMode === "preview") toPreview(editor); else toWrite(editor);
  });

  window.addEventListener("submit", function (event) {
    var open = event.target.querySelectorAll ? event.target.querySelectorAll("[data-md-editor].md-previewing") : [];
    for (var i = 0; i < open.length; i++) setMode(open[i], false);
  }, true);

  // The agent page's "r" focuses the reply box: a previewed box is shown again first (capture
  // on window runs before that key handler).
  window.addEventListener("keydown", function (event) {
    var t = event.target;
    if (event.key !== "r" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (t && (/^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName) || t.isContentEditable)) return;
    var open = document.querySelector(".agent-editor [data-md-editor].md-previewing");
    if (open) setMode(open, false);
  }, true);

  function reveal(root) {
    var switches = (root || document).querySelectorAll("[data-md-editor] .md-modes[hidden]");
    for (var i = 0; i < switches.length; i++) switches[i].hidden = false;
  }
  document.addEventListener("DOMContentLoaded", function () { reveal(document); });
  // Out-of-band swaps (a reply form coming back with the live fragments) settle other targets.
  document.addEventListener("htmx:afterSettle", function () { reveal(document); });
})();

/* live updates ------------------------------------------------------------------------------------
 * One WebSocket per page (docs/live.md): reconnects with backoff, falls back to server-sent
 * events when the socket cannot open, and re-syncs the page's fragments after a reconnect. Events
 * only say that something changed; the page then fetches the server-rendered fragment (with the
 * reader's visibility). Agent ticket: presence, typing / replying, the collision warning, new
 * comments, the properties panel. Queue: the rows of the current view. Requester's ticket: the
 * 15 s poll runs only while no live connection is up, and is fired at once by an event. */
(function () {
  "use strict";

  var body = document.body;
  var wsPath = body.dataset.liveWs;
  var me = body.dataset.userId;
  var ticketRoot = document.querySelector("[data-live-ticket]");
  var portalRoot = document.querySelector("[data-live-portal]");
  var queueRoot = document.querySelector("[data-live-queue]");
  if (!wsPath || !(ticketRoot || portalRoot || queueRoot)) return;

  var app = window.servicedesk || { updateTimes: function () {}, announce: function () {} };
  var live = { up: false, everUp: false, ttl: { viewing: 30, typing: 5, replying: 30 } };
  var rooms = [];
  var handlers = { event: [], signal: [], joined: [], resync: [] };
  var ws = null, source = null, mode = "ws", lastSeq = null;
  var attempts = 0, failedOpens = 0, unauthorized = 0, keepAlive = null;

  function emit(kind, arg) { handlers[kind].forEach(function (fn) { fn(arg); }); }

  function send(message) {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(message));
  }

  function setUp(up) {
    live.up = up;
    body.classList.toggle("live-up", up);
  }

  function receive(msg) {
    if (msg.type === "hello") {
      if (msg.ttl) live.ttl = msg.ttl;
      if (lastSeq === null) lastSeq = msg.last_seq;
      attempts = 0; unauthorized = 0;
      setUp(true);
      window.clearInterval(keepAlive);
      keepAlive = window.setInterval(function () {
        rooms.forEach(function (room) { if (room.indexOf("ticket:") === 0) send({ type: "viewing", room: room }); });
      }, Math.max(2, live.ttl.viewing / 2) * 1000);
      if (live.everUp) emit("resync");
      live.everUp = true;
    } else if (msg.type === "event") {
      if (typeof msg.seq === "number" && (lastSeq === null || msg.seq > lastSeq)) lastSeq = msg.seq;
      emit("event", msg.event || {});
    } else if (msg.type === "presence" || msg.type === "typing" || msg.type === "replying" || msg.type === "collision") {
      emit("signal", msg);
    } else if (msg.type === "joined") {
      emit("joined", msg.room);
    } else if (msg.type === "replay" && msg.truncated) {
      emit("resync");
    }
  }

  function retry() {
    attempts += 1;
    var delay = Math.min(30000, 1000 * Math.pow(2, Math.min(attempts, 5))) * (0.75 + Math.random() / 2);
    window.setTimeout(connect, delay);
  }

  function openSocket() {
    var opened = false;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + wsPath +
      (lastSeq !== null ? "?since=" + encodeURIComponent(lastSeq) : "");
    try { ws = new WebSocket(url); } catch (e) { mode = "sse"; connect(); return; }
    ws.onopen = function () {
      opened = true; failedOpens = 0;
      rooms.forEach(function (room) { send({ type: "join", room: room }); });
    };
    ws.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      receive(msg);
    };
    ws.onclose = function (e) {
      ws = null;
      window.clearInterval(keepAlive);
      setUp(false);
      if (e.code === 4404) return;                        // no such organization: give up
      if (e.code === 4403) { mode = "sse"; retry(); return; }  // cookie from a foreign origin
      if (e.code === 4401) {
        // The access token expired: loading a page rotates the session cookies, then retry.
        unauthorized += 1;
        if (unauthorized > 2) return;
        fetch(location.pathname, { credentials: "same-origin" }).then(retry, retry);
        return;
      }
      if (!opened) {
        failedOpens += 1;
        if (failedOpens >= 2) mode = "sse";               // blocked by a proxy: use the stream
      }
      retry();
    };
  }

  function openStream() {
    if (!window.EventSource || !body.dataset.liveSse) return;
    var params = [];
    var ticketRooms = rooms.filter(function (room) { return room.indexOf("ticket:") === 0; });
    if (ticketRooms.length) params.push("rooms=" + encodeURIComponent(ticketRooms.join(",")));
    if (lastSeq !== null) params.push("after=" + encodeURIComponent(lastSeq));
    source = new EventSource(body.dataset.liveSse + (params.length ? "?" + params.join("&") : ""));
    source.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      receive(msg);
    };
    source.onerror = function () {
      setUp(false);
      if (source.readyState === 2) { source = null; retry(); }  // refused: try again later
      // otherwise the browser reconnects by itself, resuming with Last-Event-ID
    };
  }

  function connect() {
    if (document.visibilityState === "hidden" && live.everUp) {
      document.addEventListener("visibilitychange", connect, { once: true });
      return;
    }
    if (mode === "ws" && window.WebSocket) openSocket(); else openStream();
  }

  // Fetch a fragment (same origin, with the session cookies) as a <template>.
  function fragment(url) {
    return fetch(url, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error(String(response.status));
        return response.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html;
        return template.content;
      });
  }

  function activate(node) {
    if (window.htmx) window.htmx.process(node);
    app.updateTimes(node);
  }

  // One run at a time; a call while one runs schedules another afterwards.
  function serial(fn, wait) {
    var timer = null, running = false, again = false;
    function run() {
      if (running) { again = true; return; }
      running = true;
      Promise.resolve(fn()).catch(function () {}).then(function () {
        running = false;
        if (again) { again = false; schedule(); }
      });
    }
    function schedule() { window.clearTimeout(timer); timer = window.setTimeout(run, wait); }
    return schedule;
  }

  function names(users) {
    var list = users.map(function (u) { return u.name; });
    if (list.length <= 2) return list.join(" and ");
    return list.slice(0, 2).join(", ") + " and " + (list.length - 2) + " more";
  }

  function isOrAre(users) { return users.length === 1 ? " is " : " are "; }

  // --- Agent ticket page ---------------------------------------------------------------------------
  if (ticketRoot) (function () {
    var ticketId = ticketRoot.dataset.liveTicket;
    var room = "ticket:" + ticketId;
    var signals = { presence: [], typing: [], replying: [] };
    var bar = document.querySelector("[data-live-bar]");
    var viewers = document.getElementById("live-viewers");
    var activity = document.getElementById("live-activity");
    var collision = document.getElementById("live-collision");
    var stale = document.getElementById("props-stale");
    var form = document.getElementById("reply-form");
    var editor = form && form.querySelector("textarea[name=body]");
    var replying = false, lastTyping = 0, replyTimer = null, sending = false;
    rooms.push(room);

    function others(users) {
      return (users || []).filter(function (u) { return u.id !== me; });
    }

    function render() {
      // Writing a public reply shows as "replying"; typing anything else (a note, or the
      // requester) as "typing".
      var seen = signals.presence;
      var writing = signals.replying;
      var ids = writing.map(function (u) { return u.id; });
      var typing = signals.typing.filter(function (u) { return ids.indexOf(u.id) < 0; });
      viewers.textContent = seen.length ? names(seen) + isOrAre(seen) + "viewing this ticket" : "";
      var parts = [];
      if (writing.length) parts.push(names(writing) + isOrAre(writing) + "replying…");
      if (typing.length) parts.push(names(typing) + isOrAre(typing) + "typing…");
      activity.textContent = parts.join(" · ");
      if (bar) bar.hidden = !seen.length && !parts.length;
      if (collision) {
        var rivals = signals.replying.filter(function (u) { return u.role !== "requester"; });
        var show = replying && rivals.length > 0;
        var text = show ? names(rivals) + isOrAre(rivals) + "also replying to this ticket." : "";
        if (collision.textContent !== text) collision.textContent = text;
        collision.hidden = !show;
      }
    }

    handlers.signal.push(function (msg) {
      if (msg.room !== room) return;
      var key = msg.type === "collision" ? "replying" : msg.type;
      signals[key] = others(msg.users);
      render();
    });

    // Comments: append what is not on the page yet.
    var list = document.getElementById("comment-list");
    var fetchComments = serial(function () {
      if (!list) return null;
      var latest = null;
      list.querySelectorAll("li.comment[data-created]").forEach(function (li) {
        var at = Date.parse(li.dataset.created);
        if (!isNaN(at) && (latest === null || at > latest)) latest = at;
      });
      // A minute back: a comment committed late can carry an earlier time; ids de-duplicate.
      var url = ticketRoot.dataset.commentsUrl +
        (latest === null ? "" : "?after=" + encodeURIComponent(new Date(latest - 60000).toISOString()));
      return fragment(url).then(function (content) {
        var added = [];
        Array.prototype.slice.call(content.querySelectorAll("li.comment")).forEach(function (li) {
          if (document.getElementById(li.id)) return;
          list.appendChild(li);
          activate(li);
          added.push(li);
        });
        if (!added.length) return;
        var count = document.querySelector("[data-comment-count]");
        if (count) count.textContent = String(list.querySelectorAll("li.comment").length);
        var notes = added.filter(function (li) { return li.classList.contains("comment-internal"); }).length;
        var replies = added.length - notes;
        var said = [];
        if (replies) said.push(replies === 1 ? "1 new reply" : replies + " new replies");
        if (notes) said.push(notes === 1 ? "1 new internal note" : notes + " new internal notes");
        app.announce(said.join(" and ") + " on this ticket.");
      });
    }, 200);

    // Properties: swap the panel unless the agent is working in it; then offer a reload.
    var panelUpdate = null;
    function editingPanel() {
      var panel = document.getElementById("props");
      if (!panel) return false;
      if (panel.contains(document.activeElement) || panel.querySelector(".htmx-request, details[open]")) return true;
      var tags = document.getElementById("p-tags");
      return !!tags && tags.value !== tags.defaultValue;
    }
    function swapPanel(content) {
      Array.prototype.slice.call(content.children).forEach(function (node) {
        var old = node.id && document.getElementById(node.id);
        if (!old) return;
        old.replaceWith(node);
        activate(node);
      });
      panelUpdate = null;
      if (stale) stale.hidden = true;
    }
    var fetchProps = serial(function () {
      return fragment(ticketRoot.dataset.propsUrl).then(function (content) {
        var panel = document.getElementById("props");
        var next = content.getElementById ? content.getElementById("props") : content.querySelector("#props");
        if (!panel || !next) return;
        if (parseInt(next.dataset.version, 10) <= parseInt(panel.dataset.version, 10)) return;
        if (editingPanel()) {
          panelUpdate = content;
          if (stale) stale.hidden = false;
          app.announce("This ticket was changed by someone else. Reload the panel to see it.");
        } else {
          swapPanel(content);
        }
      });
    }, 200);
    document.addEventListener("htmx:afterSettle", function (event) {
      if (event.target && event.target.id === "props") { panelUpdate = null; if (stale) stale.hidden = true; }
    });
    document.addEventListener("click", function (event) {
      if (!event.target.closest || !event.target.closest("[data-reload-props]")) return;
      if (panelUpdate) swapPanel(panelUpdate);
      fetchProps();
      var select = document.querySelector("#props select");
      if (select) select.focus();
    });

    handlers.event.push(function (event) {
      var payload = event.payload || {};
      if (payload.ticket_id !== ticketId) return;
      var type = event.event_type || "";
      if (type.indexOf("comment.") === 0 || type.indexOf("attachment.") === 0) fetchComments();
      if (type.indexOf("ticket.") === 0) fetchProps();
    });
    handlers.resync.push(function () { fetchComments(); fetchProps(); });

    // The reply editor: typing (throttled), replying while a public reply is being written.
    function publicMode() {
      var mode = form.querySelector('input[name="internal"]:checked');
      return !mode || mode.value === "0";
    }
    function setReplying(on) {
      if (on === replying) return;
      replying = on;
      send({ type: "replying", room: room, active: on });
      window.clearInterval(replyTimer);
      if (on) {
        replyTimer = window.setInterval(function () {
          send({ type: "replying", room: room, active: true });
        }, Math.max(2, live.ttl.replying / 2) * 1000);
      }
      render();
    }
    function updateReplying() {
      if (!sending) setReplying(editor.value.trim() !== "" && publicMode());
    }
    handlers.joined.push(function (joined) {
      if (joined !== room || !editor) return;
      if (replying) send({ type: "replying", room: room, active: true }); else updateReplying();
    });
    if (editor) {
      editor.addEventListener("input", function () {
        var now = Date.now();
        if (now - lastTyping > Math.max(1, live.ttl.typing / 2) * 1000) {
          lastTyping = now;
          send({ type: "typing", room: room });
        }
        updateReplying();
      });
      editor.addEventListener("blur", function () {
        if (lastTyping) { lastTyping = 0; send({ type: "typing", room: room, active: false }); }
      });
      form.addEventListener("change", function (event) {
        if (event.target.name === "internal") updateReplying();
      });
      form.addEventListener("submit", function (event) {
        if (event.defaultPrevented) return;
        sending = true;
        lastTyping = 0;
        send({ type: "typing", room: room, active: false });
        setReplying(false);
      });
    }
  })();

  // --- Agent queue ----------------------------------------------------------------------------------
  if (queueRoot) (function () {
    var QUEUE_EVENTS = ["ticket.created", "ticket.updated", "ticket.assigned", "ticket.status_changed"];
    var changed = {};
    var unknown = false;
    var paged = false;

    function results() { return document.getElementById("queue-results"); }

    function busy() {
      var root = results();
      if (!root) return false;
      if (paged || root.querySelector(".row-check:checked, [data-select-all]:checked")) return true;
      var action = document.getElementById("bulk-action");
      return !!action && (action.value !== "" || action === document.activeElement);
    }

    function offer() {
      var box = document.querySelector("[data-live-changes]");
      if (!box) return;
      var n = Object.keys(changed).length;
      box.querySelector("[data-live-refresh]").textContent = unknown
        ? "The queue may have changed — Refresh"
        : (n === 1 ? "1 ticket changed" : n + " tickets changed") + " — Refresh";
      if (box.hidden) app.announce("Tickets in this queue changed. Refresh to see them.");
      box.hidden = false;
    }

    function refresh() {
      var root = results();
      if (!root) return null;
      var currentRow = document.querySelector('[data-row][aria-current="true"]');
      var currentId = currentRow && currentRow.dataset.id;
      var hadFocus = root.contains(document.activeElement);
      var focusRow = hadFocus && document.activeElement.closest("[data-row]");
      var focusId = focusRow && focusRow.dataset.id;
      return fragment(root.dataset.rowsUrl).then(function (content) {
        var next = content.querySelector("#queue-results");
        if (!next) return;
        var now = results();
        now.replaceWith(next);
        activate(next);
        changed = {}; unknown = false; paged = false;
        var keep = currentId && next.querySelector('[data-row][data-id="' + currentId + '"]');
        if (keep) keep.setAttribute("aria-current", "true");
        if (hadFocus) {
          var row = focusId && next.querySelector('[data-row][data-id="' + focusId + '"]');
          var target = row ? row.querySelector(".ticket-link") : next.querySelector(".ticket-link");
          if (target) target.focus({ preventScroll: true });
        }
      });
    }

    var flush = serial(function () {
      if (!Object.keys(changed).length && !unknown) return null;
      if (busy()) { offer(); return null; }
      return refresh();
    }, 1000);

    handlers.event.push(function (event) {
      if (QUEUE_EVENTS.indexOf(event.event_type) < 0) return;
      // My own changes are on the page already (the `a` key updates its row; bulk actions
      // reload): a row must not vanish from under the keyboard right after `a`.
      if (event.actor && event.actor.id === me) return;
      changed[(event.payload || {}).ticket_id || event.event_id] = true;
      flush();
    });
    handlers.resync.push(function () { unknown = true; flush(); });

    document.addEventListener("click", function (event) {
      if (event.target.closest && event.target.closest("[data-live-refresh]")) {
        var refreshed = refresh();
        if (refreshed) refreshed.then(function () { app.announce("The queue is up to date."); });
      }
    });
    document.addEventListener("htmx:beforeRequest", function (event) {
      if (event.target.closest && event.target.closest(".load-more-item")) paged = true;
    });
  })();

  // --- Requester's ticket ---------------------------------------------------------------------------
  if (portalRoot) (function () {
    var ticketId = portalRoot.dataset.livePortal;
    var manualUntil = 0, lastTyping = 0;
    var room = "ticket:" + ticketId;
    rooms.push(room);

    // Agents see the requester typing (never the other way round: live.md).
    document.addEventListener("input", function (event) {
      if (!event.target.matches || !event.target.matches("#reply-form textarea")) return;
      if (Date.now() - lastTyping < Math.max(1, live.ttl.typing / 2) * 1000) return;
      lastTyping = Date.now();
      send({ type: "typing", room: room });
    });
    document.addEventListener("focusout", function (event) {
      if (!lastTyping || !event.target.matches || !event.target.matches("#reply-form textarea")) return;
      lastTyping = 0;
      send({ type: "typing", room: room, active: false });
    });

    var poll = serial(function () {
      var poller = document.getElementById("poller");
      if (!poller || !window.htmx) return null;
      manualUntil = Date.now() + 2000;
      window.htmx.trigger(poller, "sdrefresh");
      return null;
    }, 150);

    // The 15 s poll is the fallback: while the live connection is up, only events fetch.
    document.addEventListener("htmx:beforeRequest", function (event) {
      var elt = event.detail && event.detail.elt;
      if (!elt || elt.id !== "poller") return;
      if (Date.now() < manualUntil) manualUntil = 0;
      else if (live.up) event.preventDefault();
    });
    handlers.event.push(function (event) {
      if ((event.payload || {}).ticket_id === ticketId) poll();
    });
    handlers.resync.push(poll);
  })();

  connect();
})();
