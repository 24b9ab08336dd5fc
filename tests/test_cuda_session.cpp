// A worker's CUDA session in process, on the CUDA test double: calls as a client sends them,
// including ones no RGPU client library would send.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>

#include "cuda_wire.hpp"
#include "server/cuda_driver.hpp"
#include "server/cuda_session.hpp"
#include "server/memory_budget.hpp"

namespace rgpu::cuda {
namespace {

class CudaSessionCalls : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("RGPU_CUDA_LIBRARY", CUDA_TEST_DOUBLE_PATH, 1);
    ASSERT_TRUE(Driver::get().ready()) << Driver::get().problem();
  }

  void SetUp() override {
    session_ = std::make_shared<CudaSession>(
        DeviceMap{{0}}, budget_,
        [this](std::vector<uint8_t> head, BulkPayload) {
          FrameHeader frame;
          std::memcpy(&frame, head.data(), kFrameHeaderSize);
          std::lock_guard lock(mutex_);
          replies_[frame.request_id] = std::vector<uint8_t>(head.begin() + kFrameHeaderSize, head.end());
          replied_.notify_all();
        },
        "test");
    WireWriter device;
    device.put<uint64_t>(0);
    context_ = handle(call(FN_cuDevicePrimaryCtxRetain, device, 1));
  }
  void TearDown() override {
    if (!closed_) session_->close();
  }

  struct Answer {
    CUresult result;
    std::vector<uint8_t> outputs;
    ReplyHeader header;
  };
  // Sends one call in the session's primary context; its request id (its sequence, or for a call
  // outside the issue order a number of its own).
  uint64_t send(uint32_t function, const WireWriter& args, uint32_t out_mask = 0, uint16_t flags = 0,
                bool ordered = true) {
    CallHeader header;
    header.function = function;
    header.context = context_;
    header.out_mask = out_mask;
    header.sequence = ordered ? ++sequence_ : 0;
    Frame frame;
    frame.header.type = kMsgCudaCall;
    frame.header.flags = flags;
    frame.header.request_id = ordered ? header.sequence : ++unordered_;
    WireWriter payload(frame.payload);
    payload.put(header);
    const auto& bytes = const_cast<WireWriter&>(args).buffer();
    payload.bytes(bytes.data(), bytes.size());
    const uint64_t id = frame.header.request_id;
    session_->submit(std::move(frame));
    return id;
  }
  Answer await(uint64_t request_id) {
    std::unique_lock lock(mutex_);
    replied_.wait(lock, [&] { return replies_.contains(request_id); });
    const std::vector<uint8_t> bytes = std::move(replies_[request_id]);
    replies_.erase(request_id);
    ReplyHeader reply;
    std::memcpy(&reply, bytes.data(), sizeof reply);
    return Answer{static_cast<CUresult>(reply.result), {bytes.begin() + sizeof reply, bytes.end()}, reply};
  }
  bool answered(uint64_t request_id) {
    std::lock_guard lock(mutex_);
    return replies_.contains(request_id);
  }
  // One call that waits for its answer, in the session's primary context.
  Answer call(uint32_t function, const WireWriter& args, uint32_t out_mask = 0) {
    return await(send(function, args, out_mask));
  }
  static uint64_t handle(const Answer& answer) {
    EXPECT_EQ(answer.result, CUDA_SUCCESS);
    uint64_t value = 0;
    if (answer.outputs.size() >= sizeof value) std::memcpy(&value, answer.outputs.data(), sizeof value);
    return value;
  }
  uint64_t allocate(uint64_t bytes) {
    WireWriter size;
    size.put(bytes);
    return handle(call(FN_cuMemAlloc_v2, size, 1));
  }

  std::shared_ptr<MemoryBudget> budget_ = std::make_shared<MemoryBudget>();
  std::shared_ptr<CudaSession> session_;
  bool closed_ = false;
  uint64_t context_ = 0;
  uint32_t sequence_ = 0;
  uint64_t unordered_ = 1u << 30;
  std::mutex mutex_;
  std::condition_variable replied_;
  std::map<uint64_t, std::vector<uint8_t>> replies_;
};

WireWriter rectangle(uint8_t mode, const CUDA_MEMCPY2D& copy) {
  WireWriter w;
  w.put(CopyFunction::Memcpy2D).put<uint64_t>(0).put(mode).put<uint8_t>(2).put(copy);
  return w;
}

