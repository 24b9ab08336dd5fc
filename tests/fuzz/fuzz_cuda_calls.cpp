// libFuzzer target: a worker's CUDA session (CudaSession, the generated dispatch and the
// hand-written calls) running a sequence of CudaCall frames from a client, against the CUDA test
// double (tests/cuda_test_double), which checks every pointer and handle it is given: no GPU.
//
// Input: a sequence of calls, each
//   u8  function: an index into kFunctions below, or 0xff followed by a raw u32 function id
//   u8  bit 0: pipelined (no reply awaited); bits 1-2: the application thread (0-3);
//       bits 3-7: the call's context: 0 none, k > 0 the k-th latest handle answered so far
//   u8  out mask
//   u16 length, then that many argument bytes.
// Handles and device pointers are only known once answered, so an argument's 8 bytes
// `oo oo oo kk ce fa ed fe` (little-endian 0xfeedface'kkoooooo) become the k-th latest 8-byte
// output answered so far (0: the latest), plus the offset o. Every call is answered or not as the
// flag says; at the end the session is closed, which must free everything the calls made.
#include <cuda.h>
#include <stdlib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <vector>

#include "budget.hpp"
#include "cuda_dispatch.hpp"
#include "cuda_driver.hpp"
#include "cuda_functions.gen.hpp"
#include "cuda_session.hpp"
#include "cuda_wire.hpp"
#include "target.hpp"

