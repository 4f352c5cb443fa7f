/** Learning-rate and sparsity schedules of DL's `trainSAE` trainers (REFERENCE "Standard"). */
export interface ScheduleOptions {
  /** Total training steps. */
  steps: number;
  /** Linear lr warm-up from 0 over this many steps. */
  warmupSteps: number;
  /** Linear decay of the lr to 0 from this step to the end (undefined = none). */
  decayStart?: number;
  /** Resampling period: the warm-up restarts after each resample (undefined = none). */
  resampleSteps?: number;
  /** Linear sparsity warm-up over this many steps (0 = none). */
  sparsityWarmupSteps: number;
}

/**
 * The lr multiplier at a (0-based) step, as DL's LambdaLR: warm-up `min(t / warmup, 1)` (with t
 * counted from the last resample), times the linear decay `(steps − t) / (steps − decayStart)`
 * once t ≥ decayStart. Step 0 has multiplier 0, as in DL.
 */
export function lrMultiplier(step: number, o: ScheduleOptions): number {
  const sinceResample = o.resampleSteps ? step % o.resampleSteps : step;
  let m = o.warmupSteps > 0 ? Math.min(sinceResample / o.warmupSteps, 1) : 1;
  if (o.decayStart !== undefined && step >= o.decayStart) {
    m *= Math.max(0, (o.steps - step) / (o.steps - o.decayStart));
  }
  return m;
}

/** The sparsity warm-up factor s(t) = min(t / sparsityWarmupSteps, 1) (1 with no warm-up). */
export function sparsityScale(step: number, o: ScheduleOptions): number {
  return o.sparsityWarmupSteps > 0 ? Math.min(step / o.sparsityWarmupSteps, 1) : 1;
}
