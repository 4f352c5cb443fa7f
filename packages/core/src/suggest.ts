/**
 * "Did you mean …?" for unknown names in configs and options: the known name nearest to a
 * typo, so an error can point at the field the user meant.
 */

/**
 * The known name nearest to `name`, if any: one of `aliases` (names other libraries use, keyed
 * by their normalised form), else one equal ignoring case, `_` and `-`, else the nearest within
 * two edits (Levenshtein) of the normalised forms.
 */
export function closestName(
  name: string,
  known: readonly string[],
  aliases: Readonly<Record<string, string>> = {},
): string | undefined {
  const norm = (t: string) => t.toLowerCase().replace(/[_-]/g, '');
  const alias = aliases[norm(name)];
  if (alias && known.includes(alias)) return alias;
  const same = known.find((k) => norm(k) === norm(name));
  if (same) return same;
  let best: string | undefined;
  let bestDistance = 3;
  for (const k of known) {
    const d = editDistance(norm(name), norm(k));
    if (d < bestDistance) {
      bestDistance = d;
      best = k;
    }
  }
  return best;
}

/** Levenshtein distance (names are short: the quadratic table is fine). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
