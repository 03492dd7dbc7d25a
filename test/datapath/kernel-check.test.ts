import { describe, expect, it } from 'vitest';
import { checkKernel } from '../../agent/datapath/sock-lb.js';

describe('kernel requirements', () => {
  it('names the kernel version the socket load balancer needs', () => {
    expect(() => checkKernel('5.15.0-91-generic')).toThrow(/Linux 5\.18 or newer.*5\.15\.0-91-generic/);
    expect(() => checkKernel('4.19.0')).toThrow(/KW_KERNEL_TOO_OLD|5\.18/);
    expect(() => checkKernel('6.1.0')).not.toThrow();
  });
});
