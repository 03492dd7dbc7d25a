/**
 * Where a process's RSS is, itemised from /proc/PID/smaps (issue 10's RSS table in
 * docs/agent-model.md is made with it).
 *
 *   node dist/bench/smaps.js [PID]     (default: an empty node, for comparison)
 *
 * Groups, in KiB resident: the node binary's text and read-only data (the ICU data
 * embedded in it, `icudt*_dat`, counted apart through /proc/PID/pagemap), its writable
 * data, the shared libraries (libc, libstdc++, libbpf/libelf/libz through the addon), the
 * addon, malloc's main arena (`[heap]`), JIT code (anonymous rwx), thread stacks (an
 * anonymous 8 MiB mapping right after a guard page), malloc's thread arenas (64 MiB-aligned
 * reservations), and the rest of the anonymous memory (V8's heap spaces: the caller compares
 * it with v8.getHeapSpaceStatistics()).
 */
import { closeSync, openSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

interface Mapping { start: number; end: number; perms: string; offset: number; path: string; rss: number; anon: number }

function mappings(pid: number | 'self'): Mapping[] {
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(line);
    if (head) {
      cur = { start: parseInt(head[1]!, 16), end: parseInt(head[2]!, 16), perms: head[3]!, offset: parseInt(head[4]!, 16), path: head[5] ?? '', rss: 0, anon: 0 };
      out.push(cur);
      continue;
    }
    const m = /^(Rss|Anonymous):\s+(\d+)/.exec(line);
    if (m && cur) { if (m[1] === 'Rss') cur.rss = Number(m[2]); else cur.anon = Number(m[2]); }
  }
  return out;
}

/** Resident pages (KiB) of [start, end) of PID's address space, from /proc/PID/pagemap (bit 63: present). */
function residentKiB(pid: number | 'self', start: number, end: number): number {
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    const first = Math.floor(start / 4096), last = Math.ceil(end / 4096);
    const buf = Buffer.alloc((last - first) * 8);
    readSync(fd, buf, 0, buf.length, first * 8);
    let n = 0;
    for (let i = 0; i < last - first; i++) if (buf.readUInt32LE(i * 8 + 4) & 0x80000000) n++;
    return n * 4;
  } finally {
    closeSync(fd);
  }
}

/** The ICU data symbol's file offset and size in the node binary (exported dynamic symbol), or undefined. */
const icuCache = new Map<string, { vaddr: number; size: number; fileOff: number } | undefined>();
function icuSymbol(binary: string): { vaddr: number; size: number; fileOff: number } | undefined {
  if (icuCache.has(binary)) return icuCache.get(binary);
  let r: { vaddr: number; size: number; fileOff: number } | undefined;
  try {
    const sym = /^([0-9a-f]+) ([0-9a-f]+) R icudt\d+_dat$/m.exec(execFileSync('nm', ['-S', '-D', binary], { encoding: 'utf8', maxBuffer: 1 << 28 }));
    const seg = execFileSync('readelf', ['-lW', binary], { encoding: 'utf8' });
    if (sym) {
      const vaddr = parseInt(sym[1]!, 16), size = parseInt(sym[2]!, 16);
      for (const m of seg.matchAll(/LOAD\s+0x([0-9a-f]+) 0x([0-9a-f]+) 0x[0-9a-f]+ 0x([0-9a-f]+)/g)) {
        const off = parseInt(m[1]!, 16), va = parseInt(m[2]!, 16), sz = parseInt(m[3]!, 16);
        if (vaddr >= va && vaddr < va + sz) r = { vaddr, size, fileOff: off + (vaddr - va) };
      }
    }
  } catch { /* no binutils: ICU not split out */ }
  icuCache.set(binary, r);
  return r;
}

export type Breakdown = Record<string, number>;

/** Resident KiB by group (see the file's comment). */
export function smapsBreakdown(pid: number | 'self' = 'self'): Breakdown {
  const maps = mappings(pid);
  const binary = readlinkSync(`/proc/${pid}/exe`);
  const b: Breakdown = {};
  const add = (k: string, v: number): void => { b[k] = (b[k] ?? 0) + v; };
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i]!;
    if (m.rss === 0) continue;
    const lib = m.path.split('/').pop() ?? '';
    if (m.path === binary) {
      if (m.perms.startsWith('r-x')) add('node text', m.rss);
      else if (m.perms.startsWith('rw')) add('node data (rw)', m.rss);
      else {
        const icu = icuSymbol(binary);
        const lo = icu ? Math.max(m.start, m.start + (icu.fileOff - m.offset)) : 0;
        const hi = icu ? Math.min(m.end, m.start + (icu.fileOff + icu.size - m.offset)) : 0;
        const icuKiB = icu && hi > lo ? residentKiB(pid, lo, hi) : 0;
        add('node rodata (ICU data)', icuKiB);
        add('node rodata (other)', m.rss - icuKiB);
      }
    } else if (m.path.endsWith('.node')) add('addon (.node)', m.rss);
    else if (/^lib(bpf|elf|z)\.so/.test(lib)) add('libbpf + libelf + libz', m.rss);
    else if (/^lib(c|m|stdc\+\+|gcc_s)\.so|^ld-linux/.test(lib)) add('libc, libm, libstdc++, ld.so', m.rss);
    else if (m.path === '[heap]') add('malloc main arena ([heap])', m.rss);
    else if (m.path === '[stack]') add('main thread stack', m.rss);
    else if (m.path.startsWith('[')) add(`other ${m.path}`, m.rss);
    else if (m.path !== '') add(`other files`, m.rss);
    else if (m.perms.includes('x')) add('JIT code (anon rwx/r-x)', m.rss);
    else {
      const prev = maps[i - 1], next = maps[i + 1];
      const ARENA = 64 << 20; // glibc's HEAP_MAX_SIZE on 64-bit: a thread arena is a 64 MiB-aligned reservation, used from its start
      // A thread stack: an anonymous rw mapping of exactly 8 MiB (glibc's default, RLIMIT_STACK) right after its PROT_NONE guard page.
      if (prev && prev.perms.startsWith('---') && prev.end === m.start && m.end - m.start === 8 << 20) add('thread stacks', m.rss);
      else if (m.start % ARENA === 0 && next && next.perms.startsWith('---') && next.start === m.end && next.end === m.start + ARENA) add('malloc thread arenas', m.rss);
      else add('other anonymous (V8 heap spaces)', m.rss);
    }
  }
  return b;
}

/** The breakdown as MiB, rounded to 0.1. */
export function smapsMiB(pid: number | 'self' = 'self'): Breakdown {
  const o: Breakdown = {};
  for (const [k, v] of Object.entries(smapsBreakdown(pid))) o[k] = +(v / 1024).toFixed(1);
  return o;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const pid = process.argv[2];
  if (pid) console.log(JSON.stringify(smapsMiB(Number(pid))));
  else {
    // An empty node, measured from outside 300 ms after it started.
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 5000)'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 300));
    console.log(JSON.stringify({ emptyNode: true, ...smapsMiB(child.pid!) }));
    child.kill();
  }
}
