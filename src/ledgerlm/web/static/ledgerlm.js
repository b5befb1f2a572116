/* ledgerlm dashboard: wallet signing (EIP-1193, eth_signTypedData_v4), uploads with progress, root checks,
   countdowns, live loss curves and the Playground. The node builds every typed message; this file only
   asks for it, has the wallet sign it and posts it back unchanged. */
(function () {
  "use strict";
  var state = { account: null };

  // ---------------------------------------------------------------- messages on the page
  function notice(text, kind) {
    var box = document.getElementById("notice");
    box.textContent = text;
    box.className = kind === "info" ? "info" : "";
    box.hidden = false;
  }
  function clearNotice() { var box = document.getElementById("notice"); box.hidden = true; box.textContent = ""; }

  // A readable sentence from any failed response: the node's {"error": {"message", "field"}}, FastAPI's
  // {"detail"}, or the status line. Never the raw body.
  async function readableError(response) {
    var text = "";
    try { text = await response.text(); } catch (e) { text = ""; }
    try {
      var body = JSON.parse(text);
      if (body && body.error && body.error.message) {
        return body.error.message + (body.error.field ? " (field: " + body.error.field + ")" : "");
      }
      if (body && typeof body.detail === "string") return body.detail;
      if (body && Array.isArray(body.detail) && body.detail[0] && body.detail[0].msg) return body.detail[0].msg;
    } catch (e) { /* not JSON: fall through */ }
    var stripped = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim();
    if (stripped && stripped.length < 300 && !/^[\[{]/.test(stripped)) return stripped;
    return "the node answered " + response.status + " " + (response.statusText || "");
  }

  function walletError(err) {
    if (err && err.code === 4001) return "you declined the request in your wallet";
    return (err && err.message) || String(err);
  }

  async function send(url, options) {
    var response;
    try { response = await fetch(url, options); } catch (e) { throw new Error("cannot reach the node: " + e.message); }
    if (!response.ok) throw new Error(await readableError(response));
    var type = response.headers.get("content-type") || "";
    return type.indexOf("application/json") === 0 ? response.json() : response.text();
  }

  function postJSON(url, bodyText, headers) {
    return send(url, { method: "POST", headers: Object.assign({ "Content-Type": "application/json" }, headers || {}),
                       body: bodyText });
  }

  // ---------------------------------------------------------------- wallet
  function provider() {
    if (!window.ethereum || typeof window.ethereum.request !== "function") {
      throw new Error("no wallet found: install or unlock an EIP-1193 browser wallet to sign");
    }
    return window.ethereum;
  }

  async function connect() {
    var accounts;
    try { accounts = await provider().request({ method: "eth_requestAccounts" }); }
    catch (e) { throw new Error(walletError(e)); }
    if (!accounts || !accounts.length) throw new Error("the wallet shared no account");
    state.account = accounts[0];
    var shown = document.getElementById("wallet-address");
    shown.textContent = state.account;
    document.getElementById("connect-wallet").textContent = "Wallet connected";
    return state.account;
  }

  // Ask the node for the typed data, have the wallet sign it, and return the signed action as JSON text
  // (the message text is the node's own, so no integer is rounded on its way back).
  async function signAction(action, fields, extra) {
    var signer = (extra && extra.signer) || state.account || await connect();
    var prepared = await postJSON("/web/typed-data", JSON.stringify(Object.assign(
      { action: action, signer: signer, fields: fields || {} }, (extra && extra.body) || {})));
    var signature = await signTyped(signer, prepared.typed);
    prepared.actionJSON = '{"action":' + JSON.stringify(prepared.action) + ',"message":' + prepared.message +
      ',"signature":' + JSON.stringify(signature) + "}";
    return prepared;
  }

  async function signTyped(signer, typedText) {
    try { return await provider().request({ method: "eth_signTypedData_v4", params: [signer, typedText] }); }
    catch (e) { throw new Error(walletError(e)); }
  }

  async function busy(button, work) {
    clearNotice();
    if (button) button.disabled = true;
    try { return await work(); }
    catch (e) { notice(e.message); }
    finally { if (button) button.disabled = false; }
  }

  // ---------------------------------------------------------------- signed reads (private Datanets)
  var READ_COOKIE = "ledgerlm_read";

  function readGrant() {
    var found = document.cookie.split("; ").filter(function (c) { return c.indexOf(READ_COOKIE + "=") === 0; })[0];
    return found ? decodeURIComponent(found.slice(READ_COOKIE.length + 1)) : "";
  }

  function wireReadSignIn() {
    var signIn = document.getElementById("read-sign-in"), signOut = document.getElementById("read-sign-out");
    if (signIn) signIn.addEventListener("click", function () {
      busy(signIn, async function () {
        var account = state.account || await connect();
        var prepared = await postJSON("/web/read-request", JSON.stringify({ signer: account }));
        var signature = await signTyped(account, prepared.typed);
        // Read-only and short-lived: the same value the API takes in X-Ledgerlm-Read.
        document.cookie = READ_COOKIE + "=" + prepared.prefix + ":" + signature +
          "; path=/; max-age=120; SameSite=Strict";
        window.location.reload();
      });
    });
    if (signOut) signOut.addEventListener("click", function () {
      document.cookie = READ_COOKIE + "=; path=/; max-age=0; SameSite=Strict";
      window.location.reload();
    });
  }

  // ---------------------------------------------------------------- generic signed buttons
  function wireSignButtons() {
    document.querySelectorAll("button[data-sign]").forEach(function (button) {
      button.addEventListener("click", function () {
        busy(button, async function () {
          var signer = button.dataset.signer;
          if (signer) {
            var mine = await connect();
            if (mine.toLowerCase() !== signer.toLowerCase()) {
              throw new Error("connect the wallet of " + signer + " to do this (connected: " + mine + ")");
            }
          }
          var signed = await signAction(button.dataset.sign, JSON.parse(button.dataset.fields || "{}"));
          await postJSON(button.dataset.post, '{"action":' + signed.actionJSON + "}");
          notice("Done: " + button.textContent.trim() + ". Reloading…", "info");
          window.location.reload();
        });
      });
    });
  }

  // ---------------------------------------------------------------- create a Datanet
  function schemaProblem(text) {
    var schema;
    try { schema = JSON.parse(text); } catch (e) { return "the schema is not valid JSON: " + e.message; }
    if (!schema || typeof schema !== "object" || Array.isArray(schema)) return "the schema must be a JSON object";
    if (schema.type !== "object") return 'the schema\'s "type" must be "object" (one record is an object)';
    if (schema.properties && typeof schema.properties !== "object") return '"properties" must be an object';
    var missing = (schema.required || []).filter(function (r) { return !schema.properties || !(r in schema.properties); });
    if (missing.length) return "required field(s) without a property: " + missing.join(", ");
    return "";
  }

  function wireCreateDatanet() {
    var form = document.getElementById("create-datanet");
    if (!form) return;
    var editor = document.getElementById("dn-schema"), status = document.getElementById("schema-status");
    var block = document.getElementById("schema-editor");
    function check() {
      var problem = form.kind.value === "documents" ? "" : schemaProblem(editor.value);
      status.textContent = problem || "Schema looks valid.";
      status.className = problem ? "bad" : "ok";
      editor.setAttribute("aria-invalid", problem ? "true" : "false");
      return problem;
    }
    editor.addEventListener("input", check);
    form.querySelectorAll('input[name="kind"]').forEach(function (r) {
      r.addEventListener("change", function () { block.hidden = form.kind.value === "documents"; check(); });
    });
    check();
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      busy(button, async function () {
        if (!form.name.value.trim()) { form.name.focus(); throw new Error("give the Datanet a name (field: name)"); }
        var problem = check();
        if (problem) { editor.focus(); throw new Error(problem + " (field: schema)"); }
        var spec = {
          name: form.name.value.trim(), description: form.description.value.trim(),
          tags: form.tags.value.split(",").map(function (t) { return t.trim(); }).filter(Boolean),
          licence: form.licence.value.trim() || "CC-BY-4.0", visibility: form.visibility.value,
          schema: form.kind.value === "documents" ? "documents" : JSON.parse(editor.value)
        };
        var signed = await signAction("CreateDatanet", {}, { body: { spec: spec } });
        var created = await postJSON("/datanets", '{"spec":' + signed.spec + ',"action":' + signed.actionJSON + "}");
        window.location.href = "/web/datanets/" + encodeURIComponent(created.name);
      });
    });
  }

  // ---------------------------------------------------------------- validator votes (commit, then reveal)
  function wireVotes() {
    document.querySelectorAll("form.votes").forEach(function (form) {
      var round = Number(form.dataset.round), validator = form.dataset.validator;
      var storeKey = "ledgerlm-votes-" + round + "-" + validator.toLowerCase();
      var out = form.querySelector("output");
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var button = form.querySelector("button[data-step]");
        busy(button, async function () {
          var mine = await connect();
          if (mine.toLowerCase() !== validator.toLowerCase()) {
            throw new Error("connect the wallet of validator " + validator + " to vote (connected: " + mine + ")");
          }
          if (button.dataset.step === "commit") {
            var votes = {};
            form.querySelectorAll("input[data-contribution]").forEach(function (input) {
              var score = Number(input.value);
              if (!Number.isInteger(score) || score < 0 || score > 100) {
                input.focus();
                throw new Error("score for contribution " + input.dataset.contribution + " must be a whole number 0 to 100");
              }
              votes[input.dataset.contribution] = score;
            });
            var salt = new Uint8Array(32);
            window.crypto.getRandomValues(salt);
            var saltHex = window.ledgerlmHash.toHex(salt);
            var commit = window.ledgerlmHash.voteCommit(round, validator, votes, saltHex);
            window.localStorage.setItem(storeKey, JSON.stringify({ votes: votes, salt: saltHex }));
            var signed = await signAction("CommitVotes", { roundId: round, commit: commit });
            await postJSON("/validation/rounds/" + round + "/commit", '{"action":' + signed.actionJSON + "}");
            out.textContent = "Committed " + commit.slice(0, 12) + "…; reveal after the commit phase.";
          } else {
            var kept = JSON.parse(window.localStorage.getItem(storeKey) || "null");
            if (!kept) throw new Error("this browser holds no committed votes for round " + round + ": reveal where you committed");
            var again = window.ledgerlmHash.voteCommit(round, validator, kept.votes, kept.salt);
            var revealed = await signAction("RevealVotes", { roundId: round, commit: again });
            await postJSON("/validation/rounds/" + round + "/reveal", JSON.stringify({ votes: kept.votes, salt: kept.salt })
              .replace(/}$/, ',"action":' + revealed.actionJSON + "}"));
            window.localStorage.removeItem(storeKey);
            out.textContent = "Revealed; the round can be tallied after its reveal phase.";
          }
        });
      });
    });
  }

  // ---------------------------------------------------------------- start a training job
  function wireTrain() {
    var form = document.getElementById("train");
    if (!form) return;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      busy(form.querySelector("button"), async function () {
        var config = {};
        if (form.config.value.trim()) {
          try { config = JSON.parse(form.config.value); } catch (e) {
            throw new Error("the training settings are not valid JSON: " + e.message + " (field: config)");
          }
        }
        var data = form.data.value.split("@");
        var request = { model_id: form.model_id.value.trim(), datanet: data[0], version: Number(data[1]),
                        base: form.base.value, config: config };
        var signed = await signAction("TrainModel", {}, { body: { train: request } });
        var job = await postJSON("/factory/jobs", '{"request":' + signed.train + ',"action":' + signed.actionJSON + "}");
        window.location.href = "/web/jobs/" + job.id;
      });
    });
  }

  // ---------------------------------------------------------------- upload with progress
  async function sha256Hex(file) {
    if (!window.crypto || !window.crypto.subtle) {
      throw new Error("this page needs a secure context to hash files: open it over https or on localhost");
    }
    var digest = await window.crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return window.ledgerlmHash.toHex(new Uint8Array(digest)).slice(2);
  }

  function wireUpload() {
    var form = document.getElementById("upload");
    if (!form) return;
    var bar = document.getElementById("upload-progress"), status = document.getElementById("upload-status");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit]");
      busy(button, async function () {
        var files = Array.prototype.slice.call(form.files.files);
        if (!files.length) throw new Error("choose at least one file to upload (field: files)");
        status.textContent = "Hashing " + files.length + " file(s)…";
        var manifest = [];
        for (var i = 0; i < files.length; i++) manifest.push([files[i].name, await sha256Hex(files[i]), files[i].size]);
        status.textContent = "Waiting for your wallet's signature…";
        var datanet = form.dataset.datanet;
        var signed = await signAction("Contribute", { datanet: datanet }, { body: { manifest: manifest } });
        // The signed action and manifest go first: the node checks them before it reads any file byte.
        var data = new FormData();
        data.append("action", signed.actionJSON);
        data.append("manifest", JSON.stringify(manifest));
        data.append("skip_duplicates", form.skip_duplicates.checked ? "true" : "false");
        files.forEach(function (f) { data.append("files", f, f.name); });
        bar.hidden = false; bar.value = 0;
        var receipt = await new Promise(function (resolve, reject) {
          var xhr = new XMLHttpRequest();
          xhr.open("POST", "/datanets/" + encodeURIComponent(datanet) + "/contributions");
          xhr.upload.onprogress = function (e) {
            if (e.lengthComputable) {
              bar.value = Math.round(100 * e.loaded / e.total);
              status.textContent = "Uploading… " + bar.value + " %";
            }
          };
          xhr.onerror = function () { reject(new Error("the upload was interrupted; nothing was stored")); };
          xhr.onload = async function () {
            var response = new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText });
            if (xhr.status >= 400) reject(new Error(await readableError(response)));
            else resolve(JSON.parse(xhr.responseText));
          };
          xhr.send(data);
        });
        bar.value = 100;
        status.textContent = "Stored " + receipt.contribution_count + " contribution(s) in upload " + receipt.upload_id +
          (receipt.skipped_duplicates ? " (" + receipt.skipped_duplicates + " duplicates skipped)" : "") + ". Reloading…";
        window.location.reload();
      });
    });
  }

  // ---------------------------------------------------------------- verify a version's root
  function wireVerifyRoot() {
    document.querySelectorAll("button[data-verify-root]").forEach(function (button) {
      button.addEventListener("click", function () {
        var out = document.getElementById(button.getAttribute("aria-describedby"));
        busy(button, async function () {
          out.textContent = "checking…";
          var grant = readGrant();
          var manifest = await send(button.dataset.manifest, grant ? { headers: { "X-Ledgerlm-Read": grant } } : {});
          var rows = manifest.contributions.map(function (c) { return [c[1], c[2]]; });
          var root = window.ledgerlmHash.standardMerkleRoot(manifest.leaf_types, rows);
          var expected = button.dataset.verifyRoot.toLowerCase();
          out.textContent = root === expected ? "✓ recomputed " + root.slice(0, 12) + "… from " + rows.length + " leaves: matches"
            : "✗ recomputed " + root + ", which differs";
          out.className = root === expected ? "ok" : "bad";
        });
      });
    });
  }

  // ---------------------------------------------------------------- countdowns
  function tickCountdowns() {
    var now = Date.now() / 1000;
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = Math.round(Number(el.dataset.countdown) - now);
      if (!el.dataset.base) el.dataset.base = el.textContent;
      if (left <= 0) { el.textContent = el.dataset.base + " (passed)"; return; }
      var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      el.textContent = el.dataset.base + " (in " + (h ? h + " h " : "") + m + " min " + s + " s)";
    });
  }

  // ---------------------------------------------------------------- loss curves
  function drawLoss(figure, points) {
    var svg = figure.querySelector("svg"), w = 600, h = 200, pad = 30;
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var ns = "http://www.w3.org/2000/svg";
    if (!points.length) {
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", w / 2); t.setAttribute("y", h / 2); t.setAttribute("text-anchor", "middle");
      t.textContent = "no steps yet"; svg.appendChild(t); return;
    }
    var maxStep = Math.max.apply(null, points.map(function (p) { return p.step; })) || 1;
    var losses = points.map(function (p) { return p.loss; });
    var lo = Math.min.apply(null, losses), hi = Math.max.apply(null, losses), span = hi - lo || 1;
    var path = points.map(function (p, i) {
      var x = pad + (w - 2 * pad) * p.step / maxStep, y = h - pad - (h - 2 * pad) * (p.loss - lo) / span;
      return (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
    }).join(" ");
    points.forEach(function (p) {
      var dot = document.createElementNS(ns, "circle");
      dot.setAttribute("cx", (pad + (w - 2 * pad) * p.step / maxStep).toFixed(1));
      dot.setAttribute("cy", (h - pad - (h - 2 * pad) * (p.loss - lo) / span).toFixed(1));
      dot.setAttribute("r", "3"); dot.setAttribute("fill", "#0b57d0"); svg.appendChild(dot);
    });
    var line = document.createElementNS(ns, "path");
    line.setAttribute("d", path); line.setAttribute("fill", "none"); line.setAttribute("stroke", "#0b57d0");
    line.setAttribute("stroke-width", "2"); svg.appendChild(line);
    [[hi.toFixed(3), pad], [lo.toFixed(3), h - pad]].forEach(function (label) {
      var t = document.createElementNS(ns, "text");
      t.setAttribute("x", 2); t.setAttribute("y", label[1]); t.setAttribute("font-size", "11"); t.textContent = label[0];
      svg.appendChild(t);
    });
    var last = document.createElementNS(ns, "text");
    last.setAttribute("x", w - pad); last.setAttribute("y", h - 8); last.setAttribute("font-size", "11");
    last.setAttribute("text-anchor", "end"); last.textContent = "step " + maxStep; svg.appendChild(last);
  }

  function wireLossCharts() {
    document.querySelectorAll("[data-loss-chart]").forEach(function (figure) {
      var points = JSON.parse(figure.dataset.points || "[]");
      drawLoss(figure, points);
      if (!figure.dataset.events || !window.EventSource) return;
      var source = new EventSource(figure.dataset.events);
      source.onmessage = function (event) {
        var job = JSON.parse(event.data), p = job.progress || {};
        document.getElementById("job-state").textContent = job.state;
        if (p.total_steps) document.getElementById("job-step").textContent = p.step + " / " + p.total_steps;
        if (typeof p.loss === "number") {
          document.getElementById("job-loss").textContent = p.loss.toFixed(4);
          if (!points.length || points[points.length - 1].step !== p.step) points.push({ step: p.step, loss: p.loss });
          drawLoss(figure, points);
        }
        if (p.tokens_per_s) document.getElementById("job-speed").textContent = p.tokens_per_s.toFixed(1);
        if (["done", "failed", "stopped"].indexOf(job.state) >= 0) {
          source.close();
          // Events come at most twice a second, so the live curve may skip steps; the finished run's own
          // record has every step, and the page shows it when it reloads.
          if (job.state === "done") window.location.reload();
        }
      };
      source.onerror = function () { source.close(); };
    });
  }

  // ---------------------------------------------------------------- economy
  function wireCloseEpoch() {
    var form = document.getElementById("close-epoch");
    if (!form) return;
    var saved = window.sessionStorage.getItem("ledgerlm-operator-token");
    if (saved) form.token.value = saved;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var status = document.getElementById("close-status");
      busy(form.querySelector("button"), async function () {
        var token = form.token.value.trim();
        if (!token) throw new Error("paste the operator credential first (field: authorization)");
        window.sessionStorage.setItem("ledgerlm-operator-token", token);
        status.textContent = "Closing…";
        var result = await postJSON("/economy/epochs/close", "{}", { Authorization: "Bearer " + token });
        status.textContent = (result.message || "Epoch " + result.epoch + ": " + result.state) + ". Reloading…";
        window.location.reload();
      });
    });
  }

  function wireFillWallet() {
    document.querySelectorAll("button[data-fill-wallet]").forEach(function (button) {
      button.addEventListener("click", function () {
        busy(button, async function () { document.getElementById(button.dataset.fillWallet).value = await connect(); });
      });
    });
  }

  // ---------------------------------------------------------------- Playground
  function toBaseUnits(text) {
    var m = /^\s*(\d+)(?:\.(\d{0,18}))?\s*$/.exec(text);
    if (!m) throw new Error("the cap must be an amount of LGR such as 1 or 0.5 (field: cap)");
    var units = BigInt(m[1]) * 10n ** 18n + BigInt(((m[2] || "") + "0".repeat(18)).slice(0, 18));
    if (units <= 0n) throw new Error("the cap must be more than zero (field: cap)");
    return units.toString();
  }

  function newApiKey() {
    var bytes = new Uint8Array(32);
    window.crypto.getRandomValues(bytes);
    var b64 = btoa(String.fromCharCode.apply(null, bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
    return "sk-lgr-" + b64;
  }

  function wirePlayground() {
    var keyForm = document.getElementById("create-key"), chat = document.getElementById("chat");
    var keyStatus = document.getElementById("key-status");
    function showKey() {
      var key = window.sessionStorage.getItem("ledgerlm-api-key");
      if (keyStatus) keyStatus.textContent = key ? "Key ready: " + key.slice(0, 12) + "… (kept in this tab)" : "No key yet.";
    }
    if (keyForm) {
      showKey();
      keyForm.addEventListener("submit", function (event) {
        event.preventDefault();
        busy(keyForm.querySelector("button"), async function () {
          var cap = toBaseUnits(keyForm.cap.value), account = state.account || await connect();
          var key = newApiKey();
          var digest = await window.crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
          var keyHash = window.ledgerlmHash.toHex(new Uint8Array(digest));
          var signed = await signAction("CreateApiKey", { keyHash: keyHash, cap: cap });
          if (!signed.cap_typed) throw new Error("this node has no escrow contract, so it cannot take payment");
          var capSignature = await signTyped(account, signed.cap_typed);
          await postJSON("/apikeys", '{"action":' + signed.actionJSON + ',"cap_signature":' + JSON.stringify(capSignature) + "}");
          window.sessionStorage.setItem("ledgerlm-api-key", key);
          showKey();
        });
      });
    }
    if (!chat) return;
    chat.addEventListener("submit", function (event) {
      event.preventDefault();
      busy(chat.querySelector("button"), async function () {
        var key = window.sessionStorage.getItem("ledgerlm-api-key");
        if (!key) throw new Error("create an API key first: answers are paid from your escrow (field: authorization)");
        var prompt = chat.prompt.value.trim();
        if (!prompt) throw new Error("write a message first (field: prompt)");
        var turn = document.createElement("div");
        turn.className = "chat-turn";
        var asked = document.createElement("p");
        asked.innerHTML = "<strong>You:</strong> ";
        asked.appendChild(document.createTextNode(prompt));
        var body = document.createElement("div");
        body.textContent = "Generating…";
        turn.appendChild(asked); turn.appendChild(body);
        document.getElementById("chat-log").prepend(turn);
        var answer = await postJSON("/v1/chat/completions", JSON.stringify({
          model: chat.model.value, messages: [{ role: "user", content: prompt }],
          max_tokens: Number(chat.max_tokens.value) || 32, temperature: 0
        }), { Authorization: "Bearer " + key });
        var text = answer.choices[0].message.content, receiptId = answer.x_ledgerlm_receipt.id;
        body.textContent = text;
        await showAttribution(body, receiptId, text);
      });
    });
  }

  async function showAttribution(target, receiptId, text) {
    for (var attempt = 0; attempt < 120; attempt++) {
      var form = new URLSearchParams({ receipt_id: receiptId, answer: text });
      var html = await send("/web/playground/attribution", { method: "POST", body: form });
      target.innerHTML = html;
      var box = target.querySelector(".attribution");
      if (box && box.dataset.final === "yes") return;
      await new Promise(function (r) { setTimeout(r, 1000); });
    }
  }

  // ---------------------------------------------------------------- start
  document.addEventListener("DOMContentLoaded", function () {
    document.getElementById("connect-wallet").addEventListener("click", function (event) {
      busy(event.currentTarget, connect);
    });
    document.body.addEventListener("htmx:responseError", function (event) {
      readableError(new Response(event.detail.xhr.responseText, { status: event.detail.xhr.status })).then(notice);
    });
    wireReadSignIn(); wireSignButtons(); wireCreateDatanet(); wireVotes(); wireTrain(); wireUpload(); wireVerifyRoot(); wireLossCharts(); wireCloseEpoch();
    wireFillWallet(); wirePlayground();
    tickCountdowns(); setInterval(tickCountdowns, 1000);
  });
})();
