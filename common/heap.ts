/**
 * V8 heap behaviour of kernway's long-running processes, set from inside the process so
 * that it holds with default Node.js flags (a DaemonSet or a `kernway agent` run by hand
 * needs no NODE_OPTIONS).
 *
 * Node.js 24's V8 grows the young generation (the semi-spaces) up to 2 x 64 MiB while
 * objects survive scavenges — as they do when a model of 100,000 endpoints is built — and
 * does not give that memory back while the process is idle: measured, an agent holding
 * 10,000 Services x 10 endpoints sat at 252 MiB RSS of which 128 MiB was an empty young
 * generation (docs/agent-model.md). Keeping the semi-space growth factor at 1 keeps the
 * young generation at its initial size (1 MiB per semi-space): scavenges are more frequent
 * and promote more, which costs a little CPU at load and saves the 126 MiB for good.
 */
import { setFlagsFromString } from 'node:v8';

let applied = false;

/** Keeps V8's young generation at its initial size from now on (idempotent). */
export function keepYoungGenerationSmall(): void {
  if (applied) return;
  setFlagsFromString('--semi-space-growth-factor=1');
  applied = true;
}
