import { type GradFn, type OpAttrs, runOp } from '../engine.js';
import { check, DictlearnError, fmtShape } from '../errors.js';
import { broadcastShapes } from '../shape.js';
import { Tensor } from '../tensor.js';
import { fill } from './create.js';
import { sum } from './reduce.js';
import { reshape } from './shape-ops.js';

/** A tensor, or a plain number that is broadcast as a scalar of the other operand's dtype. */
export type TensorLike = Tensor | number;

/** Checks a tensor is float32 for an op that only makes sense on floats. */
export function requireFloat(op: string, t: Tensor, what = 'input'): void {
  check(t.dtype === 'float32', op, () => `${what} must be float32, got ${t.dtype} (${t})`);
}

function asTensor(op: string, x: TensorLike, like: Tensor): Tensor {
  if (x instanceof Tensor) return x;
  if (typeof x !== 'number') throw new DictlearnError(op, `expected a Tensor or a number, got ${typeof x}`);
  return fill([], x, { dtype: like.dtype, backend: like.backend });
}

/**
 * Sums a broadcast gradient back to the shape of the operand it came from
 * (over leading axes the operand lacked and axes where it had size 1).
 */
export function sumTo(dy: Tensor, shape: readonly number[]): Tensor {
  if (dy.shape.length === shape.length && dy.shape.every((d, i) => d === shape[i])) return dy;
  const lead = dy.shape.length - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < dy.shape.length; i++) {
    if (i < lead || (shape[i - lead] === 1 && dy.shape[i] !== 1)) axes.push(i);
  }
  return reshape(sum(dy, axes, true), shape);
}

/** Unary elementwise ops: one input, output of its shape. */
type UnaryOp = 'neg' | 'abs' | 'sign' | 'square' | 'sqrt' | 'exp' | 'log' | 'pow' | 'relu' | 'step' | 'cast';
/** Binary elementwise ops: two broadcast operands. */
type BinaryOp =
  | 'add'
  | 'sub'
  | 'mul'
  | 'div'
  | 'maximum'
  | 'minimum'
  | 'greater'
  | 'greaterEqual'
  | 'less'
  | 'lessEqual'
  | 'equal'
  | 'notEqual';

function unary<Op extends UnaryOp>(
  op: Op,
  x: Tensor,
  attrs: OpAttrs[Op],
  grad?: (x: Tensor, y: Tensor, dy: Tensor) => Tensor,
  floatOnly = true,
): Tensor {
  if (!(x instanceof Tensor))
    throw new DictlearnError(op, `expected a Tensor, got ${x === null ? 'null' : typeof x}`);
  if (floatOnly) requireFloat(op, x);
  return runOp(op, [x], attrs, {
    grad: grad ? (inputs, outputs) => ((dys) => [grad(inputs[0], outputs[0], dys[0])]) as GradFn : undefined,
  })[0];
}

/** −x. */
export function neg(x: Tensor): Tensor {
  return unary('neg', x, {}, (_x, _y, dy) => neg(dy), false);
}
/** |x|. */
export function abs(x: Tensor): Tensor {
  return unary('abs', x, {}, (x, _y, dy) => mul(dy, sign(x)), false);
}
/** −1, 0 or 1 (NaN stays NaN). Its gradient is zero. */
export function sign(x: Tensor): Tensor {
  return unary('sign', x, {}, undefined, false);
}
/** x². */
export function square(x: Tensor): Tensor {
  return unary('square', x, {}, (x, _y, dy) => mul(dy, mul(x, 2)), false);
}
/** √x (NaN for x < 0). */
export function sqrt(x: Tensor): Tensor {
  return unary('sqrt', x, {}, (_x, y, dy) => div(mul(dy, 0.5), y));
}
/** eˣ. */
export function exp(x: Tensor): Tensor {
  return unary('exp', x, {}, (_x, y, dy) => mul(dy, y));
}
/** Natural logarithm (−Inf at 0, NaN below). */
export function log(x: Tensor): Tensor {
  return unary('log', x, {}, (x, _y, dy) => div(dy, x));
}
/** xᵖ for a scalar exponent p. */
export function pow(x: Tensor, p: number): Tensor {
  check(typeof p === 'number', 'pow', () => `exponent must be a number, got ${typeof p}`);
  return unary('pow', x, { p }, (x, _y, dy) => mul(dy, mul(pow(x, p - 1), p)));
}
/** max(x, 0). The gradient at 0 is 0. */
export function relu(x: Tensor): Tensor {
  return unary('relu', x, {}, (x, _y, dy) => reluGrad(dy, x));
}