// A rectangle whose width times height wraps around 2^64 looked as small as the packed rows: the
// driver then copied its rows past them (a heap overflow in the worker, writing or reading).
TEST_F(CudaSessionCalls, RectangleWhoseSizeWrapsAroundIsRefused) {
  const uint64_t device = allocate(1 << 20);
  CUDA_MEMCPY2D down{};
  down.srcMemoryType = CU_MEMORYTYPE_DEVICE;
  down.srcDevice = device;
  down.srcPitch = 64;
  down.dstMemoryType = CU_MEMORYTYPE_HOST;
  down.dstPitch = 64;
  down.WidthInBytes = 64;
  down.Height = (uint64_t{1} << 58) + 1;  // 64 x that is 2^64 + 64: 64 packed bytes
  EXPECT_EQ(call(FN_rgpuMemcpy2D, rectangle(kCopyToHost, down)).result, CUDA_ERROR_INVALID_VALUE);
  CUDA_MEMCPY2D up{};
  up.srcMemoryType = CU_MEMORYTYPE_HOST;
  up.srcPitch = 64;
  up.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  up.dstDevice = device;
  up.dstPitch = 64;
  up.WidthInBytes = 64;
  up.Height = (uint64_t{1} << 58) + 1;
  WireWriter rows = rectangle(kCopyFromHost, up);
  rows.buffer().resize(rows.buffer().size() + 64);
  EXPECT_EQ(call(FN_rgpuMemcpy2D, rows).result, CUDA_ERROR_INVALID_VALUE);
  // A rectangle of that size that does not wrap is copied.
  down.Height = 1;
  const Answer copied = call(FN_rgpuMemcpy2D, rectangle(kCopyToHost, down));
  EXPECT_EQ(copied.result, CUDA_SUCCESS);
  EXPECT_EQ(copied.outputs.size(), 64u);
}

// The driver reads as many parameters as the kernel has, each of its own size, through the
// pointers the server makes into the bytes that came: fewer parameters, or bytes that end before
// a parameter does, made it read past them.
TEST_F(CudaSessionCalls, LaunchParametersMustCoverTheKernels) {
  WireWriter image;
  const char text[] = "RGPU-CUDA-TEST-DOUBLE-MODULE\nfill_u32\n";
  image.bytes(text, sizeof text - 1);
  const uint64_t module = handle(call(FN_rgpuModuleLoad, image));
  WireWriter name;
  name.put(module).str("fill_u32");
  const uint64_t function = handle(call(FN_cuModuleGetFunction, name, 1));
  const uint64_t memory = allocate(1024);
  // fill_u32(unsigned* p, unsigned value, unsigned long long n): offsets 0, 8, 16.
  auto launch = [&](std::vector<uint32_t> offsets, size_t bytes) {
    WireWriter w;
    w.put(FN_cuLaunchKernel).put(function);
    for (uint32_t v : {1, 1, 1, 32, 1, 1}) w.put(v);
    w.put<uint32_t>(0).put<uint64_t>(0).put<uint32_t>(0);
    w.put(static_cast<uint32_t>(offsets.size()));
    for (uint32_t offset : offsets) w.put(offset);
    WireWriter params;
    params.put(memory).put<uint32_t>(7).put<uint32_t>(0).put<uint64_t>(64);
    params.buffer().resize(bytes);
    w.blob(params.buffer());
    return call(FN_rgpuLaunch, w).result;
  };
  EXPECT_EQ(launch({0, 8, 16}, 24), CUDA_SUCCESS);
  EXPECT_EQ(launch({0, 8, 16}, 20), CUDA_ERROR_INVALID_VALUE);  // the last parameter runs 4 bytes past
  EXPECT_EQ(launch({0, 8}, 24), CUDA_ERROR_INVALID_VALUE);      // the kernel has 3
  EXPECT_EQ(launch({0, 8, 16, 16}, 24), CUDA_ERROR_INVALID_VALUE);
  // The kernel of a module unloaded since is not launched.
  WireWriter unload;
  unload.put(module);
  EXPECT_EQ(call(FN_cuModuleUnload, unload).result, CUDA_SUCCESS);
  EXPECT_EQ(launch({0, 8, 16}, 24), CUDA_ERROR_INVALID_HANDLE);
}