namespace {

using namespace rgpu;
using namespace rgpu::cuda;

[[noreturn]] void fail(const char* what) { fuzz::fail("fuzz_cuda_calls", what); }

// What a client sends: the driver functions the test double has, variants the server picks
// among, and RGPU's own calls.
const uint32_t kFunctions[] = {
    FN_cuDevicePrimaryCtxRetain, FN_cuDevicePrimaryCtxRelease_v2, FN_cuDevicePrimaryCtxGetState,
    FN_cuDevicePrimaryCtxSetFlags_v2, FN_cuDevicePrimaryCtxReset_v2, FN_cuCtxDestroy_v2, FN_cuCtxSetCurrent,
    FN_cuCtxGetDevice_v2, FN_cuCtxGetId, FN_cuCtxSynchronize, FN_cuDriverGetVersion, FN_cuDeviceGetCount,
    FN_cuDeviceGet, FN_cuDeviceTotalMem_v2, FN_cuDeviceGetAttribute, FN_cuLibraryUnload, FN_cuLibraryGetKernel,
    FN_cuKernelGetFunction, FN_cuLibraryGetModule, FN_cuLibraryGetGlobal, FN_cuMemAlloc_v2, FN_cuMemAllocPitch_v2,
    FN_cuMemAllocManaged, FN_cuMemAllocAsync, FN_cuMemFreeAsync, FN_cuMemFree_v2, FN_cuMemGetInfo_v2,
    FN_cuMemcpyDtoD_v2, FN_cuMemcpyDtoDAsync_v2, FN_cuMemsetD8_v2, FN_cuMemsetD8Async, FN_cuMemsetD16_v2,
    FN_cuMemsetD32_v2, FN_cuMemsetD32Async, FN_cuModuleUnload, FN_cuModuleGetFunction, FN_cuModuleGetGlobal_v2,
    FN_cuFuncGetParamInfo, FN_cuFuncGetAttribute, FN_cuFuncSetAttribute, FN_cuModuleGetLoadingMode,
    FN_cuStreamCreate, FN_cuStreamDestroy_v2, FN_cuStreamSynchronize, FN_cuStreamQuery, FN_cuStreamGetId,
    FN_cuEventCreate, FN_cuEventRecord, FN_cuEventQuery, FN_cuEventSynchronize, FN_cuEventElapsedTime_v2,
    FN_cuEventDestroy_v2, FN_cuStreamBeginCapture_v2, FN_cuStreamEndCapture, FN_cuGraphDestroy,
    FN_cuStreamGetCaptureInfo_v2, FN_cuStreamGetCaptureInfo_v3, FN_cuOccupancyMaxActiveClusters,
    FN_rgpuDeviceInfo, FN_rgpuMemcpyHtoD, FN_rgpuMemcpyDtoH, FN_rgpuFunctionParams, FN_rgpuLaunch,
    FN_rgpuModuleLoad, FN_rgpuLibraryLoad, FN_rgpuCtxCreate, FN_rgpuMemcpy2D, FN_rgpuImagePart,
    FN_rgpuLinkCreate, FN_rgpuLinkAdd, FN_rgpuLinkComplete, FN_rgpuLinkDestroy, FN_rgpuTensorMap,
    FN_rgpuLaunchHostFunction, FN_rgpuGraphAddHostNode, FN_rgpuHostFunctionPoll, FN_cuGraphCreate,
    FN_cuGraphInstantiateWithFlags, FN_cuGraphLaunch, FN_cuGraphExecDestroy, FN_cuStreamWaitEvent,
    FN_cuGraphAddEmptyNode, FN_cuGraphAddMemcpyNode, FN_cuGraphAddMemAllocNode, FN_cuGraphAddBatchMemOpNode,
    FN_cuGraphHostNodeGetParams, FN_cuGraphHostNodeSetParams, FN_cuGraphExecHostNodeSetParams,
    FN_cuGraphMemcpyNodeGetParams, FN_cuGraphMemcpyNodeSetParams, FN_cuGraphExecMemcpyNodeSetParams,
    FN_cuGraphMemAllocNodeGetParams, FN_cuGraphKernelNodeGetAttribute, FN_cuGraphKernelNodeSetAttribute,
    FN_cuGraphBatchMemOpNodeGetParams, FN_cuGraphBatchMemOpNodeSetParams, FN_cuGraphExecBatchMemOpNodeSetParams,
};
constexpr uint32_t kHandleMark = 0xfeedface;
constexpr uint64_t kQuota = 64u << 20;  // the token's max_memory: device memory the calls may hold

// The session's answers, as the worker's connection would send them. Host functions the
// streams reach are answered as the interpose's host function thread does: at once, with the
// next poll, whoever polled.
class Answers {
 public:
  void take(std::vector<uint8_t> head, BulkPayload tail) {
    FrameHeader header;
    std::memcpy(&header, head.data(), kFrameHeaderSize);
    if (header.type != kMsgCudaReply || header.payload_len != head.size() - kFrameHeaderSize + tail.bytes.size())
      fail("a malformed reply");
    std::vector<uint8_t> reply(head.begin() + kFrameHeaderSize, head.end());
    {
      std::lock_guard lock(mutex_);
      if (polls_.erase(header.request_id) == 0) {
        replies_[header.request_id] = std::move(reply);
        arrived_.notify_all();
        return;
      }
    }
    ReplyHeader result;
    if (reply.size() < sizeof result) fail("a poll's reply shorter than its header");
    std::memcpy(&result, reply.data(), sizeof result);
    if (result.result != CUDA_SUCCESS) return;
    WireReader outputs(std::span<const uint8_t>(reply).subspan(sizeof result), "poll answer");
    const HostFunctionPollAnswer answer = decode_host_function_poll_answer(outputs);
    // An answer that only lists ids to forget ends no run: the thread polls again all the same.
    poll(answer.reached ? answer.reach : 0);
  }
  // Polls with `done` (0: none), outside the issue order.
  void poll(uint64_t done) {
    auto session = session_.lock();
    if (!session) return;
    CallHeader header;
    header.function = FN_rgpuHostFunctionPoll;
    Frame frame;
    frame.header.type = kMsgCudaCall;
    WireWriter payload(frame.payload);
    payload.put(header).put(done).put<uint64_t>(0);  // no bytes read
    frame.header.payload_len = static_cast<uint32_t>(frame.payload.size());
    {
      std::lock_guard lock(mutex_);
      frame.header.request_id = next_poll_++;
      polls_.insert(frame.header.request_id);
    }
    session->submit(std::move(frame));
  }
  void serve(std::weak_ptr<CudaSession> session) { session_ = std::move(session); }
  // The answer to request `id` is a poll's.
  void note_poll(uint64_t id) {
    std::lock_guard lock(mutex_);
    polls_.insert(id);
  }
  std::vector<uint8_t> wait(uint64_t request) {
    std::unique_lock lock(mutex_);
    if (!arrived_.wait_for(lock, std::chrono::seconds(20), [&] { return replies_.count(request) != 0; }))
      fail("a call was never answered");
    auto reply = std::move(replies_[request]);
    replies_.erase(request);
    return reply;
  }