/**
 * relu(x + b) for x [..., n] and a bias b [n]: an SAE encoder's last step, which backends may
 * fuse into one pass. Its gradient uses the output (y > 0 ⇔ x + b > 0).
 */
export function biasRelu(x: Tensor, b: Tensor): Tensor {
  requireFloat('biasRelu', x);
  requireFloat('biasRelu', b, 'bias');
  check(
    b.rank === 1 && x.rank >= 1 && b.shape[0] === x.shape[x.rank - 1],
    'biasRelu',
    () =>
      `bias must be [${x.shape[x.rank - 1]}] for x of shape [${x.shape.join(', ')}], got [${b.shape.join(', ')}]`,
  );
  return runOp(
    'biasRelu',
    [x, b],
    {},
    {
      composition: () => relu(add(x, b)),
      grad: (_inputs, outputs) => (dys, needs) => {
        const dpre = reluGrad(dys[0], outputs[0]);
        return [dpre, needs[1] ? sumTo(dpre, [b.shape[0]]) : null];
      },
    },
  )[0];
}

/** dy where x > 0, else 0: the gradient of {@link relu} (backends may fuse it into one pass). */
export function reluGrad(dy: Tensor, x: Tensor): Tensor {
  return runOp('reluGrad', [dy, x], {}, { composition: () => mul(dy, greater(x, 0)) })[0];
}
/**
 * 1 where x > threshold, else 0 (float32). Its gradient is zero; use `customGrad` for a
 * straight-through estimate (JumpReLU).
 */
export function step(x: Tensor, threshold = 0): Tensor {
  return unary('step', x, { threshold }, undefined);
}
/** Converts between float32 and int32 (float → int truncates toward zero). */
export function cast(x: Tensor, dtype: 'float32' | 'int32'): Tensor {
  if (dtype !== 'float32' && dtype !== 'int32') {
    throw new DictlearnError('cast', `unknown dtype '${String(dtype)}'; expected 'float32' or 'int32'`);
  }
  if (x.dtype === dtype) return x;
  return unary('cast', x, { dtype }, undefined, false);
}

function binary(
  op: BinaryOp,
  a: TensorLike,
  b: TensorLike,
  grad: ((a: Tensor, b: Tensor, y: Tensor, dy: Tensor, needs: boolean[]) => (Tensor | null)[]) | undefined,
  floatOnly: boolean,
): Tensor {
  if (!(a instanceof Tensor) && !(b instanceof Tensor)) {
    throw new DictlearnError(op, 'at least one operand must be a Tensor');
  }
  const ta = asTensor(op, a, b as Tensor);
  const tb = asTensor(op, b, ta);
  check(ta.dtype === tb.dtype, op, () => `dtypes differ: ${ta.dtype} and ${tb.dtype}; cast() one of them`);
  if (floatOnly) requireFloat(op, ta, 'operands');
  const shape = broadcastShapes(op, ta.shape, tb.shape);
  return runOp(
    op,
    [ta, tb],
    { shape },
    {
      grad: grad
        ? (inputs, outputs) => (dys, needs) => {
            const [ga, gb] = grad(inputs[0], inputs[1], outputs[0], dys[0], needs);
            return [ga ? sumTo(ga, inputs[0].shape) : null, gb ? sumTo(gb, inputs[1].shape) : null];
          }
        : undefined,
    },
  )[0];
}

/** a + b (broadcasting). */
export function add(a: TensorLike, b: TensorLike): Tensor {
  return binary('add', a, b, (_a, _b, _y, dy) => [dy, dy], false);
}
/** a − b (broadcasting). */
export function sub(a: TensorLike, b: TensorLike): Tensor {
  return binary('sub', a, b, (_a, _b, _y, dy, needs) => [dy, needs[1] ? neg(dy) : null], false);
}
/** Throws naming `op` unless float a and b have the same shape (ops that do not broadcast). */
export function requireSameShape(op: string, a: Tensor, b: Tensor): void {
  requireFloat(op, a, 'a');
  requireFloat(op, b, 'b');
  check(
    a.rank === b.rank && a.shape.every((d, i) => d === b.shape[i]),
    op,
    () => `a and b must have the same shape, got ${fmtShape(a.shape)} and ${fmtShape(b.shape)}`,
  );
}

