#!/usr/bin/env bash
# Same-run comparison of the benchmark ratios of an older commit (OLD_COMMIT, default HEAD~1)
# and the working tree: old benchmark code + old package against new code + new package.
#
#   OLD_COMMIT=REV bash benchmarks/compare.sh                 # every benchmark, the goals' cases (below)
#   OLD_COMMIT=REV bash benchmarks/compare.sh sgd dde         # only these
#   MODE=full OLD_COMMIT=REV bash benchmarks/compare.sh NAME  # full mode (much longer: see ESTIMATE_FULL)
#
# For each benchmark NAME it runs the OLD benchmark code with the OLD package (a git worktree of
# commit $OLD_COMMIT at $OLD (default /tmp/bench_old), PYTHONPATH=$OLD so `import jaxdyn` is the old
# package) and the NEW code with the NEW package (this checkout), back to back (the order alternates
# from one benchmark to the next, so a slow drift of the machine's load does not favour one side),
# then prints NAME | goal | old ratio | new ratio. Run it on a quiet machine.
#
# Mode: the full runs of all six benchmarks take over an hour for old + new, so the default
# (MODE=goals) runs, per benchmark, only the cases its goals are computed from (GOAL_FLAGS).
# sgd, meanfield, curvature and dde run those cases in full mode (dde's --quick lacks the
# tolerance 1e-10, so its headline work-precision point could not be interpolated); neural_ode
# runs its headline case with 20 repeats but without the breakdown; lyapunov runs its --quick
# mode (1000-time-unit trajectories as in full mode, but a 6 s instead of 20 s time budget per
# side, one fresh build instead of 3 for the compile time, and 32 instead of 256 rhos in the
# sweep: the same ratios, noisier, and the sweep ratio is for 32 rhos).
# MODE=full runs every case in full mode. JSON and logs go to $OUT (default /tmp/bench_compare).
# Since the paired ratios (benchmarks/_common.py: `speedups`, `paired`), a goal's ratio is the median
# of the per-round ratios of interleaved rounds; an OLD_COMMIT before them reports the ratio of the
# warm medians: compare such pairs with that in mind (the new JSON keeps it as speedup_of_medians).
set -euo pipefail

MAIN=$(cd "$(dirname "$0")/.." && pwd)
OLD=${OLD:-/tmp/bench_old}
OLD_COMMIT=${OLD_COMMIT:-HEAD~1}
PY=${PY:-python}
OUT=${OUT:-/tmp/bench_compare}
MODE=${MODE:-goals}
ALL=(sgd meanfield curvature neural_ode dde lyapunov)
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=("${ALL[@]}")

# the flags of MODE=goals: only the cases the goals need
declare -A GOAL_FLAGS=(
  [sgd]=""
  [meanfield]="--cases dense_n2000"
  [curvature]="--cases top_eigenvalue,hvp_over_grad"
  [neural_ode]="--quick --repeats 20 --cases matched"
  [dde]="--cases mackey_glass,batch,neural_dde_step"
  [lyapunov]="--quick --cases trajectory,sweep"
)
# minutes per benchmark for ONE side (old or new): MODE=goals as measured with this script on the
# shared 2-core machine (load average 3-9) on 2026-12-07, rounded up (all six, old + new: about
# 11.5 min measured); MODE=full a rough guess from the published runs (not measured here)
declare -A ESTIMATE_GOALS=([sgd]=1 [meanfield]=1.2 [curvature]=1 [neural_ode]=2 [dde]=1 [lyapunov]=0.6)
declare -A ESTIMATE_FULL=([sgd]=2.5 [meanfield]=4 [curvature]=3 [neural_ode]=3 [dde]=8 [lyapunov]=14)

total=0
for n in "${NAMES[@]}"; do
  if [ "$MODE" = full ]; then m=${ESTIMATE_FULL[$n]}; else m=${ESTIMATE_GOALS[$n]}; fi
  total=$(awk -v a="$total" -v b="$m" 'BEGIN{print a + 2 * b}')
