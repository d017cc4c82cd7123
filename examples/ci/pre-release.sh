#!/usr/bin/env bash
# Pre-release collapse check: audit a generator, write report.html, and fail (exit 1) when a
# release gate is crossed. Usage:
#
#   examples/ci/pre-release.sh MODEL [BASELINE_RUN_DIR]
#
# MODEL is anything `gancheck audit` takes (an .onnx/.pt file, package.module:attr, a folder of
# images). With BASELINE_RUN_DIR (the audit of the generator you shipped last), the new run is
# also compared with it and regressions beyond the allowed changes fail the job.
#
# Settings come from the environment (defaults in brackets):
#   GANCHECK_OUT [gancheck-run]   run directory (report.html, report.json, junit-*.xml)
#   GANCHECK_N [1e4]  GANCHECK_ANCHORS [1000]  GANCHECK_SEED [0]  GANCHECK_EMBEDDER [pixel]
#   GANCHECK_GATES   gates on this run, separated by ';'
#                    [mccs.mean_ci_high>0.45;worst_mode.neighbor_fraction_ci_high>0.02]
#   GANCHECK_MAX_INCREASE  allowed increases against the baseline, ';'-separated
#                    [mccs.mean=0.02;worst_mode.neighbor_fraction=0.01]
# Exit status: 0 all gates hold, 1 a gate failed, 2 a usage or input error.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 MODEL [BASELINE_RUN_DIR]" >&2
    exit 2
fi
model=$1
baseline=${2:-}
out=${GANCHECK_OUT:-gancheck-run}
gancheck=${GANCHECK:-gancheck}
gates=${GANCHECK_GATES:-"mccs.mean_ci_high>0.45;worst_mode.neighbor_fraction_ci_high>0.02"}
increases=${GANCHECK_MAX_INCREASE:-"mccs.mean=0.02;worst_mode.neighbor_fraction=0.01"}

# 1. The audit itself; it fails only on errors (exit 2), never on a gate.
$gancheck audit "$model" --out "$out" --overwrite --quiet \
    --n "${GANCHECK_N:-1e4}" --anchors "${GANCHECK_ANCHORS:-1000}" --seed "${GANCHECK_SEED:-0}" \
    --embedder "${GANCHECK_EMBEDDER:-pixel}"

# 2. The human report and the gates on this run (including confidence bounds), as JUnit.
gate_args=()
IFS=';' read -ra items <<< "$gates"
for g in "${items[@]}"; do [[ -n $g ]] && gate_args+=(--fail-if "$g"); done
status=0
$gancheck report "$out" "${gate_args[@]}" --junit "$out/junit-gates.xml" || status=$?
if [[ $status -gt 1 ]]; then exit "$status"; fi

# 3. Regressions against the shipped generator's audit.
if [[ -n $baseline ]]; then
    change_args=()
    IFS=';' read -ra items <<< "$increases"
    for c in "${items[@]}"; do [[ -n $c ]] && change_args+=(--max-increase "$c"); done
    compare_status=0
    $gancheck compare "$baseline" "$out" "${change_args[@]}" --junit "$out/junit-compare.xml" || compare_status=$?
    if [[ $compare_status -gt 1 ]]; then exit "$compare_status"; fi
    if [[ $compare_status -eq 1 ]]; then status=1; fi
fi

if [[ $status -eq 0 ]]; then
    echo "gancheck: all release gates hold; report: $out/report.html"
else
    echo "gancheck: a release gate failed; see $out/report.html" >&2
fi
exit "$status"
