#!/usr/bin/env bash
# The GPU suite: real CUDA programs through RGPU on a machine with an NVIDIA GPU, compared with the
# same programs run directly on it.
#
#   tests/gpu/suite.sh pack   (on the build machine) builds and packs .gpu/: the rgpu binary, the
#                             interpose library and the shared libraries a bare GPU host lacks.
#                             GPU_SUITE_BEFORE=DIR (rgpu and librgpu_cuda_interpose.so of an
#                             earlier build) packs those too: `run` then benches both builds.
#   tests/gpu/suite.sh run [PART...]  (on the GPU host, from the repository root) builds the test programs
#                             with nvcc, runs each natively, then starts `rgpu server` and
#                             `rgpu client` on loopback and runs each again with the interpose
#                             library preloaded, in a mount namespace where /dev/nvidia* and the
#                             real libcuda are hidden.
#   tests/gpu/suite.sh bench  (on the GPU host) only the CUDA and Vulkan benches, through this
#                             build and the packed earlier one in turn (GPU_SUITE_ROUNDS rounds).
#   tests/gpu/suite.sh with-rgpu SCRIPT  (on the GPU host) starts RGPU and sources SCRIPT.
#   tests/gpu/suite.sh trace CASE...  (on the GPU host) runs those Python cases (or commands, such
#                             as "nvidia-smi -L") natively with tools/export_table_trace.c
#                             preloaded: which slots of the driver's and NVML's private tables
#                             they call (results/trace-CASE.txt).
#   tests/gpu/suite.sh collect  packs the results into $OUT (or ./gpu-results).
# RGPU_SERVER_WRAPPER runs the server under a command, e.g. the packed strace:
#   RGPU_SERVER_WRAPPER="env LD_LIBRARY_PATH=$PWD/.gpu/tools/lib $PWD/.gpu/tools/strace -f -qq -c -o gpu-results/syscalls.txt"
# On the device: timeout -k 10 540 bash tests/gpu/suite.sh run; bash tests/gpu/suite.sh collect
set -euo pipefail
cd "$(dirname "$0")/../.."
pack=.gpu