 private:
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::map<uint64_t, std::vector<uint8_t>> replies_;
  std::set<uint64_t> polls_;
  uint64_t next_poll_ = uint64_t{1} << 40;  // past the calls' request ids (their sequences)
  std::weak_ptr<CudaSession> session_;
};

// RGPU_FUZZ_VERBOSE=1: each answered call's result, to see what an input does.
bool verbose() {
  static const bool on = getenv("RGPU_FUZZ_VERBOSE") != nullptr;
  return on;
}

// The double runs a kernel named sleep_ms for as long as it is told: not what is tested here.
void defuse(std::vector<uint8_t>& args) {
  static const char kSleep[] = "sleep_ms";
  for (auto it = args.begin(); (it = std::search(it, args.end(), kSleep, kSleep + 8)) != args.end();) *it = 'S';
}

bool answers_handles(uint32_t function) {
  switch (function) {
    case FN_rgpuModuleLoad:
    case FN_rgpuLibraryLoad:
    case FN_rgpuLinkCreate:
    case FN_rgpuCtxCreate:
    case FN_rgpuGraphAddHostNode:
    case FN_cuGraphAddEmptyNode:
    case FN_cuGraphAddMemcpyNode:
    case FN_cuGraphAddMemAllocNode:
    case FN_cuGraphAddBatchMemOpNode: return true;
    default: return find_auto_function(function) != nullptr;
  }
}

class Run {
 public:
  Run()
      : answers_(std::make_shared<Answers>()),
        session_(std::make_shared<CudaSession>(
            DeviceMap{{0, 1}}, fuzz::worker_budget(kQuota).worker,
            [answers = answers_](std::vector<uint8_t> head, BulkPayload tail) {
              answers->take(std::move(head), std::move(tail));
            },
            "fuzz")) {
    answers_->serve(session_);
    answers_->poll(0);
  }


  void call(uint32_t function, uint8_t flags, uint32_t out_mask, std::vector<uint8_t> args) {
    const bool pipelined = flags & 1;
    const uint32_t thread = (flags >> 1) & 3;
    const uint32_t context_pick = flags >> 3;
    for (size_t i = 0; i + 8 <= args.size(); ++i) {
      uint64_t value;
      std::memcpy(&value, args.data() + i, 8);
      if (value >> 32 != kHandleMark) continue;
      const size_t back = (value >> 24) & 0xff;
      if (back >= handles_.size()) continue;
      value = handles_[handles_.size() - 1 - back] + (value & 0xffffff);
      std::memcpy(args.data() + i, &value, 8);
      i += 7;
    }
    defuse(args);
    CallHeader header;
    header.function = function;
    header.thread = thread;
    header.context = context_pick == 0 || context_pick > handles_.size() ? 0 : handles_[handles_.size() - context_pick];
    header.out_mask = out_mask;
    header.sequence = ++sequence_;
    Frame frame;
    frame.header.type = kMsgCudaCall;
    frame.header.flags = pipelined ? kFrameNoReply : 0;
    frame.header.request_id = header.sequence;
    frame.payload.resize(sizeof header);
    std::memcpy(frame.payload.data(), &header, sizeof header);
    frame.payload.insert(frame.payload.end(), args.begin(), args.end());
    frame.header.payload_len = static_cast<uint32_t>(frame.payload.size());
    threads_.insert(thread);
    const bool poll = function == FN_rgpuHostFunctionPoll;  // answered whenever a host function is reached
    if (poll) answers_->note_poll(header.sequence);
    session_->submit(std::move(frame));
    if (verbose()) {
      const char* name = function_name(function) ?: rgpu_call_name(function);
      std::fprintf(stderr, "-> %s%s\n", name ? name : "?", pipelined ? " (pipelined)" : "");
    }
    if (pipelined || poll) return;
    const std::vector<uint8_t> reply = answers_->wait(header.sequence);
    if (reply.size() < sizeof(ReplyHeader)) fail("a reply shorter than its header");
    ReplyHeader result;
    std::memcpy(&result, reply.data(), sizeof result);
    const size_t outputs = reply.size() - sizeof result;
    if (verbose()) {
      const char* name = function_name(function) ?: rgpu_call_name(function);
      std::fprintf(stderr, "%s: %d (%zu bytes out)\n", name ? name : "?", result.result, outputs);
    }
    // Handles and pointers come back as 8-byte outputs (also from RGPU's own calls that make something).
    if (result.result == CUDA_SUCCESS && outputs % 8 == 0 && answers_handles(function))
      for (size_t at = sizeof result; at < reply.size(); at += 8) {
        uint64_t value;
        std::memcpy(&value, reply.data() + at, 8);
        handles_.push_back(value);
      }
  }

  // Every thread's calls have run once a call of each that waits has its answer.
  void finish() {
    for (uint32_t thread : std::set<uint32_t>(threads_)) call(0, static_cast<uint8_t>(thread << 1), 0, {});
    session_->close();
    session_.reset();
    if (fuzz::worker_budget(kQuota).main->used() != 0) fail("the closed session still holds some of the quota");
  }

