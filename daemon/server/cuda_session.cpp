#include "cuda_session.hpp"

#include <span>

#include "cuda_driver.hpp"
#include "cuda_graphs.hpp"
#include "cuda_handles.hpp"
#include "cuda_launch_attributes.hpp"
#include "cuda_vmm_pool_calls.hpp"
#include "kernel_arguments.hpp"
#include "log.hpp"
#include "messages.hpp"

namespace rgpu::cuda {

namespace {
using Handle = uint64_t;

uint32_t sequence_of(const Frame& call) {
  CallHeader header;
  std::memcpy(&header, call.body().data(), sizeof header);
  return header.sequence;
}

// A CudaReply frame's start: its header, the ReplyHeader and `data`; `tail_size` bytes follow it.
std::vector<uint8_t> reply_head(uint64_t request_id, const ReplyHeader& header, std::span<const uint8_t> data,
                                size_t tail_size) {
  FrameHeader frame;
  frame.type = kMsgCudaReply;
  frame.request_id = request_id;
  frame.payload_len = static_cast<uint32_t>(sizeof header + data.size() + tail_size);
  std::vector<uint8_t> head(kFrameHeaderSize + sizeof header + data.size());
  std::memcpy(head.data(), &frame, kFrameHeaderSize);
  std::memcpy(head.data() + kFrameHeaderSize, &header, sizeof header);
  if (!data.empty()) std::memcpy(head.data() + kFrameHeaderSize + sizeof header, data.data(), data.size());
  return head;
}


CUresult missing(const char* name) {
  LOG_WARN("the server's CUDA driver has no %s", name);
  return CUDA_ERROR_NOT_SUPPORTED;
}

// Driver functions the generic path could call that need the session's own handling.
bool handled_by_hand(uint32_t function) {
  switch (function) {
    case FN_cuDevicePrimaryCtxReset:
    case FN_cuDevicePrimaryCtxReset_v2:
    case FN_cuDevicePrimaryCtxRelease_v2:
    case FN_cuCtxDestroy_v2: return true;
    default: return false;
  }
}

// What RGPU's own calls let a client choose: one of a fixed set of values, each mapped here to the
// driver function the server calls (never one looked up by a name or id the client sent). Any
// other value is refused with CUDA_ERROR_INVALID_VALUE and logged (refused_variant).
struct DriverVariant {
  uint32_t value;    // what the client sends
  const char* name;  // the driver function called
  const char* sync;  // an asynchronous copy: the stream synchronisation of its default-stream kind
  uint8_t dims = 0;  // rgpu.Memcpy2D: the descriptor it takes (2 or 3)
};

constexpr DriverVariant kHostToDevice[] = {
    {FN_cuMemcpyHtoD_v2, "cuMemcpyHtoD_v2", nullptr},
    {FN_cuMemcpyHtoD_v2_ptds, "cuMemcpyHtoD_v2_ptds", nullptr},
    {FN_cuMemcpyHtoDAsync_v2, "cuMemcpyHtoDAsync_v2", "cuStreamSynchronize"},
    {FN_cuMemcpyHtoDAsync_v2_ptsz, "cuMemcpyHtoDAsync_v2_ptsz", "cuStreamSynchronize_ptsz"},
};
constexpr DriverVariant kDeviceToHost[] = {
    {FN_cuMemcpyDtoH_v2, "cuMemcpyDtoH_v2", nullptr},
    {FN_cuMemcpyDtoH_v2_ptds, "cuMemcpyDtoH_v2_ptds", nullptr},
    {FN_cuMemcpyDtoHAsync_v2, "cuMemcpyDtoHAsync_v2", "cuStreamSynchronize"},
    {FN_cuMemcpyDtoHAsync_v2_ptsz, "cuMemcpyDtoHAsync_v2_ptsz", "cuStreamSynchronize_ptsz"},
};
constexpr uint32_t value_of(CopyFunction f) { return static_cast<uint32_t>(f); }
constexpr DriverVariant kRectangleCopies[] = {
    {value_of(CopyFunction::Memcpy2D), "cuMemcpy2D_v2", nullptr, 2},
    {value_of(CopyFunction::Memcpy2DPtds), "cuMemcpy2D_v2_ptds", nullptr, 2},
    {value_of(CopyFunction::Memcpy2DUnaligned), "cuMemcpy2DUnaligned_v2", nullptr, 2},
    {value_of(CopyFunction::Memcpy2DUnalignedPtds), "cuMemcpy2DUnaligned_v2_ptds", nullptr, 2},
    {value_of(CopyFunction::Memcpy2DAsync), "cuMemcpy2DAsync_v2", "cuStreamSynchronize", 2},
    {value_of(CopyFunction::Memcpy2DAsyncPtsz), "cuMemcpy2DAsync_v2_ptsz", "cuStreamSynchronize_ptsz", 2},
    {value_of(CopyFunction::Memcpy3D), "cuMemcpy3D_v2", nullptr, 3},
    {value_of(CopyFunction::Memcpy3DPtds), "cuMemcpy3D_v2_ptds", nullptr, 3},
    {value_of(CopyFunction::Memcpy3DAsync), "cuMemcpy3DAsync_v2", "cuStreamSynchronize", 3},
    {value_of(CopyFunction::Memcpy3DAsyncPtsz), "cuMemcpy3DAsync_v2_ptsz", "cuStreamSynchronize_ptsz", 3},
};
constexpr DriverVariant kLaunches[] = {
    {FN_cuLaunchKernel, "cuLaunchKernel", nullptr},
    {FN_cuLaunchKernel_ptsz, "cuLaunchKernel_ptsz", nullptr},
    {FN_cuLaunchKernelEx, "cuLaunchKernelEx", nullptr},
    {FN_cuLaunchKernelEx_ptsz, "cuLaunchKernelEx_ptsz", nullptr},
    {FN_cuLaunchCooperativeKernel, "cuLaunchCooperativeKernel", nullptr},
    {FN_cuLaunchCooperativeKernel_ptsz, "cuLaunchCooperativeKernel_ptsz", nullptr},
};
constexpr DriverVariant kTensorMaps[] = {
    {FN_cuTensorMapEncodeTiled, "cuTensorMapEncodeTiled", nullptr},
    {FN_cuTensorMapEncodeIm2col, "cuTensorMapEncodeIm2col", nullptr},
    {FN_cuTensorMapEncodeIm2colWide, "cuTensorMapEncodeIm2colWide", nullptr},
    {FN_cuTensorMapReplaceAddress, "cuTensorMapReplaceAddress", nullptr},
};

// The stream a per-thread copy function means by the null stream.
CUstream per_thread_stream(uint32_t variant, CUstream stream) {
  const bool per_thread = variant == FN_cuMemcpyDtoHAsync_v2_ptsz || variant == FN_cuMemcpyHtoDAsync_v2_ptsz;
  return per_thread && stream == nullptr ? CU_STREAM_PER_THREAD : stream;
}

const DriverVariant* find_variant(std::span<const DriverVariant> set, uint32_t value) {
  for (const DriverVariant& v : set)
    if (v.value == value) return &v;
  return nullptr;
}

CUresult refused_variant(const std::string& client, const char* call, const char* what, uint32_t value) {
  LOG_WARN("%s: %s with %s %u (0x%08x), which is not one of the values RGPU sends; refused", client.c_str(), call,
           what, value, value);
  return CUDA_ERROR_INVALID_VALUE;
}

// A launch's grid and block dimensions, shared memory, stream and attributes (rgpuLaunch and the
// occupancy queries that take a CUlaunchConfig).
struct LaunchShape {
  uint32_t dims[6] = {};
  uint32_t shared = 0;
  CUstream stream = nullptr;
  std::vector<CUlaunchAttribute> attrs;