pack() {
  ninja -C build
  rm -rf "$pack"
  # lib/: what the rgpu binary needs; interpose/: RGPU's libcuda.so.1, seen only by applications.
  mkdir -p "$pack/bin" "$pack/lib" "$pack/interpose"
  cp build/daemon/rgpu "$pack/bin/"
  # strace, for RGPU_SERVER_WRAPPER (the system calls a server and its workers make).
  if command -v strace >/dev/null; then
    mkdir -p "$pack/tools/lib"
    cp "$(command -v strace)" "$pack/tools/"
    ldd "$(command -v strace)" | awk '/libunwind/ {print $3}' | xargs -r -I{} cp -L {} "$pack/tools/lib/"
  fi
  cp build/preload/librgpu_cuda_interpose.so build/preload/nvml/librgpu_nvml.so "$pack/interpose/"
  ln -sf librgpu_cuda_interpose.so "$pack/interpose/libcuda.so.1"
  ln -sf librgpu_nvml.so "$pack/interpose/libnvidia-ml.so.1"
  # before/: an earlier build, for a before/after bench in the same run.
  if [[ -n ${GPU_SUITE_BEFORE:-} ]]; then
    [[ -f $GPU_SUITE_BEFORE/rgpu && -f $GPU_SUITE_BEFORE/librgpu_cuda_interpose.so ]] ||
      { echo "GPU_SUITE_BEFORE=$GPU_SUITE_BEFORE lacks rgpu or librgpu_cuda_interpose.so" >&2; return 1; }
    mkdir -p "$pack/before"
    cp -r "$GPU_SUITE_BEFORE"/* "$pack/before/"
    if [[ -f $pack/before/librgpu_vk_icd.so ]]; then
      sed 's|"library_path": *"[^"]*"|"library_path": "./librgpu_vk_icd.so"|' build/icd/rgpu_icd.json > "$pack/before/rgpu_icd.json"
    fi
  fi
  for lib in liburing.so.2 libtomlplusplus.so.3; do
    cp -L "$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')" "$pack/lib/"
  done
  # vulkan/: RGPU's ICD with a manifest that finds it beside itself, the Vulkan test programs,
  # and the Vulkan loader (lib/), which a bare GPU host may lack.
  mkdir -p "$pack/vulkan/lib"
  cp build/icd/librgpu_vk_icd.so build/tests/vulkan_compute build/tests/vulkan_render build/tests/vulkan_threads \
    build/tests/vulkan_bench \
    "$pack/vulkan/"
  sed 's|"library_path": *"[^"]*"|"library_path": "./librgpu_vk_icd.so"|' build/icd/rgpu_icd.json > "$pack/vulkan/rgpu_icd.json"
  cp -L "$(ldconfig -p | awk '$1 == "libvulkan.so.1" {print $NF; exit}')" "$pack/vulkan/lib/"
  if command -v vulkaninfo >/dev/null; then
    # vulkaninfo and the window-system libraries it links, which a GPU server may lack.
    cp "$(command -v vulkaninfo)" "$pack/vulkan/"
    ldd "$(command -v vulkaninfo)" | awk '$3 ~ /^\// {print $3}' |
      grep -Ev '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|ld-linux[^/]*)\.so' |
      xargs -r -I{} cp -L {} "$pack/vulkan/lib/"
  fi
  # The Vulkan loader and GL dispatch libraries NVIDIA's Vulkan driver needs, which a bare GPU
  # host may lack; `run` unpacks them there.
  mkdir -p "$pack/debs"
  (cd "$pack/debs" && apt-get download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null 2>&1) ||
    echo "could not download the loader packages: the GPU host must have them" >&2
  # Debug information would take most of what may travel to the GPU host.
  find "$pack" -type f \( -name '*.so*' -o -perm -u+x \) -exec strip --strip-debug {} + 2>/dev/null || true
  du -sh "$pack"
}

results=/tmp/rgpu-gpu-results   # packed into $OUT (or ./gpu-results) at the end
work=/tmp/rgpu-gpu-suite
log() { echo "== $*" | tee -a "$results/summary.txt"; }

build_programs() {
  mkdir -p "$work"
  local src=tests/gpu/programs
  nvcc -O2 -arch=sm_90 -ptx -o "$work/vector_add.ptx" "$src/vector_add.cu"
  nvcc -O2 -arch=sm_90 -cubin -o "$work/vector_add.cubin" "$src/vector_add.cu"
  g++ -O2 -std=c++17 -I/usr/local/cuda/include -o "$work/driver_vector_add" "$src/driver_vector_add.cpp" \
    -L/usr/local/cuda/lib64/stubs -lcuda
  g++ -O2 -std=c++17 -I/usr/local/cuda/include -o "$work/cuda_bench" bench/cuda_bench.cpp \
    -L/usr/local/cuda/lib64/stubs -lcuda
  nvcc -O2 -arch=sm_90 -o "$work/runtime_vector_add_static" "$src/runtime_vector_add.cu"
  nvcc -O2 -arch=sm_90 -cudart shared -o "$work/runtime_vector_add_shared" "$src/runtime_vector_add.cu"
  nvcc -O2 -arch=sm_90 -o "$work/runtime_kernels" tests/programs/runtime_kernels.cu
  nvcc -O2 -arch=sm_90 -o "$work/host_functions" tests/programs/host_functions.cu
  nvcc -O2 -arch=sm_90 -o "$work/kernel_assert" "$src/kernel_assert.cu"
  nvcc -O2 -arch=sm_90 -o "$work/managed_memory" "$src/managed_memory.cu"
  nvcc -O2 -arch=sm_90 -o "$work/mapped_memory" "$src/mapped_memory.cu"
  nvcc -O2 -arch=sm_90 -o "$work/shared_memory_bench" "$src/shared_memory_bench.cu"
  nvcc -O2 -arch=sm_90 -o "$work/texture_surface" "$src/texture_surface.cu"
  nvcc -O2 -arch=sm_90 -o "$work/vmm" "$src/vmm.cu" -L/usr/local/cuda/lib64/stubs -lcuda
  nvcc -O2 -arch=sm_90 -o "$work/mem_pool" "$src/mem_pool.cu"
  nvcc -O2 -arch=sm_90 -o "$work/graphs" "$src/graphs.cu" -L/usr/local/cuda/lib64/stubs -lcuda
}

start_rgpu() {  # [rgpu binary] [prefix of the log files] [tls: on (default) or off]
  local rgpu=${1:-$PWD/$pack/bin/rgpu} logs=${2:-} tls=${3:-on}
  local server_tls=() client_tls=()
  if [[ $tls == off ]]; then
    client_tls=(--tls off)
    # Builds from before `tls = "off"` existed serve plaintext when they have no certificate.
    if [[ $(LD_LIBRARY_PATH=$PWD/$pack/lib "$rgpu" server --help 2>/dev/null) == *--tls* ]]; then server_tls=(--tls off); fi
  fi
  export XDG_RUNTIME_DIR=$work/run
  mkdir -p "$XDG_RUNTIME_DIR"
  rm -f "$work"/*.pid
  # Each daemon writes its pid file once it listens. The server finds NVIDIA's Vulkan driver
  # through the carried loader.
  LD_LIBRARY_PATH=$PWD/$pack/lib XDG_STATE_HOME=$work/state VK_DRIVER_FILES=$(nvidia_icd) RGPU_VULKAN_LIBRARY=$PWD/$pack/vulkan/lib/libvulkan.so.1 \
    ${RGPU_SERVER_WRAPPER:-} "$rgpu" server --bind 127.0.0.1 --port 19876 ${server_tls[@]+"${server_tls[@]}"} --pid-file "$work/server.pid" \
    2> "$results/${logs}server.log" &
  wait_for "$work/server.pid" || return 1
  # The server's key is trusted on first contact (a fresh known_servers file each start).
  rm -rf "$work/config"
  LD_LIBRARY_PATH=$PWD/$pack/lib XDG_CONFIG_HOME=$work/config "$rgpu" client --server 127.0.0.1:19876 \
    ${client_tls[@]+"${client_tls[@]}"} --pid-file "$work/client.pid" 2> "$results/${logs}client.log" &
  wait_for "$work/client.pid"
}

# Stops what start_rgpu started (SIGTERM, then SIGKILL after 10 s) and waits until it has exited.
stop_rgpu() {
  local f pid pids=()
  for f in client server; do [[ -s $work/$f.pid ]] && pids+=("$(cat "$work/$f.pid")"); done
  for pid in ${pids[@]+"${pids[@]}"}; do
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 200); do
      # Gone, or exited and not yet reaped.
      { kill -0 "$pid" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]]; } || break
      sleep 0.05
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$work"/*.pid
}

wait_for() {
  for _ in $(seq 400); do [[ -s $1 ]] && return 0; sleep 0.05; done
  log "$1 did not appear"; return 1
}

# Runs a command as an application on a host without NVIDIA's driver: the device nodes and the
# real libcuda and libnvidia-ml are hidden, only RGPU's libcuda.so.1 and libnvidia-ml.so.1 are
# there (an earlier build without the NVML library leaves NVIDIA's, which then finds no device).
remote() {
  local lib=$RGPU_INTERPOSE nvml=${RGPU_NVML:-$(dirname "$RGPU_INTERPOSE")/librgpu_nvml.so}
  unshare -m bash -c '
    for d in /dev/nvidia*; do [[ -c $d ]] && mount --bind /dev/null "$d"; done
    for f in $(ldconfig -p | awk "/libcuda.so/ {print \$NF}"); do mount --bind "$0" "$(readlink -f "$f")"; done
    if [[ -f $1 ]]; then
      for f in $(ldconfig -p | awk "/libnvidia-ml.so/ {print \$NF}"); do mount --bind "$1" "$(readlink -f "$f")"; done
    fi
    shift
    exec env LD_PRELOAD="$0" "$@"' "$lib" "$nvml" "$@"
}

nvidia_icd() {
  local f
  # GPU_SUITE_VULKAN_ICD: another driver's manifest (a dry run of the Vulkan cases on lavapipe).
  [[ -n ${GPU_SUITE_VULKAN_ICD:-} ]] && { echo "$GPU_SUITE_VULKAN_ICD"; return; }
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    [[ -f $f ]] && { echo "$f"; return; }
  done
}

# A Vulkan program natively (NVIDIA's driver), or through RGPU's ICD with the GPU hidden.
vulkan_native() { env LD_LIBRARY_PATH="$PWD/$pack/vulkan/lib" VK_DRIVER_FILES="$(nvidia_icd)" "$@"; }
vulkan_remote() {
  unshare -m bash -c '
    for d in /dev/nvidia*; do [[ -c $d ]] && mount --bind /dev/null "$d"; done
    exec "$@"' _ env LD_LIBRARY_PATH="$PWD/$pack/vulkan/lib" VK_DRIVER_FILES="${RGPU_ICD_MANIFEST:-$PWD/$pack/vulkan/rgpu_icd.json}" "$@"
}

run_vulkan_case() {  # name, command...
  local name=$1; shift
  echo "$(date +%T) $name" >> "$results/progress.txt"
  timeout -k 5 90 bash -c "$(declare -f nvidia_icd vulkan_native); pack=$pack; vulkan_native \"\$@\"" _ "$@" \
    > "$results/$name.native" 2> "$results/$name.native.err" || echo "exit status $?" >> "$results/$name.native"
  timeout -k 5 90 bash -c "$(declare -f vulkan_remote); pack=$pack; vulkan_remote \"\$@\"" _ "$@" \
    > "$results/$name.rgpu" 2> "$results/$name.rgpu.err" || echo "exit status $?" >> "$results/$name.rgpu"
  compare "$name" "$results/$name.native" "$results/$name.rgpu"
}

compare() {  # name, native output, rgpu output
  # A program that failed natively proves nothing through RGPU, whatever it printed there.
  if grep -q '^exit status' "$2"; then
    log "FAIL $1 (the native run failed: $(tail -1 "$2"))"
    tail -5 "$2.err" | tee -a "$results/summary.txt" || true
  elif diff -q "$2" "$3" >/dev/null; then log "PASS $1"; else
    log "FAIL $1"
    { diff "$2" "$3" | head -20; tail -5 "$3.err"; } | tee -a "$results/summary.txt" || true
  fi
}

run_case() {  # name, command...
  local name=$1; shift
  echo "$(date +%T) $name" >> "$results/progress.txt"
  # Standard output is compared; standard error (warnings, RGPU's log) is kept beside it.
  timeout -k 5 90 "$@" > "$results/$name.native" 2> "$results/$name.native.err" \
    || echo "exit status $?" >> "$results/$name.native"
  timeout -k 5 90 bash -c "$(declare -f remote); remote \"\$@\"" _ "$@" > "$results/$name.rgpu" 2> "$results/$name.rgpu.err" \
    || echo "exit status $?" >> "$results/$name.rgpu"
  compare "$name" "$results/$name.native" "$results/$name.rgpu"
  # GPU_SUITE_DEBUG="case ...": run those once more with the interpose's debug log, for diagnosis.
  if [[ " ${GPU_SUITE_DEBUG:-} " == *" $name "* ]]; then
    RGPU_LOG=debug timeout -k 5 90 bash -c "$(declare -f remote); remote \"\$@\"" _ "$@" > "$results/$name.debug" 2>&1 || true
  fi
}

# NVML through RGPU's libnvidia-ml.so.1: nvidia-smi's list and CSV query, a ctypes (and pynvml)
# program and PyTorch's NVML queries, each compared with the native run. nvidia-smi's table (its
# numbers change from moment to moment) is kept, not compared.
run_nvml_cases() {
  run_case nvidia_smi_list nvidia-smi -L
  run_case nvidia_smi_query nvidia-smi --query-gpu=name,uuid,memory.total,pci.bus_id,driver_version,compute_cap --format=csv
  run_case nvml_query python3 tests/gpu/programs/nvml_query.py
  if python3 -c "import torch" 2>/dev/null; then run_case torch_nvml python3 tests/gpu/programs/torch_nvml.py; fi
  timeout -k 5 30 nvidia-smi > "$results/nvidia_smi_table.native" 2>&1 || true
  timeout -k 5 30 bash -c "$(declare -f remote); remote nvidia-smi" > "$results/nvidia_smi_table.rgpu" 2>&1 ||
    echo "exit status $?" >> "$results/nvidia_smi_table.rgpu"
  log "nvidia-smi through RGPU (not compared):"
  head -25 "$results/nvidia_smi_table.rgpu" | tee -a "$results/summary.txt"
}

run_vulkan_cases() {
  if [[ -n $(nvidia_icd) ]]; then
    local vk=$PWD/$pack/vulkan
    run_vulkan_case vulkan_compute "$vk/vulkan_compute"
    run_vulkan_case vulkan_render "$vk/vulkan_render"
    run_vulkan_case vulkan_render_dynamic "$vk/vulkan_render" --dynamic-rendering
    run_vulkan_case vulkan_threads "$vk/vulkan_threads"
    # vulkaninfo's device section (the instance part is the loader's own).
    if [[ -x $vk/vulkaninfo ]]; then
      run_vulkan_case vulkaninfo_summary bash -c "set -o pipefail; \"$vk/vulkaninfo\" --summary | sed -n '/^Devices:/,\$p'"
    fi
    log "vulkan bench (native)"
    timeout -k 5 120 bash -c "$(declare -f nvidia_icd vulkan_native); pack=$pack; vulkan_native $vk/vulkan_bench" \
      | tee -a "$results/summary.txt" || true
    log "vulkan bench (rgpu)"
    timeout -k 5 180 bash -c "$(declare -f vulkan_remote); pack=$pack; vulkan_remote $vk/vulkan_bench" \
      | tee -a "$results/summary.txt" || true
  else
    log "no NVIDIA Vulkan driver manifest found: Vulkan cases skipped"
  fi
}

# NVIDIA's Vulkan driver loads through the system's loader and GL dispatch libraries.
unpack_loaders() {
  if ldconfig -p | grep -q libvulkan.so.1; then return; fi
  for f in "$pack"/debs/*.deb; do [[ -f $f ]] && dpkg -x "$f" /; done
  ldconfig
}

# The whole run, or only some of its parts (one device call may not hold them all):
# programs python nvml vulkan bench training. GPU_SUITE_PYTHON narrows the Python cases.
run() {
  local parts=" ${*:-programs python nvml vulkan bench training} "
  want() { [[ $parts == *" $1 "* ]]; }
  rm -rf "$results"; mkdir -p "$results"
  unpack_loaders
  : > "$results/summary.txt"
  log "parts:$parts"
  export RGPU_INTERPOSE=$PWD/$pack/interpose/librgpu_cuda_interpose.so
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$results/summary.txt"
  build_programs
  start_rgpu
  LD_LIBRARY_PATH=$PWD/$pack/lib XDG_CONFIG_HOME=$work/config "$PWD/$pack/bin/rgpu" info --server 127.0.0.1:19876 | tee -a "$results/summary.txt"
  if want programs; then
    # Faults first (a device-side assert, managed memory): every case after them must still pass.
    run_case kernel_assert "$work/kernel_assert"
    run_case managed_memory "$work/managed_memory"
    run_case mapped_memory "$work/mapped_memory"
    run_case driver_ptx "$work/driver_vector_add" "$work/vector_add.ptx"
    run_case driver_cubin "$work/driver_vector_add" "$work/vector_add.cubin"
    run_case runtime_static "$work/runtime_vector_add_static"
    run_case runtime_shared "$work/runtime_vector_add_shared"
    run_case runtime_kernels "$work/runtime_kernels"
    run_case texture_surface "$work/texture_surface"
    run_case vmm "$work/vmm"
    run_case mem_pool "$work/mem_pool"
    run_case array_memory python3 tests/gpu/programs/array_memory.py
    run_case host_functions "$work/host_functions"
    run_case graphs "$work/graphs"
  fi
  if want python; then
    for case in ${GPU_SUITE_PYTHON-cupy_basics cublas_gemm torch_mlp torch_gpt torch_convnet torch_fft torch_graphs torch_compile_graphs torch_expandable}; do run_case "$case" python3 "tests/gpu/programs/$case.py"; done
  fi
  if want nvml; then run_nvml_cases; fi
  run_case kernel_assert_again "$work/kernel_assert"
  run_case runtime_after_faults "$work/runtime_vector_add_static"
  if want vulkan; then run_vulkan_cases; fi
  if want bench; then
    log "bench (native)"; timeout -k 5 120 "$work/cuda_bench" native "$work/vector_add.cubin" | tee -a "$results/summary.txt" || true
    log "bench (rgpu)"; timeout -k 5 150 bash -c "$(declare -f remote); remote \"\$@\"" _ "$work/cuda_bench" rgpu "$work/vector_add.cubin" | tee -a "$results/summary.txt" || true
  fi
  if want training; then bench_training; fi
  if [[ -d $pack/before ]] && want bench; then bench_before; fi
  kill $(jobs -p) 2>/dev/null || true
}

# PyTorch training steps natively and through RGPU in the same run: the median step time of each
# and their ratio.
bench_training() {
  local program native rgpu
  for program in torch_gpt torch_convnet; do
    native=$(timeout -k 5 120 python3 "tests/gpu/programs/$program.py" --bench 30 2>/dev/null | awk '/_step_ms/ {print $2}')
    rgpu=$(timeout -k 5 180 bash -c "$(declare -f remote); remote \"\$@\"" _ python3 "tests/gpu/programs/$program.py" --bench 30 \
      2>/dev/null | awk '/_step_ms/ {print $2}')
    log "training step $program: native ${native:-failed} ms, rgpu ${rgpu:-failed} ms, ratio $(ratio "$native" "$rgpu")"
  done
  # Managed and mapped memory rounds (host writes, a kernel, host reads).
  local name
  native=$(timeout -k 5 120 "$work/shared_memory_bench" 2>/dev/null)
  rgpu=$(timeout -k 5 180 bash -c "$(declare -f remote); remote \"\$@\"" _ "$work/shared_memory_bench" 2>/dev/null)
  for name in managed_round_ms mapped_round_ms; do
    local a b
    a=$(awk -v k="$name" '$1 == k {print $2}' <<< "$native")
    b=$(awk -v k="$name" '$1 == k {print $2}' <<< "$rgpu")
    log "$name: native ${a:-failed}, rgpu ${b:-failed}, ratio $(ratio "$a" "$b")"
  done
}

ratio() {  # native, rgpu
  if [[ -n $1 && -n $2 ]]; then awk -v n="$1" -v r="$2" 'BEGIN {printf "%.2f", r / n}'; else echo -; fi
}

# The CUDA bench once more through the earlier build packed in before/, on the same ports.
bench_before() {
  stop_rgpu
  start_rgpu "$PWD/$pack/before/rgpu" before- || { log "the earlier build did not start"; return 0; }
  log "bench (rgpu before)"
  RGPU_INTERPOSE=$PWD/$pack/before/librgpu_cuda_interpose.so timeout -k 5 150 bash -c "$(declare -f remote); remote \"\$@\"" \
    _ "$work/cuda_bench" rgpu "$work/vector_add.cubin" | tee -a "$results/summary.txt" || true
  if [[ -f $pack/before/rgpu_icd.json && -n $(nvidia_icd) ]]; then
    log "vulkan bench (rgpu before)"
    RGPU_ICD_MANIFEST=$PWD/$pack/before/rgpu_icd.json timeout -k 5 180 \
      bash -c "$(declare -f vulkan_remote); pack=$pack; vulkan_remote $PWD/$pack/vulkan/vulkan_bench" | tee -a "$results/summary.txt" || true
  fi
}

hand_in() {  # the summary plus everything else as one archive (few files travel back)
  local out=${OUT:-$PWD/gpu-results}
  mkdir -p "$out"
  cp "$results/summary.txt" "$out/"
  tar -C "$results" -czf "$out/results.tar.gz" .
}

# Only the Vulkan cases, e.g. GPU_SUITE_VULKAN_ICD=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json on a
# machine without an NVIDIA GPU, to try the suite's Vulkan half.
run_vulkan_only() {
  rm -rf "$results"; mkdir -p "$results" "$work"
  : > "$results/summary.txt"
  unpack_loaders
  start_rgpu
  run_vulkan_cases
  kill $(jobs -p) 2>/dev/null || true
}

# Starts RGPU and sources a script of one's own (a diagnosis), which may use remote, vulkan_remote
# and vulkan_native; its files go under $results, which `collect` packs.
run_with_rgpu() {
  rm -rf "$results"; mkdir -p "$results" "$work"
  : > "$results/summary.txt"
  unpack_loaders
  export RGPU_INTERPOSE=$PWD/$pack/interpose/librgpu_cuda_interpose.so
  trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
  start_rgpu
  # shellcheck source=/dev/null
  source "$1"
}

# Python cases (or commands: a CASE that is not a Python case of the suite, e.g. "nvidia-smi -L")
# natively, with the private-table tracer preloaded.
run_traced() {
  mkdir -p "$results" "$work"
  gcc -O1 -shared -fPIC -I/usr/local/cuda/include -o "$work/export_table_trace.so" tests/gpu/tools/export_table_trace.c -ldl -lpthread
  local case name command
  for case in "$@"; do
    name=${case// /_}
    command=(python3 "tests/gpu/programs/$case.py")
    [[ -f tests/gpu/programs/$case.py ]] || read -ra command <<< "$case"
    echo "$(date +%T) trace $name" >> "$results/progress.txt"
    EXPORT_TABLE_TRACE=$results/trace-$name.txt LD_PRELOAD=$work/export_table_trace.so timeout -k 5 120 \
      "${command[@]}" > "$results/trace-$name.out" 2>&1 || echo "exit status $?" >> "$results/trace-$name.out"
  done
}

# The benches only, through this build and the earlier one packed in before/ in turn,
# GPU_SUITE_ROUNDS times (2 by default), in alternating order, so that neither build has the
# host's better minutes.
run_bench_pairs() {
  rm -rf "$results"; mkdir -p "$results" "$work"
  : > "$results/summary.txt"
  unpack_loaders
  nvcc -O2 -arch=sm_90 -cubin -o "$work/vector_add.cubin" tests/gpu/programs/vector_add.cu
  g++ -O2 -std=c++17 -I/usr/local/cuda/include -o "$work/cuda_bench" bench/cuda_bench.cpp \
    -L/usr/local/cuda/lib64/stubs -lcuda
  log "bench (native)"; timeout -k 5 120 "$work/cuda_bench" native "$work/vector_add.cubin" | tee -a "$results/summary.txt" || true
  local round build vk=$PWD/$pack/vulkan
  for round in $(seq "${GPU_SUITE_ROUNDS:-2}"); do
    # The order alternates, so that neither build always runs first in a round.
    local order=(now before)
    ((round % 2 == 0)) && order=(before now)
    for build in "${order[@]}"; do
      [[ $build == before && ! -d $pack/before ]] && continue
      local bin=$PWD/$pack/bin/rgpu interpose=$PWD/$pack/interpose/librgpu_cuda_interpose.so icd=$vk/rgpu_icd.json
      if [[ $build == before ]]; then
        bin=$PWD/$pack/before/rgpu interpose=$PWD/$pack/before/librgpu_cuda_interpose.so icd=$PWD/$pack/before/rgpu_icd.json
      fi
      # Plaintext for both builds: the bench compares the data paths, not TLS settings.
      start_rgpu "$bin" "$build-$round-" off || { log "the $build build did not start"; continue; }
      log "bench (rgpu $build, round $round)"
      RGPU_INTERPOSE=$interpose timeout -k 5 150 bash -c "$(declare -f remote); remote \"\$@\"" \
        _ "$work/cuda_bench" rgpu "$work/vector_add.cubin" | tee -a "$results/summary.txt" || true
      if [[ -f $icd && -n $(nvidia_icd) ]]; then
        log "vulkan bench (rgpu $build, round $round)"
        RGPU_ICD_MANIFEST=$icd timeout -k 5 180 bash -c "$(declare -f vulkan_remote); pack=$pack; vulkan_remote $vk/vulkan_bench" \
          | tee -a "$results/summary.txt" || true
      fi
      stop_rgpu
    done
  done
}

case "${1:-}" in
  pack) pack ;;
  run) shift; run "$@" ;;
  bench) run_bench_pairs ;;
  vulkan) run_vulkan_only ;;
  with-rgpu) run_with_rgpu "$2" ;;
  trace) shift; run_traced "$@" ;;
  collect) hand_in ;;
  *) echo "usage: $0 pack|run|bench|vulkan|with-rgpu SCRIPT|trace CASE...|collect" >&2; exit 2 ;;
esac
