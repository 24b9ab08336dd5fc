// CUDA graphs the ways programs build them: stream capture with a copy back to pinned host memory,
// an explicit graph of kernel, memset, memcpy, host and memory-allocation nodes, a kernel node's
// arguments read back and changed in the executable graph, a conditional while-loop node, and
// host, memcpy, batch memory operation, allocation and kernel nodes' parameters and attributes
// read back and changed in the graph and in one executable graph; each replayed several times.
// Each part prints its results or its first failure and the next part runs anyway. The output
// must be the same natively and through RGPU.
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <vector>

#include "check.cuh"
#include "check_driver.h"

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

// A kernel node over kN elements, 256 threads a block.
static cudaKernelNodeParams over_all(void* function, void** args) {
  cudaKernelNodeParams kernel{};
  kernel.func = function;
  kernel.gridDim = dim3(kN / 256);
  kernel.blockDim = dim3(256);
  kernel.kernelParams = args;
  return kernel;
}

// An allocation node's parameters: kN words on device 0.
static cudaMemAllocNodeParams device_words() {
  cudaMemAllocNodeParams alloc{};
  alloc.poolProps.allocType = cudaMemAllocationTypePinned;
  alloc.poolProps.location.type = cudaMemLocationTypeDevice;
  alloc.poolProps.location.id = 0;
  alloc.bytesize = kN * 4;
  return alloc;
}

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
  cudaKernelNodeParams kernel = over_all(reinterpret_cast<void*>(add_seed), args);
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
  cudaMemAllocNodeParams alloc = device_words();
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
  cudaKernelNodeParams scale_kernel = over_all(reinterpret_cast<void*>(scale), scale_args);
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

// A batch node's one operation: write `value` to a 32-bit word of device memory.
static CUDA_BATCH_MEM_OP_NODE_PARAMS write_word(CUcontext context, CUstreamBatchMemOpParams& op, uint32_t* word,
                                                uint32_t value) {
  op = {};
  op.writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_32;
  op.writeValue.address = reinterpret_cast<CUdeviceptr>(word);
  op.writeValue.value = value;
  return CUDA_BATCH_MEM_OP_NODE_PARAMS{context, 1, &op, 0};
}