  CUlaunchConfig config() {
    CUlaunchConfig c{};
    c.gridDimX = dims[0], c.gridDimY = dims[1], c.gridDimZ = dims[2];
    c.blockDimX = dims[3], c.blockDimY = dims[4], c.blockDimZ = dims[5];
    c.sharedMemBytes = shared;
    c.hStream = stream;
    c.attrs = attrs.empty() ? nullptr : attrs.data();
    c.numAttrs = static_cast<unsigned>(attrs.size());
    return c;
  }
};

bool read_launch_shape(WireReader& args, LaunchShape& shape) {
  for (auto& v : shape.dims) v = args.get<uint32_t>();
  shape.shared = args.get<uint32_t>();
  shape.stream = handle_of<CUstream>(args.get<uint64_t>());
  const uint32_t attr_count = args.get<uint32_t>();
  if (attr_count > 64) return false;
  shape.attrs.resize(attr_count);
  for (auto& attr : shape.attrs) {
    attr.id = static_cast<CUlaunchAttributeID>(args.get<uint32_t>());
    auto value = args.bytes(sizeof attr.value);
    std::memcpy(&attr.value, value.data(), sizeof attr.value);
  }
  return true;
}
}  // namespace

CudaSession::CudaSession(DeviceMap devices, std::shared_ptr<MemoryBudget> budget, SendFn send, std::string client)
    : devices_(devices),
      resources_(std::move(budget), devices),
      send_(std::move(send)),
      staging_(std::make_shared<StagingPool>(kCopyStagingSize, kStagingBuffers)),
      small_staging_(std::make_shared<StagingPool>(kSmallStagingSize, kSmallStagingBuffers)),
      client_(std::move(client)),
      host_functions_(std::make_shared<HostFunctionRelay>(client_)) {}

BulkPayload CudaSession::staging_buffer(const FrameHeader& header) {
  if (header.type != kMsgCudaCall) return {};
  return staging_for(header.payload_len);
}

std::function<BulkPayload(const FrameHeader&)> CudaSession::staging_sink(std::weak_ptr<CudaSession> session) {
  return [session = std::move(session)](const FrameHeader& header) {
    auto cuda = session.lock();
    return cuda ? cuda->staging_buffer(header) : BulkPayload{};
  };
}

BulkPayload CudaSession::staging_for(size_t bytes) {
  if (bytes <= kSmallStagingSize)
    if (BulkPayload small = small_staging_->acquire(); small.owner) return small;
  return bytes <= kCopyStagingSize ? staging_->acquire() : BulkPayload{};
}

void CudaSession::pin_staging(const void* address) {
  staging_->pin(address);  // each pool locks only a buffer of its own
  small_staging_->pin(address);
}

CudaSession::~CudaSession() {
  host_functions_->close();
  for (auto& [id, worker] : workers_)
    if (worker->thread.joinable()) worker->thread.join();
}

void CudaSession::submit(Frame frame, std::shared_ptr<const SendFn> answer_via) {
  if (frame.body().size() < sizeof(CallHeader)) {
    LOG_WARN("%s: CUDA call of %zu bytes is shorter than its header; ignored", client_.c_str(), frame.body().size());
    return;
  }
  CallHeader header;
  std::memcpy(&header, frame.body().data(), sizeof header);
  std::unique_lock lock(mutex_);
  if (closing_) return;
  if (header.function == FN_rgpuHostFunctionPoll) {
    // Outside the issue order: a sequence it came with anyway is passed over when its turn comes.
    if (header.sequence != 0 && static_cast<int32_t>(header.sequence - next_sequence_) >= 0) {
      skipped_.insert(header.sequence);
      skip_passed_turns();
    }
    lock.unlock();
    return poll_host_functions(frame, std::move(answer_via));
  }
  auto& worker = workers_[header.thread];
  if (!worker) {
    if (workers_.size() > kMaxThreads) {
      workers_.erase(header.thread);
      // Its turn is skipped when it comes, so that the calls after it still run.
      skipped_.insert(header.sequence);
      skip_passed_turns();
      lock.unlock();  // reply() takes the lock
      LOG_WARN("%s: more than %zu application threads; call dropped", client_.c_str(), kMaxThreads);
      reply(frame, CUDA_ERROR_OUT_OF_MEMORY, {}, {}, answer_via.get());
      return;
    }
    worker = std::make_unique<Worker>();
    worker->thread = std::thread([self = shared_from_this(), w = worker.get()] { self->worker_main(w); });
  }
  // Frames of one application thread may come over several connections (bulk lanes): each
  // worker's queue is kept in the application's order, which is the order of their sequences.
  auto later = std::find_if(worker->queue.rbegin(), worker->queue.rend(), [&](const Call& queued) {
    return static_cast<int32_t>(sequence_of(queued.frame) - header.sequence) < 0;
  });
  worker->queue.insert(later.base(), Call{std::move(frame), std::move(answer_via)});
  worker->queued.fetch_add(1, std::memory_order_release);
  worker->ready.notify_one();
}

void CudaSession::close() {
  host_functions_->close();  // a session thread may wait for a stream that waits for one
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
    for (auto& [id, worker] : workers_) worker->ready.notify_all();
  }
  for (auto& [id, worker] : workers_)
    if (worker->thread.joinable()) worker->thread.join();
  resources_.release_all();
  LOG_INFO("%s: CUDA session closed", client_.c_str());
}

void CudaSession::worker_main(Worker* worker) {
  for (;;) {
    // An application waiting on its answer sends its next call within microseconds: looking for
    // it a little while before sleeping spares the wake-up latency on each synchronous call.
    const auto spin_until = std::chrono::steady_clock::now() + kIdleSpin;
    while (worker->queued.load(std::memory_order_acquire) == 0 && std::chrono::steady_clock::now() < spin_until)
      std::this_thread::yield();
    Call call;
    {
      // A frame waits in the queue until its turn, so that one coming later over another
      // connection with an earlier sequence still goes first.
      std::unique_lock lock(mutex_);
      worker->ready.wait(lock, [&] {
        return closing_ ||
               (!worker->queue.empty() && static_cast<int32_t>(sequence_of(worker->queue.front().frame) - next_sequence_) <= 0);
      });
      if (closing_) return;
      call = std::move(worker->queue.front());
      worker->queue.pop_front();
      worker->queued.fetch_sub(1, std::memory_order_relaxed);
    }
    execute(*worker, call);
  }
}

void CudaSession::pass_turn(uint32_t sequence) {
  std::lock_guard lock(mutex_);
  if (sequence == next_sequence_) ++next_sequence_;
  skip_passed_turns();
}

void CudaSession::skip_passed_turns() {
  while (skipped_.erase(next_sequence_)) ++next_sequence_;
  // Only a worker with a call waiting can be the one whose turn it is now.
  for (auto& [id, worker] : workers_)
    if (!worker->queue.empty()) worker->ready.notify_one();
}

void CudaSession::reply(const Frame& request, CUresult result, std::span<const uint8_t> data, BulkPayload tail,
                        const SendFn* via) {
  if (request.header.flags & kFrameNoReply) {
    if (result != CUDA_SUCCESS) {
      CallHeader header;
      std::memcpy(&header, request.body().data(), sizeof header);
      note_deferred(header.function, result);
    }
    return;
  }
  ReplyHeader header;
  header.result = result;
  {
    std::lock_guard lock(mutex_);
    header.deferred_function = deferred_function_;
    header.deferred_result = deferred_result_;
    deferred_function_ = 0;
    deferred_result_ = CUDA_SUCCESS;
  }
  if (result != CUDA_SUCCESS) tail = {};
  std::vector<uint8_t> head = reply_head(request.header.request_id, header, data, tail.bytes.size());
  (via ? *via : send_)(std::move(head), std::move(tail));
}

void CudaSession::poll_host_functions(const Frame& frame, std::shared_ptr<const SendFn> answer_via) {
  uint64_t done = 0;
  std::span<const uint8_t> bytes;
  try {
    WireReader args(frame.body().subspan(sizeof(CallHeader)), "rgpu.HostFunctionPoll");
    done = args.get<uint64_t>();
    const uint64_t length = args.get<uint64_t>();
    if (length != args.remaining()) throw WireError("its bytes are not the length it says");
    bytes = args.rest();
  } catch (const WireError& e) {
    LOG_WARN("%s: malformed rgpu.HostFunctionPoll call: %s", client_.c_str(), e.what());
    return reply(frame, CUDA_ERROR_INVALID_VALUE, {}, {}, answer_via.get());
  }
  // Its answer carries no deferred error: that is for the thread whose calls failed.
  host_functions_->poll(done, bytes, [request_id = frame.header.request_id, via = std::move(answer_via), send = send_](
                                  CUresult result, std::vector<uint8_t> outputs) {
    ReplyHeader header;
    header.result = result;
    (via ? *via : send)(reply_head(request_id, header, outputs, 0), {});
  });
}

void CudaSession::note_deferred(uint32_t function, CUresult result) {
  const char* name = function_name(function) ?: rgpu_call_name(function);
  LOG_DEBUG("%s: pipelined %s failed: %s", client_.c_str(), name ? name : "call", error_name(result));
  std::lock_guard lock(mutex_);
  if (deferred_function_ == 0) {
    deferred_function_ = function;
    deferred_result_ = result;
  }
}

