/** What a benchmark run is asked to do, and one raw measurement of it (shared by the run and its analysis). */
import type { ModeName } from './modes.js';
import type { Sample, ToolSettings } from './tools.js';
import type { WorkloadName } from './workloads.js';

export interface BenchOptions {
  modes: ModeName[];
  services: number[];
  workloads: WorkloadName[];
  rounds: number;
  /** Seconds per measurement. */
  seconds: number;
  quick: boolean;
  settings: ToolSettings;
}

export interface RawSample {
  services: number;
  round: number;
  workload: WorkloadName;
  mode: ModeName;
  /** Position of the mode in this round's order for this workload (0 = first). */
  order: number;
  startedAt: string;
  seconds: number;
  values?: Sample;
  error?: string;
}
