// JSON fields in admin: vanilla-jsoneditor (vendored, static/vendor/jsoneditor) over each
// textarea.json-editor-source, which stays the posted field. Highlighting and formatting come
// from the editor; validation as you type asks the server, which runs the checks of the save
// (console/json_kinds.py), and shows the problems under the field before Save.
import { createJSONEditor, Mode } from "../vendor/jsoneditor/standalone.js";

const VALIDATE_URL = "/admin/console/json/validate";
const DELAY_MS = 300;

function csrfToken(textarea) {
  const input = textarea.form && textarea.form.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return cookie ? cookie.slice("csrftoken=".length) : "";
}

// "$.a.b[2]" -> ["a", "b", "2"], the editor's path form.
function toPath(path) {
  return (path || "$").replace(/^\$/, "").split(/[.[\]]/).filter((part) => part !== "");
}

function attach(textarea) {
  const kind = textarea.dataset.jsonKind || "json";
  const holder = document.createElement("div");
  holder.className = "json-editor";
  holder.dataset.for = textarea.name;
  holder.dataset.kind = kind;
  const problems = document.createElement("ul");
  problems.className = "errorlist json-errors";
  problems.dataset.for = textarea.name;
  textarea.after(holder, problems);
  textarea.style.display = "none";

  let serverErrors = [];
  let timer = null;
  let sequence = 0;

  const editor = createJSONEditor({
    target: holder,
    props: {
      content: { text: textarea.value },
      mode: Mode.text,
      mainMenuBar: true,
      navigationBar: false,
      askToFormat: false,
      validator: () => serverErrors,
      onChange: (content) => {
        textarea.value = content.text !== undefined ? content.text : JSON.stringify(content.json, null, 2);
        schedule();
      },
    },
  });

  function show(errors) {
    serverErrors = errors.map((e) => ({ path: toPath(e.path), message: e.message, severity: "error" }));
    problems.replaceChildren(...errors.map((e) => {
      const li = document.createElement("li");
      li.textContent = (e.path && e.path !== "$" ? e.path + ": " : "") + e.message;
      return li;
    }));
    holder.classList.toggle("json-invalid", errors.length > 0);
    editor.updateProps({ validator: () => serverErrors });
  }

  async function validate() {
    const mine = ++sequence;
    try {
      const response = await fetch(VALIDATE_URL, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(textarea) },
        body: JSON.stringify({ kind: kind, text: textarea.value }),
      });
      if (!response.ok || mine !== sequence) return; // a newer edit is being checked
      show((await response.json()).errors || []);
    } catch (e) {
      // Offline or the server restarting: the save still checks everything.
    }
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(validate, DELAY_MS);
  }

  validate();
}

document.querySelectorAll("textarea.json-editor-source").forEach(attach);