done
echo "bench_compare: ${NAMES[*]} ($MODE mode), old = $OLD_COMMIT, new = $(git -C "$MAIN" rev-parse --short HEAD)"
echo "estimated total runtime: ~${total} min (old + new; 2 x per-benchmark estimates)"

want=$(git -C "$MAIN" rev-parse "$OLD_COMMIT^{commit}")
if [ ! -e "$OLD/benchmarks/run.py" ]; then
  git -C "$MAIN" worktree add --detach "$OLD" "$want" >/dev/null
elif [ "$(git -C "$OLD" rev-parse HEAD)" != "$want" ]; then
  git -C "$OLD" checkout -q --detach "$want"
fi
mkdir -p "$OUT"
start=$(date +%s)

run_side() {  # side name
  local side=$1 name=$2 tree flags=()
  if [ "$side" = old ]; then tree=$OLD; else tree=$MAIN; fi
  [ "$MODE" = full ] || read -r -a flags <<<"${GOAL_FLAGS[$name]}"
  local t0; t0=$(date +%s)
  if (cd "$tree" && PYTHONPATH="$tree" "$PY" benchmarks/run.py "$name" "${flags[@]}" \
        --output "$OUT/${side}_${name}.json" >"$OUT/${side}_${name}.log" 2>&1); then
    echo "  $side $name: $(( $(date +%s) - t0 )) s"
  else
    echo "  $side $name: FAILED after $(( $(date +%s) - t0 )) s (see $OUT/${side}_${name}.log)"
  fi
}

i=0
for n in "${NAMES[@]}"; do
  if [ $((i % 2)) -eq 0 ]; then run_side old "$n"; run_side new "$n"
  else run_side new "$n"; run_side old "$n"; fi
  i=$((i + 1))
done

"$PY" - "$OUT" "${NAMES[@]}" <<'EOF'
import json, os, sys

out, names = sys.argv[1], sys.argv[2:]
# old single-goal JSONs (before the harness's Goal records): the goal names the new code uses
LEGACY = {"sgd": [("matrix_free_vs_dense", "speedup")],
          "neural_ode": [("training_step_vs_torchdiffeq", "speedup")],
          "meanfield": [("dense_vs_kuramoto", "speedup"),
                        ("dense_vs_kuramoto_at_no_larger_error", "speedup_at_no_larger_error")],
          "curvature": [("top_eigenvalue_vs_pyhessian", "speedup"), ("hvp_over_grad", "hvp_over_grad")]}
LOWER_IS_BETTER = {"compile_vs_lyapax", "hvp_over_grad"}


def goals(path, name):
    if not os.path.exists(path):
        return {}
    g = json.load(open(path)).get("goal") or {}
    if g.get("goals"):
        return {x["name"]: x.get("measured", x.get("value")) for x in g["goals"]}
    return {goal: g.get(key) for goal, key in LEGACY.get(name, [])}


def fmt(x):
    return "-" if x is None else f"{x:.3g}"


rows = [("NAME", "goal", "old ratio", "new ratio", "new/old", "better is")]
for name in names:
    old = goals(f"{out}/old_{name}.json", name)
    new = goals(f"{out}/new_{name}.json", name)
    for goal in dict.fromkeys([*old, *new]):
        o, n = old.get(goal), new.get(goal)
        rel = "-" if o in (None, 0) or n is None else f"{n / o:.2f}"
        rows.append((name, goal, fmt(o), fmt(n), rel, "lower" if goal in LOWER_IS_BETTER else "higher"))
w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
for k, r in enumerate(rows):
    print(" | ".join(c.ljust(x) for c, x in zip(r, w)))
    if k == 0:
        print("-+-".join("-" * x for x in w))
EOF
echo "total runtime: $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s; JSON and logs in $OUT"