 private:
  std::shared_ptr<Answers> answers_;
  std::shared_ptr<CudaSession> session_;
  std::vector<uint64_t> handles_;
  std::set<uint32_t> threads_;
  uint32_t sequence_ = 0;
};

// Seeds: calls in the input's format, with raw function ids (independent of kFunctions). Counts
// the 8-byte outputs the calls answer as the target does, to refer back to them.
class Script {
 public:
  // Appends a call; returns the index of its first output.
  size_t call(uint32_t function, const WireWriter& args, size_t outputs = 0, int context = -1, bool pipelined = false,
              uint32_t out_mask = 0) {
    const uint32_t pick = context < 0 ? 0 : static_cast<uint32_t>(handles_ - static_cast<size_t>(context));
    fuzz::put_call(bytes_, function,
                   {static_cast<uint8_t>(pick << 3 | (pipelined ? 1 : 0)),
                    static_cast<uint8_t>(out_mask ? out_mask : (1u << outputs) - 1)},
                   const_cast<WireWriter&>(args).buffer());
    handles_ += outputs;
    return handles_ - outputs;
  }
  // An argument that stands for output `index` (plus `offset`).
  uint64_t ref(size_t index, uint32_t offset = 0) const {
    return uint64_t{kHandleMark} << 32 | uint64_t{handles_ - 1 - index} << 24 | offset;
  }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
  size_t handles_ = 0;
};

WireWriter args() { return WireWriter(); }

// Two host functions on a stream, a third captured, a host node added to the captured graph, the
// graph launched and destroyed, a poll, a synchronisation. `refused` makes the first launch name
// a function RGPU does not send (refused, its id to be forgotten) and the poll say it carries a
// byte it does not (refused): the finding of a stand-in host function thread that stopped polling
// once an answer only listed ids to forget.
std::vector<uint8_t> host_functions_and_a_graph(bool refused) {
  Script s;
  const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(0), 1));
  const size_t stream = s.call(FN_cuStreamCreate, args().put<uint64_t>(0), 1, ctx);
  s.call(FN_rgpuLaunchHostFunction,
         args().put(refused ? FN_cuLaunchKernel : FN_cuLaunchHostFunc).put(s.ref(stream)).put<uint64_t>(1).put<uint32_t>(0),
         0, ctx, true);
  s.call(FN_rgpuLaunchHostFunction,
         args().put(FN_cuStreamAddCallback).put(s.ref(stream)).put<uint64_t>(2).put<uint32_t>(0), 0, ctx, true);
  s.call(FN_cuStreamBeginCapture_v2, args().put(s.ref(stream)).put<uint64_t>(CU_STREAM_CAPTURE_MODE_RELAXED), 0, ctx);
  s.call(FN_rgpuLaunchHostFunction, args().put(FN_cuLaunchHostFunc).put(s.ref(stream)).put<uint64_t>(3).put<uint32_t>(0),
         0, ctx, true);
  const size_t graph = s.call(FN_cuStreamEndCapture, args().put(s.ref(stream)), 1, ctx);
  s.call(FN_rgpuGraphAddHostNode, args().put(s.ref(graph)).put<uint64_t>(4).put<uint32_t>(0), 1, ctx);
  const size_t exec = s.call(FN_cuGraphInstantiateWithFlags, args().put(s.ref(graph)).put<uint64_t>(0), 1, ctx);
  s.call(FN_cuGraphLaunch, args().put(s.ref(exec)).put(s.ref(stream)), 0, ctx, true);
  s.call(FN_cuGraphDestroy, args().put(s.ref(graph)), 0, ctx, true);
  s.call(FN_rgpuHostFunctionPoll, args().put<uint64_t>(0).put<uint64_t>(refused ? 1 : 0), 0, ctx);
  s.call(FN_cuStreamSynchronize, args().put(s.ref(stream)), 0, ctx);
  s.call(FN_cuGraphExecDestroy, args().put(s.ref(exec)), 0, ctx, true);
  return s.bytes();
}

