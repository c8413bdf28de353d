import { el } from "./util.js";

export function mount(view) {
  view.append(el("p", { class: "pad muted", text: "Coming soon" }));
}
