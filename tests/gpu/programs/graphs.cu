// CUDA graphs the ways programs build them: stream capture with a copy back to pinned host memory,
// an explicit graph of kernel, memset, memcpy, host and memory-allocation nodes, a kernel node's
// arguments read back and changed in the executable graph, and a conditional while-loop node;
// each replayed several times. Each part prints its results or its first failure and the next
// part runs anyway. The output must be the same natively and through RGPU.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.cuh"

constexpr int kN = 1 << 16;

__global__ void add_seed(uint32_t* a, int n, uint32_t seed) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) a[i] = a[i] * 3u + seed + static_cast<uint32_t>(i);
}

__global__ void scale(float* a, int n, float factor) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) a[i] *= factor;
}

__global__ void count_down(int* counter, cudaGraphConditionalHandle handle) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    *counter -= 1;
    cudaGraphSetConditional(handle, *counter > 0 ? 1 : 0);
  }
}

__global__ void bump(int* steps) {
  if (threadIdx.x == 0 && blockIdx.x == 0) *steps += 1;
}

static uint64_t checksum(const uint32_t* a, int n) {
  uint64_t sum = 0;
  for (int i = 0; i < n; ++i) sum = sum * 1099511628211ull + a[i];
  return sum;
}

static void CUDART_CB note_host(void* data) { *static_cast<int*>(data) += 1; }

// Capture: a kernel and a copy into pinned memory; each replay's copy lands in host memory.
static int captured_copy_back() {
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  uint32_t* device;
  uint32_t* pinned;
  CHECK(cudaMalloc(&device, kN * 4));
  CHECK(cudaMallocHost(&pinned, kN * 4));
  CHECK(cudaMemset(device, 0, kN * 4));
  cudaGraph_t graph;
  CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  add_seed<<<kN / 256, 256, 0, stream>>>(device, kN, 5);
  CHECK(cudaMemcpyAsync(pinned, device, kN * 4, cudaMemcpyDeviceToHost, stream));
  CHECK(cudaStreamEndCapture(stream, &graph));
  size_t nodes = 0;
  CHECK(cudaGraphGetNodes(graph, nullptr, &nodes));
  std::printf("capture: %zu nodes\n", nodes);
  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 3; ++replay) {
    CHECK(cudaGraphLaunch(exec, stream));
    CHECK(cudaStreamSynchronize(stream));
    std::printf("capture: replay %d pinned[1]=%u checksum=%016llx\n", replay, pinned[1],
                static_cast<unsigned long long>(checksum(pinned, kN)));
  }
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  CHECK(cudaFreeHost(pinned));
  CHECK(cudaFree(device));
  CHECK(cudaStreamDestroy(stream));
  return 0;
}

// An explicit graph: memset -> kernel -> memcpy (device to device) -> host node.
static int explicit_graph() {
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  uint32_t *a, *b;
  CHECK(cudaMalloc(&a, kN * 4));
  CHECK(cudaMalloc(&b, kN * 4));
  cudaGraph_t graph;
  CHECK(cudaGraphCreate(&graph, 0));

  cudaMemsetParams memset_params{};
  memset_params.dst = a;
  memset_params.value = 1;
  memset_params.elementSize = 4;
  memset_params.width = kN;
  memset_params.height = 1;
  cudaGraphNode_t memset_node;
  CHECK(cudaGraphAddMemsetNode(&memset_node, graph, nullptr, 0, &memset_params));

  int n = kN;
  uint32_t seed = 11;
  void* args[] = {&a, &n, &seed};
  cudaKernelNodeParams kernel{};
  kernel.func = reinterpret_cast<void*>(add_seed);
  kernel.gridDim = dim3(kN / 256);
  kernel.blockDim = dim3(256);
  kernel.kernelParams = args;
  cudaGraphNode_t kernel_node;
  CHECK(cudaGraphAddKernelNode(&kernel_node, graph, &memset_node, 1, &kernel));

  cudaGraphNode_t copy_node;
  CHECK(cudaGraphAddMemcpyNode1D(&copy_node, graph, &kernel_node, 1, b, a, kN * 4, cudaMemcpyDeviceToDevice));

  int host_runs = 0;
  cudaHostNodeParams host{note_host, &host_runs};
  cudaGraphNode_t host_node;
  CHECK(cudaGraphAddHostNode(&host_node, graph, &copy_node, 1, &host));

  size_t nodes = 0, roots = 0, edges = 0;
  CHECK(cudaGraphGetNodes(graph, nullptr, &nodes));
  CHECK(cudaGraphGetRootNodes(graph, nullptr, &roots));
  CHECK(cudaGraphGetEdges(graph, nullptr, nullptr, nullptr, &edges));
  std::printf("explicit: %zu nodes, %zu roots, %zu edges\n", nodes, roots, edges);

  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  std::vector<uint32_t> host_b(kN);
  for (int replay = 0; replay < 3; ++replay) {
    CHECK(cudaGraphLaunch(exec, stream));
    CHECK(cudaStreamSynchronize(stream));
    CHECK(cudaMemcpy(host_b.data(), b, kN * 4, cudaMemcpyDeviceToHost));
    std::printf("explicit: replay %d b[2]=%u checksum=%016llx host runs=%d\n", replay, host_b[2],
                static_cast<unsigned long long>(checksum(host_b.data(), kN)), host_runs);
  }

  // The kernel node's arguments read back, then changed in the executable graph only.
  cudaKernelNodeParams read{};
  CHECK(cudaGraphKernelNodeGetParams(kernel_node, &read));
  std::printf("explicit: kernel node seed=%u grid=%u block=%u\n", *static_cast<uint32_t*>(read.kernelParams[2]),
              read.gridDim.x, read.blockDim.x);
  uint32_t new_seed = 1000;
  void* new_args[] = {&a, &n, &new_seed};
  read.kernelParams = new_args;
  CHECK(cudaGraphExecKernelNodeSetParams(exec, kernel_node, &read));
  CHECK(cudaGraphLaunch(exec, stream));
  CHECK(cudaStreamSynchronize(stream));
  CHECK(cudaMemcpy(host_b.data(), b, kN * 4, cudaMemcpyDeviceToHost));
  std::printf("explicit: updated b[2]=%u checksum=%016llx\n", host_b[2],
              static_cast<unsigned long long>(checksum(host_b.data(), kN)));
  cudaKernelNodeParams still{};
  CHECK(cudaGraphKernelNodeGetParams(kernel_node, &still));
  std::printf("explicit: graph's node seed still %u\n", *static_cast<uint32_t*>(still.kernelParams[2]));

  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  CHECK(cudaStreamDestroy(stream));
  return 0;
}

