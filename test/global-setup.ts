/** Runs once before the suite: sweeps leftovers of earlier crashed runs (own prefix only). */
export default async function setup(): Promise<void> {
  try {
    const { sweepLeftovers } = await import('../lab/sweep.js');
    await sweepLeftovers();
  } catch (e) {
    if ((e as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw e;
  }
}
