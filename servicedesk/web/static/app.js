/* Servicedesk pages: small progressive enhancements over plain server-rendered forms.
 *
 * - CSRF header on htmx requests (double submit; the forms also carry the hidden field).
 * - Relative times ("3 hours ago") on <time data-rel>, the absolute time stays in the title.
 * - Form validation in the browser with the messages next to the fields (the server checks
 *   everything again and answers the same way).
 * - File pickers: size, count and type checked before upload; progress while uploading.
 * - Cost-item rows, confirmations, focus management and announcements for screen readers.
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
  document.addEventListener("htmx:afterSettle", function (event) { reveal(event.target); });
})();
