// The playground: posts a message, reads the UI message stream (SSE over fetch) and shows
// text, tool calls and recalled memories as they come, then usage, cost and latency.
(function () {
  "use strict";
  const form = document.getElementById("pg-form");
  const log = document.getElementById("pg-log");
  const sessionLabel = document.getElementById("pg-session");
  let sessions = {}; // agent id -> session id, so turns continue one conversation

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function short(value) {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    return text.length > 600 ? text.slice(0, 600) + "…" : text;
  }

  function render(turn, chunk, state) {
    switch (chunk.type) {
      case "text-delta":
        if (!state.answer) { state.answer = el("div", "pg-answer"); turn.appendChild(state.answer); }
        state.answer.textContent += chunk.delta || "";
        break;
      case "text-end": state.answer = null; break;
      case "tool-input-available":
        state.tools[chunk.toolCallId] = chunk.toolName;
        turn.appendChild(el("div", "pg-event pg-tool", "→ tool " + chunk.toolName + " " + short(chunk.input)));
        break;
      case "tool-output-available":
        turn.appendChild(el("div", "pg-event pg-tool", "← " + (state.tools[chunk.toolCallId] || "tool") + " ok: " + short(chunk.output)));
        break;
      case "tool-output-error":
        turn.appendChild(el("div", "pg-event pg-tool pg-error", "← " + (state.tools[chunk.toolCallId] || "tool") + " failed: " + short(chunk.errorText)));
        break;
      case "message-metadata": {
        const meta = chunk.messageMetadata || {};
        if (meta.memory_ids) {
          const ids = meta.memory_ids;
          const line = el("div", "pg-event pg-memory", "recalled " + ids.length + " memor" + (ids.length === 1 ? "y" : "ies") + (ids.length ? ": " : ""));
          ids.forEach(function (id, n) {
            const link = el("a", "", id); // each memory opens in admin's memory browser
            link.href = "/admin/memory/memoryentry/" + encodeURIComponent(id) + "/change/";
            link.target = "_blank";
            line.appendChild(link);
            if (n < ids.length - 1) line.appendChild(document.createTextNode(", "));
          });
          turn.appendChild(line);
        }
        if (meta.console) {
          const c = meta.console, u = c.usage || {};
          const parts = [
            (u.prompt_tokens || 0) + " prompt + " + (u.completion_tokens || 0) + " completion tokens",
            c.cost_usd !== null && c.cost_usd !== undefined ? "$" + c.cost_usd : "cost unknown",
            c.latency_ms + " ms",
          ];
          if (c.model) parts.push(c.model);
          if (c.provider) parts.push("via " + c.provider);
          if (c.status) parts.push("run " + c.status);
          turn.appendChild(el("div", "pg-summary", parts.join(" · ")));
        }
        break;
      }
      case "error":
        turn.appendChild(el("div", "pg-error", "error: " + chunk.errorText));
        break;
    }
  }

  async function send(event) {
    event.preventDefault();
    const data = new FormData(form);
    const kind = data.get("kind");
    const target = kind === "agent" ? data.get("agent") : data.get("model");
    const message = (data.get("message") || "").toString();
    if (!message.trim()) return;
    const body = new URLSearchParams();
    body.set("kind", kind); body.set("target", target); body.set("message", message);
    if (kind === "agent" && sessions[target]) body.set("session_id", sessions[target]);
    const turn = el("div", "pg-turn");
    turn.appendChild(el("div", "pg-user", "you → " + target + ": " + message));
    log.appendChild(turn);
    form.message.value = "";
    const sendButton = document.getElementById("pg-send");
    sendButton.disabled = true;
    try {
      const response = await fetch(form.dataset.streamUrl, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRFToken": data.get("csrfmiddlewaretoken") },
      });
      if (!response.ok) {
        let text = response.status + " " + response.statusText;
        try { const err = await response.json(); text = err.error.type + ": " + err.error.message; } catch (e) { /* not JSON */ }
        turn.appendChild(el("div", "pg-error", "error: " + text));
        return;
      }
      const runId = response.headers.get("X-Run-Id");
      if (runId) {
        sessions[target] = response.headers.get("X-Session-Id");
        sessionLabel.textContent = "session " + sessions[target];
        const link = el("a", "pg-summary", "run " + runId);
        link.href = response.headers.get("X-Run-Admin-Url");
        turn.appendChild(link);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      const state = { answer: null, tools: {} };
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          for (const line of block.split("\n")) {
            if (!line.startsWith("data: ")) continue; // comments are heartbeats; ids are for resuming
            const payload = line.slice(6);
            if (payload === "[DONE]") continue;
            try { render(turn, JSON.parse(payload), state); } catch (e) { console.warn("bad chunk", payload); }
          }
        }
      }
      turn.classList.add("pg-done");
    } catch (e) {
      turn.appendChild(el("div", "pg-error", "error: " + e));
    } finally {
      sendButton.disabled = false;
    }
  }

  form.addEventListener("submit", send);
  form.message.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) send(e);
  });
  document.getElementById("pg-new").addEventListener("click", function () {
    sessions = {}; sessionLabel.textContent = ""; log.textContent = "";
  });
  ["pg-agent", "pg-model"].forEach(function (id) {
    document.getElementById(id).addEventListener("change", function () {
      form.querySelector('input[name=kind][value="' + (id === "pg-agent" ? "agent" : "model") + '"]').checked = true;
    });
  });
})();
