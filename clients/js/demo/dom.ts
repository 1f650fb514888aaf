// Small DOM helpers of the demo page: lookups, building elements, and showing what the server
// refused.

import { ConveneError } from "../src/index.js";

export const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Omit<Partial<HTMLElementTagNameMap[K]>, "dataset"> & { dataset?: Record<string, string> } = {} as never,
  ...children: Array<Node | string>
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(node, rest);
  for (const [key, value] of Object.entries(dataset ?? {})) node.dataset[key] = value;
  node.append(...children);
  return node;
}

export const short = (id: string) => id.slice(0, 8);

export function report(error: unknown): void {
  const text = error instanceof ConveneError ? error.message : String(error);
  $("status").textContent = text;
  console.warn(error);
}

/** Runs a request; a refusal shows its code at the bottom of the page. */
export function act(run: () => Promise<unknown>): void {
  $("status").textContent = "";
  run().catch(report);
}

export function button(label: string, run: () => Promise<unknown>): HTMLButtonElement {
  const node = el("button", { textContent: label });
  node.onclick = () => act(run);
  return node;
}

export function banner(text: string | undefined): void {
  const node = $("banner");
  node.hidden = text === undefined;
  node.textContent = text ?? "";
}
