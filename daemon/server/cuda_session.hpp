// One client's CUDA work on this server: a thread per application thread (so that one blocking
// call never holds up another thread's work), calls started in the application's issue order,
// and everything freed when the client goes away.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "cuda_dispatch.hpp"
#include "cuda_host_functions.hpp"
#include "cuda_resources.hpp"
#include "cuda_wire.hpp"
#include "frame.hpp"
#include "kernel_arguments.hpp"
#include "staging_pool.hpp"

namespace rgpu::cuda {

class CudaSession : public std::enable_shared_from_this<CudaSession> {
 public:
  // Sends one frame to the client: its encoded start and, when not empty, bulk payload bytes
  // that follow it. Called from session threads (must be thread-safe).
  using SendFn = std::function<void(std::vector<uint8_t> head, BulkPayload tail)>;

  CudaSession(DeviceMap devices, std::shared_ptr<MemoryBudget> budget, SendFn send, std::string client);
  ~CudaSession();

  // Counts what the driver says the session holds beyond its allocations against the quota.
  void set_memory_meter(std::unique_ptr<DeviceMemoryMeter> meter) { resources_.set_meter(std::move(meter)); }

  // A CudaCall frame, from the thread reading its connection (thread-safe). Its answer goes out
  // through `answer_via` when given (the bulk lane it came over), else through the session's send.
  void submit(Frame frame, std::shared_ptr<const SendFn> answer_via = nullptr);
  // Where a large CudaCall frame may be received (a staging buffer), or an empty owner.
  BulkPayload staging_buffer(const FrameHeader& header);
  // A connection's bulk sink (FrameLink::set_bulk_sink) that receives into the session's staging
  // memory while the session lasts.
  static std::function<BulkPayload(const FrameHeader&)> staging_sink(std::weak_ptr<CudaSession> session);
  // The client is gone: the threads finish the call they are in, then everything is freed. Takes as
  // long as the kernels still running: never on an event loop.
  void close();

  static constexpr size_t kMaxThreads = 256;
  static constexpr std::chrono::microseconds kIdleSpin{50};
  static constexpr size_t kStagingBuffers = 16;  // per client: 16 x kCopyStagingSize at most
  // Smaller frames take smaller buffers, so that many of them in flight leave the large ones be.
  static constexpr size_t kSmallStagingSize = (1u << 20) + (64u << 10);
  static constexpr size_t kSmallStagingBuffers = 32;

 private:
  struct Call {
    Frame frame;
    std::shared_ptr<const SendFn> answer_via;
  };
  struct Worker {
    std::thread thread;
    std::deque<Call> queue;
    std::atomic<size_t> queued{0};  // queue.size(), readable without the lock
    std::condition_variable ready;
    CUcontext current = nullptr;  // what this server thread has made current
    BulkPayload reply_tail;       // bulk output of the call in progress (device -> host data)
    bool staged_call = false;     // the call in progress arrived in a staging buffer
    std::vector<uint8_t> pending_image;  // rgpu.ImagePart bytes waiting for their load call
    bool image_too_large = false;
  };

  void worker_main(Worker* worker);
  void execute(Worker& worker, Call& incoming);
  void pass_turn(uint32_t sequence);
  // With mutex_ held: moves the turn past dropped calls, wakes the workers with calls waiting.
  void skip_passed_turns();
  void reply(const Frame& request, CUresult result, std::span<const uint8_t> data, BulkPayload tail = {},
             const SendFn* via = nullptr);
  CUresult copy_rectangle(WireReader& args, WireWriter& out);
  CUresult encode_tensor_map(WireReader& args, WireWriter& out);
  static bool take_image(Worker& worker, std::span<const uint8_t> last, std::vector<uint8_t>& image);
  CUresult copy_to_host(Worker& worker, uint32_t variant, CUdeviceptr src, uint64_t size, CUstream stream,
                        uint64_t host, WireWriter& out);
  // `variant`, `name`: the asynchronous copy function the application called, and the driver's.
  CUresult capture_host_copy(HostFunctionKind kind, uint32_t variant, const char* name, CUdeviceptr device,
                             uint64_t host, uint64_t size, CUstream stream, CUgraph graph);
  void free_released_staging();
  void note_deferred(uint32_t function, CUresult result);
  // rgpu.HostFunctionPoll: answered by the host functions' relay, outside the issue order.
  void poll_host_functions(const Frame& frame, std::shared_ptr<const SendFn> answer_via);

  // Hand-written calls (rgpu.* ids and the driver functions that need more than the generic path).
  CUresult manual_call(Worker& worker, const CallHeader& header, WireReader& args, WireWriter& out);
  // Frees what this session made in the primary context of `device` (the driver's ordinal).
  CUresult free_in_primary_context(Worker& worker, CUdevice device);

  // The layout of function `f` (rgpu.FunctionParams), from the driver.
  static CUresult query_parameters(CUfunction f, ParamLayout& layout);
  // The same, kept per function: a launch's parameters are checked against it before the driver
  // reads them. Forgotten whenever functions may have gone (modules, libraries, contexts).
  CUresult launch_parameters(CUfunction f, std::shared_ptr<const ParamLayout>& layout);
  void forget_parameters();

  DeviceMap devices_;
  SessionResources resources_;
  SendFn send_;
  // A staging buffer for `bytes` (a small one when it fits), or an empty owner.
  BulkPayload staging_for(size_t bytes);
  void pin_staging(const void* address);

  std::shared_ptr<StagingPool> staging_;
  std::shared_ptr<StagingPool> small_staging_;
  std::string client_;
  std::shared_ptr<HostFunctionRelay> host_functions_;

  std::mutex mutex_;
  std::map<uint32_t, std::unique_ptr<Worker>> workers_;
  uint32_t next_sequence_ = 1;
  std::set<uint32_t> skipped_;  // sequences of calls dropped before their turn
  bool closing_ = false;
  uint32_t deferred_function_ = 0;
  CUresult deferred_result_ = CUDA_SUCCESS;

  std::mutex layouts_mutex_;
  std::map<CUfunction, std::shared_ptr<const ParamLayout>> layouts_;
};

}  // namespace rgpu::cuda