void CudaSession::execute(Worker& worker, Call& incoming) {
  Frame& frame = incoming.frame;
  CallHeader header;
  std::memcpy(&header, frame.body().data(), sizeof header);
  // Later calls may start as soon as an answered call has: their senders had no answer to wait
  // for. A pipelined call holds them until it is in the driver, where the application was told
  // it is when the call returned.
  const bool answered = !(frame.header.flags & kFrameNoReply);
  if (answered) pass_turn(header.sequence);

  free_released_staging();
  WireReader args(frame.body().subspan(sizeof header), "CUDA call");
  worker.staged_call = frame.bulk.owner != nullptr;
  WireWriter out;
  CUresult result = CUDA_SUCCESS;
  Driver& driver = Driver::get();
  auto set_current = driver.fn<CUresult (*)(CUcontext)>("cuCtxSetCurrent");
  CUcontext wanted = handle_of<CUcontext>(header.context);
  if (worker.current != wanted && set_current) {
    result = set_current(wanted);
    if (result == CUDA_SUCCESS) worker.current = wanted;
  }
  try {
    if (result != CUDA_SUCCESS) {
      // the context the application believes current does not exist (destroyed?)
    } else if (const AutoFunction* f = find_auto_function(header.function);
               f != nullptr && !handled_by_hand(header.function)) {
      void* fn = driver.symbol(f->name);
      if (fn == nullptr) {
        result = missing(f->name);
      } else {
        CallContext call(header.function, args, header.out_mask, devices_, [this](CallContext& c) {
          if (CUresult r = refuse_update_with_host_nodes(c.function(), c.ins(), client_); r != CUDA_SUCCESS) return r;
          return resources_.veto(c);
        });
        const bool retain = header.function == FN_cuDevicePrimaryCtxRetain;
        const auto before = retain ? resources_.context_creation_begins() : std::nullopt;
        result = f->call(fn, call);
        if (result == CUDA_SUCCESS) {
          resources_.record(call, worker.current);
          if (retain && !call.outs().empty()) resources_.context_created(handle_of<CUcontext>(call.outs()[0]), before);
          // What an unloaded module held leaves the quota now, not at the next settling.
          // A graph's launch may allocate (memory-allocation nodes) and load kernels: the quota sees that.
          if (header.function == FN_cuGraphLaunch || header.function == FN_cuGraphLaunch_ptsz) result = resources_.settle_launch();
          if (header.function == FN_cuModuleUnload || header.function == FN_cuLibraryUnload) {
            resources_.settle_load();
            forget_parameters();  // its functions are gone
          }
          for (uint64_t value : call.outs()) out.put(value);
          for (const auto& value : call.struct_outs()) out.put<uint32_t>(static_cast<uint32_t>(value.size())).bytes(value.data(), value.size());
        } else if (call.passed_veto()) {
          resources_.abandon(call);
        }
      }
    } else {
      result = manual_call(worker, header, args, out);
    }
  } catch (const WireError& e) {
    LOG_WARN("%s: malformed %s call: %s", client_.c_str(), function_name(header.function) ?: rgpu_call_name(header.function) ?: "CUDA", e.what());
    result = CUDA_ERROR_INVALID_VALUE;
  }
  if (!answered) pass_turn(header.sequence);
  reply(frame, result, out.buffer(), std::move(worker.reply_tail), incoming.answer_via.get());
  worker.reply_tail = {};
}

// Device -> host data of one chunk, into page-locked staging when it is large (sent from there
// without a copy), else into the reply.
CUresult CudaSession::copy_to_host(Worker& worker, uint32_t variant, CUdeviceptr src, uint64_t size, CUstream stream,
                                   uint64_t host, WireWriter& out) {
  if (size > kMaxFramePayload - 64) return CUDA_ERROR_INVALID_VALUE;
  const DriverVariant* copy = find_variant(kDeviceToHost, variant);
  if (copy == nullptr) return refused_variant(client_, "rgpu.MemcpyDtoH", "copy function", variant);
  Driver& d = Driver::get();
  if (copy->sync != nullptr)
    if (CUgraph graph = capture_graph(per_thread_stream(variant, stream)))
      return capture_host_copy(HostFunctionKind::WriteToHost, variant, copy->name, src, host, size, stream, graph);
  uint8_t* target = nullptr;
  BulkPayload staged;
  if (size >= kBulkFrameMinSize) staged = staging_for(size);
  if (staged.owner) {
    pin_staging(staged.bytes.data());
    target = staged.bytes.data();
  } else {
    out.buffer().resize(size);
    target = out.buffer().data();
  }
  CUresult r;
  if (copy->sync) {
    auto fn = d.fn<CUresult (*)(void*, CUdeviceptr, size_t, CUstream)>(copy->name);
    auto sync = d.fn<CUresult (*)(CUstream)>(copy->sync);
    if (!fn || !sync) return missing(copy->name);
    r = fn(target, src, size, stream);
    if (r == CUDA_SUCCESS) r = sync(stream);  // the bytes travel now, so the copy must be done
  } else {
    auto fn = d.fn<CUresult (*)(void*, CUdeviceptr, size_t)>(copy->name);
    if (!fn) return missing(copy->name);
    r = fn(target, src, size);
  }
  if (r != CUDA_SUCCESS) {
    out.buffer().clear();
    return r;
  }
  if (staged.owner) worker.reply_tail = {staged.bytes.first(size), std::move(staged.owner)};
  return CUDA_SUCCESS;
}

// A captured copy between the device and the application's host memory: page-locked staging the
// graph owns, the copy between it and the device captured, and beside it a host function of the
// relay's that moves the bytes between the staging and the application at each launch (before the
// copy for host-to-device, after it for device-to-host).
CUresult CudaSession::capture_host_copy(HostFunctionKind kind, uint32_t variant, const char* name, CUdeviceptr device,
                                        uint64_t host, uint64_t size, CUstream stream, CUgraph graph) {
  Driver& d = Driver::get();
  auto alloc = d.fn<CUresult (*)(void**, size_t, unsigned)>("cuMemHostAlloc");
  auto free_host = d.fn<CUresult (*)(void*)>("cuMemFreeHost");
  if (!alloc || !free_host) return missing("cuMemHostAlloc");
  if (!host_functions_->reserve_staging(size)) {
    LOG_WARN("%s: captured copies would hold more than %llu bytes of staging; refused", client_.c_str(),
             static_cast<unsigned long long>(HostFunctionRelay::kMaxCapturedStaging));
    return CUDA_ERROR_OUT_OF_MEMORY;
  }
  void* staging = nullptr;
  if (CUresult r = [&] {
        RelaxedCapture relaxed;
        return alloc(&staging, size ? size : 1, 0);
      }();
      r != CUDA_SUCCESS) {
    host_functions_->unreserve_staging(size);
    return r;
  }
  const CUstream on = per_thread_stream(variant, stream);
  if (kind == HostFunctionKind::WriteToHost) {
    auto fn = d.fn<CUresult (*)(void*, CUdeviceptr, size_t, CUstream)>(name);
    CUresult r = fn ? fn(staging, device, size, stream) : missing(name);
    if (r != CUDA_SUCCESS) {
      RelaxedCapture relaxed;
      free_host(staging);
      host_functions_->unreserve_staging(size);
      return r;
    }
    return host_functions_->capture_copy(kind, on, graph, host, staging, size);
  }
  if (CUresult r = host_functions_->capture_copy(kind, on, graph, host, staging, size); r != CUDA_SUCCESS) return r;
  auto fn = d.fn<CUresult (*)(CUdeviceptr, const void*, size_t, CUstream)>(name);
  return fn ? fn(device, staging, size, stream) : missing(name);
}

void CudaSession::free_released_staging() {
  std::vector<void*> released = host_functions_->take_released_staging();
  if (released.empty()) return;
  auto free_host = Driver::get().fn<CUresult (*)(void*)>("cuMemFreeHost");
  RelaxedCapture relaxed;
  for (void* staging : released)
    if (free_host) free_host(staging);
}

