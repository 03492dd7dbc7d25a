/**
 * BpfRingBuffer: the records of a BPF ring buffer map (BPF_MAP_TYPE_RINGBUF), drained
 * without blocking when the caller asks (a timer, a scrape). Records have one fixed size
 * (the program's struct); a record of another size is skipped and counted.
 *
 *   const rb = BpfRingBuffer.open(obj.map('kw_cm_events'), 120);
 *   const { data, count } = rb.consume();   // count records of 120 bytes in data
 *   rb.close();
 */
import { InvalidArgumentError } from '../common/errors.js';
import { addon } from './load.js';
import { withContext } from './errors.js';
import type { BpfMap } from './map.js';

export class BpfRingBuffer {
  /** Records skipped because their size was not recordSize, since open. */
  skipped = 0;
  private id: number | undefined;
  /** Keeps the map (and its fd) reachable while the ring is open. */
  private constructor(private readonly map: BpfMap, readonly recordSize: number, id: number) {
    this.id = id;
  }

  static open(map: BpfMap, recordSize: number): BpfRingBuffer {
    if (map.type !== 'ringbuf') throw new InvalidArgumentError('map', 'a ringbuf map', `${map.name} (${map.type})`);
    if (!Number.isInteger(recordSize) || recordSize < 1) throw new InvalidArgumentError('recordSize', 'a positive integer', recordSize);
    const id = withContext({ map: map.name }, () => addon().ringbufOpen(map.fd, recordSize));
    return new BpfRingBuffer(map, recordSize, id);
  }

  /** Every record available now. */
  consume(): { data: Buffer; count: number } {
    if (this.id === undefined) return { data: Buffer.alloc(0), count: 0 };
    const id = this.id;
    const r = withContext({ map: this.map.name }, () => addon().ringbufConsume(id));
    this.skipped += r.skipped;
    return { data: r.data, count: r.count };
  }

  close(): void {
    if (this.id === undefined) return;
    addon().ringbufClose(this.id);
    this.id = undefined;
  }
}
