#!/usr/bin/env node
// Keeps package-lock.json usable by `npm ci` with the registry this project installs from.
// That registry lacks some platform-specific optional packages (e.g. rollup's android and
// win32 binaries); `npm install` then leaves them out of the lock file and `npm ci` refuses
// the lock as "Missing: … from lock file". This adds, for each optional dependency the lock
// names but does not hold, an entry marked optional with the os/cpu its name states, so
// `npm ci` skips it on this platform instead of refusing. Run after `npm install`.
import { readFileSync, writeFileSync } from 'node:fs';

const file = 'package-lock.json';
const lock = JSON.parse(readFileSync(file, 'utf8'));
const OS = ['android', 'darwin', 'freebsd', 'linux', 'openbsd', 'openharmony', 'win32', 'sunos', 'aix', 'netbsd'];
const CPU = { 'arm-eabi': 'arm', arm64: 'arm64', x64: 'x64', ia32: 'ia32', arm: 'arm', loong64: 'loong64', ppc64: 'ppc64', riscv64: 'riscv64', s390x: 's390x', mips64el: 'mips64el', wasm32: 'wasm32' };
let added = 0;
for (const [path, pkg] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    if (lock.packages[key] || lock.packages[`${path}/${key}`]) continue;
    const base = name.split('/').pop();
    const entry = { version, optional: true };
    const os = OS.find((o) => base.includes(`-${o}-`) || base.startsWith(`${o}-`));
    if (os) entry.os = [os];
    const cpu = Object.keys(CPU).find((c) => base.includes(`-${c}`));
    if (cpu) entry.cpu = [CPU[cpu]];
    if (base.endsWith('-musl') || base.includes('-musl')) entry.libc = ['musl'];
    else if (os === 'linux' && base.includes('-gnu')) entry.libc = ['glibc'];
    lock.packages[key] = entry;
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(lock.packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : 1)));
writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`lock-optionals: added ${added} missing optional entries`);
