# Sourced by `suite.sh with-rgpu` with the server under strace (RGPU_SERVER_WRAPPER): a CUDA
# driver program, a PyTorch program and a Vulkan program through RGPU, so that the system calls
# the server and its workers make (for the unit's SystemCallFilter=) are seen; then RGPU stops,
# and strace writes its table.
nvcc -O2 -arch=sm_90 -cubin -o "$work/vector_add.cubin" tests/gpu/programs/vector_add.cu
g++ -O2 -std=c++17 -I/usr/local/cuda/include -o "$work/driver_vector_add" tests/gpu/programs/driver_vector_add.cpp \
  -L/usr/local/cuda/lib64/stubs -lcuda
bash -c "$(declare -f remote); remote \"\$@\"" _ "$work/driver_vector_add" "$work/vector_add.cubin" | tail -2
bash -c "$(declare -f remote); remote \"\$@\"" _ python3 tests/gpu/programs/torch_mlp.py | tail -2
bash -c "$(declare -f vulkan_remote); pack=$pack; vulkan_remote \"\$@\"" _ "$PWD/$pack/vulkan/vulkan_compute" | tail -1
stop_rgpu
wait  # strace writes its table when the server it traced has ended
