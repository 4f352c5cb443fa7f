/**
 * `@dictlearn/core/testing`: the backend conformance suite and the float64 gradient checker.
 * A backend package runs every check with one call in a vitest file:
 *
 * ```ts
 * import { conformanceSuite } from '@dictlearn/core/testing';
 * conformanceSuite({ backend: 'webgpu', reference: 'cpu', gradientBackend: 'cpu64' });
 * ```
 * @packageDocumentation
 */
export { compareValues, flat, lcgValues, type Tolerance } from './compare.js';
export {
  type ConformanceOptions,
  conformanceSuite,
  type FixtureCase,
  type FixtureTensor,
  OP_FIXTURES,
} from './conformance.js';
export {
  analyticGradients,
  checkGradients,
  type GradCheckOptions,
  type GradCheckResult,
} from './gradcheck.js';
export { OP_TABLE, type OpRunner } from './op-table.js';
export {
  checkTrainingSteps,
  describeStepFixture,
  type StepFixture,
  type StepFixtureCase,
  type StepFixtureConfig,
  type StepFixtureSizes,
  type StepFixtureStep,
  type StepFixtureTensor,
  type TrainingStepsOptions,
} from './step-fixture.js';