// After a launch: which host functions ran, what the copy and the kernel left in `b`, what the
// batch wrote to `c[0]`.
static int print_launch(const char* what, const int runs[3], const uint32_t* b, const uint32_t* c) {
  std::vector<uint32_t> host_b(kN);
  uint32_t c0 = 0;
  CHECK(cudaMemcpy(host_b.data(), b, kN * 4, cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(&c0, c, 4, cudaMemcpyDeviceToHost));
  std::printf("params: %s: host runs %d %d %d, b[3]=%u checksum=%016llx, c[0]=%u\n", what, runs[0], runs[1], runs[2],
              host_b[3], static_cast<unsigned long long>(checksum(host_b.data(), kN)), c0);
  return 0;
}

// Host -> memcpy -> kernel -> batch write: each node's parameters read back, changed in the graph
// (for executable graphs instantiated after) and in the first executable graph only; the kernel
// node's attributes set and read; an allocation node's parameters read back.
static int node_parameters() {
  cudaStream_t stream;
  CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  uint32_t *a, *b, *c;
  CHECK(cudaMalloc(&a, kN * 4));
  CHECK(cudaMalloc(&b, kN * 4));
  CHECK(cudaMalloc(&c, kN * 4));
  CHECK(cudaMemset(a, 1, kN * 4));
  CHECK(cudaMemset(c, 2, kN * 4));
  CUcontext context;
  CU_CHECK(cuCtxGetCurrent(&context));
  cudaGraph_t graph;
  CHECK(cudaGraphCreate(&graph, 0));

  int runs[3] = {};
  cudaHostNodeParams host{note_host, &runs[0]};
  cudaGraphNode_t host_node;
  CHECK(cudaGraphAddHostNode(&host_node, graph, nullptr, 0, &host));
  cudaHostNodeParams host_read{};
  CHECK(cudaGraphHostNodeGetParams(host_node, &host_read));
  std::printf("params: host node reads back its function %d and data %d\n", host_read.fn == note_host,
              host_read.userData == &runs[0]);

  cudaGraphNode_t copy_node;
  CHECK(cudaGraphAddMemcpyNode1D(&copy_node, graph, &host_node, 1, b, a, kN * 4, cudaMemcpyDeviceToDevice));
  cudaMemcpy3DParms copy_read{};
  CHECK(cudaGraphMemcpyNodeGetParams(copy_node, &copy_read));
  std::printf("params: memcpy node reads back source a %d, destination b %d, width %zu\n", copy_read.srcPtr.ptr == a,
              copy_read.dstPtr.ptr == b, copy_read.extent.width);

  int n = kN;
  uint32_t seed = 7;
  void* args[] = {&b, &n, &seed};
  cudaKernelNodeParams kernel = over_all(reinterpret_cast<void*>(add_seed), args);
  cudaGraphNode_t kernel_node;
  CHECK(cudaGraphAddKernelNode(&kernel_node, graph, &copy_node, 1, &kernel));
  int least = 0, greatest = 0;
  CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  cudaLaunchAttributeValue set{}, got{};
  set.priority = greatest;
  CHECK(cudaGraphKernelNodeSetAttribute(kernel_node, cudaLaunchAttributePriority, &set));
  CHECK(cudaGraphKernelNodeGetAttribute(kernel_node, cudaLaunchAttributePriority, &got));
  std::printf("params: kernel node priority reads back the greatest %d\n", got.priority == greatest);
  set = {};
  set.clusterDim.x = 2, set.clusterDim.y = 1, set.clusterDim.z = 1;
  CHECK(cudaGraphKernelNodeSetAttribute(kernel_node, cudaLaunchAttributeClusterDimension, &set));
  CHECK(cudaGraphKernelNodeGetAttribute(kernel_node, cudaLaunchAttributeClusterDimension, &got));
  std::printf("params: kernel node cluster %u x %u x %u\n", got.clusterDim.x, got.clusterDim.y, got.clusterDim.z);
  set = {};
  set.accessPolicyWindow.base_ptr = b;
  set.accessPolicyWindow.num_bytes = 64 * 1024;
  set.accessPolicyWindow.hitRatio = 0.5f;
  set.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
  set.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
  CHECK(cudaGraphKernelNodeSetAttribute(kernel_node, cudaLaunchAttributeAccessPolicyWindow, &set));
  CHECK(cudaGraphKernelNodeGetAttribute(kernel_node, cudaLaunchAttributeAccessPolicyWindow, &got));
  std::printf("params: kernel node window over b %d, %zu bytes, hit ratio %.2f\n",
              got.accessPolicyWindow.base_ptr == b, got.accessPolicyWindow.num_bytes, got.accessPolicyWindow.hitRatio);
  set = {};
  set.cooperative = 1;
  CHECK(cudaGraphKernelNodeSetAttribute(kernel_node, cudaLaunchAttributeCooperative, &set));
  CHECK(cudaGraphKernelNodeGetAttribute(kernel_node, cudaLaunchAttributeCooperative, &got));
  std::printf("params: kernel node cooperative %d\n", got.cooperative);
  set.cooperative = 0;  // launched with clusters, not cooperatively
  CHECK(cudaGraphKernelNodeSetAttribute(kernel_node, cudaLaunchAttributeCooperative, &set));

  CUstreamBatchMemOpParams op;
  CUDA_BATCH_MEM_OP_NODE_PARAMS batch = write_word(context, op, c, 101);
  CUgraphNode batch_node;
  CU_CHECK(cuGraphAddBatchMemOpNode(&batch_node, graph, &kernel_node, 1, &batch));
  CUDA_BATCH_MEM_OP_NODE_PARAMS batch_read{};
  CU_CHECK(cuGraphBatchMemOpNodeGetParams(batch_node, &batch_read));
  std::printf("params: batch node reads back %u operation(s), value %u into c %d\n", batch_read.count,
              batch_read.paramArray[0].writeValue.value,
              batch_read.paramArray[0].writeValue.address == reinterpret_cast<CUdeviceptr>(c));

  cudaGraphExec_t first, second;
  CHECK(cudaGraphInstantiate(&first, graph, 0));
  CHECK(cudaGraphLaunch(first, stream));
  CHECK(cudaStreamSynchronize(stream));
  if (print_launch("first", runs, b, c)) return 1;

  // Changed in the graph: what executable graphs instantiated from now on run.
  host.userData = &runs[1];
  CHECK(cudaGraphHostNodeSetParams(host_node, &host));
  CHECK(cudaGraphMemcpyNodeSetParams1D(copy_node, b, c, kN * 4, cudaMemcpyDeviceToDevice));
  batch = write_word(context, op, c, 202);
  CU_CHECK(cuGraphBatchMemOpNodeSetParams(batch_node, &batch));
  CHECK(cudaGraphInstantiate(&second, graph, 0));
  CHECK(cudaGraphHostNodeGetParams(host_node, &host_read));
  CHECK(cudaGraphMemcpyNodeGetParams(copy_node, &copy_read));
  CU_CHECK(cuGraphBatchMemOpNodeGetParams(batch_node, &batch_read));
  std::printf("params: changed in the graph: host data %d, memcpy source c %d, batch value %u\n",
              host_read.userData == &runs[1], copy_read.srcPtr.ptr == c, batch_read.paramArray[0].writeValue.value);
  // Changed in the first executable graph only.
  host.userData = &runs[2];
  CHECK(cudaGraphExecHostNodeSetParams(first, host_node, &host));
  CHECK(cudaGraphExecMemcpyNodeSetParams1D(first, copy_node, b, a, kN * 2, cudaMemcpyDeviceToDevice));
  batch = write_word(context, op, c, 303);
  CU_CHECK(cuGraphExecBatchMemOpNodeSetParams(first, batch_node, &batch));
  for (int replay = 0; replay < 2; ++replay) {
    CHECK(cudaMemset(b, 0, kN * 4));
    CHECK(cudaGraphLaunch(first, stream));
    CHECK(cudaStreamSynchronize(stream));
    if (print_launch("first, changed", runs, b, c)) return 1;
    CHECK(cudaGraphLaunch(second, stream));
    CHECK(cudaStreamSynchronize(stream));
    if (print_launch("second", runs, b, c)) return 1;
  }
  CHECK(cudaGraphExecDestroy(first));
  CHECK(cudaGraphExecDestroy(second));
  CHECK(cudaGraphDestroy(graph));

  // An allocation node's parameters: its size, device and address as the add answered.
  CHECK(cudaGraphCreate(&graph, 0));
  cudaMemAllocNodeParams alloc = device_words();
  cudaGraphNode_t alloc_node, free_node;
  CHECK(cudaGraphAddMemAllocNode(&alloc_node, graph, nullptr, 0, &alloc));
  CHECK(cudaGraphAddMemFreeNode(&free_node, graph, &alloc_node, 1, alloc.dptr));
  cudaMemAllocNodeParams alloc_read{};
  CHECK(cudaGraphMemAllocNodeGetParams(alloc_node, &alloc_read));
  std::printf("params: allocation node of %zu bytes on device %d, address read back %d, %zu access descriptor(s)\n",
              alloc_read.bytesize, alloc_read.poolProps.location.id, alloc_read.dptr == alloc.dptr,
              alloc_read.accessDescCount);
  CHECK(cudaGraphDestroy(graph));
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  CHECK(cudaFree(c));
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
  failed += node_parameters();
  CHECK(cudaDeviceSynchronize());
  std::printf("parts failed: %d\n", failed);
  return failed == 0 ? 0 : 1;
}
