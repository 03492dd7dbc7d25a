/**
 * Memory the agent gives back after a burst. A first sync reads, parses and drops the whole
 * state (10,000 Services x 10 endpoints: tens of MiB of file text, YAML trees and Buffers);
 * glibc's malloc keeps the freed pages mapped and RSS keeps counting them. malloc_trim(0)
 * returns them: measured 13-17 MiB of RSS on that model (docs/agent-model.md).
 */
import { mallocTrim } from '../../native/index.js';

/** Returns freed malloc memory to the kernel; whether any was released. */
export function releaseFreedMemory(): boolean {
  return mallocTrim();
}