/**
 * (a − b)·s for same-shape a and b and a one-element s: what `mul(sub(a, b), s)` computes
 * (each result rounded as those ops round it), where a backend's kernel holds no temporary for
 * a − b (a reconstruction error's gradient over a whole batch). With `inPlace` the kernel may
 * write the result over a, which the caller must own.
 */
export function scaledDifference(
  a: Tensor,
  b: Tensor,
  s: Tensor,
  options: { inPlace?: boolean } = {},
): Tensor {
  const op = 'scaledDifference';
  requireSameShape(op, a, b);
  requireFloat(op, s, 's');
  check(s.size === 1, op, () => `s must hold one value, got shape ${fmtShape(s.shape)}`);
  return runOp(
    op,
    [a, b, s],
    { inPlace: options.inPlace ?? false },
    { composition: () => mul(sub(a, b), reshape(s, [])) },
  )[0];
}
/** a · b elementwise (broadcasting). */
export function mul(a: TensorLike, b: TensorLike): Tensor {
  return binary(
    'mul',
    a,
    b,
    (a, b, _y, dy, needs) => [needs[0] ? mul(dy, b) : null, needs[1] ? mul(dy, a) : null],
    false,
  );
}
/** a / b elementwise (broadcasting; float32 only). */
export function div(a: TensorLike, b: TensorLike): Tensor {
  return binary(
    'div',
    a,
    b,
    (_a, b, y, dy, needs) => [needs[0] ? div(dy, b) : null, needs[1] ? neg(div(mul(dy, y), b)) : null],
    true,
  );
}
/** Elementwise maximum. On ties the gradient goes to `a`. NaN propagates. */
export function maximum(a: TensorLike, b: TensorLike): Tensor {
  return binary(
    'maximum',
    a,
    b,
    (a, b, _y, dy, needs) => [
      needs[0] ? mul(dy, greaterEqual(a, b)) : null,
      needs[1] ? mul(dy, less(a, b)) : null,
    ],
    false,
  );
}
/** Elementwise minimum. On ties the gradient goes to `a`. NaN propagates. */
export function minimum(a: TensorLike, b: TensorLike): Tensor {
  return binary(
    'minimum',
    a,
    b,
    (a, b, _y, dy, needs) => [
      needs[0] ? mul(dy, lessEqual(a, b)) : null,
      needs[1] ? mul(dy, greater(a, b)) : null,
    ],
    false,
  );
}
/** 1 where a > b, else 0 (float32 mask). */
export function greater(a: TensorLike, b: TensorLike): Tensor {
  return binary('greater', a, b, undefined, false);
}
/** 1 where a ≥ b, else 0. */
export function greaterEqual(a: TensorLike, b: TensorLike): Tensor {
  return binary('greaterEqual', a, b, undefined, false);
}
/** 1 where a < b, else 0. */
export function less(a: TensorLike, b: TensorLike): Tensor {
  return binary('less', a, b, undefined, false);
}
/** 1 where a ≤ b, else 0. */
export function lessEqual(a: TensorLike, b: TensorLike): Tensor {
  return binary('lessEqual', a, b, undefined, false);
}
/** 1 where a = b, else 0. */
export function equal(a: TensorLike, b: TensorLike): Tensor {
  return binary('equal', a, b, undefined, false);
}
/** 1 where a ≠ b, else 0 (NaN ≠ NaN). */
export function notEqual(a: TensorLike, b: TensorLike): Tensor {
  return binary('notEqual', a, b, undefined, false);
}

/** `a` where `cond` is non-zero, else `b` (all three broadcast). */
export function where(cond: Tensor, a: TensorLike, b: TensorLike): Tensor {
  if (!(cond instanceof Tensor))
    throw new DictlearnError('where', `cond must be a Tensor, got ${typeof cond}`);
  const like = a instanceof Tensor ? a : b instanceof Tensor ? b : null;
  const ta = like ? asTensor('where', a, like) : fill([], a as number, { backend: cond.backend });
  const tb = asTensor('where', b, ta);
  check(ta.dtype === tb.dtype, 'where', () => `a and b dtypes differ: ${ta.dtype} and ${tb.dtype}`);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, ta.shape), tb.shape);
  return runOp(
    'where',
    [cond, ta, tb],
    { shape },
    {
      grad: (inputs) => (dys, needs) => {
        const [c, x, y] = inputs;
        const dy = dys[0];
        const mask = notEqual(c, 0);
        return [
          null,
          needs[1] ? sumTo(mul(dy, mask), x.shape) : null,
          needs[2] ? sumTo(mul(dy, sub(1, mask)), y.shape) : null,
        ];
      },
    },
  )[0];
}
