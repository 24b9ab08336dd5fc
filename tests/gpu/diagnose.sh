# Sourced by `suite.sh with-rgpu tests/gpu/diagnose.sh`: where the time of the training benches and
# the managed and mapped memory bench goes through RGPU (RGPU_CALL_STATS tables in
# $results/stats-*.txt, each bench's own figures beside them), and every call of the cases named in
# GPU_DIAGNOSE_TRACE (RGPU_LOG=trace, $results/trace-log-*.txt).
nvcc -O2 -arch=sm_90 -o "$work/shared_memory_bench" tests/gpu/programs/shared_memory_bench.cu
through_rgpu() {  # output file, command...
  local out=$1; shift
  timeout -k 5 150 bash -c "$(declare -f remote); remote \"\$@\"" _ "$@" > "$out" 2>&1 || echo "exit status $?" >> "$out"
}
for program in ${GPU_STATS_PROGRAMS-torch_gpt torch_convnet}; do
  RGPU_CALL_STATS=$results/stats-$program.txt through_rgpu "$results/stats-$program.out" \
    python3 "tests/gpu/programs/$program.py" --bench 10
  log "$program: $(grep _step_ms "$results/stats-$program.out")"
  head -30 "$results/stats-$program.txt" | tee -a "$results/summary.txt"
done
if [[ -z ${GPU_STATS_PROGRAMS+set} ]]; then
  RGPU_CALL_STATS=$results/stats-shared_memory_bench.txt through_rgpu "$results/stats-shared_memory_bench.out" "$work/shared_memory_bench"
  tee -a "$results/summary.txt" < "$results/stats-shared_memory_bench.out"
  head -30 "$results/stats-shared_memory_bench.txt" | tee -a "$results/summary.txt"
fi
for case in ${GPU_DIAGNOSE_TRACE:-}; do
  command=(python3 "tests/gpu/programs/$case.py")
  if [[ ! -f tests/gpu/programs/$case.py ]]; then
    nvcc -O2 -arch=sm_90 -o "$work/$case" "tests/gpu/programs/$case.cu" -L/usr/local/cuda/lib64/stubs -lcuda
    command=("$work/$case")
  fi
  RGPU_LOG=trace through_rgpu "$results/trace-log-$case.txt" "${command[@]}"
  log "$case traced: $(wc -l < "$results/trace-log-$case.txt") lines"
done
# GPU_DIAGNOSE_SMI=1: what nvidia-smi does with NVML's private table (c4fe3e6c-…): the slots it
# calls natively, and the code of those slots and of nvidia-smi's calls through slot 26.
if [[ -n ${GPU_DIAGNOSE_SMI:-} ]]; then
  gcc -O1 -shared -fPIC -I/usr/local/cuda/include -o "$work/export_table_trace.so" tests/gpu/tools/export_table_trace.c -ldl -lpthread
  EXPORT_TABLE_TRACE=$results/smi-trace.txt LD_PRELOAD=$work/export_table_trace.so nvidia-smi -L > "$results/smi-L.out" 2>&1 || true
  awk '/^table / {inside = /c4fe3e6c/} inside' "$results/smi-trace.txt" > "$results/smi-table.txt"
  for slot in 26 81 213 214 215; do
    entry=$(awk -v s="slot $slot:" 'index($0, "  " s) == 1 {print $3; exit}' "$results/smi-table.txt")
    [[ -n $entry ]] || continue
    objdump -d --no-show-raw-insn --start-address=$((${entry#*+})) --stop-address=$((${entry#*+} + 0x400)) "${entry%+*}" \
      > "$results/smi-slot-$slot.txt" 2>&1 || true
  done
  objdump -d --no-show-raw-insn "$(command -v nvidia-smi)" 2>/dev/null | grep -B60 -A8 'call.*\*0xd0(%' | head -400 > "$results/smi-calls-26.txt" || true
  log "nvidia-smi diagnosis: $(wc -l < "$results/smi-table.txt") table lines"
  for args in "-L" "--query-gpu=name,uuid,memory.total,pci.bus_id --format=csv" ""; do
    # shellcheck disable=SC2086
    through_rgpu "$results/smi-rgpu.txt.tmp" nvidia-smi $args
    { echo "== nvidia-smi $args through RGPU"; cat "$results/smi-rgpu.txt.tmp"; } | tee -a "$results/summary.txt"
  done
fi