void write_seeds(const fuzz::Seeds& seeds) {
  {
    Script s;
    const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(0), 1));
    const size_t mem = s.call(FN_cuMemAlloc_v2, args().put<uint64_t>(4096), 1, ctx);
    s.call(FN_cuMemsetD8_v2, args().put(s.ref(mem)).put<uint64_t>(0x5a).put<uint64_t>(4096), 0, ctx, true);
    s.call(FN_rgpuMemcpyHtoD, args().put(FN_cuMemcpyHtoD_v2).put(s.ref(mem, 16)).put<uint64_t>(0).put<uint64_t>(0).bytes("0123456789abcdef", 16),
           0, ctx);
    s.call(FN_rgpuMemcpyDtoH, args().put(FN_cuMemcpyDtoH_v2).put(s.ref(mem)).put<uint64_t>(100).put<uint64_t>(0).put<uint64_t>(0), 0, ctx);
    CUDA_MEMCPY2D up{};
    up.srcMemoryType = CU_MEMORYTYPE_HOST;
    up.srcPitch = 16;
    up.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    up.dstDevice = s.ref(mem);
    up.dstPitch = 64;
    up.WidthInBytes = 16;
    up.Height = 4;
    s.call(FN_rgpuMemcpy2D, args().put(FN_cuMemcpy2D_v2).put<uint64_t>(0).put(kCopyFromHost).put<uint8_t>(2).put(up)
                                .bytes(std::vector<uint8_t>(64, 9).data(), 64), 0, ctx);
    CUDA_MEMCPY2D down{};
    down.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    down.srcDevice = s.ref(mem, 128);
    down.srcPitch = 64;
    down.dstMemoryType = CU_MEMORYTYPE_HOST;
    down.dstPitch = 16;
    down.WidthInBytes = 16;
    down.Height = 5;
    s.call(FN_rgpuMemcpy2D, args().put(FN_cuMemcpy2DAsync_v2).put<uint64_t>(0).put(kCopyToHost).put<uint8_t>(2).put(down),
           0, ctx);
    s.call(FN_cuMemcpyDtoD_v2, args().put(s.ref(mem)).put(s.ref(mem, 2048)).put<uint64_t>(1024), 0, ctx);
    s.call(FN_cuMemGetInfo_v2, args(), 2, ctx);
    s.call(FN_cuMemFree_v2, args().put(s.ref(mem)), 0, ctx, true);
    s.call(FN_cuDevicePrimaryCtxRelease_v2, args().put<uint64_t>(0));
    seeds.write("memory", s.bytes());
  }
  {
    Script s;
    const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(1), 1));
    const char kImage[] = "RGPU-CUDA-TEST-DOUBLE-MODULE\nfill_u32\nadd_global_f32\nglobal offset 4\n";
    s.call(FN_rgpuImagePart, args().bytes(kImage, 10), 0, ctx, true);
    const size_t module = s.call(FN_rgpuModuleLoad, args().bytes(kImage + 10, sizeof kImage - 11), 1, ctx);
    const size_t fill = s.call(FN_cuModuleGetFunction, args().put(s.ref(module)).str("fill_u32"), 1, ctx);
    s.call(FN_rgpuFunctionParams, args().put(s.ref(fill)), 0, ctx);
    const size_t mem = s.call(FN_cuMemAlloc_v2, args().put<uint64_t>(1024), 1, ctx);
    WireWriter params;
    params.put(s.ref(mem)).put<uint32_t>(7).put<uint32_t>(0).put<uint64_t>(64);
    s.call(FN_rgpuLaunch, args().put(FN_cuLaunchKernel).put(s.ref(fill)).put<uint32_t>(1).put<uint32_t>(1)
                              .put<uint32_t>(1).put<uint32_t>(32).put<uint32_t>(1).put<uint32_t>(1).put<uint32_t>(0)
                              .put<uint64_t>(0).put<uint32_t>(0).put<uint32_t>(3).put<uint32_t>(0).put<uint32_t>(8)
                              .put<uint32_t>(16).blob(params.buffer()),
           0, ctx);
    CUlaunchAttributeValue cluster{};
    cluster.clusterDim.x = 1;
    s.call(FN_rgpuLaunch, args().put(FN_cuLaunchKernelEx).put(s.ref(fill)).put<uint32_t>(2).put<uint32_t>(1)
                              .put<uint32_t>(1).put<uint32_t>(16).put<uint32_t>(1).put<uint32_t>(1).put<uint32_t>(0)
                              .put<uint64_t>(0).put<uint32_t>(1).put<uint32_t>(CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION)
                              .put(cluster).put<uint32_t>(3).put<uint32_t>(0).put<uint32_t>(8).put<uint32_t>(16)
                              .blob(params.buffer()),
           0, ctx);
    s.call(FN_cuModuleGetGlobal_v2, args().put(s.ref(module)).str("offset"), 2, ctx);
    s.call(FN_cuModuleUnload, args().put(s.ref(module)), 0, ctx, true);
    seeds.write("module-launch", s.bytes());
  }
  {
    Script s;
    const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(0), 1));
    const size_t stream = s.call(FN_cuStreamCreate, args().put<uint64_t>(0), 1, ctx);
    const size_t event = s.call(FN_cuEventCreate, args().put<uint64_t>(0), 1, ctx);
    s.call(FN_cuEventRecord, args().put(s.ref(event)).put(s.ref(stream)), 0, ctx, true);
    s.call(FN_cuStreamSynchronize, args().put(s.ref(stream)), 0, ctx);
    s.call(FN_cuStreamBeginCapture_v2, args().put(s.ref(stream)).put<uint64_t>(CU_STREAM_CAPTURE_MODE_GLOBAL), 0, ctx);
    s.call(FN_cuStreamGetCaptureInfo_v3, args().put(s.ref(stream)), 0, ctx, false, 0x3f);
    const size_t graph = s.call(FN_cuStreamEndCapture, args().put(s.ref(stream)), 1, ctx);
    s.call(FN_cuGraphDestroy, args().put(s.ref(graph)), 0, ctx, true);
    s.call(FN_cuEventQuery, args().put(s.ref(event)), 0, ctx);
    s.call(FN_cuEventDestroy_v2, args().put(s.ref(event)), 0, ctx, true);
    s.call(FN_cuStreamDestroy_v2, args().put(s.ref(stream)), 0, ctx, true);
    seeds.write("streams-capture", s.bytes());
  }
  seeds.write("host-functions", host_functions_and_a_graph(false));
  {
    Script s;
    const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(0), 1));
    const size_t mem = s.call(FN_cuMemAlloc_v2, args().put<uint64_t>(4096), 1, ctx);
    const size_t graph = s.call(FN_cuGraphCreate, args().put<uint64_t>(0), 1, ctx);
    const size_t host = s.call(FN_rgpuGraphAddHostNode, args().put(s.ref(graph)).put<uint64_t>(5).put<uint32_t>(0), 1, ctx);
    s.call(FN_cuGraphHostNodeGetParams, args().put(s.ref(host)), 0, ctx);
    s.call(FN_cuGraphHostNodeSetParams, args().put(s.ref(host)).put<uint64_t>(6), 0, ctx);
    // References count back from the latest output: each call's are made as it is written.
    auto with_copy = [&](WireWriter w) {
      CUDA_MEMCPY3D copy{};
      copy.srcMemoryType = copy.dstMemoryType = CU_MEMORYTYPE_DEVICE;
      copy.srcDevice = s.ref(mem);
      copy.dstDevice = s.ref(mem, 2048);
      copy.WidthInBytes = 1024;
      copy.Height = copy.Depth = 1;
      return std::move(w.put<uint32_t>(sizeof copy).put(copy));
    };
    const size_t memcpy_node =
        s.call(FN_cuGraphAddMemcpyNode, with_copy(args().put(s.ref(graph)).put<uint32_t>(0)).put<uint64_t>(0), 1, ctx);
    s.call(FN_cuGraphMemcpyNodeGetParams, args().put(s.ref(memcpy_node)), 0, ctx);
    s.call(FN_cuGraphMemcpyNodeSetParams, with_copy(args().put(s.ref(memcpy_node))), 0, ctx);
    CUmemPoolProps pool{};
    pool.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
    pool.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
    const size_t alloc = s.call(FN_cuGraphAddMemAllocNode,
                                args().put(s.ref(graph)).put<uint32_t>(0).put<uint32_t>(sizeof pool).put(pool)
                                    .put<uint32_t>(0).put<uint64_t>(4096), 2, ctx);
    s.call(FN_cuGraphMemAllocNodeGetParams, args().put(s.ref(alloc)), 0, ctx);
    auto with_batch = [&](WireWriter w) {
      CUstreamBatchMemOpParams op{};
      op.writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_32;
      op.writeValue.address = s.ref(mem, 8);
      op.writeValue.value = 3;
      return std::move(w.put<uint64_t>(0).put<uint32_t>(1).put<uint32_t>(0).put<uint32_t>(sizeof op).put(op));
    };
    const size_t batch = s.call(FN_cuGraphAddBatchMemOpNode, with_batch(args().put(s.ref(graph)).put<uint32_t>(0)), 1, ctx);
    s.call(FN_cuGraphBatchMemOpNodeGetParams, args().put(s.ref(batch)), 0, ctx);
    s.call(FN_cuGraphBatchMemOpNodeSetParams, with_batch(args().put(s.ref(batch))), 0, ctx);
    const CUlaunchAttributeValue priority{};
    s.call(FN_cuGraphKernelNodeSetAttribute,
           args().put(s.ref(memcpy_node)).put<uint64_t>(CU_LAUNCH_ATTRIBUTE_PRIORITY).put(priority), 0, ctx);
    s.call(FN_cuGraphKernelNodeGetAttribute, args().put(s.ref(memcpy_node)).put<uint64_t>(CU_LAUNCH_ATTRIBUTE_PRIORITY),
           0, ctx);
    const size_t exec = s.call(FN_cuGraphInstantiateWithFlags, args().put(s.ref(graph)).put<uint64_t>(0), 1, ctx);
    s.call(FN_cuGraphExecHostNodeSetParams, args().put(s.ref(exec)).put(s.ref(host)).put<uint64_t>(7), 0, ctx);
    s.call(FN_cuGraphExecMemcpyNodeSetParams, with_copy(args().put(s.ref(exec)).put(s.ref(memcpy_node))).put<uint64_t>(0),
           0, ctx);
    s.call(FN_cuGraphExecBatchMemOpNodeSetParams, with_batch(args().put(s.ref(exec)).put(s.ref(batch))), 0, ctx);
    s.call(FN_cuGraphLaunch, args().put(s.ref(exec)).put<uint64_t>(0), 0, ctx, true);
    s.call(FN_rgpuHostFunctionPoll, args().put<uint64_t>(0).put<uint64_t>(0), 0, ctx);
    s.call(FN_cuCtxSynchronize, args(), 0, ctx);
    s.call(FN_cuGraphExecDestroy, args().put(s.ref(exec)), 0, ctx, true);
    s.call(FN_cuGraphDestroy, args().put(s.ref(graph)), 0, ctx, true);
    seeds.write("graph-node-params", s.bytes());
  }
  {
    Script s;
    s.call(FN_rgpuDeviceInfo, args().put<uint64_t>(1));
    const int ctx = static_cast<int>(s.call(FN_rgpuCtxCreate, args().put<uint32_t>(0).put<uint64_t>(1), 1));
    s.call(FN_cuCtxGetDevice_v2, args().put<uint64_t>(0), 1, ctx);
    const char kImage[] = "RGPU-CUDA-TEST-DOUBLE-MODULE\nscale_f32\n";
    const size_t library = s.call(FN_rgpuLibraryLoad, args().bytes(kImage, sizeof kImage - 1), 1, ctx);
    const size_t kernel = s.call(FN_cuLibraryGetKernel, args().put(s.ref(library)).str("scale_f32"), 1, ctx);
    s.call(FN_cuKernelGetFunction, args().put(s.ref(kernel)), 1, ctx);
    const size_t link = s.call(FN_rgpuLinkCreate, args(), 1, ctx);
    s.call(FN_rgpuLinkAdd, args().put(s.ref(link)).put<uint32_t>(CU_JIT_INPUT_PTX).str("a.ptx").bytes(kImage, sizeof kImage - 1),
           0, ctx);
    s.call(FN_rgpuLinkComplete, args().put(s.ref(link)), 0, ctx);
    s.call(FN_rgpuLinkDestroy, args().put(s.ref(link)), 0, ctx);
    WireWriter tiled = args();
    tiled.put(FN_cuTensorMapEncodeTiled).put<uint32_t>(CU_TENSOR_MAP_DATA_TYPE_FLOAT32).put<uint32_t>(2)
        .put<uint64_t>(0x10000).put<uint64_t>(64).put<uint64_t>(64).put<uint64_t>(256).put<uint32_t>(8)
        .put<uint32_t>(8).put<uint32_t>(1).put<uint32_t>(1);
    for (int i = 0; i < 4; ++i) tiled.put<uint32_t>(0);
    s.call(FN_rgpuTensorMap, tiled, 0, ctx);
    s.call(FN_cuLibraryUnload, args().put(s.ref(library)), 0, ctx, true);
    s.call(FN_cuCtxDestroy_v2, args().put(s.ref(static_cast<size_t>(ctx))), 0, -1);
    seeds.write("contexts-libraries-links", s.bytes());
  }
  // Findings, kept as seeds: a rectangle whose size wraps around 2^64; launches whose parameters
  // do not cover the kernel's; a host function no poll was left to tell (the target's own); a wait
  // for an event's later record (the test double's).
  {
    Script s;
    const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(0), 1));
    const size_t mem = s.call(FN_cuMemAlloc_v2, args().put<uint64_t>(1 << 20), 1, ctx);
    CUDA_MEMCPY2D down{};
    down.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    down.srcDevice = s.ref(mem);
    down.srcPitch = down.dstPitch = down.WidthInBytes = 64;
    down.dstMemoryType = CU_MEMORYTYPE_HOST;
    down.Height = (uint64_t{1} << 58) + 1;
    s.call(FN_rgpuMemcpy2D, args().put(FN_cuMemcpy2D_v2).put<uint64_t>(0).put(kCopyToHost).put<uint8_t>(2).put(down),
           0, ctx);
    seeds.write("finding-rectangle-wraps", s.bytes());
  }
  for (const bool few : {false, true}) {
    Script s;
    const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(0), 1));
    const char kImage[] = "RGPU-CUDA-TEST-DOUBLE-MODULE\nfill_u32\n";
    const size_t module = s.call(FN_rgpuModuleLoad, args().bytes(kImage, sizeof kImage - 1), 1, ctx);
    const size_t fill = s.call(FN_cuModuleGetFunction, args().put(s.ref(module)).str("fill_u32"), 1, ctx);
    const size_t mem = s.call(FN_cuMemAlloc_v2, args().put<uint64_t>(1024), 1, ctx);
    WireWriter params;
    params.put(s.ref(mem)).put<uint32_t>(7).put<uint32_t>(0).put<uint32_t>(1);  // 20 bytes of 24
    WireWriter launch = args();
    launch.put(FN_cuLaunchKernel).put(s.ref(fill));
    for (uint32_t v : {1, 1, 1, 32, 1, 1}) launch.put(v);
    launch.put<uint32_t>(0).put<uint64_t>(0).put<uint32_t>(0);
    if (few) launch.put<uint32_t>(1).put<uint32_t>(0);  // one parameter of three
    else launch.put<uint32_t>(3).put<uint32_t>(0).put<uint32_t>(8).put<uint32_t>(16);
    s.call(FN_rgpuLaunch, launch.blob(params.buffer()), 0, ctx);
    seeds.write(few ? "finding-launch-few-parameters" : "finding-launch-short-parameters", s.bytes());
  }
  seeds.write("finding-forgotten-ends-polling", host_functions_and_a_graph(true));
  {
    // The test double's stream waited for every record of the event, also one issued after the
    // wait on the waiting stream itself, queued behind it.
    Script s;
    const int ctx = static_cast<int>(s.call(FN_cuDevicePrimaryCtxRetain, args().put<uint64_t>(0), 1));
    const size_t held = s.call(FN_cuStreamCreate, args().put<uint64_t>(CU_STREAM_NON_BLOCKING), 1, ctx);
    const size_t waiting = s.call(FN_cuStreamCreate, args().put<uint64_t>(CU_STREAM_NON_BLOCKING), 1, ctx);
    const size_t event = s.call(FN_cuEventCreate, args().put<uint64_t>(0), 1, ctx);
    s.call(FN_rgpuLaunchHostFunction, args().put(FN_cuLaunchHostFunc).put(s.ref(held)).put<uint64_t>(1).put<uint32_t>(0),
           0, ctx, true);
    s.call(FN_cuEventRecord, args().put(s.ref(event)).put(s.ref(held)), 0, ctx, true);
    s.call(FN_cuStreamWaitEvent, args().put(s.ref(waiting)).put(s.ref(event)).put<uint64_t>(0), 0, ctx, true);
    s.call(FN_cuEventRecord, args().put(s.ref(event)).put(s.ref(waiting)), 0, ctx, true);
    s.call(FN_cuStreamSynchronize, args().put(s.ref(waiting)), 0, ctx);
    seeds.write("finding-wait-for-a-later-record", s.bytes());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::initialize(write_seeds);
  if (getenv("RGPU_CUDA_LIBRARY") == nullptr) setenv("RGPU_CUDA_LIBRARY", CUDA_TEST_DOUBLE_PATH, 1);
  if (!Driver::get().ready()) fail(Driver::get().problem().c_str());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  Run run;
  for (int calls = 0; calls < 64; ++calls) {
    const auto call = fuzz::next_call(in, kFunctions, 2);
    if (!call) break;
    run.call(call->id, call->flags[0], call->flags[1], {call->args.begin(), call->args.end()});
  }
  run.finish();
  return 0;
}