namespace {

// A rectangle's or box's copy (Copy: CUDA_MEMCPY2D or CUDA_MEMCPY3D) on the server alone, or between
// the packed rows of this call and device memory or an array. `src_packed` / `dst_packed`: that
// side is host memory whose rows follow one another from its start, with no gaps; `packed`: the
// rows' bytes, already checked not to wrap around.
template <typename Copy>
CUresult copy_packed(Copy& copy, size_t packed, bool src_packed, bool dst_packed, WireReader& args, WireWriter& out,
                     const DriverVariant& chosen, uint8_t mode, CUstream stream) {
  Driver& d = Driver::get();
  switch (mode) {
    case kCopyOnServer:
      args.expect_end();
      if (!on_server(copy.srcMemoryType) || !on_server(copy.dstMemoryType)) return CUDA_ERROR_INVALID_VALUE;
      break;
    case kCopyFromHost: {
      auto rows = args.rest();
      if (!src_packed || !on_server(copy.dstMemoryType) || rows.size() != packed) return CUDA_ERROR_INVALID_VALUE;
      copy.srcHost = rows.data();
      break;
    }
    case kCopyToHost:
      args.expect_end();
      if (!dst_packed || !on_server(copy.srcMemoryType) || packed > kMaxFramePayload - 64)
        return CUDA_ERROR_INVALID_VALUE;
      out.buffer().resize(packed);
      copy.dstHost = out.buffer().data();
      break;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
  CUresult r;
  if (chosen.sync != nullptr) {
    auto fn = d.fn<CUresult (*)(const Copy*, CUstream)>(chosen.name);
    if (!fn) return missing(chosen.name);
    r = fn(&copy, stream);
    // Packed rows live only as long as this call.
    if (r == CUDA_SUCCESS && mode != kCopyOnServer) {
      auto sync = d.fn<CUresult (*)(CUstream)>(chosen.sync);
      r = sync ? sync(stream) : missing(chosen.sync);
    }
  } else {
    auto fn = d.fn<CUresult (*)(const Copy*)>(chosen.name);
    r = fn ? fn(&copy) : missing(chosen.name);
  }
  if (r != CUDA_SUCCESS) out.buffer().clear();
  return r;
}

// A rectangle's or box's size in packed rows; false when it wraps around (its rows would run past
// the packed ones).
bool packed_size(size_t width, size_t height, size_t depth, size_t& packed) {
  return !__builtin_mul_overflow(width, height, &packed) && !__builtin_mul_overflow(packed, depth, &packed);
}
}  // namespace

// rgpu.Memcpy2D: a rectangle or a box. Host memory is only ever the
// packed rows of this call: the application's own addresses mean nothing here and are refused.
CUresult CudaSession::copy_rectangle(WireReader& args, WireWriter& out) {
  const uint32_t function = args.get<uint32_t>();
  const CUstream stream = handle_of<CUstream>(args.get<uint64_t>());
  const uint8_t mode = args.get<uint8_t>();
  const uint8_t dims = args.get<uint8_t>();
  const DriverVariant* chosen = find_variant(kRectangleCopies, function);
  if (chosen == nullptr) return refused_variant(client_, "rgpu.Memcpy2D", "copy function", function);
  if (dims != chosen->dims) {
    LOG_WARN("%s: rgpu.Memcpy2D with a %u-dimensional descriptor for %s; refused", client_.c_str(), dims, chosen->name);
    return CUDA_ERROR_INVALID_VALUE;
  }
  if (mode != kCopyOnServer && mode != kCopyFromHost && mode != kCopyToHost)
    return refused_variant(client_, "rgpu.Memcpy2D", "mode", mode);
  size_t packed = 0;
  if (dims == 3) {
    // A box's packed side also has its slices one after another, none skipped.
    auto copy = args.get<CUDA_MEMCPY3D>();
    if (!packed_size(copy.WidthInBytes, copy.Height, copy.Depth, packed)) return CUDA_ERROR_INVALID_VALUE;
    const bool src = memory_type(copy.srcMemoryType) == CU_MEMORYTYPE_HOST && copy.srcPitch == copy.WidthInBytes &&
                     copy.srcHeight == copy.Height && copy.srcXInBytes == 0 && copy.srcY == 0 && copy.srcZ == 0 &&
                     copy.srcLOD == 0;
    const bool dst = memory_type(copy.dstMemoryType) == CU_MEMORYTYPE_HOST && copy.dstPitch == copy.WidthInBytes &&
                     copy.dstHeight == copy.Height && copy.dstXInBytes == 0 && copy.dstY == 0 && copy.dstZ == 0 &&
                     copy.dstLOD == 0;
    return copy_packed(copy, packed, src, dst, args, out, *chosen, mode, stream);
  }
  auto copy = args.get<CUDA_MEMCPY2D>();
  if (!packed_size(copy.WidthInBytes, copy.Height, 1, packed)) return CUDA_ERROR_INVALID_VALUE;
  const bool src = memory_type(copy.srcMemoryType) == CU_MEMORYTYPE_HOST && copy.srcPitch == copy.WidthInBytes &&
                   copy.srcXInBytes == 0 && copy.srcY == 0;
  const bool dst = memory_type(copy.dstMemoryType) == CU_MEMORYTYPE_HOST && copy.dstPitch == copy.WidthInBytes &&
                   copy.dstXInBytes == 0 && copy.dstY == 0;
  return copy_packed(copy, packed, src, dst, args, out, *chosen, mode, stream);
}

namespace {
template <typename T>
std::vector<T> get_array(WireReader& args, size_t count) {
  std::vector<T> values(count);
  for (T& value : values) value = args.get<T>();
  return values;
}
}  // namespace

// rgpu.TensorMap: the driver encodes the map from the application's arguments (arrays sized by
// the rank, which the driver limits to 5). Its enums are passed as the bits that came.
CUresult CudaSession::encode_tensor_map(WireReader& args, WireWriter& out) {
  Driver& d = Driver::get();
  const uint32_t variant = args.get<uint32_t>();
  const DriverVariant* chosen = find_variant(kTensorMaps, variant);
  if (chosen == nullptr) return refused_variant(client_, "rgpu.TensorMap", "function", variant);
  const char* name = chosen->name;
  CUtensorMap map{};
  CUresult r = CUDA_ERROR_INVALID_VALUE;
  if (variant == FN_cuTensorMapReplaceAddress) {
    map = args.get<CUtensorMap>();
    void* address = reinterpret_cast<void*>(args.get<uint64_t>());
    args.expect_end();
    auto fn = d.fn<CUresult (*)(CUtensorMap*, void*)>(name);
    r = fn ? fn(&map, address) : missing(name);
  } else {
    const uint32_t type = args.get<uint32_t>();  // enums stay their bits, as the driver takes them
    const uint32_t rank = args.get<uint32_t>();
    if (rank < 1 || rank > 5) return CUDA_ERROR_INVALID_VALUE;
    void* address = reinterpret_cast<void*>(args.get<uint64_t>());
    const auto dims = get_array<cuuint64_t>(args, rank);
    const auto strides = get_array<cuuint64_t>(args, rank - 1);
    if (variant == FN_cuTensorMapEncodeTiled) {
      const auto box = get_array<cuuint32_t>(args, rank);
      const auto element_strides = get_array<cuuint32_t>(args, rank);
      const auto modes = get_array<uint32_t>(args, 4);
      args.expect_end();
      auto fn = d.fn<CUresult (*)(CUtensorMap*, uint32_t, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                                  const cuuint32_t*, const cuuint32_t*, uint32_t, uint32_t, uint32_t, uint32_t)>(name);
      r = fn ? fn(&map, type, rank, address, dims.data(), strides.data(), box.data(), element_strides.data(),
                  modes[0], modes[1], modes[2], modes[3])
             : missing(name);
    } else if (variant == FN_cuTensorMapEncodeIm2col) {
      if (rank < 3) return CUDA_ERROR_INVALID_VALUE;
      const auto lower = get_array<int32_t>(args, rank - 2);
      const auto upper = get_array<int32_t>(args, rank - 2);
      const uint32_t channels = args.get<uint32_t>(), pixels = args.get<uint32_t>();
      const auto element_strides = get_array<cuuint32_t>(args, rank);
      const auto modes = get_array<uint32_t>(args, 4);
      args.expect_end();
      auto fn = d.fn<CUresult (*)(CUtensorMap*, uint32_t, cuuint32_t, void*, const cuuint64_t*,
                                  const cuuint64_t*, const int*, const int*, cuuint32_t, cuuint32_t, const cuuint32_t*,
                                  uint32_t, uint32_t, uint32_t, uint32_t)>(name);
      r = fn ? fn(&map, type, rank, address, dims.data(), strides.data(), lower.data(), upper.data(), channels, pixels,
                  element_strides.data(), modes[0], modes[1], modes[2], modes[3])
             : missing(name);
    } else if (variant == FN_cuTensorMapEncodeIm2colWide) {
      if (rank < 3) return CUDA_ERROR_INVALID_VALUE;
      const int32_t lower = args.get<int32_t>(), upper = args.get<int32_t>();
      const uint32_t channels = args.get<uint32_t>(), pixels = args.get<uint32_t>();
      const auto element_strides = get_array<cuuint32_t>(args, rank);
      const auto modes = get_array<uint32_t>(args, 5);
      args.expect_end();
      auto fn = d.fn<CUresult (*)(CUtensorMap*, uint32_t, cuuint32_t, void*, const cuuint64_t*,
                                  const cuuint64_t*, int, int, cuuint32_t, cuuint32_t, const cuuint32_t*,
                                  uint32_t, uint32_t, uint32_t, uint32_t, uint32_t)>(name);
      r = fn ? fn(&map, type, rank, address, dims.data(), strides.data(), lower, upper, channels, pixels,
                  element_strides.data(), modes[0], modes[1], modes[2], modes[3], modes[4])
             : missing(name);
    }
  }
  if (r == CUDA_SUCCESS) out.bytes(&map, sizeof map);
  return r;
}

// The whole image of a load call: parts sent before it, then its own bytes, NUL-terminated (PTX
// must be). False when the parts ran over the limit.
bool CudaSession::take_image(Worker& worker, std::span<const uint8_t> last, std::vector<uint8_t>& image) {
  const bool too_large = worker.image_too_large || worker.pending_image.size() + last.size() > kMaxImageSize;
  image = std::move(worker.pending_image);
  worker.pending_image = {};
  worker.image_too_large = false;
  if (too_large) return false;
  image.insert(image.end(), last.begin(), last.end());
  image.push_back(0);
  return true;
}

namespace {
// cuStreamGetCaptureInfo_v2/_v3: the driver's arrays travel in the answer (see kCaptureStatus).
// Only the outputs the application asked for are asked of the driver, so that its errors (a lossy
// query without edge data, say) are the application's.
CUresult capture_info(uint32_t variant, uint32_t wanted, WireReader& args, WireWriter& out) {
  const CUstream stream = handle_of<CUstream>(args.get<uint64_t>());
  args.expect_end();
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
  cuuint64_t id = 0;
  CUgraph graph = nullptr;
  const CUgraphNode* nodes = nullptr;
  const CUgraphEdgeData* edges = nullptr;
  size_t count = 0;
  auto* id_out = (wanted & kCaptureId) ? &id : nullptr;
  auto* graph_out = (wanted & kCaptureGraph) ? &graph : nullptr;
  auto* nodes_out = (wanted & (kCaptureDependencies | kCaptureEdgeData)) ? &nodes : nullptr;
  auto* count_out = (wanted & (kCaptureCount | kCaptureDependencies)) ? &count : nullptr;
  const char* name = function_name(variant);
  Driver& d = Driver::get();
  CUresult r;
  if (variant == FN_cuStreamGetCaptureInfo_v3 || variant == FN_cuStreamGetCaptureInfo_v3_ptsz) {
    auto fn = d.fn<CUresult (*)(CUstream, CUstreamCaptureStatus*, cuuint64_t*, CUgraph*, const CUgraphNode**,
                                const CUgraphEdgeData**, size_t*)>(name);
    if (!fn) return missing(name);
    r = fn(stream, &status, id_out, graph_out, nodes_out, (wanted & kCaptureEdgeData) ? &edges : nullptr, count_out);
  } else {
    auto fn = d.fn<CUresult (*)(CUstream, CUstreamCaptureStatus*, cuuint64_t*, CUgraph*, const CUgraphNode**,
                                size_t*)>(name);
    if (!fn) return missing(name);
    r = fn(stream, &status, id_out, graph_out, nodes_out, count_out);
  }
  if (r != CUDA_SUCCESS) return r;
  const uint8_t lists = (nodes ? kCaptureListsNodes : 0) | (nodes && edges ? kCaptureListsEdges : 0);
  out.put<uint32_t>(status).put<uint64_t>(id).put<uint64_t>(raw_of(graph)).put<uint64_t>(count).put(lists);
  for (size_t i = 0; nodes != nullptr && i < count; ++i) out.put<uint64_t>(raw_of(nodes[i]));
  for (size_t i = 0; (lists & kCaptureListsEdges) && i < count; ++i) out.put(edges[i]);
  return CUDA_SUCCESS;
}
}  // namespace

namespace {
// Stream and kernel node attributes: `u64 handle, u64 attribute`, then for a set the 64-byte value;
// a get answers the value. Only attributes of plain values are taken (cuda_launch_attributes.hpp).
struct AttributeCall {
  uint32_t id;
  const char* name;
  bool set;
  bool (*plain)(uint64_t attribute);
};
constexpr AttributeCall kAttributeCalls[] = {
    {FN_cuStreamSetAttribute, "cuStreamSetAttribute", true, plain_stream_attribute},
    {FN_cuStreamSetAttribute_ptsz, "cuStreamSetAttribute_ptsz", true, plain_stream_attribute},
    {FN_cuStreamGetAttribute, "cuStreamGetAttribute", false, plain_stream_attribute},
    {FN_cuStreamGetAttribute_ptsz, "cuStreamGetAttribute_ptsz", false, plain_stream_attribute},
    {FN_cuGraphKernelNodeSetAttribute, "cuGraphKernelNodeSetAttribute", true, plain_kernel_node_attribute},
    {FN_cuGraphKernelNodeGetAttribute, "cuGraphKernelNodeGetAttribute", false, plain_kernel_node_attribute},
};

const AttributeCall* find_attribute_call(uint32_t id) { return find_call(kAttributeCalls, id); }

// The stream or node goes to the driver as the pointer it is; the value is the same union for both.
CUresult launch_attribute(const AttributeCall& call, WireReader& args, WireWriter& out) {
  void* handle = handle_of<void*>(args.get<uint64_t>());
  const uint64_t attribute = args.get<uint64_t>();
  CUlaunchAttributeValue value{};
  if (call.set) std::memcpy(&value, args.bytes(sizeof value).data(), sizeof value);
  args.expect_end();
  if (!call.plain(attribute)) {
    LOG_WARN("%s: attribute %llu refused: not one of the attributes of plain values", call.name,
             static_cast<unsigned long long>(attribute));
    return CUDA_ERROR_INVALID_VALUE;
  }
  const auto id = static_cast<CUlaunchAttributeID>(attribute);
  Driver& d = Driver::get();
  if (call.set) {
    auto fn = d.fn<CUresult (*)(void*, CUlaunchAttributeID, const CUlaunchAttributeValue*)>(call.name);
    return fn ? fn(handle, id, &value) : missing(call.name);
  }
  auto fn = d.fn<CUresult (*)(void*, CUlaunchAttributeID, CUlaunchAttributeValue*)>(call.name);
  if (!fn) return missing(call.name);
  const CUresult r = fn(handle, id, &value);
  if (r == CUDA_SUCCESS) out.put(value);
  return r;
}
}  // namespace

CUresult CudaSession::manual_call(Worker& worker, const CallHeader& header, WireReader& args, WireWriter& out) {
  Driver& d = Driver::get();
  switch (header.function) {
    case FN_rgpuDeviceInfo: {
      const CUdevice device = devices_.to_real(static_cast<CUdevice>(args.get<uint64_t>()));
      args.expect_end();
      auto get_name = d.fn<CUresult (*)(char*, int, CUdevice)>("cuDeviceGetName");
      auto total_mem = d.fn<CUresult (*)(size_t*, CUdevice)>("cuDeviceTotalMem_v2");
      auto get_uuid = d.fn<CUresult (*)(CUuuid*, CUdevice)>("cuDeviceGetUuid_v2");
      if (!get_uuid) get_uuid = d.fn<CUresult (*)(CUuuid*, CUdevice)>("cuDeviceGetUuid");
      auto pci = d.fn<CUresult (*)(char*, int, CUdevice)>("cuDeviceGetPCIBusId");
      auto attribute = d.fn<CUresult (*)(int*, CUdevice_attribute, CUdevice)>("cuDeviceGetAttribute");
      if (!get_name || !total_mem || !get_uuid || !attribute) return missing("device queries");
      char name[256] = {};
      if (CUresult r = get_name(name, sizeof name - 1, device); r != CUDA_SUCCESS) return r;
      size_t bytes = 0;
      total_mem(&bytes, device);
      CUuuid uuid{};
      get_uuid(&uuid, device);
      char bus[64] = {};
      if (pci) pci(bus, sizeof bus - 1, device);
      out.str(name).put<uint64_t>(bytes).bytes(uuid.bytes, sizeof uuid.bytes).str(bus);
      const uint32_t count = CU_DEVICE_ATTRIBUTE_MAX - 1;
      out.put(count);
      for (uint32_t a = 1; a <= count; ++a) {
        int value = 0;
        CUresult r = attribute(&value, static_cast<CUdevice_attribute>(a), device);
        out.put<int32_t>(value).put<int32_t>(r);
      }
      return CUDA_SUCCESS;
    }
    case FN_rgpuMemcpyHtoD: {
      const uint32_t variant = args.get<uint32_t>();
      const CUdeviceptr dst = args.get<uint64_t>();
      const CUstream stream = handle_of<CUstream>(args.get<uint64_t>());
      const uint64_t host = args.get<uint64_t>();
      auto data = args.rest();
      const bool staged = worker.staged_call;
      const DriverVariant* copy = find_variant(kHostToDevice, variant);
      if (copy == nullptr) return refused_variant(client_, "rgpu.MemcpyHtoD", "copy function", variant);
      // Captured, the graph reads the application's memory at each launch, not these bytes.
      if (copy->sync != nullptr)
        if (CUgraph graph = capture_graph(per_thread_stream(variant, stream)))
          return capture_host_copy(HostFunctionKind::ReadFromHost, variant, copy->name, dst, host, data.size(), stream,
                                   graph);
      if (staged) pin_staging(data.data());
      if (copy->sync) {
        auto fn = d.fn<CUresult (*)(CUdeviceptr, const void*, size_t, CUstream)>(copy->name);
        if (!fn) return missing(copy->name);
        CUresult r = fn(dst, data.data(), data.size(), stream);
        if (r != CUDA_SUCCESS || !staged) return r;
        // From page-locked staging the copy really is asynchronous, and the buffer is reused as
        // soon as this call ends (pageable memory, which the application gave, is copied before
        // the driver returns).
        auto sync = d.fn<CUresult (*)(CUstream)>(copy->sync);
        return sync ? sync(stream) : missing(copy->sync);
      }
      auto fn = d.fn<CUresult (*)(CUdeviceptr, const void*, size_t)>(copy->name);
      return fn ? fn(dst, data.data(), data.size()) : missing(copy->name);
    }
    case FN_rgpuMemcpy2D:
      return copy_rectangle(args, out);
    case FN_rgpuLaunchHostFunction: {
      const uint32_t variant = args.get<uint32_t>();
      const CUstream stream = handle_of<CUstream>(args.get<uint64_t>());
      const uint64_t id = args.get<uint64_t>();
      const uint32_t flags = args.get<uint32_t>();
      args.expect_end();
      return host_functions_->launch(variant, stream, id, flags);
    }
    case FN_rgpuGraphAddHostNode: {
      const CUgraph graph = handle_of<CUgraph>(args.get<uint64_t>());
      const uint64_t id = args.get<uint64_t>();
      const uint32_t count = args.get<uint32_t>();
      if (count > args.remaining() / sizeof(uint64_t)) return CUDA_ERROR_INVALID_VALUE;
      std::vector<CUgraphNode> dependencies(count);
      for (CUgraphNode& node : dependencies) node = handle_of<CUgraphNode>(args.get<uint64_t>());
      args.expect_end();
      CUgraphNode node = nullptr;
      const CUresult r = host_functions_->add_graph_node(node, graph, dependencies, id);
      if (r == CUDA_SUCCESS) out.put(raw_of(node));
      return r;
    }
    case FN_cuGraphHostNodeGetParams: {  // `u64 node` -> `u64 id`
      const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
      args.expect_end();
      uint64_t id = 0;
      const CUresult r = host_functions_->node_function(node, id);
      if (r == CUDA_SUCCESS) out.put(id);
      return r;
    }
    case FN_cuGraphHostNodeSetParams:
    case FN_cuGraphExecHostNodeSetParams: {  // `[u64 exec,] u64 node, u64 id`
      const bool in_exec = header.function == FN_cuGraphExecHostNodeSetParams;
      const CUgraphExec exec = in_exec ? handle_of<CUgraphExec>(args.get<uint64_t>()) : nullptr;
      const CUgraphNode node = handle_of<CUgraphNode>(args.get<uint64_t>());
      const uint64_t id = args.get<uint64_t>();
      args.expect_end();
      return host_functions_->set_node_function(in_exec, exec, node, id);
    }
    case FN_rgpuTensorMap:
      return encode_tensor_map(args, out);
    case FN_cuGraphAddMemAllocNode:
      return add_mem_alloc_node(args, out, devices_);
    case FN_cuGraphMemAllocNodeGetParams:
      return get_mem_alloc_node(args, out, devices_);
    case FN_cuStreamSetAttribute:
    case FN_cuStreamSetAttribute_ptsz:
    case FN_cuStreamGetAttribute:
    case FN_cuStreamGetAttribute_ptsz:
    case FN_cuGraphKernelNodeSetAttribute:
    case FN_cuGraphKernelNodeGetAttribute:
      return launch_attribute(*find_attribute_call(header.function), args, out);
    case FN_cuStreamGetCaptureInfo_v2:
    case FN_cuStreamGetCaptureInfo_v2_ptsz:
    case FN_cuStreamGetCaptureInfo_v3:
    case FN_cuStreamGetCaptureInfo_v3_ptsz:
      return capture_info(header.function, header.out_mask, args, out);
    case FN_cuMemRetainAllocationHandle:
      return retain_allocation_handle(args, out, resources_);
    case FN_cuMemPoolSetAttribute:
    case FN_cuMemPoolGetAttribute:
      return pool_attribute(header.function, args, out, resources_);
    case FN_rgpuMemcpyDtoH: {
      const uint32_t variant = args.get<uint32_t>();
      const CUdeviceptr src = args.get<uint64_t>();
      const uint64_t size = args.get<uint64_t>();
      const CUstream stream = handle_of<CUstream>(args.get<uint64_t>());
      const uint64_t host = args.get<uint64_t>();
      args.expect_end();
      return copy_to_host(worker, variant, src, size, stream, host, out);
    }
    case FN_cuMemRangeGetAttribute: {  // `u32 attribute, u64 size, u64 pointer, u64 count` -> size bytes
      const int32_t attribute = args.get<int32_t>();
      const uint64_t size = args.get<uint64_t>();
      const CUdeviceptr pointer = args.get<uint64_t>();
      const uint64_t count = args.get<uint64_t>();
      args.expect_end();
      // Every attribute is 32-bit values, one per device at most.
      if (size == 0 || size % sizeof(int32_t) != 0 || size > 4096) return CUDA_ERROR_INVALID_VALUE;
      auto fn = d.fn<CUresult (*)(void*, size_t, int32_t, CUdeviceptr, size_t)>("cuMemRangeGetAttribute");
      if (!fn) return missing("cuMemRangeGetAttribute");
      std::vector<int32_t> values(size / sizeof(int32_t));
      if (CUresult r = fn(values.data(), size, attribute, pointer, count); r != CUDA_SUCCESS) return r;
      // Devices as the application numbers them; CU_DEVICE_CPU and CU_DEVICE_INVALID stay.
      auto to_app = [&](int32_t& device) {
        if (device >= 0) device = devices_.to_app(device);
      };
      switch (attribute) {
        case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION:
        case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION:
        case CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY:
          for (int32_t& value : values) to_app(value);
          break;
        case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_ID:
        case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID: {
          int32_t type = 0;
          const int32_t type_attribute = attribute - 1;  // each _ID follows its _TYPE
          if (CUresult r = fn(&type, sizeof type, type_attribute, pointer, count); r != CUDA_SUCCESS) return r;
          if (type == CU_MEM_LOCATION_TYPE_DEVICE) to_app(values[0]);
          break;
        }
        default: break;
      }
      out.bytes(values.data(), size);
      return CUDA_SUCCESS;
    }
    case FN_cuFuncGetName:
    case FN_cuKernelGetName: {  // `u64 handle` -> the name
      void* handle = handle_of<void*>(args.get<uint64_t>());
      args.expect_end();
      const char* name = header.function == FN_cuFuncGetName ? "cuFuncGetName" : "cuKernelGetName";
      auto fn = d.fn<CUresult (*)(const char**, void*)>(name);
      if (!fn) return missing(name);
      const char* text = nullptr;
      if (CUresult r = fn(&text, handle); r != CUDA_SUCCESS) return r;
      out.str(text ? text : "");
      return CUDA_SUCCESS;
    }
    case FN_cuModuleEnumerateFunctions:
    case FN_cuLibraryEnumerateKernels: {  // `u64 owner, u32 count`: count handles come back
      void* owner = handle_of<void*>(args.get<uint64_t>());
      const uint32_t count = args.get<uint32_t>();
      args.expect_end();
      if (count > kMaxFramePayload / sizeof(uint64_t) / 2) return CUDA_ERROR_INVALID_VALUE;  // an answer too long to send
      const bool module = header.function == FN_cuModuleEnumerateFunctions;
      const char* name = module ? "cuModuleEnumerateFunctions" : "cuLibraryEnumerateKernels";
      const char* count_name = module ? "cuModuleGetFunctionCount" : "cuLibraryGetKernelCount";
      auto fn = d.fn<CUresult (*)(void**, unsigned, void*)>(name);
      auto held = d.fn<CUresult (*)(unsigned*, void*)>(count_name);
      if (!fn || !held) return missing(name);
      // Room for what the owner holds, whatever the count asks for; the rest are NULL.
      unsigned total = 0;
      if (CUresult r = held(&total, owner); r != CUDA_SUCCESS) return r;
      std::vector<void*> handles(std::min(count, total));
      if (!handles.empty())
        if (CUresult r = fn(handles.data(), static_cast<unsigned>(handles.size()), owner); r != CUDA_SUCCESS) return r;
      out.put(count);
      for (uint32_t i = 0; i < count; ++i) out.put<uint64_t>(i < handles.size() ? raw_of(handles[i]) : 0);
      return CUDA_SUCCESS;
    }
    case FN_rgpuFunctionParams: {
      const CUfunction f = handle_of<CUfunction>(args.get<uint64_t>());
      args.expect_end();
      ParamLayout params;
      if (CUresult r = query_parameters(f, params); r != CUDA_SUCCESS) return r;
      out.put<uint32_t>(static_cast<uint32_t>(params.size()));
      for (auto [offset, size] : params) out.put(offset).put(size);
      return CUDA_SUCCESS;
    }
    case FN_rgpuLaunch: {
      const uint32_t variant = args.get<uint32_t>();
      const DriverVariant* chosen = find_variant(kLaunches, variant);
      if (chosen == nullptr) return refused_variant(client_, "rgpu.Launch", "launch function", variant);
      const CUfunction f = handle_of<CUfunction>(args.get<uint64_t>());
      LaunchShape shape;
      if (!read_launch_shape(args, shape)) return CUDA_ERROR_INVALID_VALUE;
      const uint32_t* dims = shape.dims;
      const uint32_t shared = shape.shared;
      const CUstream stream = shape.stream;
      // The driver reads as many parameters as the kernel has, each as large as the kernel says.
      std::shared_ptr<const ParamLayout> layout;
      if (CUresult r = launch_parameters(f, layout); r != CUDA_SUCCESS) return r;
      KernelArguments arguments;
      if (CUresult r = read_kernel_arguments(args, *layout, arguments); r != CUDA_SUCCESS) return r;
      args.expect_end();
      void** kernel_params = arguments.driver_params();
      const char* name = chosen->name;
      // A launch may load its kernel (lazy loading) and grow local memory: the quota sees that.
      auto settled = [this](CUresult launched) { return launched == CUDA_SUCCESS ? resources_.settle_launch() : launched; };
      if (variant == FN_cuLaunchKernelEx || variant == FN_cuLaunchKernelEx_ptsz) {
        auto fn = d.fn<CUresult (*)(const CUlaunchConfig*, CUfunction, void**, void**)>(name);
        if (!fn) return missing(name);
        const CUlaunchConfig config = shape.config();
        return settled(fn(&config, f, kernel_params, nullptr));
      }
      if (variant == FN_cuLaunchCooperativeKernel || variant == FN_cuLaunchCooperativeKernel_ptsz) {
        auto fn = d.fn<CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                    CUstream, void**)>(name);
        if (!fn) return missing(name);
        return settled(fn(f, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], shared, stream, kernel_params));
      }
      if (variant != FN_cuLaunchKernel && variant != FN_cuLaunchKernel_ptsz) return CUDA_ERROR_INVALID_VALUE;
      auto fn = d.fn<CUresult (*)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                                  CUstream, void**, void**)>(name);
      if (!fn) return missing(name);
      return settled(fn(f, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], shared, stream, kernel_params, nullptr));
    }
    case FN_cuOccupancyMaxActiveClusters: {
      const CUfunction f = handle_of<CUfunction>(args.get<uint64_t>());
      LaunchShape shape;
      if (!read_launch_shape(args, shape)) return CUDA_ERROR_INVALID_VALUE;
      args.expect_end();
      auto fn = d.fn<CUresult (*)(int*, CUfunction, const CUlaunchConfig*)>("cuOccupancyMaxActiveClusters");
      if (!fn) return missing("cuOccupancyMaxActiveClusters");
      CUlaunchConfig config = shape.config();
      int clusters = 0;
      CUresult r = fn(&clusters, f, &config);
      if (r == CUDA_SUCCESS) out.put<int32_t>(clusters);
      return r;
    }
    case FN_rgpuImagePart: {
      auto part = args.rest();
      if (worker.pending_image.size() + part.size() > kMaxImageSize) {
        worker.pending_image = {};
        worker.image_too_large = true;
        return CUDA_ERROR_INVALID_IMAGE;
      }
      worker.pending_image.insert(worker.pending_image.end(), part.begin(), part.end());
      return CUDA_SUCCESS;
    }
    case FN_rgpuModuleLoad: {
      // The image travels as bytes (its start perhaps in parts before); the driver wants it in
      // memory it can read to the end.
      std::vector<uint8_t> copy;
      if (!take_image(worker, args.rest(), copy)) return CUDA_ERROR_INVALID_IMAGE;
      auto fn = d.fn<CUresult (*)(CUmodule*, const void*)>("cuModuleLoadData");
      if (!fn) return missing("cuModuleLoadData");
      CUmodule module = nullptr;
      resources_.before_load();
      CUresult r = fn(&module, copy.data());
      if (r == CUDA_SUCCESS && (r = resources_.settle_load()) != CUDA_SUCCESS) {
        if (auto unload = d.fn<CUresult (*)(CUmodule)>("cuModuleUnload")) unload(module);
        return r;  // its code and globals do not fit the quota
      }
      if (r == CUDA_SUCCESS) {
        resources_.add_module(module, worker.current);
        out.put(raw_of(module));
      }
      return r;
    }
    case FN_rgpuLibraryLoad: {
      std::vector<uint8_t> copy;
      if (!take_image(worker, args.rest(), copy)) return CUDA_ERROR_INVALID_IMAGE;
      auto fn = d.fn<CUresult (*)(CUlibrary*, const void*, CUjit_option*, void**, unsigned, CUlibraryOption*, void**,
                                  unsigned)>("cuLibraryLoadData");
      if (!fn) return missing("cuLibraryLoadData");
      CUlibrary library = nullptr;
      resources_.before_load();
      CUresult r = fn(&library, copy.data(), nullptr, nullptr, 0, nullptr, nullptr, 0);
      if (r == CUDA_SUCCESS && (r = resources_.settle_load()) != CUDA_SUCCESS) {
        if (auto unload = d.fn<CUresult (*)(CUlibrary)>("cuLibraryUnload")) unload(library);
        return r;
      }
      if (r == CUDA_SUCCESS) {
        resources_.add_library(library);
        out.put(raw_of(library));
      }
      return r;
    }
    case FN_rgpuLinkCreate: {
      args.expect_end();
      auto fn = d.fn<CUresult (*)(unsigned, CUjit_option*, void**, CUlinkState*)>("cuLinkCreate_v2");
      if (!fn) return missing("cuLinkCreate_v2");
      CUlinkState link = nullptr;
      CUresult r = fn(0, nullptr, nullptr, &link);
      if (r == CUDA_SUCCESS) {
        resources_.add_link(link);
        out.put(raw_of(link));
      }
      return r;
    }
    case FN_rgpuLinkAdd: {
      const auto link = handle_of<CUlinkState>(args.get<uint64_t>());
      const uint32_t type = args.get<uint32_t>();  // a CUjitInputType, as its bits
      if (type >= CU_JIT_NUM_INPUT_TYPES) return refused_variant(client_, "rgpu.LinkAdd", "input type", type);
      const std::string name = args.str();
      std::vector<uint8_t> input;
      if (!take_image(worker, args.rest(), input)) return CUDA_ERROR_INVALID_IMAGE;
      if (!resources_.has_link(link)) return CUDA_ERROR_INVALID_HANDLE;
      auto fn = d.fn<CUresult (*)(CUlinkState, uint32_t, void*, size_t, const char*, unsigned, CUjit_option*,
                                  void**)>("cuLinkAddData_v2");
      if (!fn) return missing("cuLinkAddData_v2");
      // The size leaves out the NUL take_image() added after the bytes.
      return fn(link, type, input.data(), input.size() - 1, name.c_str(), 0, nullptr, nullptr);
    }
    case FN_rgpuLinkComplete: {
      const auto link = handle_of<CUlinkState>(args.get<uint64_t>());
      args.expect_end();
      if (!resources_.has_link(link)) return CUDA_ERROR_INVALID_HANDLE;
      auto fn = d.fn<CUresult (*)(CUlinkState, void**, size_t*)>("cuLinkComplete");
      if (!fn) return missing("cuLinkComplete");
      void* image = nullptr;
      size_t size = 0;
      CUresult r = fn(link, &image, &size);
      if (r != CUDA_SUCCESS) return r;
      if (size > kMaxFramePayload - 64) return CUDA_ERROR_INVALID_IMAGE;
      out.bytes(image, size);
      return CUDA_SUCCESS;
    }
    case FN_rgpuLinkDestroy: {
      const auto link = handle_of<CUlinkState>(args.get<uint64_t>());
      args.expect_end();
      if (!resources_.remove_link(link)) return CUDA_ERROR_INVALID_HANDLE;
      auto fn = d.fn<CUresult (*)(CUlinkState)>("cuLinkDestroy");
      return fn ? fn(link) : missing("cuLinkDestroy");
    }
    case FN_rgpuCtxCreate: {
      const uint32_t flags = args.get<uint32_t>();
      const CUdevice device = devices_.to_real(static_cast<CUdevice>(args.get<uint64_t>()));
      args.expect_end();
      // The driver pushes the new context on this thread's stack. Emptied first, the stack stays
      // at most one deep, so that no context is current once the new one is destroyed or
      // cuCtxSetCurrent(NULL) (which pops one) is called.
      if (auto set_current = d.fn<CUresult (*)(CUcontext)>("cuCtxSetCurrent")) set_current(nullptr);
      worker.current = nullptr;
      CUcontext context = nullptr;
      CUresult r;
      const auto before = resources_.context_creation_begins();
      if (auto v4 = d.fn<CUresult (*)(CUcontext*, CUctxCreateParams*, unsigned, CUdevice)>("cuCtxCreate_v4")) {
        r = v4(&context, nullptr, flags, device);
      } else if (auto v2 = d.fn<CUresult (*)(CUcontext*, unsigned, CUdevice)>("cuCtxCreate_v2")) {
        r = v2(&context, flags, device);
      } else {
        return missing("cuCtxCreate");
      }
      if (r == CUDA_SUCCESS) {
        worker.current = context;  // a new context is current on the creating thread
        resources_.add_context(context);
        resources_.context_created(context, before);
        out.put(raw_of(context));
      }
      return r;
    }
    case FN_cuCtxDestroy_v2: {
      const CUcontext context = handle_of<CUcontext>(args.get<uint64_t>());
      args.expect_end();
      auto fn = d.fn<CUresult (*)(CUcontext)>("cuCtxDestroy_v2");
      if (!fn) return missing("cuCtxDestroy_v2");
      CUresult r = fn(context);
      if (r == CUDA_SUCCESS) {
        std::vector<uint64_t> ins{raw_of(context)}, outs;
        resources_.record(FN_cuCtxDestroy_v2, ins, outs, nullptr);
        resources_.context_destroyed(context);
        forget_parameters();
        if (worker.current == context) worker.current = nullptr;
      }
      return r;
    }
    case FN_cuDevicePrimaryCtxReset:
    case FN_cuDevicePrimaryCtxReset_v2: {
      // The primary context is shared by every client of this server: resetting it would destroy
      // other clients' work. For this client, a reset frees what it made in that context.
      const CUdevice device = devices_.to_real(static_cast<CUdevice>(args.get<uint64_t>()));
      args.expect_end();
      return free_in_primary_context(worker, device);
    }
    case FN_cuDevicePrimaryCtxRelease_v2: {
      // The session's last retain ends the context for it, as a process's last one does: what it
      // made there is freed (other sessions may hold the context on).
      const uint64_t app_device = args.get<uint64_t>();
      args.expect_end();
      const CUdevice device = devices_.to_real(static_cast<CUdevice>(app_device));
      auto release = d.fn<CUresult (*)(CUdevice)>("cuDevicePrimaryCtxRelease_v2");
      if (!release) return missing("cuDevicePrimaryCtxRelease_v2");
      const bool last = resources_.primary_retains(static_cast<CUdevice>(app_device)) == 1;
      CUcontext primary = nullptr;
      if (last) {
        if (CUresult r = free_in_primary_context(worker, device); r != CUDA_SUCCESS) return r;
        if (auto state = d.fn<CUresult (*)(CUcontext*, CUdevice)>("cuDevicePrimaryCtxRetain"); state && state(&primary, device) == CUDA_SUCCESS)
          release(device);  // only to learn the context's handle
      }
      const CUresult r = release(device);
      if (r == CUDA_SUCCESS) {
        forget_parameters();
        std::vector<uint64_t> ins{app_device}, outs;
        resources_.record(FN_cuDevicePrimaryCtxRelease_v2, ins, outs, nullptr);
        if (primary != nullptr) resources_.context_destroyed(primary);
      }
      return r;
    }
    default: {
      if (is_graph_call(header.function))
        return graph_call(header.function, args, out,
                          [this](CUfunction f, std::shared_ptr<const ParamLayout>& layout) {
                            return launch_parameters(f, layout);
                          },
                          client_);
      const char* name = function_name(header.function);
      LOG_WARN("%s: no server handler for %s (id 0x%08x)", client_.c_str(), name ? name : "an unknown call",
               header.function);
      return CUDA_ERROR_NOT_SUPPORTED;
    }
  }
}

