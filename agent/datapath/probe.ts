/**
 * The kernel features kernway uses, as the addon probes them (`kernway probe`). The
 * datapath is the only part that talks to the addon; everything else asks it.
 */
export { probe as probeKernel, type Probe } from '../../native/probe.js';
