;; Philox-4x32-10 (Salmon et al., SC 2011), the block function of @dictlearn/core's random.ts,
;; for the synthetic source's per-sample streams. build-philox-wasm.mjs assembles this file into
;; the bytes embedded in src/philox-wasm.ts; the tests check it against core's philox4x32.
;;
;; philox(out, n, c0, c1, c2, c3, k0, k1) writes n blocks at byte offset out: block b is the four
;; output words of counter [c0 + b (mod 2^32), c1, c2, c3] under key [k0, k1].
(module
  (memory (export "memory") 1)
  (func (export "philox")
    (param $out i32) (param $n i32)
    (param $c0 i32) (param $c1 i32) (param $c2 i32) (param $c3 i32)
    (param $k0 i32) (param $k1 i32)
    (local $x0 i32) (local $x1 i32) (local $x2 i32) (local $x3 i32)
    (local $y0 i32) (local $y1 i32) (local $r i32) (local $p0 i64) (local $p1 i64) (local $end i32)
    (local.set $end (i32.add (local.get $out) (i32.shl (local.get $n) (i32.const 4))))
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_u (local.get $out) (local.get $end)))
        (local.set $x0 (local.get $c0))
        (local.set $x1 (local.get $c1))
        (local.set $x2 (local.get $c2))
        (local.set $x3 (local.get $c3))
        (local.set $y0 (local.get $k0))
        (local.set $y1 (local.get $k1))
        (local.set $r (i32.const 10))
        (loop $rounds
          (local.set $p0 (i64.mul (i64.const 0xD2511F53) (i64.extend_i32_u (local.get $x0))))
          (local.set $p1 (i64.mul (i64.const 0xCD9E8D57) (i64.extend_i32_u (local.get $x2))))
          (local.set $x0 (i32.xor (i32.xor (i32.wrap_i64 (i64.shr_u (local.get $p1) (i64.const 32))) (local.get $x1)) (local.get $y0)))
          (local.set $x1 (i32.wrap_i64 (local.get $p1)))
          (local.set $x2 (i32.xor (i32.xor (i32.wrap_i64 (i64.shr_u (local.get $p0) (i64.const 32))) (local.get $x3)) (local.get $y1)))
          (local.set $x3 (i32.wrap_i64 (local.get $p0)))
          (local.set $y0 (i32.add (local.get $y0) (i32.const 0x9E3779B9)))
          (local.set $y1 (i32.add (local.get $y1) (i32.const 0xBB67AE85)))
          (local.set $r (i32.sub (local.get $r) (i32.const 1)))
          (br_if $rounds (local.get $r)))
        (i32.store offset=0 (local.get $out) (local.get $x0))
        (i32.store offset=4 (local.get $out) (local.get $x1))
        (i32.store offset=8 (local.get $out) (local.get $x2))
        (i32.store offset=12 (local.get $out) (local.get $x3))
        (local.set $c0 (i32.add (local.get $c0) (i32.const 1)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (br $blocks))))
)
