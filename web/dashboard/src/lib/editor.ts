// The SQL input: CodeMirror 6, mounted in a shadow root. In a document CodeMirror adds its
// styles as a <style> element, which the gateway's CSP (style-src 'self') refuses; in a
// shadow root it uses constructable style sheets, which CSP does not govern. Colours come in
// through the app's CSS variables, which cross the shadow boundary.
import { defaultKeymap, history, historyKeymap } from "@codemirror/commands";
import { sql, PostgreSQL } from "@codemirror/lang-sql";
import { EditorState, Prec } from "@codemirror/state";
import { EditorView, keymap, placeholder } from "@codemirror/view";

export interface EditorHooks {
  run: (text: string) => void;
  cancel: () => boolean; // true when something was cancelled
  previous: () => string | null;
  next: () => string | null;
}

const theme = EditorView.theme({
  "&": { color: "var(--text)", backgroundColor: "var(--panel)", minHeight: "4.5rem", borderRadius: "6px" },
  "&.cm-focused": { outline: "3px solid var(--focus)", outlineOffset: "2px" },
  ".cm-content": {
    fontFamily: 'ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace',
    caretColor: "var(--text)",
    minHeight: "4.5rem",
  },
  ".cm-cursor": { borderLeftColor: "var(--text)" },
  ".cm-placeholder": { color: "var(--muted)" },
  "&.cm-focused .cm-selectionBackground, .cm-selectionBackground": { backgroundColor: "var(--code-bg)" },
});

export function createEditor(host: HTMLElement, hooks: EditorHooks): EditorView {
  const parent = host.shadowRoot ?? host.attachShadow({ mode: "open" });
  const replace = (view: EditorView, text: string | null) => {
    if (text === null) return false;
    view.dispatch({
      changes: { from: 0, to: view.state.doc.length, insert: text },
      selection: { anchor: text.length },
    });
    return true;
  };
  const submit = (view: EditorView) => {
    const text = view.state.doc.toString();
    if (!text.trim()) return true;
    hooks.run(text);
    replace(view, "");
    return true;
  };
  const keys = keymap.of([
    {
      // psql's rule: a statement runs once it ends with ';', a meta-command at once
      key: "Enter",
      run: (view) => {
        const text = view.state.doc.toString().trim();
        return text.endsWith(";") || text.startsWith("\\") ? submit(view) : false;
      },
    },
    { key: "Mod-Enter", run: submit },
    {
      key: "ArrowUp",
      run: (view) => view.state.doc.lineAt(view.state.selection.main.head).number === 1 && replace(view, hooks.previous()),
    },
    {
      key: "ArrowDown",
      run: (view) =>
        view.state.doc.lineAt(view.state.selection.main.head).number === view.state.doc.lines &&
        replace(view, hooks.next()),
    },
    { key: "Ctrl-c", run: (view) => view.state.selection.main.empty && hooks.cancel() },
  ]);
  return new EditorView({
    parent,
    root: parent,
    state: EditorState.create({
      extensions: [
        Prec.highest(keys),
        history(),
        keymap.of([...defaultKeymap, ...historyKeymap]),
        sql({ dialect: PostgreSQL }),
        placeholder("select 1;  — Enter runs a statement ending in ';', Shift+Enter adds a line"),
        EditorView.lineWrapping,
        theme,
        EditorView.contentAttributes.of({ "aria-label": "SQL input", "aria-multiline": "true" }),
      ],
    }),
  });
}
