// The SQL input: CodeMirror 6 (its styles go through constructable style sheets, so it runs
// under the gateway's CSP without 'unsafe-inline').
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

export function createEditor(parent: HTMLElement, hooks: EditorHooks): EditorView {
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
    state: EditorState.create({
      extensions: [
        Prec.highest(keys),
        history(),
        keymap.of([...defaultKeymap, ...historyKeymap]),
        sql({ dialect: PostgreSQL }),
        placeholder("select 1;  — Enter runs a statement ending in ';', Shift+Enter adds a line"),
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": "SQL input", "aria-multiline": "true" }),
      ],
    }),
  });
}
