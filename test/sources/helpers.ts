/** Temp directories and waiting for events, for source tests (real files, real fs.watch). */
import { mkdtempSync, rmSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { EventEmitter } from 'node:events';

export function tempDir(prefix = 'kw-src-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Write a file, creating its directory. */
export function write(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** Write as editors and kubectl do: a temporary file renamed over the target. */
export function writeAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${Date.now()}.tmp`);
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/**
 * The next `event` whose value satisfies `pred` (a bound on waiting, not a timing
 * assertion: it only keeps a broken watcher from hanging the suite).
 */
export function next<T>(em: EventEmitter, event: string, pred: (v: T) => boolean = () => true, limitMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { em.off(event, on); reject(new Error(`no matching '${event}' event within ${limitMs} ms`)); }, limitMs);
    const on = (v: T) => {
      if (!pred(v)) return;
      clearTimeout(timer);
      em.off(event, on);
      resolve(v);
    };
    em.on(event, on);
  });
}

export function svcYaml(name: string, ip: string, port: number | string = 80, ns = 'default'): string {
  return `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: ${ns}\nspec:\n  clusterIP: ${ip}\n  ports:\n  - name: http\n    port: ${port}\n    targetPort: 8080\n`;
}

export function sliceYaml(name: string, svc: string, ips: string[], ns = 'default'): string {
  return `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${name}\n  namespace: ${ns}\n  labels:\n    kubernetes.io/service-name: ${svc}\naddressType: IPv4\nendpoints:\n${ips.map((ip) => `- addresses: ["${ip}"]\n`).join('')}ports:\n- name: http\n  port: 8080\n`;
}