// Plain structs cross as their size and bytes: a descriptor whose size is not the server's is
// refused before the driver sees it, and one the driver fills comes back whole.
TEST_F(CudaSessionCalls, StructsCrossWithTheirSizeChecked) {
  CUDA_ARRAY3D_DESCRIPTOR wanted{};
  wanted.Width = 16;
  wanted.Height = 8;
  wanted.Depth = 3;
  wanted.Format = CU_AD_FORMAT_FLOAT;
  wanted.NumChannels = 1;
  wanted.Flags = CUDA_ARRAY3D_LAYERED;
  auto create = [&](uint32_t size) {
    WireWriter w;
    w.put<uint8_t>(1).put(size).bytes(&wanted, sizeof wanted);
    return call(FN_cuArray3DCreate_v2, w, 1);
  };
  EXPECT_EQ(create(sizeof wanted - 8).result, CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(create(sizeof wanted + 8).result, CUDA_ERROR_INVALID_VALUE);
  const uint64_t array = handle(create(sizeof wanted));
  WireWriter absent;
  absent.put<uint8_t>(0);
  EXPECT_EQ(call(FN_cuArray3DCreate_v2, absent, 1).result, CUDA_ERROR_INVALID_VALUE);  // the driver's answer to NULL

  CUDA_ARRAY3D_DESCRIPTOR garbage;
  std::memset(&garbage, 0xA5, sizeof garbage);
  WireWriter query;
  query.put<uint32_t>(sizeof garbage).bytes(&garbage, sizeof garbage).put(array);
  const Answer described = call(FN_cuArray3DGetDescriptor_v2, query, 1);
  ASSERT_EQ(described.result, CUDA_SUCCESS);
  ASSERT_EQ(described.outputs.size(), 4 + sizeof wanted);
  uint32_t size = 0;
  std::memcpy(&size, described.outputs.data(), 4);
  EXPECT_EQ(size, sizeof wanted);
  CUDA_ARRAY3D_DESCRIPTOR got;
  std::memcpy(&got, described.outputs.data() + 4, sizeof got);
  EXPECT_EQ(got.Width, 16u);
  EXPECT_EQ(got.Height, 8u);
  EXPECT_EQ(got.Depth, 3u);
  EXPECT_EQ(got.Format, CU_AD_FORMAT_FLOAT);
  EXPECT_EQ(got.NumChannels, 1u);
  EXPECT_EQ(got.Flags, unsigned{CUDA_ARRAY3D_LAYERED});
  WireWriter destroy;
  destroy.put(array);
  EXPECT_EQ(call(FN_cuArrayDestroy, destroy).result, CUDA_SUCCESS);
}

// A box between packed rows and an array: the packed side must be exactly the rows that came (no
// offsets, no gaps), and a box whose size wraps around is refused.
TEST_F(CudaSessionCalls, PackedBoxesMustBeTheRowsThatCame) {
  CUDA_ARRAY3D_DESCRIPTOR d{};
  d.Width = 16;
  d.Height = 4;
  d.Depth = 2;
  d.Format = CU_AD_FORMAT_UNSIGNED_INT8;
  d.NumChannels = 1;
  WireWriter made;
  made.put<uint8_t>(1).put<uint32_t>(sizeof d).bytes(&d, sizeof d);
  const uint64_t array = handle(call(FN_cuArray3DCreate_v2, made, 1));
  CUDA_MEMCPY3D box{};
  box.srcMemoryType = CU_MEMORYTYPE_HOST;
  box.srcPitch = 16;
  box.srcHeight = 4;
  box.dstMemoryType = CU_MEMORYTYPE_ARRAY;
  box.dstArray = reinterpret_cast<CUarray>(array);
  box.WidthInBytes = 16;
  box.Height = 4;
  box.Depth = 2;
  auto send = [&](const CUDA_MEMCPY3D& b, size_t rows) {
    WireWriter w;
    w.put(CopyFunction::Memcpy3D).put<uint64_t>(0).put(kCopyFromHost).put<uint8_t>(3).put(b);
    w.buffer().resize(w.buffer().size() + rows);
    return call(FN_rgpuMemcpy2D, w).result;
  };
  EXPECT_EQ(send(box, 128), CUDA_SUCCESS);
  EXPECT_EQ(send(box, 127), CUDA_ERROR_INVALID_VALUE);
  CUDA_MEMCPY3D gaps = box;
  gaps.srcPitch = 32;
  EXPECT_EQ(send(gaps, 128), CUDA_ERROR_INVALID_VALUE);
  CUDA_MEMCPY3D offset = box;
  offset.srcZ = 1;
  EXPECT_EQ(send(offset, 128), CUDA_ERROR_INVALID_VALUE);
  CUDA_MEMCPY3D wraps = box;
  wraps.Depth = (uint64_t{1} << 58) + 1;  // 16 x 4 x that is 2^64 + 64
  EXPECT_EQ(send(wraps, 64), CUDA_ERROR_INVALID_VALUE);
  // Within the budget while it lives, out of it once the session closes.
  EXPECT_GE(budget_->used(), 128u);
  session_->close();
  EXPECT_EQ(budget_->used(), 0u);
}

// What the application sends inside structs is checked before the driver sees it: a Windows pointer
// that must be NULL, an array's count against the structs that came, an array over the limit.
TEST_F(CudaSessionCalls, StructContentsAndArraysAreChecked) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  auto granularity = [&](const CUmemAllocationProp& p) {
    WireWriter w;
    w.put<uint8_t>(1).put<uint32_t>(sizeof p).bytes(&p, sizeof p).put<uint64_t>(CU_MEM_ALLOC_GRANULARITY_MINIMUM);
    return call(FN_cuMemGetAllocationGranularity, w, 1);
  };
  EXPECT_EQ(handle(granularity(prop)), 2u << 20);
  CUmemAllocationProp windows = prop;
  windows.win32HandleMetaData = reinterpret_cast<void*>(0x1000);
  EXPECT_EQ(granularity(windows).result, CUDA_ERROR_INVALID_VALUE);
  CUmemAllocationProp other_device = prop;
  other_device.location.id = 1;  // the session has one device: the driver is asked for device -1
  EXPECT_EQ(granularity(other_device).result, CUDA_ERROR_INVALID_VALUE);

  // An output struct's bytes are whatever the application's memory held: its Windows pointer is cleared.
  WireWriter size;
  size.put<uint64_t>(2 << 20);
  WireWriter create;
  create.put<uint64_t>(2 << 20).put<uint8_t>(1).put<uint32_t>(sizeof prop).bytes(&prop, sizeof prop).put<uint64_t>(0);
  const uint64_t allocation = handle(call(FN_cuMemCreate, create, 1));
  EXPECT_GE(budget_->used(), 2u << 20);
  WireWriter properties;
  properties.put<uint32_t>(sizeof windows).bytes(&windows, sizeof windows).put(allocation);
  EXPECT_EQ(call(FN_cuMemGetAllocationPropertiesFromHandle, properties, 1).result, CUDA_SUCCESS);

  WireWriter reserve;
  reserve.put<uint64_t>(2 << 20).put<uint64_t>(0).put<uint64_t>(0).put<uint64_t>(0);
  const uint64_t base = handle(call(FN_cuMemAddressReserve, reserve, 1));
  WireWriter map;
  map.put(base).put<uint64_t>(2 << 20).put<uint64_t>(0).put(allocation).put<uint64_t>(0);
  ASSERT_EQ(call(FN_cuMemMap, map).result, CUDA_SUCCESS);
  CUmemAccessDesc access{};
  access.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  auto set_access = [&](uint64_t sent, uint64_t count) {
    WireWriter w;
    w.put(base).put<uint64_t>(2 << 20).put<uint8_t>(1).put<uint32_t>(sizeof access).put(sent);
    for (uint64_t i = 0; i < std::min<uint64_t>(sent, 2000); ++i) w.bytes(&access, sizeof access);
    w.put(count);
    return call(FN_cuMemSetAccess, w).result;
  };
  EXPECT_EQ(set_access(1, 2), CUDA_ERROR_INVALID_VALUE);        // the driver would read a second one
  EXPECT_EQ(set_access(1025, 1025), CUDA_ERROR_INVALID_VALUE);  // over the limit
  EXPECT_EQ(set_access(uint64_t{1} << 60, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(set_access(1, 1), CUDA_SUCCESS);

  // Pool attributes take values of their own size only.
  WireWriter pool_of;
  pool_of.put<uint64_t>(0);
  const uint64_t pool = handle(call(FN_cuDeviceGetDefaultMemPool, pool_of, 1));
  auto set_threshold = [&](uint32_t bytes) {
    WireWriter w;
    w.put(pool).put<uint32_t>(CU_MEMPOOL_ATTR_RELEASE_THRESHOLD).put(bytes);
    w.buffer().resize(w.buffer().size() + bytes);
    return call(FN_cuMemPoolSetAttribute, w).result;
  };
  EXPECT_EQ(set_threshold(4), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(set_threshold(8), CUDA_SUCCESS);
  WireWriter unknown;
  unknown.put(pool).put<uint32_t>(1000);
  EXPECT_EQ(call(FN_cuMemPoolGetAttribute, unknown).result, CUDA_ERROR_INVALID_VALUE);

  // A session that ends with memory mapped gives the quota back.
  WireWriter release;
  release.put(allocation);
  ASSERT_EQ(call(FN_cuMemRelease, release).result, CUDA_SUCCESS);
  EXPECT_GE(budget_->used(), 2u << 20);  // still mapped
  session_->close();
  EXPECT_EQ(budget_->used(), 0u);
}

// Graph nodes' parameters as no RGPU client library sends them: host memory in a memcpy node, an
// attribute that carries an event, operations of another size or none, are refused before the
// driver sees them.
TEST_F(CudaSessionCalls, GraphNodeParametersAreChecked) {
  WireWriter no_flags;
  no_flags.put<uint64_t>(0);
  const uint64_t graph = handle(call(FN_cuGraphCreate, no_flags, 1));
  const uint64_t memory = allocate(64);
  CUDA_MEMCPY3D copy{};
  copy.srcMemoryType = CU_MEMORYTYPE_DEVICE;
  copy.srcDevice = memory;
  copy.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  copy.dstDevice = memory + 32;
  copy.WidthInBytes = 32;
  copy.Height = copy.Depth = 1;
  WireWriter add;
  add.put(graph).put<uint32_t>(0).put<uint32_t>(sizeof copy).bytes(&copy, sizeof copy).put(context_);
  const uint64_t node = handle(call(FN_cuGraphAddMemcpyNode, add, 1));
  auto set_copy = [&](const CUDA_MEMCPY3D& c) {
    WireWriter w;
    w.put(node).put<uint32_t>(sizeof c).bytes(&c, sizeof c);
    return call(FN_cuGraphMemcpyNodeSetParams, w).result;
  };
  EXPECT_EQ(set_copy(copy), CUDA_SUCCESS);
  CUDA_MEMCPY3D host = copy;
  host.dstMemoryType = CU_MEMORYTYPE_HOST;
  host.dstHost = reinterpret_cast<void*>(0x1000);
  EXPECT_EQ(set_copy(host), CUDA_ERROR_INVALID_VALUE);
  host.dstMemoryType = static_cast<CUmemorytype>(77);
  EXPECT_EQ(set_copy(host), CUDA_ERROR_INVALID_VALUE);

  auto set_attribute = [&](uint64_t attribute) {
    WireWriter w;
    w.put(node).put(attribute);
    const CUlaunchAttributeValue value{};
    w.put(value);
    return call(FN_cuGraphKernelNodeSetAttribute, w).result;
  };
  EXPECT_EQ(set_attribute(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(set_attribute(CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(set_attribute(CU_LAUNCH_ATTRIBUTE_PRIORITY), CUDA_ERROR_INVALID_VALUE);  // the driver's: no kernel node

  CUstreamBatchMemOpParams write{};
  write.writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_32;
  write.writeValue.address = memory;
  auto add_batch = [&](uint32_t count, uint32_t size) {
    WireWriter w;
    w.put(graph).put<uint32_t>(0).put(context_).put(count).put<uint32_t>(0).put(size);
    for (uint32_t i = 0; i < count; ++i) w.bytes(&write, sizeof write);
    w.buffer().resize(w.buffer().size() + (size > sizeof write ? count * (size - sizeof write) : 0));
    return call(FN_cuGraphAddBatchMemOpNode, w, 1).result;
  };
  EXPECT_EQ(add_batch(1, sizeof write), CUDA_SUCCESS);
  EXPECT_EQ(add_batch(0, sizeof write), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(add_batch(1, sizeof write + 8), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(add_batch(kMaxBatchMemOps + 1, sizeof write), CUDA_ERROR_INVALID_VALUE);
}


WireWriter poll_arguments(uint64_t done) {
  WireWriter w;
  w.put(done).put<uint64_t>(0);  // no bytes read from host memory
  return w;
}
HostFunctionPollAnswer decode(const std::vector<uint8_t>& outputs) {
  WireReader reader(outputs);
  return decode_host_function_poll_answer(reader);
}

class HostFunctionCalls : public CudaSessionCalls {
 protected:
  // rgpu.LaunchHostFunction (on the legacy stream unless told), pipelined, as the interpose sends it.
  void launch(uint32_t variant, uint64_t id, uint64_t stream = 0) {
    WireWriter w;
    w.put(variant).put(stream).put(id).put<uint32_t>(0);
    send(FN_rgpuLaunchHostFunction, w, 0, kFrameNoReply);
  }
  // rgpu.HostFunctionPoll, outside the issue order; its request id.
  uint64_t poll(const WireWriter& arguments) { return send(FN_rgpuHostFunctionPoll, arguments, 0, 0, false); }
  uint64_t poll(uint64_t done) { return poll(poll_arguments(done)); }
  HostFunctionPollAnswer polled(uint64_t done) {
    const Answer answer = await(poll(done));
    EXPECT_EQ(answer.result, CUDA_SUCCESS);
    EXPECT_EQ(answer.header.deferred_function, 0u);  // a failure is for its calls' own thread
    return decode(answer.outputs);
  }
  WireWriter legacy_stream() {
    WireWriter w;
    w.put<uint64_t>(0);
    return w;
  }
};

// The driver runs the server's function in place of the application's: the stream waits until
// the application's next poll says the function has run.
TEST_F(HostFunctionCalls, AStreamWaitsForTheApplicationsHostFunction) {
  launch(FN_cuLaunchHostFunc, 7);
  const HostFunctionPollAnswer first = polled(0);
  EXPECT_TRUE(first.reached);
  EXPECT_EQ(first.id, 7u);
  EXPECT_TRUE(first.once);
  EXPECT_EQ(first.status, CUDA_SUCCESS);
  EXPECT_EQ(call(FN_cuStreamQuery, legacy_stream()).result, CUDA_ERROR_NOT_READY);
  const uint64_t synchronized = send(FN_cuStreamSynchronize, legacy_stream());
  const uint64_t parked = poll(first.reach);
  EXPECT_EQ(await(synchronized).result, CUDA_SUCCESS);
  EXPECT_FALSE(answered(parked));  // nothing more was reached
}

// A session that ends while a stream waits for the application (which never answers) lets the
// stream go, and the call waiting for that stream returns: the session closes.
TEST_F(HostFunctionCalls, ClosingReleasesHostFunctionsTheApplicationNeverAnswered) {
  launch(FN_cuStreamAddCallback, 1);
  launch(FN_cuLaunchHostFunc, 2);
  EXPECT_TRUE(polled(0).reached);
  send(FN_cuStreamSynchronize, legacy_stream());  // waits for the stream
  session_->close();
  closed_ = true;
}

// What an application sends about host functions is checked: a function RGPU does not send is
// refused (and its id given back to be forgotten), a poll with bytes too many is refused, a done
// that no stream waits for is ignored, and polls beyond the limit are refused.
TEST_F(HostFunctionCalls, HostFunctionCallsAreChecked) {
  launch(FN_cuLaunchKernel, 9);
  const HostFunctionPollAnswer answer = polled(12345);
  EXPECT_FALSE(answer.reached);
  EXPECT_EQ(answer.forgotten, std::vector<uint64_t>{9});
  const Answer next = call(FN_cuCtxSynchronize, WireWriter{});
  EXPECT_EQ(next.header.deferred_function, FN_rgpuLaunchHostFunction);
  EXPECT_EQ(next.header.deferred_result, CUDA_ERROR_INVALID_VALUE);

  WireWriter too_long = poll_arguments(0);
  too_long.put<uint8_t>(0);
  EXPECT_EQ(await(poll(too_long)).result, CUDA_ERROR_INVALID_VALUE);
  const uint64_t first_parked = poll(0);
  for (size_t i = 1; i < HostFunctionRelay::kMaxPolls; ++i) poll(0);
  EXPECT_EQ(await(poll(0)).result, CUDA_ERROR_INVALID_VALUE);
  // The polls that wait are answered in turn.
  launch(FN_cuLaunchHostFunc, 10);
  const HostFunctionPollAnswer reached = decode(await(first_parked).outputs);
  EXPECT_TRUE(reached.reached);
  EXPECT_EQ(reached.id, 10u);
}

// The calls of fuzz_cuda_calls's finding, as an application makes them: host functions pending on
// a stream run in stream order, then the host functions of a graph launched behind them, also
// after the graph is destroyed (its executable graph and the launch keep them); the stream's
// synchronisation returns once the last has run, and the graph's ids are forgotten once the
// executable graph goes too. A launch that is refused makes an answer that only lists its id to
// forget: it ends no run, and the next poll is told the next one (the fuzz target's stand-in for
// the host function thread stopped polling there, and the stream then waited for ever).
TEST_F(HostFunctionCalls, AGraphDestroyedAfterItsLaunchRunsItsHostFunctionsInStreamOrder) {
  WireWriter no_flags;
  no_flags.put<uint64_t>(0);
  const uint64_t stream = handle(call(FN_cuStreamCreate, no_flags, 1));
  WireWriter on_stream;
  on_stream.put(stream);
  launch(FN_cuLaunchKernel, 1, stream);  // not a function RGPU sends: refused
  const HostFunctionPollAnswer refused = polled(0);
  EXPECT_FALSE(refused.reached);
  EXPECT_EQ(refused.forgotten, std::vector<uint64_t>{1});

  launch(FN_cuLaunchHostFunc, 2, stream);
  launch(FN_cuStreamAddCallback, 3, stream);
  WireWriter capture;
  capture.put(stream).put<uint64_t>(CU_STREAM_CAPTURE_MODE_RELAXED);
  ASSERT_EQ(call(FN_cuStreamBeginCapture_v2, capture).result, CUDA_SUCCESS);
  launch(FN_cuLaunchHostFunc, 4, stream);
  const uint64_t graph = handle(call(FN_cuStreamEndCapture, on_stream, 1));
  WireWriter node;
  node.put(graph).put<uint64_t>(5).put<uint32_t>(0);
  handle(call(FN_rgpuGraphAddHostNode, node, 1));
  WireWriter instantiate;
  instantiate.put(graph).put<uint64_t>(0);
  const uint64_t exec = handle(call(FN_cuGraphInstantiateWithFlags, instantiate, 1));
  WireWriter graph_launch;
  graph_launch.put(exec).put(stream);
  send(FN_cuGraphLaunch, graph_launch, 0, kFrameNoReply);
  WireWriter destroy;
  destroy.put(graph);
  send(FN_cuGraphDestroy, destroy, 0, kFrameNoReply);
  const uint64_t synchronized = send(FN_cuStreamSynchronize, on_stream);

  uint64_t done = 0;
  for (const auto& [id, once] : std::vector<std::pair<uint64_t, bool>>{{2, true}, {3, true}, {4, false}, {5, false}}) {
    const HostFunctionPollAnswer run = polled(done);
    ASSERT_TRUE(run.reached);
    EXPECT_EQ(run.id, id);
    EXPECT_EQ(run.once, once);
    EXPECT_TRUE(run.forgotten.empty());
    EXPECT_FALSE(answered(synchronized));  // the stream waits for the run
    done = run.reach;
  }
  const uint64_t parked = poll(done);
  EXPECT_EQ(await(synchronized).result, CUDA_SUCCESS);
  EXPECT_FALSE(answered(parked));  // the executable graph still holds 4 and 5

  WireWriter exec_handle;
  exec_handle.put(exec);
  ASSERT_EQ(call(FN_cuGraphExecDestroy, exec_handle).result, CUDA_SUCCESS);
  std::vector<uint64_t> forgotten = decode(await(parked).outputs).forgotten;
  if (forgotten.size() < 2) {
    const std::vector<uint64_t> more = polled(0).forgotten;
    forgotten.insert(forgotten.end(), more.begin(), more.end());
  }
  std::sort(forgotten.begin(), forgotten.end());
  EXPECT_EQ(forgotten, (std::vector<uint64_t>{4, 5}));
  ASSERT_EQ(call(FN_cuStreamDestroy_v2, on_stream).result, CUDA_SUCCESS);
}

// A stream that waits for an event waits for the record issued before the wait, as CUDA's does,
// not for one issued after it: the CUDA test double's wait had waited until none of the event's
// records was pending, so a record on the waiting stream itself, queued behind the wait, held it
// for ever (and the stream's synchronisation with it).
TEST_F(HostFunctionCalls, AStreamWaitsForTheEventsRecordBeforeTheWaitNotALaterOne) {
  WireWriter non_blocking;
  non_blocking.put<uint64_t>(CU_STREAM_NON_BLOCKING);
  const uint64_t held = handle(call(FN_cuStreamCreate, non_blocking, 1));
  const uint64_t waiting = handle(call(FN_cuStreamCreate, non_blocking, 1));
  WireWriter no_flags;
  no_flags.put<uint64_t>(0);
  const uint64_t event = handle(call(FN_cuEventCreate, no_flags, 1));
  auto record = [&](uint64_t stream) {
    WireWriter w;
    w.put(event).put(stream);
    return call(FN_cuEventRecord, w).result;
  };
  WireWriter on_waiting;
  on_waiting.put(waiting);
  WireWriter the_event;
  the_event.put(event);

  launch(FN_cuLaunchHostFunc, 1, held);
  const HostFunctionPollAnswer run = polled(0);  // the held stream waits for it
  ASSERT_TRUE(run.reached);
  ASSERT_EQ(record(held), CUDA_SUCCESS);
  WireWriter wait;
  wait.put(waiting).put(event).put<uint64_t>(0);
  ASSERT_EQ(call(FN_cuStreamWaitEvent, wait).result, CUDA_SUCCESS);
  ASSERT_EQ(record(waiting), CUDA_SUCCESS);  // after the wait: not what the stream waits for
  EXPECT_EQ(call(FN_cuEventQuery, the_event).result, CUDA_ERROR_NOT_READY);
  const uint64_t synchronized = send(FN_cuStreamSynchronize, on_waiting);
  EXPECT_FALSE(answered(synchronized));  // the first record waits for the host function
  poll(run.reach);
  EXPECT_EQ(await(synchronized).result, CUDA_SUCCESS);
  EXPECT_EQ(call(FN_cuEventSynchronize, the_event).result, CUDA_SUCCESS);
  EXPECT_EQ(call(FN_cuEventQuery, the_event).result, CUDA_SUCCESS);
}

// A host node's function reads back as the id the application sent; a function set into it is
// forgotten with its graph, as the node's first one is. A node of no host function is refused.
TEST_F(HostFunctionCalls, HostNodesFunctionsAreReadChangedAndForgottenWithTheirGraph) {
  WireWriter no_flags;
  no_flags.put<uint64_t>(0);
  const uint64_t graph = handle(call(FN_cuGraphCreate, no_flags, 1));
  WireWriter add;
  add.put(graph).put<uint64_t>(21).put<uint32_t>(0);
  const uint64_t node = handle(call(FN_rgpuGraphAddHostNode, add, 1));
  auto read = [&](uint64_t of) {
    WireWriter w;
    w.put(of);
    return call(FN_cuGraphHostNodeGetParams, w, 1);
  };
  auto set = [&](uint64_t of, uint64_t id) {
    WireWriter w;
    w.put(of).put(id);
    return call(FN_cuGraphHostNodeSetParams, w).result;
  };
  EXPECT_EQ(handle(read(node)), 21u);
  EXPECT_EQ(set(node, 22), CUDA_SUCCESS);
  EXPECT_EQ(handle(read(node)), 22u);
  WireWriter add_empty;
  add_empty.put(graph).put<uint32_t>(0);
  const uint64_t empty = handle(call(FN_cuGraphAddEmptyNode, add_empty, 1));
  EXPECT_EQ(read(empty).result, CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(set(empty, 23), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(polled(0).forgotten, std::vector<uint64_t>{23});  // refused: never runs
  WireWriter destroy;
  destroy.put(graph);
  EXPECT_EQ(call(FN_cuGraphDestroy, destroy).result, CUDA_SUCCESS);
  EXPECT_EQ(polled(0).forgotten, (std::vector<uint64_t>{22, 21}));
}

// A poll that comes with a sequence anyway (it is outside the issue order) holds up no call.
TEST_F(HostFunctionCalls, APollWithATurnHoldsUpNothing) {
  send(FN_rgpuHostFunctionPoll, poll_arguments(0));
  EXPECT_EQ(call(FN_cuCtxSynchronize, WireWriter{}).result, CUDA_SUCCESS);
}

}  // namespace
}  // namespace rgpu::cuda