CUresult CudaSession::free_in_primary_context(Worker& worker, CUdevice device) {
  Driver& d = Driver::get();
  auto retain = d.fn<CUresult (*)(CUcontext*, CUdevice)>("cuDevicePrimaryCtxRetain");
  auto release = d.fn<CUresult (*)(CUdevice)>("cuDevicePrimaryCtxRelease_v2");
  if (!retain || !release) return missing("cuDevicePrimaryCtxRetain");
  CUcontext primary = nullptr;
  if (CUresult r = retain(&primary, device); r != CUDA_SUCCESS) return r;
  resources_.release_primary_context_resources(primary);
  forget_parameters();
  release(device);
  worker.current = reinterpret_cast<CUcontext>(~uintptr_t{0});  // unknown: set it again next call
  return CUDA_SUCCESS;
}

CUresult CudaSession::query_parameters(CUfunction f, ParamLayout& layout) {
  Driver& d = Driver::get();
  auto func_info = d.fn<CUresult (*)(CUfunction, size_t, size_t*, size_t*)>("cuFuncGetParamInfo");
  auto kernel_info = d.fn<CUresult (*)(CUkernel, size_t, size_t*, size_t*)>("cuKernelGetParamInfo");
  if (!func_info) return missing("cuFuncGetParamInfo");
  layout.clear();
  bool as_kernel = false;
  for (size_t i = 0;; ++i) {
    size_t offset = 0, size = 0;
    CUresult r = as_kernel ? kernel_info(handle_of<CUkernel>(raw_of(f)), i, &offset, &size)
                           : func_info(f, i, &offset, &size);
    if (r == CUDA_ERROR_INVALID_HANDLE && i == 0 && !as_kernel && kernel_info) {
      as_kernel = true;  // cuLibraryGetKernel handles may be launched as functions
      --i;
      continue;
    }
    if (r == CUDA_ERROR_INVALID_VALUE && i > 0) break;  // past the last parameter
    if (r == CUDA_ERROR_INVALID_VALUE && i == 0) break;  // a kernel without parameters
    if (r != CUDA_SUCCESS) return r;
    layout.emplace_back(offset, size);
  }
  return CUDA_SUCCESS;
}

CUresult CudaSession::launch_parameters(CUfunction f, std::shared_ptr<const ParamLayout>& layout) {
  {
    std::lock_guard lock(layouts_mutex_);
    if (auto it = layouts_.find(f); it != layouts_.end()) {
      layout = it->second;
      return CUDA_SUCCESS;
    }
  }
  auto queried = std::make_shared<ParamLayout>();
  if (CUresult r = query_parameters(f, *queried); r != CUDA_SUCCESS) return r;
  std::lock_guard lock(layouts_mutex_);
  layout = layouts_[f] = std::move(queried);
  return CUDA_SUCCESS;
}

void CudaSession::forget_parameters() {
  std::lock_guard lock(layouts_mutex_);
  layouts_.clear();
}

}  // namespace rgpu::cuda