// An allocation node whose memory a memset and a kernel use before its free node.
static int allocation_nodes() {
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph;
  CHECK(cudaGraphCreate(&graph, 0));
  int n = kN;
  cudaMemAllocNodeParams alloc{};
  alloc.poolProps.allocType = cudaMemAllocationTypePinned;
  alloc.poolProps.location.type = cudaMemLocationTypeDevice;
  alloc.poolProps.location.id = 0;
  alloc.bytesize = kN * 4;
  cudaGraphNode_t alloc_node;
  CHECK(cudaGraphAddMemAllocNode(&alloc_node, graph, nullptr, 0, &alloc));
  float* scratch = static_cast<float*>(alloc.dptr);
  cudaMemsetParams zero{};
  zero.dst = scratch;
  zero.value = 0;
  zero.elementSize = 4;
  zero.width = kN;
  zero.height = 1;
  cudaGraphNode_t scratch_memset;
  CHECK(cudaGraphAddMemsetNode(&scratch_memset, graph, &alloc_node, 1, &zero));
  float factor = 2.0f;
  void* scale_args[] = {&scratch, &n, &factor};
  cudaKernelNodeParams scale_kernel{};
  scale_kernel.func = reinterpret_cast<void*>(scale);
  scale_kernel.gridDim = dim3(kN / 256);
  scale_kernel.blockDim = dim3(256);
  scale_kernel.kernelParams = scale_args;
  cudaGraphNode_t scale_node;
  CHECK(cudaGraphAddKernelNode(&scale_node, graph, &scratch_memset, 1, &scale_kernel));
  cudaGraphNode_t free_node;
  CHECK(cudaGraphAddMemFreeNode(&free_node, graph, &scale_node, 1, scratch));
  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 3; ++replay) {
    CHECK(cudaGraphLaunch(exec, stream));
    CHECK(cudaStreamSynchronize(stream));
  }
  std::printf("allocation: 3 replays done\n");
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  CHECK(cudaStreamDestroy(stream));
  return 0;
}

// A while-loop: the body counts a counter down and runs again while it is above zero.
static int conditional_loop() {
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  int *counter, *steps;
  CHECK(cudaMalloc(&counter, 4));
  CHECK(cudaMalloc(&steps, 4));
  cudaGraph_t graph;
  CHECK(cudaGraphCreate(&graph, 0));
  cudaGraphConditionalHandle handle;
  CHECK(cudaGraphConditionalHandleCreate(&handle, graph, 1, cudaGraphCondAssignDefault));
  cudaGraphNodeParams params{};
  params.type = cudaGraphNodeTypeConditional;
  params.conditional.handle = handle;
  params.conditional.type = cudaGraphCondTypeWhile;
  params.conditional.size = 1;
  cudaGraphNode_t loop;
  CHECK(cudaGraphAddNode(&loop, graph, nullptr, nullptr, 0, &params));
  cudaGraph_t body = params.conditional.phGraph_out[0];
  cudaStream_t capture;
  CHECK(cudaStreamCreateWithFlags(&capture, cudaStreamNonBlocking));
  CHECK(cudaStreamBeginCaptureToGraph(capture, body, nullptr, nullptr, 0, cudaStreamCaptureModeRelaxed));
  bump<<<1, 32, 0, capture>>>(steps);
  count_down<<<1, 32, 0, capture>>>(counter, handle);
  CHECK(cudaStreamEndCapture(capture, &body));
  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 3; ++replay) {
    const int start = 5 + replay;
    CHECK(cudaMemcpy(counter, &start, 4, cudaMemcpyHostToDevice));
    CHECK(cudaMemset(steps, 0, 4));
    CHECK(cudaGraphLaunch(exec, stream));
    CHECK(cudaStreamSynchronize(stream));
    int ran = 0, left = -1;
    CHECK(cudaMemcpy(&ran, steps, 4, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(&left, counter, 4, cudaMemcpyDeviceToHost));
    std::printf("conditional: replay %d from %d ran the body %d times, counter %d\n", replay, start, ran, left);
  }
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  CHECK(cudaFree(counter));
  CHECK(cudaFree(steps));
  CHECK(cudaStreamDestroy(capture));
  CHECK(cudaStreamDestroy(stream));
  return 0;
}

int main() {
  CHECK(cudaSetDevice(0));
  int failed = 0;
  failed += captured_copy_back();
  failed += explicit_graph();
  failed += conditional_loop();
  failed += allocation_nodes();
  CHECK(cudaDeviceSynchronize());
  std::printf("parts failed: %d\n", failed);
  return failed == 0 ? 0 : 1;
}
