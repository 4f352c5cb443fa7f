"""Times op(A)·op(B) in numpy for each product spec (best of reps). Prints JSON.
usage: python3 numpy_matmul.py SPECS_JSON REPS
"""
import json, sys, time
import numpy as np
specs = json.loads(sys.argv[1]); reps = int(sys.argv[2])
rng = np.random.default_rng(0)
out = []
for s in specs:
    a = rng.standard_normal((s['k'], s['m']) if s['transA'] else (s['m'], s['k']), dtype=np.float32)
    b = rng.standard_normal((s['n'], s['k']) if s['transB'] else (s['k'], s['n']), dtype=np.float32)
    A = a.T if s['transA'] else a
    B = b.T if s['transB'] else b
    A @ B
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter(); A @ B; best = min(best, time.perf_counter() - t)
    out.append(best)
print(json.dumps({'version': np.__version__, 'seconds': out}))
