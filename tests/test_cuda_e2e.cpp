// The whole CUDA path in CI: this test program calls the driver API of RGPU's interpose library
// (linked as its libcuda.so.1), which talks to a real `rgpu client` daemon, which talks to a real
// `rgpu server` whose executor runs the CUDA driver TEST DOUBLE (host memory, host-implemented
// kernels) built by the tests.
#include <cuda.h>
#include <gmock/gmock.h>

#include <atomic>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <optional>
#include <thread>
#include <set>
#include <vector>

#include "app_protocol.hpp"
#include "cuda_wire.hpp"
#include "rgpu_process.hpp"
#include "session.hpp"
#include "wire.hpp"

// cuda.h declares the per-thread default stream variants only to programs built for them.
extern "C" CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr, const void*, size_t, CUstream);

namespace {

using rgpu::test::ServerProcess;
using rgpu::test::TempDir;

constexpr uint64_t kQuota = 256ull << 20;
const char* kToken = "e2e-token-0123456789abcdef0123456789abcdef0123456789abcdef01234567";

const char* kModule =
    "RGPU-CUDA-TEST-DOUBLE-MODULE\n"
    "vector_add_f32\n"
    "scale_f32\n"
    "fill_u32\n"
    "add_global_f32\n"
    "illegal_address\n"
    "global offset 4\n";

// A module of the double's whose globals take `mib` MiB.
std::string module_with_globals(uint64_t mib) {
  std::string text = "RGPU-CUDA-TEST-DOUBLE-MODULE\n";
  for (uint64_t i = 0; i < mib; ++i) text += "global g" + std::to_string(i) + " 1048576\n";
  return text;
}

// Server (with the test double as its driver) and client daemon for the whole test program.
class CudaPath : public ::testing::Environment {
 public:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>();
    const std::string config = dir_->file("rgpu.toml", std::string("[server]\nbind = \"127.0.0.1\"\n\n") +
                                                           "[[security.tokens]]\ntoken = \"" + kToken +
                                                           "\"\nname = \"e2e\"\nmax_memory = " +
                                                           std::to_string(kQuota) + "\n");
    // The double answers NVML's per-process memory too: module globals count against the quota.
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--config", config},
        std::vector<std::string>{"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH, "RGPU_NVML_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
    const std::string socket = dir_->path() + "/client.sock";
    client_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--server", server_->address(), "--token", kToken, "--socket", socket},
        std::vector<std::string>{}, "client");
    setenv("RGPU_CLIENT_SOCKET", socket.c_str(), 1);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
  }
  static std::string server_log() { return instance->server_->log(); }
  static std::string server_address() { return instance->server_->address(); }
  // A connection of the test's own to the fixture's server (TLS, its key pinned).
  static rgpu::SessionOptions session_options() {
    rgpu::SessionOptions options;
    options.server = rgpu::parse_host_port(server_address());
    options.token = kToken;
    options.trust.fingerprint = instance->server_->fingerprint();
    return options;
  }
  static inline CudaPath* instance = nullptr;

 private:
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<ServerProcess> client_;
};

#define ASSERT_CU(call) ASSERT_EQ((call), CUDA_SUCCESS) << #call
#define EXPECT_CU(call) EXPECT_EQ((call), CUDA_SUCCESS) << #call

class CudaE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_CU(cuInit(0));
    ASSERT_CU(cuDeviceGet(&device_, 0));
    ASSERT_CU(cuDevicePrimaryCtxRetain(&context_, device_));
    ASSERT_CU(cuCtxSetCurrent(context_));
  }
  void TearDown() override {
    cuCtxSetCurrent(nullptr);
    cuDevicePrimaryCtxRelease(device_);
  }
  CUmodule load_module() {
    CUmodule module = nullptr;
    EXPECT_CU(cuModuleLoadData(&module, kModule));
    return module;
  }
  CUdevice device_ = 0;
  CUcontext context_ = nullptr;
};

TEST_F(CudaE2E, DevicesAreTheServersDevices) {
  int count = 0;
  ASSERT_CU(cuDeviceGetCount(&count));
  EXPECT_EQ(count, 2);
  char name[128];
  ASSERT_CU(cuDeviceGetName(name, sizeof name, 1));
  EXPECT_STREQ(name, "RGPU CUDA test double 1");
  int major = 0, warp = 0;
  ASSERT_CU(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, 0));
  ASSERT_CU(cuDeviceGetAttribute(&warp, CU_DEVICE_ATTRIBUTE_WARP_SIZE, 0));
  EXPECT_EQ(major, 9);
  EXPECT_EQ(warp, 32);
  CUuuid a{}, b{};
  ASSERT_CU(cuDeviceGetUuid(&a, 0));
  ASSERT_CU(cuDeviceGetUuid(&b, 1));
  EXPECT_NE(std::memcmp(a.bytes, b.bytes, sizeof a.bytes), 0);
  CUdevice bad;
  EXPECT_EQ(cuDeviceGet(&bad, 2), CUDA_ERROR_INVALID_DEVICE);
  size_t total = 0;
  ASSERT_CU(cuDeviceTotalMem(&total, 0));
  EXPECT_GT(total, 0u);
}

TEST_F(CudaE2E, CopiesOfManySizesRoundTrip) {
  std::mt19937 rng(7);
  // 0 bytes, odd sizes, the inline limit's neighbours, and sizes over one ring chunk.
  for (size_t bytes : {size_t{0}, size_t{1}, size_t{3}, size_t{4097}, size_t{256 << 10}, size_t{(256 << 10) + 1},
                       size_t{5 << 20}, size_t{(70 << 20) + 13}}) {
    std::vector<uint8_t> in(bytes), out(bytes, 0xEE);
    for (auto& v : in) v = static_cast<uint8_t>(rng());
    CUdeviceptr d = 0;
    ASSERT_CU(cuMemAlloc(&d, std::max<size_t>(bytes, 1) + 1));
    // Unaligned device offset: copy to d + 1.
    ASSERT_CU(cuMemcpyHtoD(d + 1, in.data(), bytes));
    ASSERT_CU(cuMemcpyDtoH(out.data(), d + 1, bytes));
    EXPECT_EQ(in, out) << bytes << " bytes";
    ASSERT_CU(cuMemFree(d));
  }
}

// Large host-to-device chunks travel over the client daemon's bulk lanes, further connections
// that reach the server in any order; calls on the session's own connection (a fill) still run
// after the copy issued before them, and the data arrives whole.
TEST_F(CudaE2E, BulkLanesKeepTheApplicationsOrder) {
  // The lanes join shortly after the session opens.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto joined = [] {
    const std::string log = CudaPath::server_log();
    size_t count = 0;
    for (size_t at = log.find("bulk lane from"); at != std::string::npos; at = log.find("bulk lane from", at + 1)) ++count;
    return count;
  };
  while (joined() < 3 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_GE(joined(), 3u) << CudaPath::server_log();

  std::mt19937 rng(11);
  const size_t bytes = (48 << 20) + 5;
  std::vector<uint8_t> in(bytes), out(bytes);
  for (auto& v : in) v = static_cast<uint8_t>(rng());
  CUdeviceptr d = 0;
  ASSERT_CU(cuMemAlloc(&d, bytes));
  for (int round = 0; round < 3; ++round) {
    ASSERT_CU(cuMemcpyHtoDAsync(d, in.data(), bytes, nullptr));
    // Pipelined on the session's connection, behind chunks that went over the lanes.
    ASSERT_CU(cuMemsetD8(d + (16 << 20), static_cast<unsigned char>(0xA0 + round), 4096));
    ASSERT_CU(cuMemcpyDtoH(out.data(), d, bytes));
    std::vector<uint8_t> expected = in;
    std::fill_n(expected.begin() + (16 << 20), 4096, static_cast<uint8_t>(0xA0 + round));
    ASSERT_TRUE(out == expected) << "round " << round;
  }
  ASSERT_CU(cuMemFree(d));
}

// A connection that asks to join a CUDA session with a key no session has is refused, saying so.
TEST_F(CudaE2E, BulkLaneWithAnUnknownKeyIsRefused) {
  const rgpu::SessionOptions options = CudaPath::session_options();
  auto session = rgpu::Session::connect(options);
  rgpu::WireWriter key;
  key.put<uint64_t>(0x1234);
  session->channel().send_frame(rgpu::kMsgCudaJoin, session->next_request_id(), key.buffer());
  const rgpu::Frame answer = session->channel().receive_frame();
  ASSERT_EQ(answer.header.type, static_cast<uint16_t>(rgpu::MsgType::Error));
  EXPECT_THAT(rgpu::decode_error(answer.payload).message, ::testing::HasSubstr("no CUDA session has that lane key"));
}

// A joined lane is read on a thread of its own: it answers the join from there, carries CUDA calls
// (answered over the lane) and the client's keepalive pings only, and a lane refused for anything
// else ends its session with it.
TEST_F(CudaE2E, ALaneCarriesCudaCallsAndPingsOnlyAndTakesItsSessionWithIt) {
  const rgpu::SessionOptions options = CudaPath::session_options();
  auto owner = rgpu::Session::connect(options);
  const uint64_t key = owner->open_application_session(rgpu::AppApi::Cuda, rgpu::encode(rgpu::SessionOpenMsg{{0}}));
  auto lane = rgpu::Session::connect(options);
  lane->join_cuda_session(key);  // CudaJoined, then the TLS handshake with the session's worker

  rgpu::cuda::CallHeader call;
  call.function = rgpu::fnv1a("cuNoSuchFunction");
  call.thread = 1;
  call.sequence = 1;
  const uint64_t asked = lane->next_request_id();
  lane->channel().send_frame(rgpu::cuda::kMsgCudaCall, asked, {reinterpret_cast<const uint8_t*>(&call), sizeof call});
  const rgpu::Frame answer = lane->channel().receive_frame();
  ASSERT_EQ(answer.header.type, rgpu::cuda::kMsgCudaReply);
  EXPECT_EQ(answer.header.request_id, asked);
  ASSERT_GE(answer.payload.size(), sizeof(rgpu::cuda::ReplyHeader));
  rgpu::cuda::ReplyHeader result;
  std::memcpy(&result, answer.payload.data(), sizeof result);
  EXPECT_EQ(result.result, CUDA_ERROR_NOT_SUPPORTED);

  const uint64_t ping = lane->next_request_id();
  lane->channel().send_frame(static_cast<uint16_t>(rgpu::MsgType::Ping), ping, {});
  const rgpu::Frame pong = lane->channel().receive_frame();
  EXPECT_EQ(pong.header.type, static_cast<uint16_t>(rgpu::MsgType::Pong));
  EXPECT_EQ(pong.header.request_id, ping);

  lane->channel().send_frame(static_cast<uint16_t>(rgpu::MsgType::ListGpus), lane->next_request_id(), {});
  const rgpu::Frame refused = lane->channel().receive_frame();
  ASSERT_EQ(refused.header.type, static_cast<uint16_t>(rgpu::MsgType::Error));
  EXPECT_THAT(rgpu::decode_error(refused.payload).message,
              ::testing::HasSubstr("a bulk lane carries CUDA calls and pings only, not ListGpus"));
  lane.reset();  // the refused client goes
  EXPECT_THROW(owner->channel().receive_frame(), rgpu::ChannelClosed);  // and its session with it
}

// A pitched device image written from a host rectangle, copied on the device, read back into
// another host rectangle; large enough to travel in several chunks of rows.
TEST_F(CudaE2E, RectanglesAndBoxesCopy) {
  const size_t width = 1000, height = 5000, host_pitch = 1100, device_pitch = 1024;
  std::vector<uint8_t> host(host_pitch * height), back(host_pitch * height, 0xEE);
  std::mt19937 rng(11);
  for (auto& v : host) v = static_cast<uint8_t>(rng());
  CUdeviceptr image = 0, copy = 0;
  ASSERT_CU(cuMemAlloc(&image, device_pitch * height));
  ASSERT_CU(cuMemAlloc(&copy, device_pitch * height));

  CUDA_MEMCPY2D up{};
  up.srcMemoryType = CU_MEMORYTYPE_HOST;
  up.srcHost = host.data();
  up.srcPitch = host_pitch;
  up.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  up.dstDevice = image;
  up.dstPitch = device_pitch;
  up.WidthInBytes = width;
  up.Height = height;
  ASSERT_CU(cuMemcpy2D(&up));

  CUDA_MEMCPY2D across{};
  across.srcMemoryType = CU_MEMORYTYPE_UNIFIED;  // device memory, found by address
  across.srcDevice = image;
  across.srcPitch = device_pitch;
  across.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  across.dstDevice = copy;
  across.dstPitch = device_pitch;
  across.WidthInBytes = width;
  across.Height = height;
  ASSERT_CU(cuMemcpy2DAsync(&across, nullptr));

  CUDA_MEMCPY2D down{};
  down.srcMemoryType = CU_MEMORYTYPE_DEVICE;
  down.srcDevice = copy;
  down.srcPitch = device_pitch;
  down.dstMemoryType = CU_MEMORYTYPE_HOST;
  down.dstHost = back.data();
  down.dstPitch = host_pitch;
  down.WidthInBytes = width;
  down.Height = height;
  ASSERT_CU(cuMemcpy2D(&down));
  for (size_t y = 0; y < height; ++y) {
    ASSERT_TRUE(std::equal(host.begin() + y * host_pitch, host.begin() + y * host_pitch + width,
                           back.begin() + y * host_pitch))
        << "row " << y;
    ASSERT_EQ(back[y * host_pitch + width], 0xEE) << "the pitch gap was written in row " << y;
  }

  // A box: slices 1..2 of a 3-slice host volume into the device, then back at an offset.
  const size_t w = 64, h = 8, d = 3;
  std::vector<uint8_t> volume(w * h * d), returned(w * h * d, 0);
  std::iota(volume.begin(), volume.end(), 0);
  CUDA_MEMCPY3D box{};
  box.srcMemoryType = CU_MEMORYTYPE_HOST;
  box.srcHost = volume.data();
  box.srcPitch = w;
  box.srcHeight = h;
  box.srcZ = 1;
  box.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  box.dstDevice = image;
  box.dstPitch = w;
  box.dstHeight = h;
  box.WidthInBytes = w;
  box.Height = h;
  box.Depth = 2;
  ASSERT_CU(cuMemcpy3D(&box));
  std::swap(box.srcMemoryType, box.dstMemoryType);
  box.srcDevice = image;
  box.srcZ = 0;
  box.dstHost = returned.data();
  box.dstZ = 1;
  ASSERT_CU(cuMemcpy3D(&box));
  EXPECT_TRUE(std::equal(volume.begin() + w * h, volume.end(), returned.begin() + w * h));
  EXPECT_EQ(returned[0], 0);
  ASSERT_CU(cuMemFree(image));
  ASSERT_CU(cuMemFree(copy));

  // Rows wider than a copy chunk.
  const size_t wide = (5 << 20) + 3, rows = 3, wide_pitch = wide + 100;
  std::vector<uint8_t> source(wide_pitch * rows), sink(wide_pitch * rows, 0xEE);
  for (auto& v : source) v = static_cast<uint8_t>(rng());
  CUdeviceptr wide_image = 0;
  ASSERT_CU(cuMemAlloc(&wide_image, wide * rows));
  CUDA_MEMCPY2D wide_up = up;
  wide_up.srcHost = source.data();
  wide_up.srcPitch = wide_pitch;
  wide_up.dstDevice = wide_image;
  wide_up.dstPitch = wide;
  wide_up.WidthInBytes = wide;
  wide_up.Height = rows;
  ASSERT_CU(cuMemcpy2D(&wide_up));
  CUDA_MEMCPY2D wide_down = down;
  wide_down.srcDevice = wide_image;
  wide_down.srcPitch = wide;
  wide_down.dstHost = sink.data();
  wide_down.dstPitch = wide_pitch;
  wide_down.WidthInBytes = wide;
  wide_down.Height = rows;
  ASSERT_CU(cuMemcpy2DAsync(&wide_down, nullptr));
  for (size_t y = 0; y < rows; ++y) {
    EXPECT_TRUE(std::equal(source.begin() + y * wide_pitch, source.begin() + y * wide_pitch + wide,
                           sink.begin() + y * wide_pitch));
    EXPECT_EQ(sink[y * wide_pitch + wide], 0xEE);
  }
  ASSERT_CU(cuMemFree(wide_image));
}

// Arrays travel as their descriptors (plain structs): 2D, 3D, layered and cubemap arrays are made
// on the server and described back, and a descriptor the driver refuses fails the call.
TEST_F(CudaE2E, ArraysAreMadeAndDescribed) {
  CUDA_ARRAY_DESCRIPTOR flat{};
  flat.Width = 300;
  flat.Height = 200;
  flat.Format = CU_AD_FORMAT_UNSIGNED_INT16;
  flat.NumChannels = 2;
  CUarray plane = nullptr;
  ASSERT_CU(cuArrayCreate(&plane, &flat));
  CUDA_ARRAY_DESCRIPTOR described{};
  ASSERT_CU(cuArrayGetDescriptor(&described, plane));
  EXPECT_EQ(described.Width, 300u);
  EXPECT_EQ(described.Height, 200u);
  EXPECT_EQ(described.Format, CU_AD_FORMAT_UNSIGNED_INT16);
  EXPECT_EQ(described.NumChannels, 2u);

  CUDA_ARRAY3D_DESCRIPTOR cube{};
  cube.Width = cube.Height = 32;
  cube.Depth = 12;  // two cubemaps
  cube.Format = CU_AD_FORMAT_FLOAT;
  cube.NumChannels = 4;
  cube.Flags = CUDA_ARRAY3D_CUBEMAP | CUDA_ARRAY3D_LAYERED;
  CUarray cubes = nullptr;
  ASSERT_CU(cuArray3DCreate(&cubes, &cube));
  CUDA_ARRAY3D_DESCRIPTOR back{};
  ASSERT_CU(cuArray3DGetDescriptor(&back, cubes));
  EXPECT_EQ(back.Depth, 12u);
  EXPECT_EQ(back.Flags, unsigned{CUDA_ARRAY3D_CUBEMAP | CUDA_ARRAY3D_LAYERED});
  cube.Depth = 7;  // not whole cubemaps
  CUarray refused = nullptr;
  EXPECT_EQ(cuArray3DCreate(&refused, &cube), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuArrayCreate(&refused, nullptr), CUDA_ERROR_INVALID_VALUE);
  ASSERT_CU(cuArrayDestroy(plane));
  ASSERT_CU(cuArrayDestroy(cubes));
  EXPECT_EQ(cuArrayGetDescriptor(&described, plane), CUDA_ERROR_INVALID_HANDLE);
}

// Arrays hold device memory: they count against max_memory (as their descriptors size them) and
// leave it when destroyed.
TEST_F(CudaE2E, ArraysCountAgainstMaxMemory) {
  CUDA_ARRAY3D_DESCRIPTOR half{};
  half.Width = 4096;
  half.Height = 4096;
  half.Depth = 2;
  half.Format = CU_AD_FORMAT_FLOAT;
  half.NumChannels = 1;
  half.Flags = CUDA_ARRAY3D_LAYERED;  // 128 MiB
  CUarray first = nullptr, second = nullptr;
  ASSERT_CU(cuArray3DCreate(&first, &half));
  CUdeviceptr more = 0;
  EXPECT_EQ(cuMemAlloc(&more, kQuota / 2 + (1 << 20)), CUDA_ERROR_OUT_OF_MEMORY);
  half.Depth = 3;
  EXPECT_EQ(cuArray3DCreate(&second, &half), CUDA_ERROR_OUT_OF_MEMORY);
  CUmipmappedArray mipmap = nullptr;
  half.Width = 8192;
  half.Depth = 0;
  half.Flags = 0;
  EXPECT_EQ(cuMipmappedArrayCreate(&mipmap, &half, 3), CUDA_ERROR_OUT_OF_MEMORY);  // 128 + 32 + 8 MiB
  ASSERT_CU(cuArrayDestroy(first));
  ASSERT_CU(cuMipmappedArrayCreate(&mipmap, &half, 3));
  CUarray level = nullptr;
  ASSERT_CU(cuMipmappedArrayGetLevel(&level, mipmap, 2));
  CUDA_ARRAY3D_DESCRIPTOR smallest{};
  ASSERT_CU(cuArray3DGetDescriptor(&smallest, level));
  EXPECT_EQ(smallest.Width, 2048u);
  EXPECT_EQ(smallest.Height, 1024u);
  ASSERT_CU(cuMipmappedArrayDestroy(mipmap));
  ASSERT_CU(cuMemAlloc(&more, kQuota / 2 + (1 << 20)));
  EXPECT_CU(cuMemFree(more));
}

namespace {
CUarray make_array(size_t width, size_t height, size_t depth, CUarray_format format, unsigned channels,
                   unsigned flags = 0) {
  CUDA_ARRAY3D_DESCRIPTOR d{};
  d.Width = width;
  d.Height = height;
  d.Depth = depth;
  d.Format = format;
  d.NumChannels = channels;
  d.Flags = flags;
  CUarray array = nullptr;
  EXPECT_EQ(cuArray3DCreate(&array, &d), CUDA_SUCCESS);
  return array;
}

std::vector<uint8_t> random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> bytes(n);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  return bytes;
}
}  // namespace

// Rectangles between host memory, device memory and 2D arrays, in every direction, and the linear
// array copies (cuMemcpyHtoA and the others): what goes in comes out, pitch gaps untouched.
TEST_F(CudaE2E, ArrayRectanglesCopyEveryWay) {
  const size_t width = 100, height = 50, row = width * sizeof(float), host_pitch = 512;
  const std::vector<uint8_t> host = random_bytes(host_pitch * height, 21);
  CUarray image = make_array(width, height, 0, CU_AD_FORMAT_FLOAT, 1);
  CUarray copy = make_array(width, height, 0, CU_AD_FORMAT_FLOAT, 1);
  CUDA_MEMCPY2D up{};
  up.srcMemoryType = CU_MEMORYTYPE_HOST;
  up.srcHost = host.data();
  up.srcPitch = host_pitch;
  up.dstMemoryType = CU_MEMORYTYPE_ARRAY;
  up.dstArray = image;
  up.WidthInBytes = row;
  up.Height = height;
  ASSERT_CU(cuMemcpy2D(&up));
  CUDA_MEMCPY2D across{};
  across.srcMemoryType = CU_MEMORYTYPE_ARRAY;
  across.srcArray = image;
  across.dstMemoryType = CU_MEMORYTYPE_ARRAY;
  across.dstArray = copy;
  across.WidthInBytes = row;
  across.Height = height;
  ASSERT_CU(cuMemcpy2DAsync(&across, nullptr));
  CUdeviceptr linear = 0;
  ASSERT_CU(cuMemAlloc(&linear, row * height));
  CUDA_MEMCPY2D to_device{};
  to_device.srcMemoryType = CU_MEMORYTYPE_ARRAY;
  to_device.srcArray = copy;
  to_device.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  to_device.dstDevice = linear;
  to_device.dstPitch = row;
  to_device.WidthInBytes = row;
  to_device.Height = height;
  ASSERT_CU(cuMemcpy2D(&to_device));
  std::vector<uint8_t> packed(row * height);
  ASSERT_CU(cuMemcpyDtoH(packed.data(), linear, packed.size()));
  for (size_t y = 0; y < height; ++y)
    ASSERT_TRUE(std::equal(packed.begin() + y * row, packed.begin() + (y + 1) * row, host.begin() + y * host_pitch)) << y;

  // A corner of the array back into host memory at an offset: the rest stays as it was.
  std::vector<uint8_t> back(host_pitch * height, 0xEE);
  CUDA_MEMCPY2D down{};
  down.srcMemoryType = CU_MEMORYTYPE_ARRAY;
  down.srcArray = copy;
  down.srcXInBytes = 40;
  down.srcY = 10;
  down.dstMemoryType = CU_MEMORYTYPE_HOST;
  down.dstHost = back.data();
  down.dstPitch = host_pitch;
  down.dstXInBytes = 8;
  down.dstY = 2;
  down.WidthInBytes = 200;
  down.Height = 30;
  ASSERT_CU(cuMemcpy2D(&down));
  for (size_t y = 0; y < 30; ++y) {
    const auto* want = host.data() + (10 + y) * host_pitch + 40;
    ASSERT_EQ(std::memcmp(back.data() + (2 + y) * host_pitch + 8, want, 200), 0) << y;
    ASSERT_EQ(back[(2 + y) * host_pitch + 7], 0xEE);
    ASSERT_EQ(back[(2 + y) * host_pitch + 208], 0xEE);
  }
  ASSERT_EQ(back[0], 0xEE);

  // Linear copies: rows 3 and 4 to device memory and back into a third array.
  CUarray third = make_array(width, height, 0, CU_AD_FORMAT_FLOAT, 1);
  ASSERT_CU(cuMemcpyAtoD(linear, image, 3 * row, 2 * row));
  ASSERT_CU(cuMemcpyDtoA(third, 0, linear, 2 * row));
  ASSERT_CU(cuMemcpyAtoA(third, 2 * row, image, 3 * row, row));
  std::vector<uint8_t> rows(3 * row);
  ASSERT_CU(cuMemcpyAtoH(rows.data(), third, 0, rows.size()));
  EXPECT_EQ(std::memcmp(rows.data(), host.data() + 3 * host_pitch, row), 0);
  EXPECT_EQ(std::memcmp(rows.data() + row, host.data() + 4 * host_pitch, row), 0);
  EXPECT_EQ(std::memcmp(rows.data() + 2 * row, host.data() + 3 * host_pitch, row), 0);

  // Host to array and back as a run of elements that starts and ends inside rows.
  const std::vector<uint8_t> run = random_bytes(5 * row + 36, 22);
  CUstream stream = nullptr;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuMemcpyHtoAAsync(third, row + 12, run.data(), run.size(), stream));
  std::vector<uint8_t> whole(row * height);
  ASSERT_CU(cuMemcpyAtoHAsync(whole.data(), third, 0, whole.size(), stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(std::memcmp(whole.data() + row + 12, run.data(), run.size()), 0);
  EXPECT_EQ(std::memcmp(whole.data(), host.data() + 3 * host_pitch, 12), 0);  // before the run: row 0 as it was
  EXPECT_EQ(cuMemcpyHtoA(third, row * height - 4, run.data(), 8), CUDA_ERROR_INVALID_VALUE);  // past the end

  // A 1D array takes the run as its one row.
  CUarray line = make_array(4096, 0, 0, CU_AD_FORMAT_UNSIGNED_INT8, 4);
  const std::vector<uint8_t> long_run = random_bytes(4096 * 4 - 100, 23);
  ASSERT_CU(cuMemcpyHtoA(line, 100, long_run.data(), long_run.size()));
  std::vector<uint8_t> line_back(long_run.size());
  ASSERT_CU(cuMemcpyAtoH(line_back.data(), line, 100, line_back.size()));
  EXPECT_EQ(line_back, long_run);

  ASSERT_CU(cuStreamDestroy(stream));
  ASSERT_CU(cuMemFree(linear));
  for (CUarray array : {image, copy, third, line}) ASSERT_CU(cuArrayDestroy(array));
}

// Boxes between host memory and 3D and layered arrays travel slice by slice; between arrays and
// device memory the server copies them whole. Large rectangles go in chunks of rows.
TEST_F(CudaE2E, ArrayBoxesCopy) {
  const size_t w = 40, h = 30, d = 5, row = w * 4, pitch = 200, slice_height = 32;
  const std::vector<uint8_t> volume = random_bytes(pitch * slice_height * d, 31);
  CUarray box_array = make_array(w, h, d, CU_AD_FORMAT_UNSIGNED_INT8, 4);
  CUDA_MEMCPY3D in{};
  in.srcMemoryType = CU_MEMORYTYPE_HOST;
  in.srcHost = volume.data();
  in.srcPitch = pitch;
  in.srcHeight = slice_height;
  in.dstMemoryType = CU_MEMORYTYPE_ARRAY;
  in.dstArray = box_array;
  in.WidthInBytes = row;
  in.Height = h;
  in.Depth = d;
  ASSERT_CU(cuMemcpy3D(&in));
  // A box inside it back out at an offset.
  std::vector<uint8_t> out(pitch * slice_height * d, 0xEE);
  CUDA_MEMCPY3D back{};
  back.srcMemoryType = CU_MEMORYTYPE_ARRAY;
  back.srcArray = box_array;
  back.srcXInBytes = 16;
  back.srcY = 4;
  back.srcZ = 1;
  back.dstMemoryType = CU_MEMORYTYPE_HOST;
  back.dstHost = out.data();
  back.dstPitch = pitch;
  back.dstHeight = slice_height;
  back.dstXInBytes = 4;
  back.dstY = 1;
  back.dstZ = 2;
  back.WidthInBytes = 64;
  back.Height = 20;
  back.Depth = 3;
  ASSERT_CU(cuMemcpy3DAsync(&back, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  for (size_t z = 0; z < 3; ++z)
    for (size_t y = 0; y < 20; ++y) {
      const size_t at = ((2 + z) * slice_height + 1 + y) * pitch + 4;
      const size_t from = ((1 + z) * slice_height + 4 + y) * pitch + 16;
      ASSERT_EQ(std::memcmp(out.data() + at, volume.data() + from, 64), 0) << z << " " << y;
      ASSERT_EQ(out[at + 64], 0xEE);
    }
  EXPECT_EQ(out[0], 0xEE);

  // Through device memory: the array to a linear volume on the server, and into a layered array's layer 1.
  CUdeviceptr linear = 0;
  ASSERT_CU(cuMemAlloc(&linear, row * h * d));
  CUDA_MEMCPY3D to_device{};
  to_device.srcMemoryType = CU_MEMORYTYPE_ARRAY;
  to_device.srcArray = box_array;
  to_device.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  to_device.dstDevice = linear;
  to_device.dstPitch = row;
  to_device.dstHeight = h;
  to_device.WidthInBytes = row;
  to_device.Height = h;
  to_device.Depth = d;
  ASSERT_CU(cuMemcpy3D(&to_device));
  CUarray layers = make_array(w, h, 3, CU_AD_FORMAT_UNSIGNED_INT8, 4, CUDA_ARRAY3D_LAYERED);
  CUDA_MEMCPY3D into_layer = to_device;
  into_layer.srcMemoryType = CU_MEMORYTYPE_DEVICE;
  into_layer.srcDevice = linear;
  into_layer.srcPitch = row;
  into_layer.srcHeight = h;
  into_layer.srcZ = 4;
  into_layer.dstMemoryType = CU_MEMORYTYPE_ARRAY;
  into_layer.dstArray = layers;
  into_layer.dstZ = 1;
  into_layer.Depth = 1;
  ASSERT_CU(cuMemcpy3D(&into_layer));
  std::vector<uint8_t> layer(row * h);
  CUDA_MEMCPY3D read_layer{};
  read_layer.srcMemoryType = CU_MEMORYTYPE_ARRAY;
  read_layer.srcArray = layers;
  read_layer.srcZ = 1;
  read_layer.dstMemoryType = CU_MEMORYTYPE_HOST;
  read_layer.dstHost = layer.data();
  read_layer.dstPitch = row;
  read_layer.dstHeight = h;
  read_layer.WidthInBytes = row;
  read_layer.Height = h;
  read_layer.Depth = 1;
  ASSERT_CU(cuMemcpy3D(&read_layer));
  for (size_t y = 0; y < h; ++y)
    ASSERT_EQ(std::memcmp(layer.data() + y * row, volume.data() + (4 * slice_height + y) * pitch, row), 0) << y;
  read_layer.srcZ = 3;  // there are three layers
  EXPECT_EQ(cuMemcpy3D(&read_layer), CUDA_ERROR_INVALID_VALUE);

  // 32 MiB of rows, more than one chunk, into a 2D array and back.
  CUarray big = make_array(4096, 2048, 0, CU_AD_FORMAT_FLOAT, 1);
  const std::vector<uint8_t> pixels = random_bytes(4096 * 4 * 2048, 32);
  CUDA_MEMCPY2D big_up{};
  big_up.srcMemoryType = CU_MEMORYTYPE_HOST;
  big_up.srcHost = pixels.data();
  big_up.srcPitch = 4096 * 4;
  big_up.dstMemoryType = CU_MEMORYTYPE_ARRAY;
  big_up.dstArray = big;
  big_up.WidthInBytes = 4096 * 4;
  big_up.Height = 2048;
  ASSERT_CU(cuMemcpy2D(&big_up));
  std::vector<uint8_t> pixels_back(pixels.size());
  ASSERT_CU(cuMemcpyAtoH(pixels_back.data(), big, 0, pixels_back.size()));
  EXPECT_TRUE(pixels_back == pixels);

  ASSERT_CU(cuMemFree(linear));
  for (CUarray array : {box_array, layers, big}) ASSERT_CU(cuArrayDestroy(array));
}

// A kernel reads through texture objects (over an array and over pitched device memory) and writes
// through a surface object; the objects' descriptors come back as they were made.
TEST_F(CudaE2E, TexturesAndSurfacesThroughAKernel) {
  const char* image = "RGPU-CUDA-TEST-DOUBLE-MODULE\ntexture_to_surface\n";
  CUmodule module = nullptr;
  ASSERT_CU(cuModuleLoadData(&module, image));
  CUfunction kernel = nullptr;
  ASSERT_CU(cuModuleGetFunction(&kernel, module, "texture_to_surface"));
  unsigned width = 64, height = 32;
  std::vector<float> input(width * height);
  for (size_t i = 0; i < input.size(); ++i) input[i] = 0.25f * static_cast<float>(i);
  CUarray source = make_array(width, height, 0, CU_AD_FORMAT_FLOAT, 1);
  CUarray target = make_array(width, height, 0, CU_AD_FORMAT_FLOAT, 1, CUDA_ARRAY3D_SURFACE_LDST);
  ASSERT_CU(cuMemcpyHtoA(source, 0, input.data(), input.size() * sizeof(float)));

  CUDA_RESOURCE_DESC from_array{};
  from_array.resType = CU_RESOURCE_TYPE_ARRAY;
  from_array.res.array.hArray = source;
  CUDA_TEXTURE_DESC sampling{};
  sampling.addressMode[0] = sampling.addressMode[1] = CU_TR_ADDRESS_MODE_CLAMP;
  sampling.filterMode = CU_TR_FILTER_MODE_POINT;
  sampling.flags = CU_TRSF_READ_AS_INTEGER;
  sampling.borderColor[2] = 0.5f;
  CUDA_RESOURCE_VIEW_DESC view{};
  view.format = CU_RES_VIEW_FORMAT_FLOAT_1X32;
  view.width = width;
  view.height = height;
  CUtexObject texture = 0;
  ASSERT_CU(cuTexObjectCreate(&texture, &from_array, &sampling, &view));
  CUDA_RESOURCE_DESC to_array{};
  to_array.resType = CU_RESOURCE_TYPE_ARRAY;
  to_array.res.array.hArray = target;
  CUsurfObject surface = 0;
  ASSERT_CU(cuSurfObjectCreate(&surface, &to_array));

  float scale = 2.0f;
  void* params[] = {&texture, &surface, &width, &height, &scale};
  ASSERT_CU(cuLaunchKernel(kernel, width * height / 128, 1, 1, 128, 1, 1, 0, nullptr, params, nullptr));
  std::vector<float> output(input.size());
  ASSERT_CU(cuMemcpyAtoH(output.data(), target, 0, output.size() * sizeof(float)));
  for (size_t i = 0; i < input.size(); ++i) ASSERT_EQ(output[i], 2.0f * input[i]) << i;

  CUDA_RESOURCE_DESC resource{};
  ASSERT_CU(cuTexObjectGetResourceDesc(&resource, texture));
  EXPECT_EQ(resource.resType, CU_RESOURCE_TYPE_ARRAY);
  EXPECT_EQ(resource.res.array.hArray, source);
  CUDA_TEXTURE_DESC described{};
  ASSERT_CU(cuTexObjectGetTextureDesc(&described, texture));
  EXPECT_EQ(described.addressMode[1], CU_TR_ADDRESS_MODE_CLAMP);
  EXPECT_EQ(described.flags, unsigned{CU_TRSF_READ_AS_INTEGER});
  EXPECT_EQ(described.borderColor[2], 0.5f);
  CUDA_RESOURCE_VIEW_DESC view_back{};
  ASSERT_CU(cuTexObjectGetResourceViewDesc(&view_back, texture));
  EXPECT_EQ(view_back.format, CU_RES_VIEW_FORMAT_FLOAT_1X32);
  EXPECT_EQ(view_back.height, height);
  ASSERT_CU(cuSurfObjectGetResourceDesc(&resource, surface));
  EXPECT_EQ(resource.res.array.hArray, target);

  // A texture over pitched device memory, no view.
  CUdeviceptr pitched = 0;
  size_t pitch = 0;
  ASSERT_CU(cuMemAllocPitch(&pitched, &pitch, width * sizeof(float), height, 4));
  CUDA_MEMCPY2D up{};
  up.srcMemoryType = CU_MEMORYTYPE_HOST;
  up.srcHost = input.data();
  up.srcPitch = width * sizeof(float);
  up.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  up.dstDevice = pitched;
  up.dstPitch = pitch;
  up.WidthInBytes = width * sizeof(float);
  up.Height = height;
  ASSERT_CU(cuMemcpy2D(&up));
  CUDA_RESOURCE_DESC from_pitched{};
  from_pitched.resType = CU_RESOURCE_TYPE_PITCH2D;
  from_pitched.res.pitch2D.devPtr = pitched;
  from_pitched.res.pitch2D.format = CU_AD_FORMAT_FLOAT;
  from_pitched.res.pitch2D.numChannels = 1;
  from_pitched.res.pitch2D.width = width;
  from_pitched.res.pitch2D.height = height;
  from_pitched.res.pitch2D.pitchInBytes = pitch;
  CUtexObject pitched_texture = 0;
  ASSERT_CU(cuTexObjectCreate(&pitched_texture, &from_pitched, &sampling, nullptr));
  EXPECT_EQ(cuTexObjectGetResourceViewDesc(&view_back, pitched_texture), CUDA_ERROR_INVALID_VALUE);
  scale = -1.0f;
  void* params2[] = {&pitched_texture, &surface, &width, &height, &scale};
  ASSERT_CU(cuLaunchKernel(kernel, width * height / 128, 1, 1, 128, 1, 1, 0, nullptr, params2, nullptr));
  ASSERT_CU(cuMemcpyAtoH(output.data(), target, 0, output.size() * sizeof(float)));
  for (size_t i = 0; i < input.size(); ++i) ASSERT_EQ(output[i], -input[i]) << i;

  // A surface needs an array made for it.
  CUsurfObject refused = 0;
  EXPECT_EQ(cuSurfObjectCreate(&refused, &from_array), CUDA_ERROR_INVALID_VALUE);
  ASSERT_CU(cuTexObjectDestroy(texture));
  ASSERT_CU(cuTexObjectDestroy(pitched_texture));
  ASSERT_CU(cuSurfObjectDestroy(surface));
  EXPECT_EQ(cuTexObjectGetResourceDesc(&resource, texture), CUDA_ERROR_INVALID_HANDLE);
  ASSERT_CU(cuMemFree(pitched));
  ASSERT_CU(cuArrayDestroy(source));
  ASSERT_CU(cuArrayDestroy(target));
  ASSERT_CU(cuModuleUnload(module));
}

namespace {
CUmemAllocationProp device_memory_prop(int device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}
CUmemAccessDesc read_write(int device) {
  CUmemAccessDesc access{};
  access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  access.location.id = device;
  access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
  return access;
}
CUmemPoolProps device_pool_props(int device) {
  CUmemPoolProps props{};
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  props.location.id = device;
  return props;
}
cuuint64_t pool_number(CUmemoryPool pool, CUmemPool_attribute attribute) {
  cuuint64_t value = 0;
  EXPECT_EQ(cuMemPoolGetAttribute(pool, attribute, &value), CUDA_SUCCESS);
  return value;
}
}  // namespace

// Virtual memory as PyTorch's expandable segments use it: reserve a range, map physical chunks
// into it one after another, give the device access, copy and launch across the chunks; mapped
// ranges are device memory to the client (cuMemcpy, pointer attributes) until unmapped.
TEST_F(CudaE2E, VirtualMemoryMapsGrowsAndCopies) {
  const CUmemAllocationProp prop = device_memory_prop(0);
  size_t granularity = 0;
  ASSERT_CU(cuMemGetAllocationGranularity(&granularity, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
  ASSERT_EQ(granularity, 2u << 20);
  CUdeviceptr base = 0;
  ASSERT_CU(cuMemAddressReserve(&base, 4 * granularity, 0, 0, 0));
  CUmemGenericAllocationHandle first = 0, second = 0;
  ASSERT_CU(cuMemCreate(&first, granularity, &prop, 0));
  ASSERT_CU(cuMemCreate(&second, granularity, &prop, 0));
  ASSERT_CU(cuMemMap(base, granularity, 0, first, 0));
  std::vector<uint8_t> bytes(64);
  EXPECT_EQ(cuMemcpyDtoH(bytes.data(), base, bytes.size()), CUDA_ERROR_INVALID_VALUE);  // no access yet
  const CUmemAccessDesc access = read_write(0);
  ASSERT_CU(cuMemSetAccess(base, granularity, &access, 1));
  unsigned long long flags = 0;
  ASSERT_CU(cuMemGetAccess(&flags, &access.location, base));
  EXPECT_EQ(flags, unsigned{CU_MEM_ACCESS_FLAGS_PROT_READWRITE});

  // Grown by a second chunk right after the first: copies and kernels run across both.
  ASSERT_CU(cuMemMap(base + granularity, granularity, 0, second, 0));
  ASSERT_CU(cuMemSetAccess(base + granularity, granularity, &access, 1));
  const std::vector<uint8_t> seam = random_bytes(8192, 41);
  ASSERT_CU(cuMemcpy(base + granularity - 4096, reinterpret_cast<CUdeviceptr>(seam.data()), seam.size()));
  std::vector<uint8_t> seam_back(seam.size());
  ASSERT_CU(cuMemcpyDtoH(seam_back.data(), base + granularity - 4096, seam_back.size()));
  EXPECT_EQ(seam_back, seam);
  CUmodule module = load_module();
  CUfunction fill = nullptr;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  unsigned value = 0xC0FFEE;
  unsigned long long count = 2 * granularity / sizeof(unsigned);
  CUdeviceptr start = base;
  void* params[] = {&start, &value, &count};
  ASSERT_CU(cuLaunchKernel(fill, 64, 1, 1, 256, 1, 1, 0, nullptr, params, nullptr));
  std::vector<unsigned> filled(count);
  ASSERT_CU(cuMemcpyDtoH(filled.data(), base, 2 * granularity));
  EXPECT_TRUE(std::all_of(filled.begin(), filled.end(), [&](unsigned v) { return v == value; }));
  size_t range = 0;
  ASSERT_CU(cuPointerGetAttribute(&range, CU_POINTER_ATTRIBUTE_RANGE_SIZE, base + granularity + 8));
  EXPECT_EQ(range, granularity);

  // The handle behind an address, and what it was made with.
  CUmemGenericAllocationHandle retained = 0;
  ASSERT_CU(cuMemRetainAllocationHandle(&retained, reinterpret_cast<void*>(base + granularity + 100)));
  EXPECT_EQ(retained, second);
  ASSERT_CU(cuMemRelease(retained));
  CUmemAllocationProp described{};
  ASSERT_CU(cuMemGetAllocationPropertiesFromHandle(&described, first));
  EXPECT_EQ(described.type, CU_MEM_ALLOCATION_TYPE_PINNED);
  EXPECT_EQ(described.location.type, CU_MEM_LOCATION_TYPE_DEVICE);
  EXPECT_EQ(described.location.id, 0);
  CUmemAllocationProp windows = prop;
  windows.win32HandleMetaData = &described;  // a Windows pointer means nothing on the server
  CUmemGenericAllocationHandle refused = 0;
  EXPECT_EQ(cuMemCreate(&refused, granularity, &windows, 0), CUDA_ERROR_INVALID_VALUE);

  // Unmapped, the range is no device memory any more.
  ASSERT_CU(cuMemUnmap(base, 2 * granularity));
  EXPECT_EQ(cuPointerGetAttribute(&range, CU_POINTER_ATTRIBUTE_RANGE_SIZE, base), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemcpyDtoH(bytes.data(), base, bytes.size()), CUDA_ERROR_INVALID_VALUE);
  ASSERT_CU(cuMemRelease(first));
  ASSERT_CU(cuMemRelease(second));
  ASSERT_CU(cuMemAddressFree(base, 4 * granularity));
  ASSERT_CU(cuModuleUnload(module));
}

// Physical memory counts against max_memory from cuMemCreate until both its handle and its last
// mapping are gone, as the driver holds it.
TEST_F(CudaE2E, VirtualMemoryCountsAgainstMaxMemory) {
  const CUmemAllocationProp prop = device_memory_prop(0);
  CUmemGenericAllocationHandle half = 0, more = 0;
  ASSERT_CU(cuMemCreate(&half, kQuota / 2, &prop, 0));
  EXPECT_EQ(cuMemCreate(&more, kQuota / 2 + (2 << 20), &prop, 0), CUDA_ERROR_OUT_OF_MEMORY);
  CUdeviceptr base = 0, d = 0;
  ASSERT_CU(cuMemAddressReserve(&base, kQuota / 2, 0, 0, 0));
  ASSERT_CU(cuMemMap(base, kQuota / 2, 0, half, 0));
  ASSERT_CU(cuMemRelease(half));  // still mapped: still held
  EXPECT_EQ(cuMemAlloc(&d, kQuota / 2 + (1 << 20)), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_CU(cuMemUnmap(base, kQuota / 2));
  ASSERT_CU(cuMemAlloc(&d, kQuota / 2 + (1 << 20)));
  EXPECT_CU(cuMemFree(d));
  ASSERT_CU(cuMemAddressFree(base, kQuota / 2));
}

// The pool API behind cudaMallocAsync with a configured pool: attributes of either type, access,
// allocations from a pool and from the device's current pool, trimming.
TEST_F(CudaE2E, MemoryPoolsServeAllocations) {
  const CUmemPoolProps props = device_pool_props(0);
  CUmemoryPool pool = nullptr;
  ASSERT_CU(cuMemPoolCreate(&pool, &props));
  CUmemPoolProps windows = props;
  windows.win32SecurityAttributes = &windows;
  CUmemoryPool refused = nullptr;
  EXPECT_EQ(cuMemPoolCreate(&refused, &windows), CUDA_ERROR_INVALID_VALUE);
  cuuint64_t threshold = ~cuuint64_t{0};
  ASSERT_CU(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
  EXPECT_EQ(pool_number(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD), threshold);
  int reuse = 0;
  ASSERT_CU(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC, &reuse));
  EXPECT_EQ(reuse, 1);
  reuse = 0;
  ASSERT_CU(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC, &reuse));
  reuse = 1;
  ASSERT_CU(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_REUSE_ALLOW_OPPORTUNISTIC, &reuse));
  EXPECT_EQ(reuse, 0);
  EXPECT_EQ(cuMemPoolGetAttribute(pool, static_cast<CUmemPool_attribute>(99), &threshold), CUDA_ERROR_NOT_SUPPORTED);

  CUstream stream = nullptr;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr p = 0;
  ASSERT_CU(cuMemAllocFromPoolAsync(&p, 1 << 20, pool, stream));
  const std::vector<uint8_t> data = random_bytes(1 << 20, 51);
  std::vector<uint8_t> back(data.size());
  ASSERT_CU(cuMemcpyHtoDAsync(p, data.data(), data.size(), stream));
  ASSERT_CU(cuMemcpyDtoHAsync(back.data(), p, back.size(), stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(back, data);
  EXPECT_EQ(pool_number(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT), 1u << 20);
  EXPECT_GE(pool_number(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 1u << 20);
  ASSERT_CU(cuMemFreeAsync(p, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(pool_number(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT), 0u);
  EXPECT_GE(pool_number(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 1u << 20);  // kept: the threshold
  EXPECT_EQ(pool_number(pool, CU_MEMPOOL_ATTR_USED_MEM_HIGH), 1u << 20);
  ASSERT_CU(cuMemPoolTrimTo(pool, 0));
  EXPECT_EQ(pool_number(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT), 0u);

  const CUmemAccessDesc peer = read_write(1);
  ASSERT_CU(cuMemPoolSetAccess(pool, &peer, 1));
  CUmemAccess_flags flags = CU_MEM_ACCESS_FLAGS_PROT_NONE;
  CUmemLocation location = peer.location;
  ASSERT_CU(cuMemPoolGetAccess(&flags, pool, &location));
  EXPECT_EQ(flags, CU_MEM_ACCESS_FLAGS_PROT_READWRITE);

  // The device's current pool serves cuMemAllocAsync.
  CUmemoryPool current = nullptr, default_pool = nullptr;
  ASSERT_CU(cuDeviceGetDefaultMemPool(&default_pool, device_));
  ASSERT_CU(cuDeviceSetMemPool(device_, pool));
  ASSERT_CU(cuDeviceGetMemPool(&current, device_));
  EXPECT_EQ(current, pool);
  location.id = 0;
  ASSERT_CU(cuMemGetMemPool(&current, &location, CU_MEM_ALLOCATION_TYPE_PINNED));
  EXPECT_EQ(current, pool);
  ASSERT_CU(cuMemAllocAsync(&p, 4096, stream));
  EXPECT_EQ(pool_number(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT), 4096u);
  ASSERT_CU(cuMemFreeAsync(p, stream));
  ASSERT_CU(cuMemSetMemPool(&location, CU_MEM_ALLOCATION_TYPE_PINNED, default_pool));
  ASSERT_CU(cuMemGetDefaultMemPool(&current, &location, CU_MEM_ALLOCATION_TYPE_PINNED));
  EXPECT_EQ(current, default_pool);
  ASSERT_CU(cuStreamSynchronize(stream));
  ASSERT_CU(cuMemPoolDestroy(pool));
  ASSERT_CU(cuStreamDestroy(stream));
}

// A pool holds the memory it reserved, freed allocations too (up to its release threshold): the
// quota counts that, so that pools with high thresholds cannot hold more than the quota between
// them; memory a pool already holds serves a new allocation without more of the quota.
TEST_F(CudaE2E, MemoryPoolsHoldTheirReservedMemoryInTheQuota) {
  const CUmemPoolProps props = device_pool_props(0);
  CUmemoryPool first = nullptr, second = nullptr;
  ASSERT_CU(cuMemPoolCreate(&first, &props));
  ASSERT_CU(cuMemPoolCreate(&second, &props));
  cuuint64_t threshold = ~cuuint64_t{0};
  ASSERT_CU(cuMemPoolSetAttribute(first, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
  ASSERT_CU(cuMemPoolSetAttribute(second, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &threshold));
  const size_t most = 150 << 20;  // more than half the quota
  CUdeviceptr p = 0, q = 0;
  ASSERT_CU(cuMemAllocFromPoolAsync(&p, most, first, nullptr));
  ASSERT_CU(cuMemFreeAsync(p, nullptr));
  ASSERT_CU(cuCtxSynchronize());  // the first pool keeps it
  EXPECT_EQ(cuMemAllocFromPoolAsync(&q, most, second, nullptr), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_CU(cuMemAllocFromPoolAsync(&p, most, first, nullptr));  // from what the first pool holds
  ASSERT_CU(cuMemFreeAsync(p, nullptr));
  ASSERT_CU(cuMemPoolTrimTo(first, 0));
  ASSERT_CU(cuMemAllocFromPoolAsync(&q, most, second, nullptr));
  // A pool destroyed with an allocation out keeps its memory until that is freed.
  ASSERT_CU(cuMemPoolDestroy(second));
  CUdeviceptr d = 0;
  EXPECT_EQ(cuMemAlloc(&d, most), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_CU(cuMemFreeAsync(q, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  ASSERT_CU(cuMemAlloc(&d, most));
  EXPECT_CU(cuMemFree(d));
  ASSERT_CU(cuMemPoolDestroy(first));
}

// The private tables cuBLAS(Lt) keys its kernels by: the thread's current context, and a
// context's unique id.
TEST_F(CudaE2E, PrivateTablesAnswerTheCurrentContextItsIdAndStreamIds) {
  const CUuuid tools{{0x42, static_cast<char>(0xd8), 0x5a, static_cast<char>(0x81), 0x23, static_cast<char>(0xf6),
                      static_cast<char>(0xcb), 0x47, static_cast<char>(0x82), static_cast<char>(0x98),
                      static_cast<char>(0xf6), static_cast<char>(0xe7), static_cast<char>(0x8a), 0x3a,
                      static_cast<char>(0xec), static_cast<char>(0xdc)}};
  const CUuuid identity{{0x21, 0x31, static_cast<char>(0x8c), 0x60, static_cast<char>(0x97), 0x14, 0x32, 0x48,
                         static_cast<char>(0x8c), static_cast<char>(0xa6), 0x41, static_cast<char>(0xff), 0x73,
                         0x24, static_cast<char>(0xc8), static_cast<char>(0xf2)}};
  const void* table = nullptr;
  ASSERT_CU(cuGetExportTable(&table, &tools));
  auto thread_context = reinterpret_cast<CUresult (*)(CUcontext*)>(static_cast<void* const*>(table)[2]);
  CUcontext seen = nullptr;
  ASSERT_CU(thread_context(&seen));
  EXPECT_EQ(seen, context_);

  ASSERT_CU(cuGetExportTable(&table, &identity));
  auto context_id = reinterpret_cast<CUresult (*)(CUcontext, unsigned long long*)>(static_cast<void* const*>(table)[4]);
  unsigned long long id = 0, expected = 0;
  ASSERT_CU(cuCtxGetId(context_, &expected));
  ASSERT_CU(context_id(context_, &id));
  EXPECT_EQ(id, expected);
  CUcontext other = nullptr;
  ASSERT_CU(cuCtxCreate(&other, nullptr, 0, device_));
  unsigned long long other_id = 0;
  ASSERT_CU(context_id(other, &other_id));
  EXPECT_NE(other_id, id);
  ASSERT_CU(cuCtxDestroy(other));
  ASSERT_CU(cuCtxSetCurrent(context_));

  // cuBLAS keeps a workspace per stream: slot 51 resolves a stream handle (the null stream per
  // the caller's default-stream mode), slot 39 gives the resolved stream's id.
  auto resolve = reinterpret_cast<CUresult (*)(CUcontext, CUstream, CUstream*, int)>(static_cast<void* const*>(table)[51]);
  auto stream_id = reinterpret_cast<CUresult (*)(CUcontext, CUstream, unsigned long long*)>(static_cast<void* const*>(table)[39]);
  auto id_of = [&](CUstream handle, int per_thread) {
    CUstream resolved = nullptr;
    EXPECT_CU(resolve(context_, handle, &resolved, per_thread));
    unsigned long long value = 0;
    EXPECT_CU(stream_id(context_, resolved, &value));
    return value;
  };
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, 0));
  unsigned long long legacy = 0, per_thread = 0, created = 0;
  ASSERT_CU(cuStreamGetId(CU_STREAM_LEGACY, &legacy));
  ASSERT_CU(cuStreamGetId(CU_STREAM_PER_THREAD, &per_thread));
  ASSERT_CU(cuStreamGetId(stream, &created));
  EXPECT_EQ(id_of(nullptr, 0), legacy);
  EXPECT_EQ(id_of(CU_STREAM_LEGACY, 1), legacy);
  EXPECT_EQ(id_of(nullptr, 1), per_thread);
  EXPECT_EQ(id_of(stream, 0), created);
  EXPECT_NE(legacy, per_thread);
  EXPECT_NE(legacy, created);
  ASSERT_CU(cuStreamDestroy(stream));
}

// A module's functions as a list, and the private table cuFFT finds the kernel of a module of one
// kernel with (slot 7 of 6e163fbe-…: 1 and the kernel through its callback, else 0).
TEST_F(CudaE2E, AModulesFunctionsAreListedAndItsOnlyKernelFoundByThePrivateTable) {
  CUmodule module = nullptr;
  ASSERT_CU(cuModuleLoadData(&module, kModule));
  unsigned count = 0;
  ASSERT_CU(cuModuleGetFunctionCount(&count, module));
  ASSERT_EQ(count, 5u);
  std::vector<CUfunction> listed(count);
  ASSERT_CU(cuModuleEnumerateFunctions(listed.data(), count, module));
  CUfunction scale = nullptr;
  ASSERT_CU(cuModuleGetFunction(&scale, module, "scale_f32"));
  EXPECT_NE(std::find(listed.begin(), listed.end(), scale), listed.end());
  const char* name = nullptr;
  ASSERT_CU(cuFuncGetName(&name, scale));
  EXPECT_STREQ(name, "scale_f32");
  const char* again = nullptr;
  ASSERT_CU(cuFuncGetName(&again, scale));
  EXPECT_EQ(again, name);  // the same string, kept
  EXPECT_EQ(cuFuncGetName(&name, reinterpret_cast<CUfunction>(0x1234)), CUDA_ERROR_INVALID_HANDLE);

  const CUuuid functions_table{{0x6e, 0x16, 0x3f, static_cast<char>(0xbe), static_cast<char>(0xb9), 0x58, 0x44, 0x4d,
                                static_cast<char>(0x83), 0x5c, static_cast<char>(0xe1), static_cast<char>(0x82),
                                static_cast<char>(0xaf), static_cast<char>(0xf1), static_cast<char>(0x99), 0x1e}};
  const void* table = nullptr;
  ASSERT_CU(cuGetExportTable(&table, &functions_table));
  ASSERT_GE(*static_cast<const size_t*>(table), 8 * sizeof(void*));
  using Put = void (*)(void**, void*);
  auto only_function = reinterpret_cast<int (*)(CUcontext, CUmodule, Put, void**)>(static_cast<void* const*>(table)[7]);
  Put put = [](void** out, void* value) { *out = value; };
  void* found = nullptr;
  EXPECT_EQ(only_function(context_, module, put, &found), 0);  // five kernels: none is "the" kernel
  EXPECT_EQ(found, nullptr);

  CUmodule single = nullptr;
  ASSERT_CU(cuModuleLoadData(&single, "RGPU-CUDA-TEST-DOUBLE-MODULE\nfill_u32\n"));
  CUfunction fill = nullptr;
  ASSERT_CU(cuModuleGetFunction(&fill, single, "fill_u32"));
  ASSERT_EQ(only_function(context_, single, put, &found), 1);
  EXPECT_EQ(found, fill);
  // The kernel found launches like one looked up by name.
  CUdeviceptr d = 0;
  ASSERT_CU(cuMemAlloc(&d, 16 * sizeof(uint32_t)));
  uint32_t value = 7;
  unsigned long long n = 16;
  void* params[] = {&d, &value, &n};
  ASSERT_CU(cuLaunchKernel(static_cast<CUfunction>(found), 1, 1, 1, 16, 1, 1, 0, nullptr, params, nullptr));
  std::vector<uint32_t> back(16);
  ASSERT_CU(cuMemcpyDtoH(back.data(), d, 16 * sizeof(uint32_t)));
  EXPECT_EQ(back, std::vector<uint32_t>(16, 7));
  EXPECT_CU(cuMemFree(d));
  EXPECT_CU(cuModuleUnload(single));
  EXPECT_CU(cuModuleUnload(module));
}

// Ids and a kernel's function, kept by the client once asked: a stream made after one is destroyed
// has its own id; a kernel has a function per context; a context's id is its own.
TEST_F(CudaE2E, KeptIdsAndKernelFunctionsFollowTheirObjects) {
  std::set<unsigned long long> ids;
  for (int i = 0; i < 3; ++i) {
    CUstream stream;
    ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
    unsigned long long id = 0, again = 0;
    ASSERT_CU(cuStreamGetId(stream, &id));
    ASSERT_CU(cuStreamGetId(stream, &again));
    EXPECT_EQ(again, id);
    EXPECT_TRUE(ids.insert(id).second) << "stream " << i << " has the id of a destroyed one";
    ASSERT_CU(cuStreamDestroy(stream));
  }
  CUlibrary library;
  ASSERT_CU(cuLibraryLoadData(&library, kModule, nullptr, nullptr, 0, nullptr, nullptr, 0));
  CUkernel kernel;
  ASSERT_CU(cuLibraryGetKernel(&kernel, library, "fill_u32"));
  CUfunction here = nullptr, kept = nullptr, there = nullptr;
  ASSERT_CU(cuKernelGetFunction(&here, kernel));
  ASSERT_CU(cuKernelGetFunction(&kept, kernel));
  EXPECT_EQ(kept, here);
  CUcontext other;
  ASSERT_CU(cuCtxCreate(&other, nullptr, 0, device_));
  ASSERT_CU(cuKernelGetFunction(&there, kernel));
  EXPECT_NE(there, here);
  unsigned long long other_id = 0, this_id = 0;
  ASSERT_CU(cuCtxGetId(nullptr, &other_id));
  ASSERT_CU(cuCtxGetId(context_, &this_id));
  EXPECT_NE(other_id, this_id);
  ASSERT_CU(cuCtxDestroy(other));
  ASSERT_CU(cuCtxSetCurrent(context_));
  ASSERT_CU(cuKernelGetFunction(&kept, kernel));
  EXPECT_EQ(kept, here);
  EXPECT_CU(cuLibraryUnload(library));
}

// Device addresses are kept out of the application's own address space while allocated, so that
// no host allocation can carry an address that is also a device address.
TEST_F(CudaE2E, DeviceAddressesAreReservedWhileAllocated) {
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 64 << 20));
  const uint64_t inside = (d + (32 << 20)) & ~uint64_t{(2 << 20) - 1};
  auto try_map = [&] {
    void* p = mmap(reinterpret_cast<void*>(inside), 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                   -1, 0);
    if (p != MAP_FAILED) munmap(p, 4096);
    return p == reinterpret_cast<void*>(inside);
  };
  EXPECT_FALSE(try_map()) << "a host mapping could be placed inside device memory";
  ASSERT_CU(cuMemFree(d));
  EXPECT_TRUE(try_map()) << "the reservation outlived the allocation";
}

TEST_F(CudaE2E, UnifiedCopyTellsHostFromDevice) {
  std::vector<float> in(1000), out(1000);
  std::iota(in.begin(), in.end(), 1.0f);
  CUdeviceptr a, b;
  ASSERT_CU(cuMemAlloc(&a, 4000));
  ASSERT_CU(cuMemAlloc(&b, 4000));
  ASSERT_CU(cuMemcpy(a, reinterpret_cast<CUdeviceptr>(in.data()), 4000));
  ASSERT_CU(cuMemcpy(b, a, 4000));
  ASSERT_CU(cuMemcpy(reinterpret_cast<CUdeviceptr>(out.data()), b, 4000));
  EXPECT_EQ(in, out);
  unsigned type = 0;
  ASSERT_CU(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, b + 16));
  EXPECT_EQ(type, CU_MEMORYTYPE_DEVICE);
  EXPECT_CU(cuMemFree(a));
  EXPECT_CU(cuMemFree(b));
}

// cuOccupancyMaxPotentialBlockSize calls the application's own function for each block size it
// tries; the occupancy of each is the server's (the double models an SM of 2048 threads, 32
// blocks and 233472 bytes of shared memory).
std::atomic<int> g_shared_asked{0};
size_t two_hundred_bytes_a_thread(int block_size) {
  ++g_shared_asked;
  return static_cast<size_t>(block_size) * 200;
}

TEST_F(CudaE2E, OccupancyCallbacksRunInTheApplication) {
  CUmodule module = load_module();
  CUfunction add;
  ASSERT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  int grid = 0, block = 0;
  ASSERT_CU(cuOccupancyMaxPotentialBlockSize(&grid, &block, add, nullptr, 0, 0));
  EXPECT_EQ(block, 1024);  // two blocks of 1024 fill an SM
  EXPECT_EQ(grid, 2 * 132);
  ASSERT_CU(cuOccupancyMaxPotentialBlockSize(&grid, &block, add, two_hundred_bytes_a_thread, 0, 0));
  EXPECT_EQ(block, 576);  // 2 blocks of 576 threads (115200 bytes each): 1152 threads, the most
  EXPECT_EQ(grid, 2 * 132);
  EXPECT_EQ(g_shared_asked.load(), 1024 / 32);
  ASSERT_CU(cuOccupancyMaxPotentialBlockSizeWithFlags(&grid, &block, add, two_hundred_bytes_a_thread, 0, 300,
                                                      CU_OCCUPANCY_DISABLE_CACHING_OVERRIDE));
  EXPECT_EQ(block, 288);  // at most 300: 4 blocks of 288
  EXPECT_EQ(grid, 4 * 132);
  EXPECT_EQ(cuOccupancyMaxPotentialBlockSize(nullptr, &block, add, nullptr, 0, 0), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuOccupancyMaxPotentialBlockSizeWithFlags(&grid, &block, add, nullptr, 0, 0, 0x80), CUDA_ERROR_INVALID_VALUE);
}

// An access policy window over device memory (its address is the device's), as a launch attribute.
CUlaunchAttributeValue access_policy_window(CUdeviceptr base, size_t bytes, float hit_ratio) {
  CUlaunchAttributeValue value{};
  value.accessPolicyWindow.base_ptr = reinterpret_cast<void*>(base);
  value.accessPolicyWindow.num_bytes = bytes;
  value.accessPolicyWindow.hitRatio = hit_ratio;
  value.accessPolicyWindow.hitProp = CU_ACCESS_PROPERTY_PERSISTING;
  value.accessPolicyWindow.missProp = CU_ACCESS_PROPERTY_STREAMING;
  return value;
}

// Stream attributes of plain values cross whole; one the server does not take is refused.
TEST_F(CudaE2E, StreamAttributesRoundTrip) {
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr window;
  ASSERT_CU(cuMemAlloc(&window, 1 << 20));
  CUstreamAttrValue set = access_policy_window(window, 1 << 20, 0.75f);
  ASSERT_CU(cuStreamSetAttribute(stream, CU_STREAM_ATTRIBUTE_ACCESS_POLICY_WINDOW, &set));
  CUstreamAttrValue got{};
  ASSERT_CU(cuStreamGetAttribute(stream, CU_STREAM_ATTRIBUTE_ACCESS_POLICY_WINDOW, &got));
  EXPECT_EQ(got.accessPolicyWindow.base_ptr, set.accessPolicyWindow.base_ptr);
  EXPECT_EQ(got.accessPolicyWindow.num_bytes, set.accessPolicyWindow.num_bytes);
  EXPECT_EQ(got.accessPolicyWindow.hitRatio, 0.75f);
  EXPECT_EQ(got.accessPolicyWindow.hitProp, CU_ACCESS_PROPERTY_PERSISTING);
  CUstreamAttrValue policy{};
  policy.syncPolicy = CU_SYNC_POLICY_BLOCKING_SYNC;
  ASSERT_CU(cuStreamSetAttribute(stream, CU_STREAM_ATTRIBUTE_SYNCHRONIZATION_POLICY, &policy));
  ASSERT_CU(cuStreamGetAttribute(stream, CU_STREAM_ATTRIBUTE_SYNCHRONIZATION_POLICY, &got));
  EXPECT_EQ(got.syncPolicy, CU_SYNC_POLICY_BLOCKING_SYNC);
  // A launch-only attribute that carries an event handle is not a stream attribute the server takes.
  EXPECT_EQ(cuStreamSetAttribute(stream, static_cast<CUstreamAttrID>(CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT), &policy),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuStreamGetAttribute(stream, CU_STREAM_ATTRIBUTE_PRIORITY, nullptr), CUDA_ERROR_INVALID_VALUE);
  ASSERT_CU(cuMemFree(window));
  ASSERT_CU(cuStreamDestroy(stream));
}

TEST_F(CudaE2E, KernelLaunchComputes) {
  CUmodule module = load_module();
  CUfunction add;
  ASSERT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  size_t offset = 0, size = 0;
  ASSERT_CU(cuFuncGetParamInfo(add, 3, &offset, &size));
  EXPECT_EQ(offset, 24u);
  EXPECT_EQ(size, 4u);
  int n = 10000;
  std::vector<float> a(n), b(n), c(n);
  for (int i = 0; i < n; ++i) a[i] = i, b[i] = 2.0f * i;
  CUdeviceptr da, db, dc;
  ASSERT_CU(cuMemAlloc(&da, n * 4));
  ASSERT_CU(cuMemAlloc(&db, n * 4));
  ASSERT_CU(cuMemAlloc(&dc, n * 4));
  ASSERT_CU(cuMemcpyHtoD(da, a.data(), n * 4));
  ASSERT_CU(cuMemcpyHtoD(db, b.data(), n * 4));
  void* args[] = {&da, &db, &dc, &n};
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  ASSERT_CU(cuMemcpyDtoH(c.data(), dc, n * 4));
  for (int i = 0; i < n; ++i) ASSERT_EQ(c[i], 3.0f * i) << i;

  CUfunction add_global;
  ASSERT_CU(cuModuleGetFunction(&add_global, module, "add_global_f32"));
  CUdeviceptr global;
  size_t global_size = 0;
  ASSERT_CU(cuModuleGetGlobal(&global, &global_size, module, "offset"));
  EXPECT_EQ(global_size, 4u);
  float offset_value = 0.5f;
  ASSERT_CU(cuMemcpyHtoD(global, &offset_value, 4));
  void* args2[] = {&dc, &n};
  ASSERT_CU(cuLaunchKernel(add_global, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, args2, nullptr));
  ASSERT_CU(cuMemcpyDtoH(c.data(), dc, n * 4));
  EXPECT_EQ(c[10], 30.5f);
  EXPECT_CU(cuMemFree(da));
  EXPECT_CU(cuMemFree(db));
  EXPECT_CU(cuMemFree(dc));
  EXPECT_CU(cuModuleUnload(module));
}

// Managed and mapped host memory: one pointer for the host and kernels; the host's writes reach the
// device before a launch, the device's reach the host after a synchronisation.
TEST_F(CudaE2E, ManagedMemoryIsOnePointerForHostAndKernels) {
  CUmodule module = load_module();
  CUfunction add;
  ASSERT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  int n = 3000;  // not a whole number of pages
  CUdeviceptr a, b, c;
  ASSERT_CU(cuMemAllocManaged(&a, n * 4, CU_MEM_ATTACH_GLOBAL));
  ASSERT_CU(cuMemAllocManaged(&b, n * 4, CU_MEM_ATTACH_GLOBAL));
  ASSERT_CU(cuMemAllocManaged(&c, n * 4, CU_MEM_ATTACH_GLOBAL));
  auto* ha = reinterpret_cast<float*>(a);
  auto* hb = reinterpret_cast<float*>(b);
  auto* hc = reinterpret_cast<float*>(c);
  EXPECT_EQ(hc[n - 1], 0.0f);  // both copies start as zeros
  for (int i = 0; i < n; ++i) ha[i] = i, hb[i] = 2.0f * i;
  CUdevice device;
  ASSERT_CU(cuDeviceGet(&device, 0));
  CUmemLocation on_device{CU_MEM_LOCATION_TYPE_DEVICE, 0};
  ASSERT_CU(cuMemAdvise_v2(b, n * 4, CU_MEM_ADVISE_SET_READ_MOSTLY, on_device));
  ASSERT_CU(cuMemPrefetchAsync_v2(a, n * 4, on_device, 0, nullptr));
  void* args[] = {&a, &b, &c, &n};
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  for (int i = 0; i < n; ++i) ASSERT_EQ(hc[i], 3.0f * i) << i;
  // Only some host pages change; the kernel must see exactly those.
  ha[0] = 100.0f;
  ha[n - 1] = -1.0f;
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, stream, args, nullptr));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(hc[0], 100.0f);
  EXPECT_EQ(hc[1], 3.0f);
  EXPECT_EQ(hc[n - 1], 2.0f * (n - 1) - 1.0f);
  // Explicit copies see and change the same memory.
  std::vector<float> back(n);
  ASSERT_CU(cuMemcpyDtoH(back.data(), c, n * 4));
  EXPECT_EQ(back[n - 1], hc[n - 1]);
  const float seven = 7.0f;
  ASSERT_CU(cuMemcpyHtoD(c + 4 * 5, &seven, 4));
  ASSERT_CU(cuCtxSynchronize());
  EXPECT_EQ(hc[5], 7.0f);
  int managed = 0;
  ASSERT_CU(cuPointerGetAttribute(&managed, CU_POINTER_ATTRIBUTE_IS_MANAGED, b + 8));
  EXPECT_EQ(managed, 1);
  int concurrent = -1;
  ASSERT_CU(cuDeviceGetAttribute(&concurrent, CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS, device));
  EXPECT_EQ(concurrent, 0);  // host and device copies meet at synchronisations
  CUmemLocation nowhere{CU_MEM_LOCATION_TYPE_INVALID, 0};
  EXPECT_EQ(cuMemPrefetchAsync_v2(a, n * 4, nowhere, 0, nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuMemFree(a));
  EXPECT_CU(cuMemFree(b));
  EXPECT_CU(cuMemFree(c));
  // A fresh allocation works and starts as zeros again.
  ASSERT_CU(cuMemAllocManaged(&a, 64, CU_MEM_ATTACH_HOST));
  EXPECT_EQ(reinterpret_cast<float*>(a)[15], 0.0f);
  EXPECT_CU(cuMemFree(a));
  EXPECT_CU(cuStreamDestroy(stream));
  EXPECT_CU(cuModuleUnload(module));
}

// A managed range's advice and last prefetch, as the server's driver keeps them, with devices
// numbered as the application numbers them.
TEST_F(CudaE2E, ManagedRangesTellTheirAdviceAndLastPrefetch) {
  CUdeviceptr p = 0;
  ASSERT_CU(cuMemAllocManaged(&p, 1 << 16, CU_MEM_ATTACH_GLOBAL));
  int value = -99;
  ASSERT_CU(cuMemRangeGetAttribute(&value, 4, CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, p, 1 << 16));
  EXPECT_EQ(value, 0);
  ASSERT_CU(cuMemRangeGetAttribute(&value, 4, CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, 1 << 16));
  EXPECT_EQ(value, CU_DEVICE_INVALID);

  CUmemLocation on_device{}, on_host{};
  on_device.type = CU_MEM_LOCATION_TYPE_DEVICE;
  on_device.id = device_;
  on_host.type = CU_MEM_LOCATION_TYPE_HOST;
  ASSERT_CU(cuMemAdvise_v2(p, 1 << 16, CU_MEM_ADVISE_SET_READ_MOSTLY, on_device));
  ASSERT_CU(cuMemAdvise_v2(p, 1 << 16, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, on_host));
  ASSERT_CU(cuMemAdvise_v2(p, 1 << 16, CU_MEM_ADVISE_SET_ACCESSED_BY, on_device));
  ASSERT_CU(cuMemPrefetchAsync_v2(p, 1 << 16, on_device, 0, nullptr));
  ASSERT_CU(cuCtxSynchronize());

  int read_mostly = 0, preferred = 0, prefetched = -99, prefetched_type = 0;
  int accessed_by[3] = {};
  void* data[] = {&read_mostly, &preferred, accessed_by, &prefetched, &prefetched_type};
  size_t sizes[] = {4, 4, sizeof accessed_by, 4, 4};
  CUmem_range_attribute attributes[] = {CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION,
                                        CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY, CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID,
                                        CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_TYPE};
  ASSERT_CU(cuMemRangeGetAttributes(data, sizes, attributes, 5, p, 1 << 16));
  EXPECT_EQ(read_mostly, 1);
  EXPECT_EQ(preferred, CU_DEVICE_CPU);
  EXPECT_EQ(accessed_by[0], device_);
  EXPECT_EQ(accessed_by[1], CU_DEVICE_INVALID);
  EXPECT_EQ(prefetched, device_);
  EXPECT_EQ(prefetched_type, CU_MEM_LOCATION_TYPE_DEVICE);

  // Not managed memory, and a size no attribute has.
  CUdeviceptr plain = 0;
  ASSERT_CU(cuMemAlloc(&plain, 4096));
  EXPECT_EQ(cuMemRangeGetAttribute(&value, 4, CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, plain, 4096), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemRangeGetAttribute(&value, 3, CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, p, 4096), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuMemFree(plain));
  EXPECT_CU(cuMemFree(p));
}

// A stream's synchronisation brings its writes to managed memory back without waiting for other
// streams' work, which the host may not rely on before it waits for that too. The other stream is
// held by a host function until the check is done (or, should the synchronisation wait for it
// after all, for at most ten seconds, so that the test fails instead of hanging).
TEST_F(CudaE2E, ManagedMemoryComesBackAtAStreamsSynchronisationWithoutWaitingForOtherStreams) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUdeviceptr managed;
  unsigned long long n = 4096;
  ASSERT_CU(cuMemAllocManaged(&managed, n * 4, CU_MEM_ATTACH_GLOBAL));
  CUstream held, fast;
  ASSERT_CU(cuStreamCreate(&held, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuStreamCreate(&fast, CU_STREAM_NON_BLOCKING));
  struct Gate {
    std::mutex mutex;
    std::condition_variable opened;
    bool open = false;
  } gate;
  ASSERT_CU(cuLaunchHostFunc(held, [](void* data) {
    auto* g = static_cast<Gate*>(data);
    std::unique_lock lock(g->mutex);
    g->opened.wait_for(lock, std::chrono::seconds(10), [&] { return g->open; });
  }, &gate));
  uint32_t value = 7;
  void* fill_args[] = {&managed, &value, &n};
  ASSERT_CU(cuLaunchKernel(fill, 4, 1, 1, 256, 1, 1, 0, fast, fill_args, nullptr));
  ASSERT_CU(cuStreamSynchronize(fast));
  EXPECT_EQ(cuStreamQuery(held), CUDA_ERROR_NOT_READY) << "the synchronisation waited for another stream";
  EXPECT_EQ(reinterpret_cast<uint32_t*>(managed)[n - 1], 7u);
  {
    std::lock_guard lock(gate.mutex);
    gate.open = true;
  }
  gate.opened.notify_all();
  ASSERT_CU(cuStreamSynchronize(held));
  EXPECT_CU(cuMemFree(managed));
  EXPECT_CU(cuStreamDestroy(held));
  EXPECT_CU(cuStreamDestroy(fast));
  EXPECT_CU(cuModuleUnload(module));
}

// While a stream captures, managed memory is left alone: sending the host's writes (a synchronous
// copy) would end the capture. The graph's launch then works on what the host wrote.
TEST_F(CudaE2E, ManagedMemoryIsNotSynchronisedDuringACapture) {
  CUmodule module = load_module();
  CUfunction add;
  ASSERT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  int n = 1000;
  CUdeviceptr a, c;
  ASSERT_CU(cuMemAllocManaged(&a, n * 4, CU_MEM_ATTACH_GLOBAL));
  ASSERT_CU(cuMemAllocManaged(&c, n * 4, CU_MEM_ATTACH_GLOBAL));
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  reinterpret_cast<float*>(a)[3] = 2.0f;  // written before the capture, sent at the graph's launch
  ASSERT_CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  void* args[] = {&a, &a, &c, &n};
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, stream, args, nullptr));
  CUgraph graph;
  ASSERT_CU(cuStreamEndCapture(stream, &graph));
  CUgraphExec exec;
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  ASSERT_CU(cuGraphLaunch(exec, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(reinterpret_cast<float*>(c)[3], 4.0f);
  reinterpret_cast<float*>(a)[3] = 5.0f;
  ASSERT_CU(cuGraphLaunch(exec, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(reinterpret_cast<float*>(c)[3], 10.0f);
  EXPECT_CU(cuGraphExecDestroy(exec));
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuStreamDestroy(stream));
  EXPECT_CU(cuMemFree(a));
  EXPECT_CU(cuMemFree(c));
  EXPECT_CU(cuModuleUnload(module));
}

TEST_F(CudaE2E, MappedHostMemoryIsOnePointerForHostAndKernels) {
  CUmodule module = load_module();
  CUfunction add;
  ASSERT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  int n = 5000;
  void *ha, *hb, *hc;
  ASSERT_CU(cuMemHostAlloc(&ha, n * 4, CU_MEMHOSTALLOC_DEVICEMAP));
  ASSERT_CU(cuMemHostAlloc(&hb, n * 4, CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE));
  ASSERT_CU(cuMemHostAlloc(&hc, n * 4, CU_MEMHOSTALLOC_DEVICEMAP));
  for (int i = 0; i < n; ++i) static_cast<float*>(ha)[i] = i, static_cast<float*>(hb)[i] = 1.0f;
  CUdeviceptr a, b, c;
  ASSERT_CU(cuMemHostGetDevicePointer(&a, ha, 0));
  EXPECT_EQ(a, reinterpret_cast<CUdeviceptr>(ha));
  ASSERT_CU(cuMemHostGetDevicePointer(&b, hb, 0));
  c = reinterpret_cast<CUdeviceptr>(hc);  // the host pointer itself, as under unified addressing
  void* args[] = {&a, &b, &c, &n};
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  ASSERT_CU(cuStreamSynchronize(nullptr));
  EXPECT_EQ(static_cast<float*>(hc)[0], 1.0f);
  EXPECT_EQ(static_cast<float*>(hc)[n - 1], n * 1.0f);
  unsigned int flags = 0;
  ASSERT_CU(cuMemHostGetFlags(&flags, hb));
  EXPECT_EQ(flags, unsigned(CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE));
  unsigned type = 0;
  ASSERT_CU(cuPointerGetAttribute(&type, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, c));
  EXPECT_EQ(type, unsigned(CU_MEMORYTYPE_HOST));
  // Pinned memory that is not mapped has no device address.
  void* unmapped;
  ASSERT_CU(cuMemHostAlloc(&unmapped, 4096, 0));
  CUdeviceptr none;
  EXPECT_EQ(cuMemHostGetDevicePointer(&none, unmapped, 0), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuMemFreeHost(unmapped));
  EXPECT_CU(cuMemFreeHost(ha));
  EXPECT_CU(cuMemFreeHost(hb));
  EXPECT_CU(cuMemFreeHost(hc));
  EXPECT_EQ(cuMemHostGetDevicePointer(&none, ha, 0), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuModuleUnload(module));
}

// Registered memory mapped for the device: a device allocation kept in step with the application's
// own memory, with a device address of its own.
TEST_F(CudaE2E, RegisteredHostMemoryIsMappedForKernels) {
  CUmodule module = load_module();
  CUfunction add;
  ASSERT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  int n = 2000;
  std::vector<float> a(n + 3), b(n);  // a[3..] starts inside a page
  // c ends inside a page whose other bytes the program writes while a kernel writes c.
  auto* page_aligned = static_cast<float*>(std::aligned_alloc(4096, 3 * 4096));
  std::span<float> c(page_aligned, n);
  std::fill(page_aligned, page_aligned + 3 * 1024, -1.0f);
  for (int i = 0; i < n; ++i) a[i + 3] = i, b[i] = 0.5f;
  ASSERT_CU(cuMemHostRegister(a.data() + 3, n * 4, CU_MEMHOSTREGISTER_DEVICEMAP));
  ASSERT_CU(cuMemHostRegister(c.data(), n * 4, CU_MEMHOSTREGISTER_DEVICEMAP | CU_MEMHOSTREGISTER_PORTABLE));
  CUdeviceptr da, dc, db;
  ASSERT_CU(cuMemHostGetDevicePointer(&da, a.data() + 3, 0));
  ASSERT_CU(cuMemHostGetDevicePointer(&dc, c.data(), 0));
  int mapped = 0;
  ASSERT_CU(cuPointerGetAttribute(&mapped, CU_POINTER_ATTRIBUTE_MAPPED, reinterpret_cast<CUdeviceptr>(c.data())));
  EXPECT_EQ(mapped, 1);
  ASSERT_CU(cuMemAlloc(&db, n * 4));
  ASSERT_CU(cuMemcpyHtoD(db, b.data(), n * 4));
  void* args[] = {&da, &db, &dc, &n};
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  page_aligned[2040] = 9.0f;  // past c, in its last page
  ASSERT_CU(cuCtxSynchronize());
  EXPECT_EQ(c[0], 0.5f);
  EXPECT_EQ(c[n - 1], n - 0.5f);
  a[3 + 7] = 100.0f;  // the application writes its memory; the next launch sees it
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  EXPECT_EQ(c[7], 100.5f);
  EXPECT_EQ(a[2], 0.0f);  // the bytes before the registered range are untouched
  EXPECT_CU(cuMemHostUnregister(a.data() + 3));
  EXPECT_CU(cuMemHostUnregister(c.data()));
  CUdeviceptr none;
  EXPECT_EQ(cuMemHostGetDevicePointer(&none, c.data(), 0), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(page_aligned[2040], 9.0f);
  std::free(page_aligned);
  EXPECT_CU(cuMemFree(db));
  EXPECT_CU(cuModuleUnload(module));
}

// Libraries are how the CUDA runtime loads code: context-free kernels, launched as functions.
// An image larger than one frame travels in parts: the kernel named after 70 MiB of blank lines
// is found and runs, and the module loads as a library too.
TEST_F(CudaE2E, LargeImagesLoadWhole) {
  std::string image = "RGPU-CUDA-TEST-DOUBLE-MODULE\nvector_add_f32\n";
  image.append(size_t{70} << 20, '\n');
  image += "fill_u32\n";
  CUmodule module = nullptr;
  ASSERT_CU(cuModuleLoadData(&module, image.c_str()));
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 64 * sizeof(unsigned)));
  unsigned value = 7;
  unsigned long long count = 64;
  void* params[] = {&d, &value, &count};
  ASSERT_CU(cuLaunchKernel(fill, 1, 1, 1, 64, 1, 1, 0, nullptr, params, nullptr));
  std::vector<unsigned> out(64);
  ASSERT_CU(cuMemcpyDtoH(out.data(), d, 64 * sizeof(unsigned)));
  EXPECT_EQ(out, std::vector<unsigned>(64, 7));
  EXPECT_CU(cuModuleUnload(module));

  CUlibrary library = nullptr;
  ASSERT_CU(cuLibraryLoadData(&library, image.c_str(), nullptr, nullptr, 0, nullptr, nullptr, 0));
  CUkernel kernel;
  EXPECT_CU(cuLibraryGetKernel(&kernel, library, "fill_u32"));
  EXPECT_CU(cuLibraryUnload(library));
  EXPECT_CU(cuMemFree(d));
}

// The linker: two inputs (one from memory, one from a file) linked on the server into one image
// that loads and runs; the linked image lives until cuLinkDestroy.
TEST_F(CudaE2E, LinkerJoinsInputs) {
  std::string first = "RGPU-CUDA-TEST-DOUBLE-MODULE\nvector_add_f32\n";
  TempDir dir;
  const std::string second = dir.file("second.module", "RGPU-CUDA-TEST-DOUBLE-MODULE\nfill_u32\n");
  CUlinkState link = nullptr;
  ASSERT_CU(cuLinkCreate(0, nullptr, nullptr, &link));
  ASSERT_CU(cuLinkAddData(link, CU_JIT_INPUT_PTX, first.data(), first.size() + 1, "first", 0, nullptr, nullptr));
  ASSERT_CU(cuLinkAddFile(link, CU_JIT_INPUT_PTX, second.c_str(), 0, nullptr, nullptr));
  EXPECT_EQ(cuLinkAddFile(link, CU_JIT_INPUT_PTX, (dir.path() + "/missing").c_str(), 0, nullptr, nullptr),
            CUDA_ERROR_FILE_NOT_FOUND);
  void* image = nullptr;
  size_t size = 0;
  ASSERT_CU(cuLinkComplete(link, &image, &size));
  ASSERT_GT(size, 0u);
  CUmodule module = nullptr;
  ASSERT_CU(cuModuleLoadData(&module, image));
  CUfunction add, fill;
  EXPECT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 16 * sizeof(unsigned)));
  unsigned value = 3;
  unsigned long long count = 16;
  void* params[] = {&d, &value, &count};
  ASSERT_CU(cuLaunchKernel(fill, 1, 1, 1, 16, 1, 1, 0, nullptr, params, nullptr));
  std::vector<unsigned> out(16);
  ASSERT_CU(cuMemcpyDtoH(out.data(), d, out.size() * sizeof(unsigned)));
  EXPECT_EQ(out, std::vector<unsigned>(16, 3));
  ASSERT_CU(cuLinkDestroy(link));
  EXPECT_EQ(cuLinkAddData(link, CU_JIT_INPUT_PTX, first.data(), first.size() + 1, "again", 0, nullptr, nullptr),
            CUDA_ERROR_INVALID_HANDLE);
  EXPECT_CU(cuModuleUnload(module));
  EXPECT_CU(cuMemFree(d));
}

#ifdef CUDART_PROGRAM_PATH
// Unmodified programs built with the CUDA runtime: libcudart starts up on RGPU's driver (its
// private tables and integrity check), then allocates, copies and synchronises.
std::string run_with_rgpu(const char* program, int& status) {
  const std::string command = std::string("LD_PRELOAD=") + RGPU_INTERPOSE_PATH + " " + program + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return "popen failed";
  std::string output;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof buffer, pipe)) output.append(buffer, n);
  status = pclose(pipe);
  return output;
}

void expect_cudart_program_runs(const char* program) {
  int status = -1;
  const std::string output = run_with_rgpu(program, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_THAT(output, ::testing::HasSubstr("devices 2\n"));
  EXPECT_THAT(output, ::testing::HasSubstr("device 0: RGPU CUDA test double 0, compute 9.0\n"));
  EXPECT_THAT(output, ::testing::HasSubstr("round trip ok\n"));
  EXPECT_THAT(output, ::testing::HasSubstr("memory info ok\n"));
}

TEST(CudaRuntime, StaticCudartProgramRuns) { expect_cudart_program_runs(CUDART_PROGRAM_PATH); }
#ifdef CUDART_SHARED_PROGRAM_PATH
TEST(CudaRuntime, SharedCudartProgramRuns) { expect_cudart_program_runs(CUDART_SHARED_PROGRAM_PATH); }
#endif

#ifdef RUNTIME_KERNELS_STATIC_PATH
// nvcc-built programs with <<<>>> launches, a stream and events: libcudart registers the fat
// binary, loads it through RGPU and launches its kernels on the server.
TEST(CudaRuntime, NvccProgramsWithKernelsRun) {
  for (const char* program : {RUNTIME_KERNELS_STATIC_PATH, RUNTIME_KERNELS_SHARED_PATH}) {
    int status = -1;
    const std::string output = run_with_rgpu(program, status);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << program << "\n" << output;
    EXPECT_THAT(output, ::testing::HasSubstr("vector_add wrong=0\n")) << program;
    EXPECT_THAT(output, ::testing::HasSubstr("fill not_42=0 timing=ok\n")) << program;
  }
}

// cudaLaunchHostFunc and cudaStreamAddCallback between kernels on two streams, an event between
// the streams, and host functions captured into a graph: libcudart reaches them through the
// interpose's cuLaunchHostFunc and cuStreamAddCallback.
TEST(CudaRuntime, NvccProgramWithHostFunctionsRuns) {
  int status = -1;
  const std::string output = run_with_rgpu(HOST_FUNCTIONS_PROGRAM_PATH, status);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_THAT(output, ::testing::HasSubstr("round 2 stream 1: function sum=1051721728, callback sum=3155165184 "
                                           "status=cudaSuccess, in stream order: ok\n"));
  EXPECT_THAT(output, ::testing::HasSubstr("stream 1 waited for stream 0's callback: yes\n"));
  EXPECT_THAT(output, ::testing::HasSubstr("graph: host functions ran 2 and 2 times, sum=36700160 ok\n"));
  EXPECT_THAT(output, ::testing::HasSubstr("host functions ok\n"));
}
#endif
#endif

// Tensor maps are encoded by the server's driver from the application's arguments.
TEST_F(CudaE2E, TensorMapsAreEncodedByTheServer) {
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 1 << 20));
  const cuuint64_t dims[2] = {256, 128}, strides[1] = {256 * 4};
  const cuuint32_t box[2] = {32, 16}, element_strides[2] = {1, 1};
  CUtensorMap map;
  ASSERT_CU(cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, reinterpret_cast<void*>(d), dims, strides,
                                   box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                   CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  EXPECT_EQ(map.opaque[0], CU_TENSOR_MAP_DATA_TYPE_FLOAT32 | 2u << 8 | uint64_t{CU_TENSOR_MAP_SWIZZLE_128B} << 24);
  EXPECT_EQ(map.opaque[1], d);
  EXPECT_EQ(map.opaque[2], 256u);
  EXPECT_EQ(map.opaque[3], 128u);
  EXPECT_EQ(map.opaque[7], 32u);
  EXPECT_EQ(map.opaque[8], 16u);
  ASSERT_CU(cuTensorMapReplaceAddress(&map, reinterpret_cast<void*>(d + 4096)));
  EXPECT_EQ(map.opaque[1], d + 4096);
  EXPECT_EQ(map.opaque[2], 256u);
  EXPECT_EQ(cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 6, reinterpret_cast<void*>(d), dims, strides,
                                   box, element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                   CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuMemFree(d));
}

TEST_F(CudaE2E, LibraryKernelsLaunch) {
  CUlibrary library;
  ASSERT_CU(cuLibraryLoadData(&library, kModule, nullptr, nullptr, 0, nullptr, nullptr, 0));
  CUkernel add;
  EXPECT_EQ(cuLibraryGetKernel(&add, library, "no_such_kernel"), CUDA_ERROR_NOT_FOUND);
  ASSERT_CU(cuLibraryGetKernel(&add, library, "add_global_f32"));
  const char* name = nullptr;
  ASSERT_CU(cuKernelGetName(&name, add));
  EXPECT_STREQ(name, "add_global_f32");
  unsigned count = 0;
  ASSERT_CU(cuLibraryGetKernelCount(&count, library));
  ASSERT_EQ(count, 5u);
  std::vector<CUkernel> kernels(count + 1, reinterpret_cast<CUkernel>(1));
  ASSERT_CU(cuLibraryEnumerateKernels(kernels.data(), count + 1, library));  // one more than there are
  EXPECT_NE(std::find(kernels.begin(), kernels.end(), add), kernels.end());
  EXPECT_EQ(kernels[count], nullptr);
  CUdeviceptr offset;
  size_t bytes = 0;
  ASSERT_CU(cuLibraryGetGlobal(&offset, &bytes, library, "offset"));
  EXPECT_EQ(bytes, 4u);
  float two = 2.0f;
  ASSERT_CU(cuMemcpyHtoD(offset, &two, 4));
  int n = 1000;
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, n * 4));
  ASSERT_CU(cuMemsetD32(d, 0x3f800000, n));  // 1.0f
  void* args[] = {&d, &n};
  // A CUkernel launches as the CUfunction it is in the current context.
  ASSERT_CU(cuLaunchKernel(reinterpret_cast<CUfunction>(add), 8, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  CUfunction add_here, in_module;
  ASSERT_CU(cuKernelGetFunction(&add_here, add));
  CUmodule module;
  ASSERT_CU(cuLibraryGetModule(&module, library));
  ASSERT_CU(cuModuleGetFunction(&in_module, module, "add_global_f32"));
  EXPECT_EQ(in_module, add_here);
  ASSERT_CU(cuLaunchKernel(add_here, 8, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
  std::vector<float> out(n);
  ASSERT_CU(cuMemcpyDtoH(out.data(), d, n * 4));
  EXPECT_EQ(std::count(out.begin(), out.end(), 5.0f), n);
  EXPECT_CU(cuMemFree(d));
  EXPECT_CU(cuLibraryUnload(library));
  EXPECT_EQ(cuKernelGetFunction(&add_here, add), CUDA_ERROR_INVALID_HANDLE);
}

TEST_F(CudaE2E, StreamsEventsAndAsyncCopies) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUevent start, stop;
  ASSERT_CU(cuEventCreate(&start, 0));
  ASSERT_CU(cuEventCreate(&stop, 0));
  unsigned long long n = 1 << 20;
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, n * 4));
  unsigned value = 0xC0FFEE;
  void* args[] = {&d, &value, &n};
  ASSERT_CU(cuEventRecord(start, stream));
  ASSERT_CU(cuLaunchKernel(fill, 1024, 1, 1, 256, 1, 1, 0, stream, args, nullptr));
  ASSERT_CU(cuEventRecord(stop, stream));
  std::vector<unsigned> out(n);
  ASSERT_CU(cuMemcpyDtoHAsync(out.data(), d, n * 4, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  for (size_t i = 0; i < n; i += 4099) ASSERT_EQ(out[i], value) << i;
  EXPECT_CU(cuEventQuery(stop));
  float ms = -1;
  ASSERT_CU(cuEventElapsedTime(&ms, start, stop));
  EXPECT_GE(ms, 0.0f);
  ASSERT_CU(cuMemsetD32Async(d, 7, n, stream));
  ASSERT_CU(cuMemcpyDtoHAsync(out.data(), d, 16, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(out[3], 7u);
  EXPECT_CU(cuEventDestroy(start));
  EXPECT_CU(cuEventDestroy(stop));
  EXPECT_CU(cuStreamDestroy(stream));
  EXPECT_CU(cuMemFree(d));
  EXPECT_CU(cuModuleUnload(module));
}

TEST_F(CudaE2E, StreamCaptureIsQueriedFromTheServer) {
  // Runtimes built against CUDA 11.3-12.2 ask for the _v2 form.
  using CaptureInfoV2 = CUresult (*)(CUstream, CUstreamCaptureStatus*, cuuint64_t*, CUgraph*, const CUgraphNode**,
                                     size_t*);
  void* address = nullptr;
  CUdriverProcAddressQueryResult found;
  ASSERT_CU(cuGetProcAddress("cuStreamGetCaptureInfo", &address, 11030, CU_GET_PROC_ADDRESS_DEFAULT, &found));
  auto cuStreamGetCaptureInfo_v2 = reinterpret_cast<CaptureInfoV2>(address);
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_ACTIVE;
  ASSERT_CU(cuStreamGetCaptureInfo_v2(stream, &status, nullptr, nullptr, nullptr, nullptr));
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);

  ASSERT_CU(cuStreamBeginCapture_v2(stream, CU_STREAM_CAPTURE_MODE_RELAXED));
  cuuint64_t id = 0;
  CUgraph graph = nullptr;
  const CUgraphNode* nodes = nullptr;
  size_t count = 99;
  ASSERT_CU(cuStreamGetCaptureInfo_v2(stream, &status, &id, &graph, &nodes, &count));
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_ACTIVE);
  EXPECT_NE(id, 0u);
  EXPECT_NE(graph, nullptr);
  EXPECT_EQ(count, 0u);
  EXPECT_EQ(nodes, nullptr);

  // The double captures an event record as a node, which becomes the capture's dependency.
  CUevent event;
  ASSERT_CU(cuEventCreate(&event, 0));
  ASSERT_CU(cuEventRecord(event, stream));
  const CUgraphEdgeData* edges = nullptr;
  cuuint64_t same_id = 0;
  ASSERT_CU(cuStreamGetCaptureInfo(stream, &status, &same_id, nullptr, &nodes, &edges, &count));
  EXPECT_EQ(same_id, id);
  // Programs built for the per-thread default stream ask through cuStreamGetCaptureInfo_v3_ptsz.
  using CaptureInfoV3 = CUresult (*)(CUstream, CUstreamCaptureStatus*, cuuint64_t*, CUgraph*, const CUgraphNode**,
                                     const CUgraphEdgeData**, size_t*);
  void* per_thread = nullptr;
  ASSERT_CU(cuGetProcAddress("cuStreamGetCaptureInfo", &per_thread, 12030, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
                             &found));
  cuuint64_t per_thread_id = 0;
  ASSERT_CU(reinterpret_cast<CaptureInfoV3>(per_thread)(stream, &status, &per_thread_id, nullptr, nullptr, nullptr, nullptr));
  EXPECT_EQ(per_thread_id, id);
  ASSERT_EQ(count, 1u);
  ASSERT_NE(nodes, nullptr);
  EXPECT_NE(nodes[0], nullptr);
  ASSERT_NE(edges, nullptr);
  EXPECT_EQ(edges[0].type, CU_GRAPH_DEPENDENCY_TYPE_DEFAULT);
  EXPECT_EQ(cuStreamGetCaptureInfo(stream, &status, nullptr, nullptr, nullptr, &edges, nullptr),
            CUDA_ERROR_INVALID_VALUE);

  CUgraph captured = nullptr;
  ASSERT_CU(cuStreamEndCapture(stream, &captured));
  EXPECT_EQ(captured, graph);
  ASSERT_CU(cuStreamGetCaptureInfo(stream, &status, nullptr, nullptr, nullptr, nullptr, nullptr));
  EXPECT_EQ(status, CU_STREAM_CAPTURE_STATUS_NONE);
  EXPECT_CU(cuGraphDestroy(captured));
  EXPECT_CU(cuEventDestroy(event));
  EXPECT_CU(cuStreamDestroy(stream));
}

TEST_F(CudaE2E, StreamOrderedCopiesAndQueries) {
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, 0));
  CUevent done;
  ASSERT_CU(cuEventCreate(&done, CU_EVENT_DISABLE_TIMING));
  std::vector<uint8_t> in(1 << 20), out(1 << 20);
  std::iota(in.begin(), in.end(), uint8_t{0});
  CUdeviceptr a, b;
  ASSERT_CU(cuMemAlloc(&a, in.size()));
  ASSERT_CU(cuMemAlloc(&b, in.size()));
  ASSERT_CU(cuMemcpyHtoDAsync(a, in.data(), in.size(), stream));
  ASSERT_CU(cuMemcpyDtoDAsync(b, a, in.size(), stream));
  ASSERT_CU(cuEventRecord(done, stream));
  ASSERT_CU(cuEventSynchronize(done));
  EXPECT_CU(cuStreamQuery(stream));
  ASSERT_CU(cuMemcpyDtoHAsync(out.data(), b, out.size(), stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(in, out);
  float ms;
  EXPECT_EQ(cuEventElapsedTime(&ms, done, done), CUDA_ERROR_INVALID_HANDLE);  // made without timing

  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  int threads = 0;
  ASSERT_CU(cuFuncGetAttribute(&threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fill));
  EXPECT_EQ(threads, 1024);
  // Attributes are answered from what the client learnt, except after the application changed one.
  int shared = 0;
  ASSERT_CU(cuFuncGetAttribute(&shared, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, fill));
  EXPECT_EQ(shared, 49152);
  ASSERT_CU(cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100000));
  ASSERT_CU(cuFuncGetAttribute(&shared, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, fill));
  EXPECT_EQ(shared, 100000);
  EXPECT_EQ(cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 1 << 20), CUDA_ERROR_INVALID_VALUE);
  // A value set again (answered without the server) and a value changed and changed back both hold
  // for the launches that follow.
  unsigned long long count = 256;
  uint32_t value = 1;
  void* params[] = {&a, &value, &count};
  auto launch_with = [&](unsigned shared_bytes) {
    const CUresult r = cuLaunchKernel(fill, 1, 1, 1, 256, 1, 1, shared_bytes, stream, params, nullptr);
    return r == CUDA_SUCCESS ? cuStreamSynchronize(stream) : r;
  };
  ASSERT_CU(cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100000));
  EXPECT_CU(launch_with(100000));
  ASSERT_CU(cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 60000));
  EXPECT_NE(launch_with(100000), CUDA_SUCCESS);
  ASSERT_CU(cuFuncSetAttribute(fill, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100000));
  EXPECT_CU(launch_with(100000));
  EXPECT_CU(cuModuleUnload(module));
  EXPECT_CU(cuEventDestroy(done));
  EXPECT_CU(cuStreamDestroy(stream));
  EXPECT_CU(cuMemFree(a));
  EXPECT_CU(cuMemFree(b));
}

TEST_F(CudaE2E, FillsOfEveryWidth) {
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 64));
  ASSERT_CU(cuMemsetD8(d, 0, 64));
  ASSERT_CU(cuMemsetD8(d + 1, 0xAB, 3));
  ASSERT_CU(cuMemsetD16(d + 4, 0x1234, 2));
  ASSERT_CU(cuMemsetD32(d + 8, 0xCAFEF00D, 2));
  uint8_t bytes[17];
  ASSERT_CU(cuMemcpyDtoH(bytes, d, sizeof bytes));
  const uint8_t expected[17] = {0,    0xAB, 0xAB, 0xAB, 0x34, 0x12, 0x34, 0x12, 0x0D,
                                0xF0, 0xFE, 0xCA, 0x0D, 0xF0, 0xFE, 0xCA, 0};
  EXPECT_EQ(std::memcmp(bytes, expected, sizeof bytes), 0);
  // 16-bit fills need 2-byte aligned addresses; the error comes with the next call that waits.
  EXPECT_CU(cuMemsetD16(d + 1, 0, 1));
  EXPECT_EQ(cuCtxSynchronize(), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuMemFree(d));
}

TEST_F(CudaE2E, PipelinedFailureSurfacesAtTheNextWaitingCall) {
  CUmodule module = load_module();
  CUfunction scale;
  ASSERT_CU(cuModuleGetFunction(&scale, module, "scale_f32"));
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 64));
  float s = 2;
  int n = 16;
  void* args[] = {&d, &s, &n};
  // A block of 0 threads is invalid: the launch is not waited for, so it "succeeds" here ...
  EXPECT_CU(cuLaunchKernel(scale, 1, 1, 1, 0, 1, 1, 0, nullptr, args, nullptr));
  // ... and the error arrives with the next call that waits for the server.
  EXPECT_EQ(cuCtxSynchronize(), CUDA_ERROR_INVALID_VALUE);
  // Reported once: the context is fine afterwards.
  EXPECT_CU(cuCtxSynchronize());
  EXPECT_CU(cuMemFree(d));
  EXPECT_CU(cuModuleUnload(module));
}

TEST_F(CudaE2E, CopiesOutsideAllocationsFail) {
  CUdeviceptr small, freed;
  ASSERT_CU(cuMemAlloc(&small, 64));
  ASSERT_CU(cuMemAlloc(&freed, 64));
  ASSERT_CU(cuMemFree(freed));
  uint8_t bytes[65] = {};
  EXPECT_EQ(cuMemcpyHtoD(small, bytes, 65), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemcpyDtoH(bytes, small + 64, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemcpyDtoH(bytes, freed, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemcpyDtoD(small, freed, 1), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuMemcpyHtoD(small + 1, bytes, 63));  // the last byte of the allocation is in it

  // Large copies travel in chunks: one that fails fails the copy, and only it.
  CUdeviceptr big;
  ASSERT_CU(cuMemAlloc(&big, 40 << 20));
  std::vector<uint8_t> data(70 << 20, 7);
  EXPECT_EQ(cuMemcpyHtoD(big, data.data(), data.size()), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuMemcpyDtoH(data.data(), big, data.size()), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuMemcpyHtoD(big, data.data(), 40 << 20));

  // A fill is not waited for: its error comes with the next call that is.
  EXPECT_CU(cuMemsetD32(small, 0, 17));
  EXPECT_EQ(cuCtxSynchronize(), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuCtxSynchronize());
  EXPECT_CU(cuMemFree(small));
  EXPECT_CU(cuMemFree(big));
}

// A kernel that faults fails its context, as on a GPU: the launch returns, the next call that
// waits reports CUDA_ERROR_ILLEGAL_ADDRESS, and so does every later one there until the context is
// destroyed. Other contexts carry on.
TEST_F(CudaE2E, FaultingKernelFailsItsContext) {
  for (const char* kernel : {"illegal_address", "vector_add_f32"}) {
    CUcontext doomed;
    ASSERT_CU(cuCtxCreate(&doomed, nullptr, 0, 0));
    CUmodule module = load_module();
    CUfunction f;
    ASSERT_CU(cuModuleGetFunction(&f, module, kernel));
    CUdeviceptr d;
    ASSERT_CU(cuMemAlloc(&d, 64));
    unsigned n = 17;  // vector_add_f32 over 16 floats' worth of memory
    void* args[] = {&d, &d, &d, &n};
    EXPECT_CU(cuLaunchKernel(f, 1, 1, 1, 32, 1, 1, 0, nullptr, args, nullptr)) << kernel;
    EXPECT_EQ(cuCtxSynchronize(), CUDA_ERROR_ILLEGAL_ADDRESS) << kernel;
    CUdeviceptr more;
    EXPECT_EQ(cuMemAlloc(&more, 64), CUDA_ERROR_ILLEGAL_ADDRESS) << kernel;
    EXPECT_CU(cuCtxDestroy(doomed));

    ASSERT_CU(cuCtxSetCurrent(context_));
    EXPECT_CU(cuCtxSynchronize());
    ASSERT_CU(cuMemAlloc(&more, 64));
    EXPECT_CU(cuMemFree(more));
  }
}

TEST_F(CudaE2E, MaxMemoryQuotaGivesOutOfMemory) {
  CUdeviceptr big = 0;
  EXPECT_EQ(cuMemAlloc(&big, kQuota + 1), CUDA_ERROR_OUT_OF_MEMORY);
  CUdeviceptr half;
  ASSERT_CU(cuMemAlloc(&half, kQuota / 2));
  CUdeviceptr more;
  EXPECT_EQ(cuMemAlloc(&more, kQuota / 2 + (1 << 20)), CUDA_ERROR_OUT_OF_MEMORY);
  size_t free_bytes = 0, total = 0;
  ASSERT_CU(cuMemGetInfo(&free_bytes, &total));
  EXPECT_EQ(total, kQuota);
  EXPECT_LE(free_bytes, kQuota / 2);
  ASSERT_CU(cuMemFree(half));
  ASSERT_CU(cuMemAlloc(&more, kQuota / 2 + (1 << 20)));
  EXPECT_CU(cuMemFree(more));
}

// Every way to allocate device memory counts against max_memory, and leaves it when freed.
TEST_F(CudaE2E, EveryAllocationKindCountsAgainstMaxMemory) {
  CUdeviceptr pitched = 0, managed = 0, async = 0, more = 0;
  size_t pitch = 0;
  ASSERT_CU(cuMemAllocPitch(&pitched, &pitch, 1 << 20, (kQuota / 2) >> 20, 4));  // half the quota
  EXPECT_EQ(cuMemAllocManaged(&managed, kQuota / 2 + (1 << 20), CU_MEM_ATTACH_GLOBAL), CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(cuMemAllocAsync(&async, kQuota / 2 + (1 << 20), nullptr), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_CU(cuMemAllocManaged(&managed, kQuota / 8, CU_MEM_ATTACH_GLOBAL));
  ASSERT_CU(cuMemAllocAsync(&async, kQuota / 8, nullptr));  // three quarters of the quota held
  EXPECT_EQ(cuMemAlloc(&more, kQuota / 4 + (1 << 20)), CUDA_ERROR_OUT_OF_MEMORY);
  ASSERT_CU(cuMemFree(pitched));
  ASSERT_CU(cuMemFree(managed));
  ASSERT_CU(cuMemFreeAsync(async, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  ASSERT_CU(cuMemAlloc(&more, kQuota / 2 + (1 << 20)));
  EXPECT_CU(cuMemFree(more));
}

// Device memory no allocation call names (here: module globals, as the driver reports the
// worker process's memory) counts against max_memory too, and leaves it with its module.
TEST_F(CudaE2E, ModuleGlobalsCountAgainstMaxMemory) {
  const uint64_t globals = (kQuota / 2 + (16 << 20)) >> 20;  // MiB: two such modules do not fit
  const std::string image = module_with_globals(globals);
  CUmodule first = nullptr, second = nullptr;
  ASSERT_CU(cuModuleLoadData(&first, image.c_str()));
  EXPECT_EQ(cuModuleLoadData(&second, image.c_str()), CUDA_ERROR_OUT_OF_MEMORY);
  CUdeviceptr d = 0;
  EXPECT_EQ(cuMemAlloc(&d, kQuota / 2), CUDA_ERROR_OUT_OF_MEMORY);
  size_t free_bytes = 0, total = 0;
  ASSERT_CU(cuMemGetInfo(&free_bytes, &total));
  EXPECT_LE(free_bytes, kQuota - (globals << 20));
  ASSERT_CU(cuModuleUnload(first));
  ASSERT_CU(cuModuleLoadData(&second, image.c_str()));
  ASSERT_CU(cuModuleUnload(second));
  ASSERT_CU(cuMemAlloc(&d, kQuota / 2));
  EXPECT_CU(cuMemFree(d));
}

TEST_F(CudaE2E, PrimaryContextState) {
  unsigned flags = 1;
  int active = 0;
  ASSERT_CU(cuDevicePrimaryCtxGetState(device_, &flags, &active));
  EXPECT_EQ(active, 1);
  EXPECT_EQ(flags, 0u);
  ASSERT_CU(cuDevicePrimaryCtxSetFlags(device_, CU_CTX_SCHED_BLOCKING_SYNC));
  ASSERT_CU(cuDevicePrimaryCtxGetState(device_, &flags, &active));
  EXPECT_EQ(flags, unsigned{CU_CTX_SCHED_BLOCKING_SYNC});
  EXPECT_EQ(cuDevicePrimaryCtxSetFlags(device_, CU_CTX_SCHED_SPIN | CU_CTX_SCHED_YIELD), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuDevicePrimaryCtxSetFlags(device_, 0));
}

TEST_F(CudaE2E, ContextsCreatedAndDestroyed) {
  CUcontext created;
  ASSERT_CU(cuCtxCreate(&created, nullptr, 0, 1));
  CUcontext current = nullptr;
  ASSERT_CU(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, created);
  CUdevice device = -1;
  ASSERT_CU(cuCtxGetDevice(&device));
  EXPECT_EQ(device, 1);
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 1024));
  EXPECT_CU(cuMemFree(d));
  ASSERT_CU(cuCtxDestroy(created));
  ASSERT_CU(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, context_);
  // With no context current there is none to work in, whatever the server's thread had before.
  ASSERT_CU(cuCtxSetCurrent(nullptr));
  CUdeviceptr none;
  EXPECT_EQ(cuMemAlloc(&none, 16), CUDA_ERROR_INVALID_CONTEXT);
}

TEST_F(CudaE2E, DestroyedContextsMemoryLeavesTheQuota) {
  CUcontext created;
  ASSERT_CU(cuCtxCreate(&created, nullptr, 0, 0));
  CUdeviceptr leaked;
  ASSERT_CU(cuMemAlloc(&leaked, kQuota / 2 + (1 << 20)));
  ASSERT_CU(cuCtxDestroy(created));  // frees what the context holds
  ASSERT_CU(cuCtxSetCurrent(context_));
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, kQuota / 2 + (1 << 20)));
  EXPECT_CU(cuMemFree(d));
}

// The process's last release of a primary context ends it for the process, as the driver's last
// one does: what was made there is freed, and leaves the quota.
TEST_F(CudaE2E, LastPrimaryReleaseFreesWhatWasMadeThere) {
  CUcontext other;
  ASSERT_CU(cuDevicePrimaryCtxRetain(&other, 1));
  ASSERT_CU(cuCtxSetCurrent(other));
  CUdeviceptr leaked;
  ASSERT_CU(cuMemAlloc(&leaked, kQuota / 2 + (1 << 20)));
  ASSERT_CU(cuDevicePrimaryCtxRelease(1));
  ASSERT_CU(cuCtxSetCurrent(context_));
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, kQuota / 2 + (1 << 20)));
  EXPECT_CU(cuMemFree(d));
}

TEST_F(CudaE2E, ThreadsWithContextsOfTheirOwn) {
  std::vector<std::thread> threads;
  for (int device = 0; device < 2; ++device)
    threads.emplace_back([this, device] {
      CUcontext mine;
      ASSERT_CU(cuCtxCreate(&mine, nullptr, 0, device));
      CUcontext current = nullptr;
      ASSERT_CU(cuCtxGetCurrent(&current));
      EXPECT_EQ(current, mine);
      CUdevice on = -1;
      ASSERT_CU(cuCtxGetDevice(&on));
      EXPECT_EQ(on, device);
      CUmodule module = load_module();
      CUfunction fill;
      ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
      unsigned long long n = 100000;
      CUdeviceptr d;
      ASSERT_CU(cuMemAlloc(&d, n * 4));
      unsigned value = 1000 + device;
      void* args[] = {&d, &value, &n};
      ASSERT_CU(cuLaunchKernel(fill, 64, 1, 1, 128, 1, 1, 0, nullptr, args, nullptr));
      std::vector<unsigned> out(n);
      ASSERT_CU(cuMemcpyDtoH(out.data(), d, n * 4));
      EXPECT_EQ(std::count(out.begin(), out.end(), value), static_cast<long>(n));
      EXPECT_CU(cuMemFree(d));
      EXPECT_CU(cuModuleUnload(module));
      EXPECT_CU(cuCtxDestroy(mine));
    });
  for (auto& thread : threads) thread.join();
  // This thread's context was never theirs.
  CUcontext current = nullptr;
  ASSERT_CU(cuCtxGetCurrent(&current));
  EXPECT_EQ(current, context_);
}

TEST_F(CudaE2E, ThreadsRunConcurrentlyInIssueOrder) {
  // Each thread gets its own link and server thread; the work of all must land.
  CUdeviceptr d;
  const int threads = 8, per_thread = 4096;
  ASSERT_CU(cuMemAlloc(&d, threads * per_thread * 4));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      cuCtxSetCurrent(context_);
      std::vector<uint32_t> v(per_thread, static_cast<uint32_t>(t + 1));
      EXPECT_CU(cuMemcpyHtoD(d + static_cast<CUdeviceptr>(t) * per_thread * 4, v.data(), per_thread * 4));
      EXPECT_CU(cuMemsetD32(d + static_cast<CUdeviceptr>(t) * per_thread * 4, 100 + t, 1));
    });
  for (auto& th : pool) th.join();
  std::vector<uint32_t> all(threads * per_thread);
  ASSERT_CU(cuMemcpyDtoH(all.data(), d, all.size() * 4));
  for (int t = 0; t < threads; ++t) {
    EXPECT_EQ(all[t * per_thread], 100u + t);
    EXPECT_EQ(all[t * per_thread + 1], t + 1u);
  }
  EXPECT_CU(cuMemFree(d));
}

// What host functions saw, in the order they ran (they run on the interpose's thread).
struct RunLog {
  std::mutex mutex;
  std::condition_variable added;
  std::vector<std::string> runs;
  void add(const std::string& run) {
    std::lock_guard lock(mutex);
    runs.push_back(run);
    added.notify_all();
  }
  // Whether `count` functions have run (within a generous bound, for a stuck one).
  bool wait_for(size_t count) {
    std::unique_lock lock(mutex);
    return added.wait_for(lock, std::chrono::seconds(30), [&] { return runs.size() >= count; });
  }
};

// A host function that reads what the stream wrote to host memory before it.
struct Probe {
  RunLog* log;
  std::string name;
  const unsigned* watched;
  unsigned seen = 0;
  CUstream stream_told = nullptr;
  CUresult status_told = CUDA_ERROR_UNKNOWN;
};
void CUDA_CB probe(void* data) {
  auto* p = static_cast<Probe*>(data);
  p->seen = *p->watched;
  p->log->add(p->name);
}
void CUDA_CB probe_callback(CUstream stream, CUresult status, void* data) {
  auto* p = static_cast<Probe*>(data);
  p->stream_told = stream;
  p->status_told = status;
  probe(data);
}

// A host function that holds its stream until the test lets it go.
struct Gate {
  std::mutex mutex;
  std::condition_variable changed;
  bool entered = false, open = false;
  bool wait_entered() {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(30), [&] { return entered; });
  }
  void let_go() {
    std::lock_guard lock(mutex);
    open = true;
    changed.notify_all();
  }
};
void CUDA_CB hold(void* data) {
  auto* gate = static_cast<Gate*>(data);
  std::unique_lock lock(gate->mutex);
  gate->entered = true;
  gate->changed.notify_all();
  gate->changed.wait(lock, [&] { return gate->open; });
}

void CUDA_CB count_run(void* data) { static_cast<std::atomic<int>*>(data)->fetch_add(1); }

// Kernels, copies and host functions on two streams: each host function runs after the work
// issued before it on its stream (it sees the data a kernel wrote and a copy brought back), in
// its stream's order; a stream callback is told its stream and CUDA_SUCCESS.
TEST_F(CudaE2E, HostFunctionsRunInStreamOrderWithKernelsAndCopies) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  RunLog log;
  CUstream streams[2];
  CUdeviceptr memory[2];
  unsigned long long n = 1024;
  unsigned first[2] = {}, second[2] = {};
  std::vector<std::unique_ptr<Probe>> probes;
  for (int s = 0; s < 2; ++s) {
    ASSERT_CU(cuStreamCreate(&streams[s], CU_STREAM_NON_BLOCKING));
    ASSERT_CU(cuMemAlloc(&memory[s], n * 4));
  }
  for (int s = 0; s < 2; ++s) {
    const std::string name = "stream " + std::to_string(s);
    unsigned value = 100 + s;
    void* args[] = {&memory[s], &value, &n};
    ASSERT_CU(cuLaunchKernel(fill, 4, 1, 1, 256, 1, 1, 0, streams[s], args, nullptr));
    ASSERT_CU(cuMemcpyDtoHAsync(&first[s], memory[s] + 4 * 17, 4, streams[s]));
    probes.push_back(std::make_unique<Probe>(Probe{&log, name + " function", &first[s]}));
    ASSERT_CU(cuLaunchHostFunc(streams[s], probe, probes.back().get()));
  }
  for (int s = 0; s < 2; ++s) {
    unsigned value = 200 + s;
    void* args[] = {&memory[s], &value, &n};
    ASSERT_CU(cuLaunchKernel(fill, 4, 1, 1, 256, 1, 1, 0, streams[s], args, nullptr));
    ASSERT_CU(cuMemcpyDtoHAsync(&second[s], memory[s] + 4 * 1000, 4, streams[s]));
    probes.push_back(std::make_unique<Probe>(Probe{&log, "stream " + std::to_string(s) + " callback", &second[s]}));
    ASSERT_CU(cuStreamAddCallback(streams[s], probe_callback, probes.back().get(), 0));
  }
  for (CUstream stream : streams) ASSERT_CU(cuStreamSynchronize(stream));
  for (int s = 0; s < 2; ++s) {
    EXPECT_EQ(probes[s]->seen, 100u + s);
    EXPECT_EQ(probes[2 + s]->seen, 200u + s);
    EXPECT_EQ(probes[2 + s]->stream_told, streams[s]);
    EXPECT_EQ(probes[2 + s]->status_told, CUDA_SUCCESS);
    auto at = [&](const std::string& run) { return std::find(log.runs.begin(), log.runs.end(), run) - log.runs.begin(); };
    EXPECT_LT(at(probes[s]->name), at(probes[2 + s]->name));
  }
  EXPECT_EQ(log.runs.size(), 4u);
  for (int s = 0; s < 2; ++s) {
    EXPECT_CU(cuStreamDestroy(streams[s]));
    EXPECT_CU(cuMemFree(memory[s]));
  }
  EXPECT_CU(cuModuleUnload(module));
}

// Work issued after a host function waits until it has returned: while it runs, its stream and an
// event recorded behind it are not done, and a kernel behind it has not run.
TEST_F(CudaE2E, WorkAfterAHostFunctionWaitsForIt) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUstream stream, other;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuStreamCreate(&other, CU_STREAM_NON_BLOCKING));
  CUevent after;
  ASSERT_CU(cuEventCreate(&after, 0));
  unsigned long long n = 256;
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, n * 4));
  ASSERT_CU(cuMemsetD32(d, 0, n));
  Gate gate;
  ASSERT_CU(cuLaunchHostFunc(stream, hold, &gate));
  unsigned value = 5;
  void* args[] = {&d, &value, &n};
  ASSERT_CU(cuLaunchKernel(fill, 1, 1, 1, 256, 1, 1, 0, stream, args, nullptr));
  ASSERT_CU(cuEventRecord(after, stream));
  ASSERT_TRUE(gate.wait_entered());
  EXPECT_EQ(cuStreamQuery(stream), CUDA_ERROR_NOT_READY);
  EXPECT_EQ(cuEventQuery(after), CUDA_ERROR_NOT_READY);
  unsigned seen = 99;
  ASSERT_CU(cuMemcpyDtoHAsync(&seen, d, 4, other));  // another stream: not held
  EXPECT_EQ(seen, 0u);
  gate.let_go();
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_CU(cuEventQuery(after));
  ASSERT_CU(cuMemcpyDtoH(&seen, d + 4 * 255, 4));
  EXPECT_EQ(seen, 5u);
  EXPECT_CU(cuEventDestroy(after));
  EXPECT_CU(cuStreamDestroy(stream));
  EXPECT_CU(cuStreamDestroy(other));
  EXPECT_CU(cuMemFree(d));
  EXPECT_CU(cuModuleUnload(module));
}

// A stream callback is told the error the context hit before the stream reached it; a host
// function behind the fault does not run, as with the driver.
TEST_F(CudaE2E, StreamCallbacksAreToldTheStreamsError) {
  CUcontext doomed;
  ASSERT_CU(cuCtxCreate(&doomed, nullptr, 0, 0));
  CUmodule module = load_module();
  CUfunction faulting;
  ASSERT_CU(cuModuleGetFunction(&faulting, module, "illegal_address"));
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 64));
  Gate gate;
  ASSERT_CU(cuLaunchHostFunc(stream, hold, &gate));
  unsigned n = 17;
  void* args[] = {&d, &d, &d, &n};
  ASSERT_CU(cuLaunchKernel(faulting, 1, 1, 1, 32, 1, 1, 0, stream, args, nullptr));
  RunLog log;
  unsigned nothing = 0;
  Probe told{&log, "callback", &nothing};
  Probe skipped{&log, "function", &nothing};
  ASSERT_CU(cuStreamAddCallback(stream, probe_callback, &told, 0));
  ASSERT_CU(cuLaunchHostFunc(stream, probe, &skipped));
  ASSERT_TRUE(gate.wait_entered());
  // Answered after the pipelined calls above have reached the driver, before the kernel faults.
  EXPECT_EQ(cuStreamQuery(stream), CUDA_ERROR_NOT_READY);
  gate.let_go();
  EXPECT_EQ(cuStreamSynchronize(stream), CUDA_ERROR_ILLEGAL_ADDRESS);
  // A faulted stream's synchronisation answers at once; its callbacks may still be on their way.
  ASSERT_TRUE(log.wait_for(1));
  EXPECT_EQ(told.status_told, CUDA_ERROR_ILLEGAL_ADDRESS);
  EXPECT_EQ(told.stream_told, stream);
  EXPECT_EQ(log.runs, std::vector<std::string>{"callback"});
  EXPECT_CU(cuCtxDestroy(doomed));
  ASSERT_CU(cuCtxSetCurrent(context_));
}

// Host functions on many streams, issued by several threads at once: each runs once, in its
// stream's order.
TEST_F(CudaE2E, HostFunctionsOnManyStreamsAtOnce) {
  constexpr int kThreads = 4, kStreamsPerThread = 4, kPerStream = 8;
  struct Step {
    std::atomic<int>* next;
    int index;
    std::atomic<int>* out_of_order;
  };
  std::atomic<int> next[kThreads * kStreamsPerThread] = {};
  std::atomic<int> out_of_order{0};
  std::vector<Step> steps;
  steps.reserve(kThreads * kStreamsPerThread * kPerStream);
  for (int s = 0; s < kThreads * kStreamsPerThread; ++s)
    for (int i = 0; i < kPerStream; ++i) steps.push_back(Step{&next[s], i, &out_of_order});
  auto step = [](void* data) {
    auto* st = static_cast<Step*>(data);
    if (st->next->fetch_add(1) != st->index) st->out_of_order->fetch_add(1);
  };
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      cuCtxSetCurrent(context_);
      CUstream streams[kStreamsPerThread];
      for (CUstream& stream : streams)
        if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) failures.fetch_add(1);
      for (int i = 0; i < kPerStream; ++i)
        for (int s = 0; s < kStreamsPerThread; ++s)
          if (cuLaunchHostFunc(streams[s], step, &steps[((t * kStreamsPerThread) + s) * kPerStream + i]) != CUDA_SUCCESS)
            failures.fetch_add(1);
      for (CUstream stream : streams)
        if (cuStreamSynchronize(stream) != CUDA_SUCCESS || cuStreamDestroy(stream) != CUDA_SUCCESS) failures.fetch_add(1);
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0);
  for (const auto& count : next) EXPECT_EQ(count.load(), kPerStream);
}

// A host function must not call CUDA: the call fails with CUDA_ERROR_NOT_PERMITTED (and does not
// wait for the stream that waits for the function).
TEST_F(CudaE2E, AHostFunctionMayNotCallCuda) {
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CUresult seen = CUDA_SUCCESS;
  ASSERT_CU(cuLaunchHostFunc(stream, [](void* data) { *static_cast<CUresult*>(data) = cuCtxSynchronize(); }, &seen));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(seen, CUDA_ERROR_NOT_PERMITTED);
  EXPECT_CU(cuStreamDestroy(stream));
}

// Host functions captured into a graph run at each of its launches, also after the graph itself
// is destroyed (its executable graph keeps them); host nodes added to a graph run too.
TEST_F(CudaE2E, GraphsRunTheirHostFunctionsAtEachLaunch) {
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  RunLog log;
  unsigned nothing = 0;
  Probe a{&log, "a", &nothing}, b{&log, "b", &nothing};
  ASSERT_CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_RELAXED));
  ASSERT_CU(cuLaunchHostFunc(stream, probe, &a));
  ASSERT_CU(cuLaunchHostFunc(stream, probe, &b));
  CUgraph graph;
  ASSERT_CU(cuStreamEndCapture(stream, &graph));
  EXPECT_TRUE(log.runs.empty());  // captured, not run
  CUgraphExec exec;
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  ASSERT_CU(cuGraphLaunch(exec, stream));
  ASSERT_CU(cuGraphDestroy(graph));
  ASSERT_CU(cuGraphLaunch(exec, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(log.runs, (std::vector<std::string>{"a", "b", "a", "b"}));
  ASSERT_CU(cuGraphExecDestroy(exec));

  CUgraph built;
  ASSERT_CU(cuGraphCreate(&built, 0));
  CUgraphNode first, second;
  const CUDA_HOST_NODE_PARAMS first_params{probe, &b}, second_params{probe, &a};
  ASSERT_CU(cuGraphAddHostNode(&first, built, nullptr, 0, &first_params));
  ASSERT_CU(cuGraphAddHostNode(&second, built, &first, 1, &second_params));
  EXPECT_EQ(cuGraphAddHostNode(&second, built, nullptr, 0, nullptr), CUDA_ERROR_INVALID_VALUE);
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, built, 0));
  ASSERT_CU(cuGraphLaunch(exec, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(log.runs, (std::vector<std::string>{"a", "b", "a", "b", "b", "a"}));
  EXPECT_CU(cuGraphExecDestroy(exec));
  EXPECT_CU(cuGraphDestroy(built));
  EXPECT_CU(cuStreamDestroy(stream));
}

// A host node's parameters are the application's own function and data, read back whether the
// node was added or captured; changed in the graph, they run at the launches of executable graphs
// made after; changed in one executable graph, at its launches only, even once the graph is gone.
TEST_F(CudaE2E, HostNodesReadAndChangeTheirFunctions) {
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  RunLog log;
  unsigned nothing = 0;
  Probe a{&log, "a", &nothing}, b{&log, "b", &nothing}, c{&log, "c", &nothing};
  CUgraph graph;
  ASSERT_CU(cuGraphCreate(&graph, 0));
  CUgraphNode node;
  const CUDA_HOST_NODE_PARAMS run_a{probe, &a}, run_b{probe, &b}, run_c{probe, &c};
  ASSERT_CU(cuGraphAddHostNode(&node, graph, nullptr, 0, &run_a));
  CUDA_HOST_NODE_PARAMS read{};
  ASSERT_CU(cuGraphHostNodeGetParams(node, &read));
  EXPECT_EQ(read.fn, &probe);
  EXPECT_EQ(read.userData, &a);

  CUgraphExec before, after;
  ASSERT_CU(cuGraphInstantiateWithFlags(&before, graph, 0));
  ASSERT_CU(cuGraphHostNodeSetParams(node, &run_b));
  ASSERT_CU(cuGraphHostNodeGetParams(node, &read));
  EXPECT_EQ(read.userData, &b);
  ASSERT_CU(cuGraphInstantiateWithFlags(&after, graph, 0));
  ASSERT_CU(cuGraphLaunch(before, stream));
  ASSERT_CU(cuGraphLaunch(after, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(log.runs, (std::vector<std::string>{"a", "b"}));

  ASSERT_CU(cuGraphExecHostNodeSetParams(before, node, &run_c));
  ASSERT_CU(cuGraphHostNodeGetParams(node, &read));
  EXPECT_EQ(read.userData, &b);  // the graph's node keeps its own
  ASSERT_CU(cuGraphDestroy(graph));
  ASSERT_CU(cuGraphLaunch(before, stream));  // the executable graphs keep what they run
  ASSERT_CU(cuGraphLaunch(after, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(log.runs, (std::vector<std::string>{"a", "b", "c", "b"}));
  EXPECT_CU(cuGraphExecDestroy(before));
  EXPECT_CU(cuGraphExecDestroy(after));

  // A captured host function is a host node too; a captured copy's node runs none of the
  // application's functions, and a kernel node is no host node.
  std::vector<uint32_t> host(16, 3);
  CUdeviceptr device;
  ASSERT_CU(cuMemAlloc(&device, host.size() * 4));
  ASSERT_CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_RELAXED));
  ASSERT_CU(cuLaunchHostFunc(stream, probe, &c));
  ASSERT_CU(cuMemcpyHtoDAsync(device, host.data(), host.size() * 4, stream));
  ASSERT_CU(cuStreamEndCapture(stream, &graph));
  CUgraphNode nodes[3] = {};
  size_t count = 3;
  ASSERT_CU(cuGraphGetNodes(graph, nodes, &count));
  ASSERT_EQ(count, 3u);  // the function, the copy's host end, the copy
  ASSERT_CU(cuGraphHostNodeGetParams(nodes[0], &read));
  EXPECT_EQ(read.fn, &probe);
  EXPECT_EQ(read.userData, &c);
  CUgraphNodeType type;
  ASSERT_CU(cuGraphNodeGetType(nodes[1], &type));
  ASSERT_EQ(type, CU_GRAPH_NODE_TYPE_HOST);
  EXPECT_EQ(cuGraphHostNodeGetParams(nodes[1], &read), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphHostNodeSetParams(nodes[1], &run_a), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphHostNodeGetParams(nodes[2], &read), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphHostNodeSetParams(nodes[0], nullptr), CUDA_ERROR_INVALID_VALUE);
  const CUDA_HOST_NODE_PARAMS no_function{nullptr, &a};
  EXPECT_EQ(cuGraphHostNodeSetParams(nodes[0], &no_function), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphHostNodeGetParams(nodes[0], nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuMemFree(device));
  EXPECT_CU(cuStreamDestroy(stream));
}

// A memcpy node's copy reads back as it was added; changed in the graph it copies so in executable
// graphs instantiated after, changed in one executable graph it copies so there only. Host memory at
// an end is refused as cuGraphAddMemcpyNode refuses it.
TEST_F(CudaE2E, MemcpyNodesReadAndChangeTheirCopies) {
  constexpr size_t n = 32;
  CUdeviceptr from, other, to, second;
  for (CUdeviceptr* p : {&from, &other, &to, &second}) ASSERT_CU(cuMemAlloc(p, n * 4));
  std::vector<uint32_t> values(n), others(n);
  std::iota(values.begin(), values.end(), 100u);
  std::iota(others.begin(), others.end(), 900u);
  ASSERT_CU(cuMemcpyHtoD(from, values.data(), n * 4));
  ASSERT_CU(cuMemcpyHtoD(other, others.data(), n * 4));
  CUgraph graph;
  ASSERT_CU(cuGraphCreate(&graph, 0));
  CUDA_MEMCPY3D copy{};
  copy.srcMemoryType = CU_MEMORYTYPE_DEVICE;
  copy.srcDevice = from;
  copy.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  copy.dstDevice = to;
  copy.WidthInBytes = n * 4;
  copy.Height = 1;
  copy.Depth = 1;
  CUgraphNode node;
  ASSERT_CU(cuGraphAddMemcpyNode(&node, graph, nullptr, 0, &copy, context_));
  CUDA_MEMCPY3D read{};
  ASSERT_CU(cuGraphMemcpyNodeGetParams(node, &read));
  EXPECT_EQ(read.srcMemoryType, CU_MEMORYTYPE_DEVICE);
  EXPECT_EQ(read.srcDevice, from);
  EXPECT_EQ(read.dstDevice, to);
  EXPECT_EQ(read.WidthInBytes, n * 4);
  EXPECT_EQ(read.srcHost, nullptr);

  CUgraphExec before, after;
  ASSERT_CU(cuGraphInstantiateWithFlags(&before, graph, 0));
  CUDA_MEMCPY3D changed = copy;
  changed.dstMemoryType = CU_MEMORYTYPE_UNIFIED;  // a device allocation's address: sent as device memory
  changed.dstDevice = second;
  ASSERT_CU(cuGraphMemcpyNodeSetParams(node, &changed));
  ASSERT_CU(cuGraphMemcpyNodeGetParams(node, &read));
  EXPECT_EQ(read.dstDevice, second);
  EXPECT_EQ(read.dstMemoryType, CU_MEMORYTYPE_DEVICE);
  ASSERT_CU(cuGraphInstantiateWithFlags(&after, graph, 0));
  ASSERT_CU(cuMemsetD8(to, 0, n * 4));
  ASSERT_CU(cuMemsetD8(second, 0, n * 4));
  std::vector<uint32_t> got(n);
  ASSERT_CU(cuGraphLaunch(before, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  ASSERT_CU(cuMemcpyDtoH(got.data(), to, n * 4));
  EXPECT_EQ(got, values);
  ASSERT_CU(cuMemcpyDtoH(got.data(), second, n * 4));
  EXPECT_EQ(got[n - 1], 0u);
  ASSERT_CU(cuGraphLaunch(after, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  ASSERT_CU(cuMemcpyDtoH(got.data(), second, n * 4));
  EXPECT_EQ(got, values);

  CUDA_MEMCPY3D in_exec = copy;
  in_exec.srcDevice = other;
  ASSERT_CU(cuGraphExecMemcpyNodeSetParams(before, node, &in_exec, context_));
  ASSERT_CU(cuGraphLaunch(before, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  ASSERT_CU(cuMemcpyDtoH(got.data(), to, n * 4));
  EXPECT_EQ(got, others);
  ASSERT_CU(cuGraphMemcpyNodeGetParams(node, &read));
  EXPECT_EQ(read.srcDevice, from);  // the graph's node keeps its own

  std::vector<uint32_t> host(n);
  CUDA_MEMCPY3D to_host = copy;
  to_host.dstMemoryType = CU_MEMORYTYPE_HOST;
  to_host.dstHost = host.data();
  EXPECT_EQ(cuGraphMemcpyNodeSetParams(node, &to_host), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(cuGraphExecMemcpyNodeSetParams(before, node, &to_host, context_), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(cuGraphMemcpyNodeSetParams(node, nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphMemcpyNodeGetParams(node, nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuGraphExecDestroy(before));
  EXPECT_CU(cuGraphExecDestroy(after));
  EXPECT_CU(cuGraphDestroy(graph));

  // A captured copy of the application's memory copies from the server's staging: not the
  // application's to read back. An empty node is no memcpy node.
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_RELAXED));
  ASSERT_CU(cuMemcpyHtoDAsync(to, host.data(), n * 4, stream));
  ASSERT_CU(cuStreamEndCapture(stream, &graph));
  CUgraphNode nodes[2] = {};
  size_t count = 2;
  ASSERT_CU(cuGraphGetNodes(graph, nodes, &count));
  ASSERT_EQ(count, 2u);
  CUgraphNodeType type;
  ASSERT_CU(cuGraphNodeGetType(nodes[1], &type));
  ASSERT_EQ(type, CU_GRAPH_NODE_TYPE_MEMCPY);
  EXPECT_EQ(cuGraphMemcpyNodeGetParams(nodes[1], &read), CUDA_ERROR_NOT_SUPPORTED);
  CUgraphNode empty;
  ASSERT_CU(cuGraphAddEmptyNode(&empty, graph, nullptr, 0));
  EXPECT_EQ(cuGraphMemcpyNodeGetParams(empty, &read), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphMemcpyNodeSetParams(empty, &copy), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuStreamDestroy(stream));
  for (CUdeviceptr p : {from, other, to, second}) EXPECT_CU(cuMemFree(p));
}

// A kernel node of one block that runs fill_u32 with `args`.
CUDA_KERNEL_NODE_PARAMS fill_kernel(CUfunction fill, void** args, unsigned threads) {
  CUDA_KERNEL_NODE_PARAMS kernel{};
  kernel.func = fill;
  kernel.gridDimX = kernel.gridDimY = kernel.gridDimZ = 1;
  kernel.blockDimX = threads, kernel.blockDimY = kernel.blockDimZ = 1;
  kernel.kernelParams = args;
  return kernel;
}

// A kernel node's attributes of plain values are set and read back per node (the driver's answer:
// an attribute a kernel node does not take is refused there); those that carry a handle or a
// pointer are not forwarded.
TEST_F(CudaE2E, KernelNodeAttributesAreSetAndReadPerNode) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUdeviceptr words;
  ASSERT_CU(cuMemAlloc(&words, 64 * 4));
  unsigned value = 1;
  unsigned long long n = 64;
  void* args[] = {&words, &value, &n};
  const CUDA_KERNEL_NODE_PARAMS kernel = fill_kernel(fill, args, 64);
  CUgraph graph;
  ASSERT_CU(cuGraphCreate(&graph, 0));
  CUgraphNode first, second, empty;
  ASSERT_CU(cuGraphAddKernelNode(&first, graph, nullptr, 0, &kernel));
  ASSERT_CU(cuGraphAddKernelNode(&second, graph, &first, 1, &kernel));
  ASSERT_CU(cuGraphAddEmptyNode(&empty, graph, nullptr, 0));

  CUkernelNodeAttrValue set{};
  set.cooperative = 1;
  ASSERT_CU(cuGraphKernelNodeSetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_COOPERATIVE, &set));
  set = {};
  set.priority = 3;
  ASSERT_CU(cuGraphKernelNodeSetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_PRIORITY, &set));
  set = {};
  set.clusterDim.x = 2, set.clusterDim.y = 1, set.clusterDim.z = 1;
  ASSERT_CU(cuGraphKernelNodeSetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_CLUSTER_DIMENSION, &set));
  set = access_policy_window(words, 256, 0.5f);
  ASSERT_CU(cuGraphKernelNodeSetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_ACCESS_POLICY_WINDOW, &set));

  CUkernelNodeAttrValue got{};
  ASSERT_CU(cuGraphKernelNodeGetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_COOPERATIVE, &got));
  EXPECT_EQ(got.cooperative, 1);
  ASSERT_CU(cuGraphKernelNodeGetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_PRIORITY, &got));
  EXPECT_EQ(got.priority, 3);
  ASSERT_CU(cuGraphKernelNodeGetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_CLUSTER_DIMENSION, &got));
  EXPECT_EQ(got.clusterDim.x, 2u);
  EXPECT_EQ(got.clusterDim.z, 1u);
  ASSERT_CU(cuGraphKernelNodeGetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_ACCESS_POLICY_WINDOW, &got));
  EXPECT_EQ(got.accessPolicyWindow.base_ptr, reinterpret_cast<void*>(words));
  EXPECT_EQ(got.accessPolicyWindow.num_bytes, 256u);
  EXPECT_EQ(got.accessPolicyWindow.hitRatio, 0.5f);
  EXPECT_EQ(got.accessPolicyWindow.missProp, CU_ACCESS_PROPERTY_STREAMING);
  ASSERT_CU(cuGraphKernelNodeGetAttribute(second, CU_KERNEL_NODE_ATTRIBUTE_PRIORITY, &got));
  EXPECT_EQ(got.priority, 0);  // the other node's own
  ASSERT_CU(cuGraphKernelNodeCopyAttributes(second, first));
  ASSERT_CU(cuGraphKernelNodeGetAttribute(second, CU_KERNEL_NODE_ATTRIBUTE_PRIORITY, &got));
  EXPECT_EQ(got.priority, 3);

  // The driver's refusals: not a kernel node, an attribute of streams only.
  set = {};
  set.priority = 1;
  EXPECT_EQ(cuGraphKernelNodeSetAttribute(empty, CU_KERNEL_NODE_ATTRIBUTE_PRIORITY, &set), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphKernelNodeGetAttribute(empty, CU_KERNEL_NODE_ATTRIBUTE_PRIORITY, &got), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphKernelNodeSetAttribute(first, CU_LAUNCH_ATTRIBUTE_SYNCHRONIZATION_POLICY, &set),
            CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphKernelNodeSetAttribute(first, CU_KERNEL_NODE_ATTRIBUTE_PRIORITY, nullptr), CUDA_ERROR_INVALID_VALUE);
  // Handles and pointers of other objects, and attributes RGPU does not know, are not forwarded.
  for (auto attribute : {CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_EVENT, CU_LAUNCH_ATTRIBUTE_LAUNCH_COMPLETION_EVENT,
                         CU_LAUNCH_ATTRIBUTE_DEVICE_UPDATABLE_KERNEL_NODE, static_cast<CUlaunchAttributeID>(99)}) {
    EXPECT_EQ(cuGraphKernelNodeSetAttribute(first, attribute, &set), CUDA_ERROR_NOT_SUPPORTED) << attribute;
    EXPECT_EQ(cuGraphKernelNodeGetAttribute(first, attribute, &got), CUDA_ERROR_NOT_SUPPORTED) << attribute;
  }

  // The nodes still run as kernels.
  CUgraphExec exec;
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  ASSERT_CU(cuGraphLaunch(exec, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  unsigned filled[64] = {};
  ASSERT_CU(cuMemcpyDtoH(filled, words, sizeof filled));
  EXPECT_EQ(filled[63], 1u);
  EXPECT_CU(cuGraphExecDestroy(exec));
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuMemFree(words));
  EXPECT_CU(cuModuleUnload(module));
}

// What cuFFT does with a captured graph: list its nodes and edges, read a kernel node's
// arguments, change them in the executable graph, instantiate with the old entry point.
TEST_F(CudaE2E, GraphsListTheirNodesAndKernelNodesReadAndChangeTheirArguments) {
  CUmodule module = load_module();
  CUfunction fill, scale;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  ASSERT_CU(cuModuleGetFunction(&scale, module, "scale_f32"));
  constexpr unsigned long long n = 64;
  CUdeviceptr words, floats;
  ASSERT_CU(cuMemAlloc(&words, n * 4));
  ASSERT_CU(cuMemAlloc(&floats, n * 4));
  std::vector<float> ones(n, 1.0f);
  ASSERT_CU(cuMemcpyHtoD(floats, ones.data(), n * 4));
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));

  ASSERT_CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_RELAXED));
  unsigned value = 7;
  void* fill_args[] = {&words, &value, const_cast<unsigned long long*>(&n)};
  ASSERT_CU(cuLaunchKernel(fill, 1, 1, 1, 64, 1, 1, 0, stream, fill_args, nullptr));
  float factor = 2.0f;
  int count = n;
  void* scale_args[] = {&floats, &factor, &count};
  ASSERT_CU(cuLaunchKernel(scale, 1, 1, 1, 64, 1, 1, 0, stream, scale_args, nullptr));
  CUgraph graph;
  ASSERT_CU(cuStreamEndCapture(stream, &graph));

  size_t found = 0;
  ASSERT_CU(cuGraphGetNodes(graph, nullptr, &found));
  ASSERT_EQ(found, 2u);
  CUgraphNode nodes[3] = {};
  found = 3;
  ASSERT_CU(cuGraphGetNodes(graph, nodes, &found));
  ASSERT_EQ(found, 2u);
  EXPECT_EQ(nodes[2], nullptr);
  CUgraphNode root = nullptr;
  found = 1;
  ASSERT_CU(cuGraphGetRootNodes(graph, &root, &found));
  EXPECT_EQ(found, 1u);
  EXPECT_EQ(root, nodes[0]);
  CUgraphNode from = nullptr, to = nullptr;
  CUgraphEdgeData edge{};
  found = 1;
  ASSERT_CU(cuGraphGetEdges_v2(graph, &from, &to, &edge, &found));
  ASSERT_EQ(found, 1u);
  EXPECT_EQ(from, nodes[0]);
  EXPECT_EQ(to, nodes[1]);
  EXPECT_EQ(edge.type, CU_GRAPH_DEPENDENCY_TYPE_DEFAULT);
  CUgraphNode before = nullptr, after = nullptr;
  found = 1;
  ASSERT_CU(cuGraphNodeGetDependencies(nodes[1], &before, nullptr, &found));
  EXPECT_EQ(before, nodes[0]);
  found = 1;
  ASSERT_CU(cuGraphNodeGetDependentNodes(nodes[0], &after, nullptr, &found));
  EXPECT_EQ(after, nodes[1]);
  EXPECT_EQ(cuGraphGetEdges_v2(graph, &from, nullptr, nullptr, &found), CUDA_ERROR_INVALID_VALUE);
  CUgraphNodeType type;
  ASSERT_CU(cuGraphNodeGetType(nodes[1], &type));
  EXPECT_EQ(type, CU_GRAPH_NODE_TYPE_KERNEL);

  // The arguments come back where kernelParams points, as the launch packed them.
  CUDA_KERNEL_NODE_PARAMS params{};
  ASSERT_CU(cuGraphKernelNodeGetParams(nodes[1], &params));
  EXPECT_EQ(params.func, scale);
  EXPECT_EQ(params.blockDimX, 64u);
  ASSERT_NE(params.kernelParams, nullptr);
  EXPECT_EQ(*static_cast<CUdeviceptr*>(params.kernelParams[0]), floats);
  EXPECT_EQ(*static_cast<float*>(params.kernelParams[1]), 2.0f);
  EXPECT_EQ(*static_cast<int*>(params.kernelParams[2]), count);

  // The old five-argument entry point, as a runtime built for CUDA 11 resolves it.
  using InstantiateV1 = CUresult (*)(CUgraphExec*, CUgraph, CUgraphNode*, char*, size_t);
  void* address = nullptr;
  CUdriverProcAddressQueryResult status;
  ASSERT_CU(cuGetProcAddress("cuGraphInstantiate", &address, 11000, CU_GET_PROC_ADDRESS_DEFAULT, &status));
  CUgraphExec exec;
  CUgraphNode error_node = nodes[0];
  char log[16] = "stale";
  ASSERT_CU(reinterpret_cast<InstantiateV1>(address)(&exec, graph, &error_node, log, sizeof log));
  EXPECT_EQ(error_node, nullptr);
  EXPECT_STREQ(log, "");

  // The executable graph's copy changes; the graph's own node keeps its arguments.
  float three = 3.0f;
  void* new_args[] = {&floats, &three, &count};
  params.kernelParams = new_args;
  ASSERT_CU(cuGraphExecKernelNodeSetParams(exec, nodes[1], &params));
  ASSERT_CU(cuGraphLaunch(exec, stream));
  ASSERT_CU(cuGraphLaunch(exec, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  std::vector<float> scaled(n);
  std::vector<unsigned> filled(n);
  ASSERT_CU(cuMemcpyDtoH(scaled.data(), floats, n * 4));
  ASSERT_CU(cuMemcpyDtoH(filled.data(), words, n * 4));
  EXPECT_EQ(scaled[0], 9.0f);
  EXPECT_EQ(scaled[n - 1], 9.0f);
  EXPECT_EQ(filled[n - 1], 7u);
  CUDA_KERNEL_NODE_PARAMS kept{};
  ASSERT_CU(cuGraphKernelNodeGetParams(nodes[1], &kept));
  EXPECT_EQ(*static_cast<float*>(kept.kernelParams[1]), 2.0f);

  // A copy node after the fill: device to device at each launch; host memory at an end is refused.
  CUdeviceptr copied;
  ASSERT_CU(cuMemAlloc(&copied, n * 4));
  ASSERT_CU(cuMemsetD8(copied, 0, n * 4));
  CUDA_MEMCPY3D copy{};
  copy.srcMemoryType = CU_MEMORYTYPE_DEVICE;
  copy.srcDevice = words;
  copy.dstMemoryType = CU_MEMORYTYPE_UNIFIED;  // a device allocation's address: sent as device memory
  copy.dstDevice = copied;
  copy.WidthInBytes = n * 4;
  copy.Height = 1;
  copy.Depth = 1;
  CUgraphNode copy_node;
  ASSERT_CU(cuGraphAddMemcpyNode(&copy_node, graph, &nodes[0], 1, &copy, context_));
  ASSERT_CU(cuGraphNodeGetType(copy_node, &type));
  EXPECT_EQ(type, CU_GRAPH_NODE_TYPE_MEMCPY);
  std::vector<unsigned> host_words(n);
  CUDA_MEMCPY3D to_host = copy;
  to_host.dstMemoryType = CU_MEMORYTYPE_HOST;
  to_host.dstHost = host_words.data();
  EXPECT_EQ(cuGraphAddMemcpyNode(&copy_node, graph, &nodes[0], 1, &to_host, context_), CUDA_ERROR_NOT_SUPPORTED);

  // A node added by hand, after the fill, and its arguments changed in the graph.
  CUDA_KERNEL_NODE_PARAMS added = params;
  float half = 0.5f;
  void* half_args[] = {&floats, &half, &count};
  added.kernelParams = half_args;
  CUgraphNode third;
  ASSERT_CU(cuGraphAddKernelNode(&third, graph, &nodes[1], 1, &added));
  float quarter = 0.25f;
  void* quarter_args[] = {&floats, &quarter, &count};
  added.kernelParams = quarter_args;
  ASSERT_CU(cuGraphKernelNodeSetParams(third, &added));
  CUgraphExec second;
  ASSERT_CU(cuGraphInstantiateWithFlags(&second, graph, 0));
  ASSERT_CU(cuGraphLaunch(second, stream));
  ASSERT_CU(cuStreamSynchronize(stream));
  ASSERT_CU(cuMemcpyDtoH(scaled.data(), floats, n * 4));
  EXPECT_EQ(scaled[5], 9.0f * 2.0f * 0.25f);
  found = 0;
  ASSERT_CU(cuGraphGetEdges(graph, nullptr, nullptr, nullptr, &found));
  EXPECT_EQ(found, 3u);
  ASSERT_CU(cuMemcpyDtoH(host_words.data(), copied, n * 4));
  EXPECT_EQ(host_words[0], 7u);
  EXPECT_EQ(host_words[n - 1], 7u);
  EXPECT_CU(cuMemFree(copied));

  EXPECT_CU(cuGraphExecDestroy(second));
  EXPECT_CU(cuGraphExecDestroy(exec));
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuStreamDestroy(stream));
  EXPECT_CU(cuMemFree(words));
  EXPECT_CU(cuMemFree(floats));
  EXPECT_CU(cuModuleUnload(module));
}

TEST_F(CudaE2E, EmptyAndEventNodesAndTheirEdgesAreAddedAndRemoved) {
  CUgraph graph;
  ASSERT_CU(cuGraphCreate(&graph, 0));
  CUevent event;
  ASSERT_CU(cuEventCreate(&event, 0));
  CUgraphNode a, b, c;
  ASSERT_CU(cuGraphAddEmptyNode(&a, graph, nullptr, 0));
  ASSERT_CU(cuGraphAddEmptyNode(&b, graph, &a, 1));
  ASSERT_CU(cuGraphAddEventRecordNode(&c, graph, nullptr, 0, event));
  CUgraphNodeType type;
  ASSERT_CU(cuGraphNodeGetType(a, &type));
  EXPECT_EQ(type, CU_GRAPH_NODE_TYPE_EMPTY);
  ASSERT_CU(cuGraphNodeGetType(c, &type));
  EXPECT_EQ(type, CU_GRAPH_NODE_TYPE_EVENT_RECORD);
  ASSERT_CU(cuGraphAddDependencies(graph, &a, &c, nullptr, 1));
  EXPECT_EQ(cuGraphAddDependencies(graph, &a, &c, nullptr, 1), CUDA_ERROR_INVALID_VALUE);  // already there
  ASSERT_CU(cuGraphRemoveDependencies(graph, &a, &b, nullptr, 1));
  CUgraphNode from[2] = {}, to[2] = {};
  size_t count = 2;
  ASSERT_CU(cuGraphGetEdges(graph, from, to, nullptr, &count));
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(from[0], a);
  EXPECT_EQ(to[0], c);
  EXPECT_EQ(from[1], nullptr);
  CUgraphNode roots[2] = {};
  count = 2;
  ASSERT_CU(cuGraphGetRootNodes(graph, roots, &count));
  ASSERT_EQ(count, 2u);
  EXPECT_EQ(roots[0], a);
  EXPECT_EQ(roots[1], b);
  CUgraphExec exec;
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  ASSERT_CU(cuGraphLaunch(exec, nullptr));
  ASSERT_CU(cuEventSynchronize(event));
  EXPECT_CU(cuEventQuery(event));
  EXPECT_CU(cuGraphExecDestroy(exec));
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuEventDestroy(event));
}

// What torch.cuda.graph makes of a copy to pinned memory inside a capture: each launch of the graph
// copies between the device and the application's memory again, reading and writing it then.
// A call that a capture makes fail (freeing memory is unsafe then) fails for its own caller, as
// from the driver, even a call RGPU otherwise sends without waiting for its answer; the capture is
// invalidated, and what runs after it is not blamed for it.
TEST_F(CudaE2E, ACallRefusedDuringACaptureFailsForItsCaller) {
  CUdeviceptr p = 0;
  ASSERT_CU(cuMemAlloc(&p, 4096));
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL));
  EXPECT_EQ(cuMemFree(p), CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
  CUgraph graph = nullptr;
  EXPECT_EQ(cuStreamEndCapture(stream, &graph), CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);
  EXPECT_EQ(graph, nullptr);
  EXPECT_CU(cuMemFree(p));  // after the capture, as any time
  CUdeviceptr q = 0;
  EXPECT_CU(cuMemAlloc(&q, 4096));
  EXPECT_CU(cuMemFree(q));
  EXPECT_CU(cuStreamDestroy(stream));
}

// An executable graph updated from another graph: allowed without host nodes, refused with them
// (the executable graph would run host functions the other graph keeps, after it may be gone).
TEST_F(CudaE2E, AnExecutableGraphIsNotUpdatedFromAGraphWithHostNodes) {
  auto graph_of = [](bool host) {
    CUgraph graph;
    EXPECT_CU(cuGraphCreate(&graph, 0));
    CUgraphNode node;
    if (host) {
      CUDA_HOST_NODE_PARAMS params{};
      params.fn = [](void*) {};
      EXPECT_CU(cuGraphAddHostNode(&node, graph, nullptr, 0, &params));
    } else {
      EXPECT_CU(cuGraphAddEmptyNode(&node, graph, nullptr, 0));
    }
    return graph;
  };
  CUgraph plain = graph_of(false), other_plain = graph_of(false), with_host = graph_of(true), other_host = graph_of(true);
  CUgraphExec exec, host_exec;
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, plain, 0));
  ASSERT_CU(cuGraphInstantiateWithFlags(&host_exec, with_host, 0));
  CUgraphExecUpdateResultInfo info{};
  EXPECT_CU(cuGraphExecUpdate_v2(exec, other_plain, &info));
  EXPECT_EQ(info.result, CU_GRAPH_EXEC_UPDATE_SUCCESS);
  EXPECT_EQ(cuGraphExecUpdate_v2(host_exec, other_host, &info), CUDA_ERROR_NOT_SUPPORTED);
  ASSERT_CU(cuGraphDestroy(other_host));
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuGraphLaunch(host_exec, stream));  // still its own host function
  EXPECT_CU(cuStreamSynchronize(stream));
  EXPECT_CU(cuStreamDestroy(stream));
  for (CUgraphExec e : {exec, host_exec}) EXPECT_CU(cuGraphExecDestroy(e));
  for (CUgraph g : {plain, other_plain, with_host}) EXPECT_CU(cuGraphDestroy(g));
}

// In every capture mode: the server's own staging for the copies must neither be refused nor
// invalidate the capture (allocating page-locked memory is unsafe during a capture).
TEST_F(CudaE2E, CapturedCopiesReadAndWriteHostMemoryAtEachLaunch) {
  for (CUstreamCaptureMode mode : {CU_STREAM_CAPTURE_MODE_GLOBAL, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL, CU_STREAM_CAPTURE_MODE_RELAXED})
  for (size_t n : {size_t{1000}, size_t{3} << 18}) {  // 4 KB inside the call; 3 MiB in ring chunks
    SCOPED_TRACE(testing::Message() << "mode " << mode << ", " << n << " values");
    CUdeviceptr device;
    ASSERT_CU(cuMemAlloc(&device, n * 4));
    std::vector<uint32_t> in(n), out(n, 0xdeadbeef);
    CUstream stream;
    ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
    ASSERT_CU(cuStreamBeginCapture(stream, mode));
    ASSERT_CU(cuMemcpyHtoDAsync(device, in.data(), n * 4, stream));
    ASSERT_CU(cuMemcpyDtoHAsync(out.data(), device, n * 4, stream));
    CUgraph graph;
    ASSERT_CU(cuStreamEndCapture(stream, &graph));
    EXPECT_EQ(out[0], 0xdeadbeefu);  // captured, not run
    CUgraphExec exec;
    ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
    for (uint32_t launch = 1; launch <= 2; ++launch) {
      for (size_t i = 0; i < n; ++i) in[i] = launch * 1000003u + static_cast<uint32_t>(i);
      ASSERT_CU(cuGraphLaunch(exec, stream));
      ASSERT_CU(cuStreamSynchronize(stream));
      EXPECT_EQ(out, in) << "launch " << launch;
    }
    ASSERT_CU(cuGraphDestroy(graph));
    for (size_t i = 0; i < n; ++i) in[i] = ~static_cast<uint32_t>(i);
    ASSERT_CU(cuGraphLaunch(exec, stream));  // the executable graph keeps the copies' staging
    ASSERT_CU(cuStreamSynchronize(stream));
    EXPECT_EQ(out, in);
    EXPECT_CU(cuGraphExecDestroy(exec));
    EXPECT_CU(cuStreamDestroy(stream));
    EXPECT_CU(cuMemFree(device));
  }
}

// A conditional node's body graph comes back from the server and is filled by a capture into it;
// the body runs as the condition's value says (here its default, set at each launch).
TEST_F(CudaE2E, ConditionalNodesRunTheirBodyGraphsCapturedIntoThem) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUdeviceptr words;
  ASSERT_CU(cuMemAlloc(&words, 16));
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  for (unsigned condition_value : {1u, 0u}) {
    SCOPED_TRACE(condition_value);
    ASSERT_CU(cuMemsetD8(words, 0, 16));
    CUgraph graph;
    ASSERT_CU(cuGraphCreate(&graph, 0));
    CUgraphConditionalHandle handle;
    ASSERT_CU(cuGraphConditionalHandleCreate(&handle, graph, context_, condition_value, CU_GRAPH_COND_ASSIGN_DEFAULT));
    CUgraphNodeParams params{};
    params.type = CU_GRAPH_NODE_TYPE_EMPTY;
    CUgraphNode start;
    ASSERT_CU(cuGraphAddNode(&start, graph, nullptr, nullptr, 0, &params));
    params = {};
    params.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    params.conditional.handle = handle;
    params.conditional.type = CU_GRAPH_COND_TYPE_IF;
    params.conditional.size = 1;
    CUgraphNode conditional;
    ASSERT_CU(cuGraphAddNode(&conditional, graph, &start, nullptr, 1, &params));
    ASSERT_NE(params.conditional.phGraph_out, nullptr);
    CUgraph body = params.conditional.phGraph_out[0];
    ASSERT_NE(body, nullptr);

    ASSERT_CU(cuStreamBeginCaptureToGraph(stream, body, nullptr, nullptr, 0, CU_STREAM_CAPTURE_MODE_RELAXED));
    unsigned value = 5;
    unsigned long long n = 4;
    void* args[] = {&words, &value, &n};
    ASSERT_CU(cuLaunchKernel(fill, 1, 1, 1, 4, 1, 1, 0, stream, args, nullptr));
    CUgraph captured;
    ASSERT_CU(cuStreamEndCapture(stream, &captured));
    EXPECT_EQ(captured, body);
    size_t count = 0;
    ASSERT_CU(cuGraphGetNodes(body, nullptr, &count));
    EXPECT_EQ(count, 1u);

    CUgraphExec exec;
    ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
    ASSERT_CU(cuGraphLaunch(exec, stream));
    ASSERT_CU(cuStreamSynchronize(stream));
    unsigned got[4] = {};
    ASSERT_CU(cuMemcpyDtoH(got, words, sizeof got));
    EXPECT_EQ(got[3], condition_value ? 5u : 0u);
    EXPECT_CU(cuGraphExecDestroy(exec));
    EXPECT_CU(cuGraphDestroy(graph));
  }
  EXPECT_CU(cuStreamDestroy(stream));
  EXPECT_CU(cuMemFree(words));
  EXPECT_CU(cuModuleUnload(module));
}

// An allocation node's address is device memory to the application: a kernel node fills it and a
// copy reads it back after the launch. Its parameters read back are those it was added with.
TEST_F(CudaE2E, AllocationNodesGiveDeviceMemory) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUgraph graph;
  ASSERT_CU(cuGraphCreate(&graph, 0));
  CUDA_MEM_ALLOC_NODE_PARAMS alloc{};
  alloc.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  alloc.poolProps.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  alloc.bytesize = 4096;
  CUgraphNode alloc_node, fill_node, free_node;
  ASSERT_CU(cuGraphAddMemAllocNode(&alloc_node, graph, nullptr, 0, &alloc));
  ASSERT_NE(alloc.dptr, 0u);
  unsigned value = 42;
  unsigned long long n = 1024;
  void* args[] = {&alloc.dptr, &value, &n};
  const CUDA_KERNEL_NODE_PARAMS kernel = fill_kernel(fill, args, 256);
  ASSERT_CU(cuGraphAddKernelNode(&fill_node, graph, &alloc_node, 1, &kernel));
  CUgraphExec exec;
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  ASSERT_CU(cuGraphLaunch(exec, nullptr));
  std::vector<unsigned> got(n);
  ASSERT_CU(cuMemcpyDtoH(got.data(), alloc.dptr, n * 4));  // a device address to the library
  EXPECT_EQ(got[0], 42u);
  EXPECT_EQ(got[n - 1], 42u);
  ASSERT_CU(cuGraphAddMemFreeNode(&free_node, graph, &fill_node, 1, alloc.dptr));
  // Through cuGraphAddNode's union, the same.
  CUgraphNodeParams generic{};
  generic.type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
  generic.alloc.poolProps = alloc.poolProps;
  generic.alloc.bytesize = 4096;
  CUgraphNode generic_node;
  ASSERT_CU(cuGraphAddNode(&generic_node, graph, nullptr, nullptr, 0, &generic));
  ASSERT_NE(generic.alloc.dptr, 0u);
  ASSERT_NE(generic.alloc.dptr, alloc.dptr);

  // Read back: the address, the size and the properties it was added with; the access
  // descriptors where they were for an earlier read.
  CUDA_MEM_ALLOC_NODE_PARAMS read{};
  ASSERT_CU(cuGraphMemAllocNodeGetParams(alloc_node, &read));
  EXPECT_EQ(read.dptr, alloc.dptr);
  EXPECT_EQ(read.bytesize, 4096u);
  EXPECT_EQ(read.poolProps.allocType, CU_MEM_ALLOCATION_TYPE_PINNED);
  EXPECT_EQ(read.poolProps.location.type, CU_MEM_LOCATION_TYPE_DEVICE);
  EXPECT_EQ(read.poolProps.location.id, 0);
  EXPECT_EQ(read.accessDescCount, 0u);
  EXPECT_EQ(read.accessDescs, nullptr);
  CUgraphNode with_access;
  const CUmemAccessDesc access[] = {read_write(1), read_write(0)};
  CUDA_MEM_ALLOC_NODE_PARAMS shared = alloc;
  shared.poolProps.location.id = 1;
  shared.accessDescs = access;
  shared.accessDescCount = 2;
  shared.bytesize = 8192;
  ASSERT_CU(cuGraphAddMemAllocNode(&with_access, graph, nullptr, 0, &shared));
  ASSERT_CU(cuGraphMemAllocNodeGetParams(with_access, &read));
  EXPECT_EQ(read.dptr, shared.dptr);
  EXPECT_EQ(read.bytesize, 8192u);
  EXPECT_EQ(read.poolProps.location.id, 1);
  ASSERT_EQ(read.accessDescCount, 2u);
  ASSERT_NE(read.accessDescs, nullptr);
  EXPECT_EQ(read.accessDescs[0].location.id, 1);
  EXPECT_EQ(read.accessDescs[1].location.id, 0);
  EXPECT_EQ(read.accessDescs[1].flags, CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
  CUDA_MEM_ALLOC_NODE_PARAMS again{};
  ASSERT_CU(cuGraphMemAllocNodeGetParams(with_access, &again));
  EXPECT_EQ(again.accessDescs, read.accessDescs);
  EXPECT_EQ(cuGraphMemAllocNodeGetParams(fill_node, &read), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphMemAllocNodeGetParams(alloc_node, nullptr), CUDA_ERROR_INVALID_VALUE);

  alloc.poolProps.win32SecurityAttributes = &value;  // never on Linux: refused by the server
  EXPECT_EQ(cuGraphAddMemAllocNode(&alloc_node, graph, nullptr, 0, &alloc), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuGraphExecDestroy(exec));
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuModuleUnload(module));
}

// A stream waits on a value in device memory until another stream writes it.
TEST_F(CudaE2E, BatchMemoryOperationsWaitAndWriteInStreamOrder) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUdeviceptr flag, words;
  ASSERT_CU(cuMemAlloc(&flag, 8));
  ASSERT_CU(cuMemAlloc(&words, 16));
  ASSERT_CU(cuMemsetD8(flag, 0, 8));
  ASSERT_CU(cuMemsetD8(words, 0, 16));
  CUstream waiting, writing;
  ASSERT_CU(cuStreamCreate(&waiting, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuStreamCreate(&writing, CU_STREAM_NON_BLOCKING));

  CUstreamBatchMemOpParams wait{};
  wait.waitValue.operation = CU_STREAM_MEM_OP_WAIT_VALUE_32;
  wait.waitValue.address = flag;
  wait.waitValue.value = 5;
  wait.waitValue.flags = CU_STREAM_WAIT_VALUE_GEQ;
  ASSERT_CU(cuStreamBatchMemOp(waiting, 1, &wait, 0));
  unsigned value = 9;
  unsigned long long n = 4;
  void* args[] = {&words, &value, &n};
  ASSERT_CU(cuLaunchKernel(fill, 1, 1, 1, 4, 1, 1, 0, waiting, args, nullptr));
  EXPECT_EQ(cuStreamQuery(waiting), CUDA_ERROR_NOT_READY);

  CUstreamBatchMemOpParams writes[2] = {};
  writes[0].writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_32;
  writes[0].writeValue.address = flag;
  writes[0].writeValue.value = 5;
  writes[1].writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_64;
  writes[1].writeValue.address = words + 8;
  writes[1].writeValue.value64 = 0x1122334455667788ull;
  ASSERT_CU(cuStreamBatchMemOp(writing, 2, writes, 0));
  ASSERT_CU(cuStreamSynchronize(waiting));
  unsigned got[4] = {};
  ASSERT_CU(cuMemcpyDtoH(got, words, sizeof got));
  EXPECT_EQ(got[0], 9u);
  EXPECT_EQ(got[3], 9u);  // the fill ran after the write it waited for

  // The server refuses an operation type it does not know.
  CUstreamBatchMemOpParams bad{};
  bad.operation = static_cast<CUstreamBatchMemOpType>(77);
  ASSERT_CU(cuStreamBatchMemOp(writing, 1, &bad, 0));
  EXPECT_EQ(cuStreamSynchronize(writing), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuStreamBatchMemOp(writing, 0, writes, 0), CUDA_ERROR_INVALID_VALUE);

  EXPECT_CU(cuStreamDestroy(waiting));
  EXPECT_CU(cuStreamDestroy(writing));
  EXPECT_CU(cuMemFree(flag));
  EXPECT_CU(cuMemFree(words));
  EXPECT_CU(cuModuleUnload(module));
}

// A batch node's operations run in stream order at each launch, as cuStreamBatchMemOp runs them:
// its wait holds the nodes after it until another stream writes the value. Read back, they are
// the node's; changed in the graph or in one executable graph, they run so there.
TEST_F(CudaE2E, BatchMemoryOperationNodesRunReadAndChange) {
  CUmodule module = load_module();
  CUfunction fill;
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  CUdeviceptr flag, words, written;
  ASSERT_CU(cuMemAlloc(&flag, 8));
  ASSERT_CU(cuMemAlloc(&words, 16));
  ASSERT_CU(cuMemAlloc(&written, 16));
  ASSERT_CU(cuMemsetD8(flag, 0, 8));
  ASSERT_CU(cuMemsetD8(words, 0, 16));
  CUstream waiting, writing;
  ASSERT_CU(cuStreamCreate(&waiting, CU_STREAM_NON_BLOCKING));
  ASSERT_CU(cuStreamCreate(&writing, CU_STREAM_NON_BLOCKING));

  CUstreamBatchMemOpParams ops[2] = {};
  ops[0].waitValue.operation = CU_STREAM_MEM_OP_WAIT_VALUE_32;
  ops[0].waitValue.address = flag;
  ops[0].waitValue.value = 5;
  ops[0].waitValue.flags = CU_STREAM_WAIT_VALUE_GEQ;
  ops[1].writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_64;
  ops[1].writeValue.address = written;
  ops[1].writeValue.value64 = 0x1122334455667788ull;
  CUDA_BATCH_MEM_OP_NODE_PARAMS batch{context_, 2, ops, 0};
  CUgraph graph;
  ASSERT_CU(cuGraphCreate(&graph, 0));
  CUgraphNode batch_node, fill_node;
  ASSERT_CU(cuGraphAddBatchMemOpNode(&batch_node, graph, nullptr, 0, &batch));
  unsigned value = 9;
  unsigned long long n = 4;
  void* args[] = {&words, &value, &n};
  const CUDA_KERNEL_NODE_PARAMS kernel = fill_kernel(fill, args, 4);
  ASSERT_CU(cuGraphAddKernelNode(&fill_node, graph, &batch_node, 1, &kernel));
  CUgraphNodeType type;
  ASSERT_CU(cuGraphNodeGetType(batch_node, &type));
  EXPECT_EQ(type, CU_GRAPH_NODE_TYPE_BATCH_MEM_OP);

  CUgraphExec before;
  ASSERT_CU(cuGraphInstantiateWithFlags(&before, graph, 0));
  ASSERT_CU(cuGraphLaunch(before, waiting));
  EXPECT_EQ(cuStreamQuery(waiting), CUDA_ERROR_NOT_READY);  // the wait holds the fill
  CUstreamBatchMemOpParams release{};
  release.writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_32;
  release.writeValue.address = flag;
  release.writeValue.value = 5;
  ASSERT_CU(cuStreamBatchMemOp(writing, 1, &release, 0));
  ASSERT_CU(cuStreamSynchronize(waiting));
  unsigned got[4] = {};
  ASSERT_CU(cuMemcpyDtoH(got, words, sizeof got));
  EXPECT_EQ(got[3], 9u);
  uint64_t wide = 0;
  ASSERT_CU(cuMemcpyDtoH(&wide, written, 8));
  EXPECT_EQ(wide, 0x1122334455667788ull);

  CUDA_BATCH_MEM_OP_NODE_PARAMS read{};
  ASSERT_CU(cuGraphBatchMemOpNodeGetParams(batch_node, &read));
  EXPECT_EQ(read.ctx, context_);
  ASSERT_EQ(read.count, 2u);
  ASSERT_NE(read.paramArray, nullptr);
  EXPECT_EQ(read.paramArray[0].waitValue.address, flag);
  EXPECT_EQ(read.paramArray[0].waitValue.value, 5u);
  EXPECT_EQ(read.paramArray[1].writeValue.value64, 0x1122334455667788ull);
  CUDA_BATCH_MEM_OP_NODE_PARAMS again{};
  ASSERT_CU(cuGraphBatchMemOpNodeGetParams(batch_node, &again));
  EXPECT_EQ(again.paramArray, read.paramArray);  // the same operations, where they were

  ops[1].writeValue.value64 = 2;
  ASSERT_CU(cuGraphBatchMemOpNodeSetParams(batch_node, &batch));
  ASSERT_CU(cuGraphBatchMemOpNodeGetParams(batch_node, &read));
  EXPECT_EQ(read.paramArray[1].writeValue.value64, 2u);
  CUgraphExec after;
  ASSERT_CU(cuGraphInstantiateWithFlags(&after, graph, 0));
  ops[1].writeValue.value64 = 3;
  ASSERT_CU(cuGraphExecBatchMemOpNodeSetParams(before, batch_node, &batch));
  ASSERT_CU(cuGraphLaunch(after, waiting));  // the flag is 5 already: nothing waits
  ASSERT_CU(cuStreamSynchronize(waiting));
  ASSERT_CU(cuMemcpyDtoH(&wide, written, 8));
  EXPECT_EQ(wide, 2u);
  ASSERT_CU(cuGraphLaunch(before, waiting));
  ASSERT_CU(cuStreamSynchronize(waiting));
  ASSERT_CU(cuMemcpyDtoH(&wide, written, 8));
  EXPECT_EQ(wide, 3u);
  ASSERT_CU(cuGraphBatchMemOpNodeGetParams(batch_node, &read));
  EXPECT_EQ(read.paramArray[1].writeValue.value64, 2u);  // the graph's node keeps its own

  // Refused: no operations, an operation type RGPU does not know (by the server), not a batch node
  // (by the driver).
  CUDA_BATCH_MEM_OP_NODE_PARAMS none{context_, 0, ops, 0};
  CUgraphNode refused;
  EXPECT_EQ(cuGraphAddBatchMemOpNode(&refused, graph, nullptr, 0, &none), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphBatchMemOpNodeSetParams(batch_node, &none), CUDA_ERROR_INVALID_VALUE);
  CUstreamBatchMemOpParams bad{};
  bad.operation = static_cast<CUstreamBatchMemOpType>(77);
  CUDA_BATCH_MEM_OP_NODE_PARAMS unknown{context_, 1, &bad, 0};
  EXPECT_EQ(cuGraphAddBatchMemOpNode(&refused, graph, nullptr, 0, &unknown), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphExecBatchMemOpNodeSetParams(before, batch_node, &unknown), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphBatchMemOpNodeGetParams(fill_node, &read), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(cuGraphBatchMemOpNodeGetParams(batch_node, nullptr), CUDA_ERROR_INVALID_VALUE);

  EXPECT_CU(cuGraphExecDestroy(before));
  EXPECT_CU(cuGraphExecDestroy(after));
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuStreamDestroy(waiting));
  EXPECT_CU(cuStreamDestroy(writing));
  for (CUdeviceptr p : {flag, words, written}) EXPECT_CU(cuMemFree(p));
  EXPECT_CU(cuModuleUnload(module));
}

// cuGraphAddNode and the generic setters take host and batch nodes, and change memcpy nodes, as
// their own calls do; a type they do not forward yet says so.
TEST_F(CudaE2E, GenericNodeCallsTakeHostMemcpyAndBatchNodes) {
  RunLog log;
  unsigned nothing = 0;
  Probe a{&log, "a", &nothing}, b{&log, "b", &nothing};
  CUdeviceptr from, to;
  ASSERT_CU(cuMemAlloc(&from, 64));
  ASSERT_CU(cuMemAlloc(&to, 64));
  CUgraph graph;
  ASSERT_CU(cuGraphCreate(&graph, 0));
  CUgraphNodeParams params{};
  params.type = CU_GRAPH_NODE_TYPE_HOST;
  params.host = {probe, &a};
  CUgraphNode host;
  ASSERT_CU(cuGraphAddNode(&host, graph, nullptr, nullptr, 0, &params));
  CUDA_HOST_NODE_PARAMS host_read{};
  ASSERT_CU(cuGraphHostNodeGetParams(host, &host_read));
  EXPECT_EQ(host_read.userData, &a);

  CUstreamBatchMemOpParams write{};
  write.writeValue.operation = CU_STREAM_MEM_OP_WRITE_VALUE_32;
  write.writeValue.address = from;
  write.writeValue.value = 11;
  params = {};
  params.type = CU_GRAPH_NODE_TYPE_BATCH_MEM_OP;
  params.memOp = {context_, 1, &write, 0};
  CUgraphNode batch;
  ASSERT_CU(cuGraphAddNode(&batch, graph, &host, nullptr, 1, &params));
  params = {};
  params.type = CU_GRAPH_NODE_TYPE_MEMCPY;
  params.memcpy.copyCtx = context_;
  CUDA_MEMCPY3D& copy = params.memcpy.copyParams;
  copy.srcMemoryType = copy.dstMemoryType = CU_MEMORYTYPE_DEVICE;
  copy.srcDevice = from;
  copy.dstDevice = to;
  copy.WidthInBytes = 4;
  copy.Height = copy.Depth = 1;
  CUgraphNode memcpy_node;
  ASSERT_CU(cuGraphAddNode(&memcpy_node, graph, &batch, nullptr, 1, &params));
  copy.dstXInBytes = 8;
  ASSERT_CU(cuGraphNodeSetParams(memcpy_node, &params));
  CUDA_MEMCPY3D copy_read{};
  ASSERT_CU(cuGraphMemcpyNodeGetParams(memcpy_node, &copy_read));
  EXPECT_EQ(copy_read.dstXInBytes, 8u);

  params = {};
  params.type = CU_GRAPH_NODE_TYPE_HOST;
  params.host = {probe, &b};
  ASSERT_CU(cuGraphNodeSetParams(host, &params));
  CUgraphExec exec;
  ASSERT_CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
  write.writeValue.value = 12;
  params = {};
  params.type = CU_GRAPH_NODE_TYPE_BATCH_MEM_OP;
  params.memOp = {context_, 1, &write, 0};
  ASSERT_CU(cuGraphExecNodeSetParams(exec, batch, &params));
  ASSERT_CU(cuMemsetD8(to, 0, 64));
  ASSERT_CU(cuGraphLaunch(exec, nullptr));
  ASSERT_CU(cuCtxSynchronize());
  EXPECT_EQ(log.runs, std::vector<std::string>{"b"});
  uint32_t got[4] = {};
  ASSERT_CU(cuMemcpyDtoH(got, to, sizeof got));
  EXPECT_EQ(got[2], 12u);  // the executable graph's operation, copied to the graph's new place
  EXPECT_EQ(got[0], 0u);
  CUDA_BATCH_MEM_OP_NODE_PARAMS batch_read{};
  ASSERT_CU(cuGraphBatchMemOpNodeGetParams(batch, &batch_read));
  EXPECT_EQ(batch_read.paramArray[0].writeValue.value, 11u);

  params = {};
  params.type = CU_GRAPH_NODE_TYPE_EVENT_RECORD;
  EXPECT_EQ(cuGraphNodeSetParams(host, &params), CUDA_ERROR_NOT_SUPPORTED);
  EXPECT_EQ(cuGraphExecNodeSetParams(exec, host, nullptr), CUDA_ERROR_INVALID_VALUE);
  EXPECT_CU(cuGraphExecDestroy(exec));
  EXPECT_CU(cuGraphDestroy(graph));
  EXPECT_CU(cuMemFree(from));
  EXPECT_CU(cuMemFree(to));
}

TEST_F(CudaE2E, UnsupportedEntryPointSaysSo) {
  EXPECT_EQ(cuDeviceGetGraphMemAttribute(0, CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT, nullptr), CUDA_ERROR_NOT_SUPPORTED);
  void* fn = nullptr;
  CUdriverProcAddressQueryResult status;
  ASSERT_CU(cuGetProcAddress("cuMemAlloc", &fn, 13000, CU_GET_PROC_ADDRESS_DEFAULT, &status));
  EXPECT_EQ(fn, reinterpret_cast<void*>(&cuMemAlloc_v2));
  ASSERT_CU(cuGetProcAddress("cuMemcpyHtoDAsync", &fn, 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &status));
  EXPECT_EQ(fn, reinterpret_cast<void*>(&cuMemcpyHtoDAsync_v2_ptsz));
  EXPECT_EQ(cuGetProcAddress("cuNoSuchThing", &fn, 13000, 0, &status), CUDA_ERROR_NOT_FOUND);
}

// Starts the CudaE2EChild test `name` in a process of its own (a fork's copy of this process's
// session would not be one) with `variables` ("NAME=value") added to its environment.
pid_t start_child(const std::string& name, const std::vector<std::string>& variables = {}) {
  const std::string filter = "--gtest_filter=CudaE2EChild." + name;
  pid_t child = fork();
  if (child == 0) {
    for (const std::string& variable : variables) putenv(const_cast<char*>(variable.c_str()));
    execl("/proc/self/exe", "/proc/self/exe", filter.c_str(), "--rgpu-child", nullptr);
    _exit(127);
  }
  return child;
}

int exit_code_of(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

// Whether the file (a child's marker) exists, waiting for it up to 30 s.
bool appears_within_30s(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (access(path.c_str(), F_OK) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// The child's wait status once it ends; nullopt (and the child killed) if it is still running after 30 s.
std::optional<int> wait_for_child(pid_t child) {
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (waitpid(child, &status, WNOHANG) != child) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(child, SIGKILL);
      waitpid(child, &status, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status;
}

// Runs the CudaE2EChild test `name` (see start_child) to its end; returns its exit code.
int run_child(const std::string& name, const char* variable = nullptr) {
  const pid_t child = start_child(name, variable ? std::vector<std::string>{variable} : std::vector<std::string>{});
  int status = 0;
  waitpid(child, &status, 0);
  return exit_code_of(status);
}

constexpr int kChildDone = 42;

TEST_F(CudaE2E, VisibleDevicesChooseAmongTheServersDevices) {
  EXPECT_EQ(run_child("SeesOnlyDeviceOne", "CUDA_VISIBLE_DEVICES=1"), kChildDone);
}

// The server runs at most 256 threads per process; a call of a thread beyond them fails with
// CUDA_ERROR_OUT_OF_MEMORY, and the calls after it still run.
TEST_F(CudaE2E, CallsOfThreadsOverTheServersLimitFailAndTheOthersGoOn) {
  EXPECT_EQ(run_child("ThreadsOverTheLimit"), kChildDone);
}

// The CUDA path over TLS, bulk lanes included (each lane makes its own TLS connection): a copy
// larger than the ring crosses it whole.
TEST_F(CudaE2E, CopiesCrossATlsServerOverBulkLanes) {
  TempDir dir;
  ServerProcess server(rgpu::test::tls_server_args(dir), {"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
  const std::string socket = dir.path() + "/client.sock";
  ServerProcess client(
      {"--server", server.address(), "--tls", "on", "--server-fingerprint", server.fingerprint(), "--socket", socket},
      {}, "client");
  const std::string variable = "RGPU_CLIENT_SOCKET=" + socket;
  EXPECT_EQ(run_child("LargeCopyRoundTrips", variable.c_str()), kChildDone)
      << "server:\n" << server.log() << "\nclient:\n" << client.log();
  const std::string log = server.log();
  EXPECT_NE(log.find("TLS with 127.0.0.1"), std::string::npos) << log;
  EXPECT_NE(log.find("bulk lane from"), std::string::npos) << log;
}

// Over TLS a connection carries nothing between CudaJoined and its second handshake (the one with
// the session's worker): a lane that sends a call right behind its CudaJoin is dropped, and its
// session goes on.
TEST_F(CudaE2E, ATlsLaneThatSendsBeforeItsSecondHandshakeIsDropped) {
  TempDir dir;
  ServerProcess server(rgpu::test::tls_server_args(dir), {"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
  rgpu::SessionOptions options;
  options.server = rgpu::parse_host_port(server.address());
  options.tls = rgpu::TlsMode::On;
  options.trust.fingerprint = server.fingerprint();
  auto owner = rgpu::Session::connect(options);
  const uint64_t key = owner->open_application_session(rgpu::AppApi::Cuda, rgpu::encode(rgpu::SessionOpenMsg{{0}}));

  auto lane = rgpu::Session::connect(options);
  rgpu::WireWriter join;
  join.put(key);
  lane->channel().send_frame(rgpu::kMsgCudaJoin, lane->next_request_id(), join.buffer());
  rgpu::cuda::CallHeader call;
  call.function = rgpu::fnv1a("cuNoSuchFunction");
  call.thread = 1;
  call.sequence = 1;
  lane->channel().send_frame(rgpu::cuda::kMsgCudaCall, lane->next_request_id(),
                             {reinterpret_cast<const uint8_t*>(&call), sizeof call});
  EXPECT_EQ(lane->channel().receive_frame().header.type, rgpu::kMsgCudaJoined);
  EXPECT_THROW(lane->channel().receive_frame(), rgpu::ChannelClosed) << server.log();
  // The session is still there, over its re-keyed connection, and a proper lane still joins.
  EXPECT_EQ(owner->call(rgpu::MsgType::Ping).header.type, static_cast<uint16_t>(rgpu::MsgType::Pong)) << server.log();
  auto proper = rgpu::Session::connect(options);
  EXPECT_NO_THROW(proper->join_cuda_session(key)) << server.log();
}

// The server goes away while an application copies from the device over the bulk lanes: the copy
// fails with CUDA_ERROR_DEVICE_UNAVAILABLE (nothing waits forever) and the daemon goes on.
TEST_F(CudaE2E, AServerThatGoesMidCopyFailsTheCopyAndTheDaemonGoesOn) {
  TempDir dir;
  auto server = std::make_unique<ServerProcess>(
      std::vector<std::string>{"--config", dir.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n"), "--tls", "off"},
      std::vector<std::string>{"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
  const std::string socket = dir.path() + "/client.sock";
  ServerProcess client({"--server", server->address(), "--tls", "off", "--socket", socket}, {}, "client");
  const std::string marker = dir.path() + "/copying";
  const pid_t child =
      start_child("CopiesUntilTheServerGoes", {"RGPU_CLIENT_SOCKET=" + socket, "RGPU_TEST_MARKER=" + marker});
  ASSERT_TRUE(appears_within_30s(marker)) << "the child never copied:\n" << client.log();
  server->stop();
  const std::optional<int> status = wait_for_child(child);
  if (!status) FAIL() << "the application still waited 30 s after the server went:\n" << client.log();
  EXPECT_EQ(exit_code_of(*status), kChildDone) << client.log();
  EXPECT_EQ(client.stop(), 0) << client.log();  // it was still running
}

// A worker that stops answering (here: stopped with SIGSTOP while its application copies) is
// ended after the server's worker_timeout, and the application's copy fails saying why.
TEST_F(CudaE2E, AHungWorkerIsEndedAndItsApplicationToldWhy) {
  TempDir dir;
  ServerProcess server({"--config", dir.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\nworker_timeout = 2\n"),
                        "--tls", "off"},
                       {"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
  const std::string socket = dir.path() + "/client.sock";
  ServerProcess client({"--server", server.address(), "--tls", "off", "--socket", socket}, {}, "client");
  const std::string marker = dir.path() + "/copying";
  const pid_t child =
      start_child("CopiesUntilTheServerGoes", {"RGPU_CLIENT_SOCKET=" + socket, "RGPU_TEST_MARKER=" + marker});
  ASSERT_TRUE(appears_within_30s(marker)) << "the child never copied:\n" << client.log();
  const std::string log = server.log();
  const size_t at = log.find("): worker ");
  ASSERT_NE(at, std::string::npos) << log;
  const pid_t worker = std::stoi(log.substr(at + std::strlen("): worker ")));
  ASSERT_EQ(kill(worker, SIGSTOP), 0);
  const std::optional<int> status = wait_for_child(child);
  if (!status) FAIL() << "the application still waited 30 s after its worker stopped:\n" << server.log();
  EXPECT_EQ(exit_code_of(*status), kChildDone) << server.log();
  EXPECT_THAT(server.log(), ::testing::HasSubstr("stopped answering the server for 2 s"));
  EXPECT_THAT(client.log(), ::testing::HasSubstr("the GPU server's worker for this application stopped answering"));
}

// Runs the CudaE2EChild test `name` as the only application of a server of its own, whose token
// has 64 MiB of max_memory and whose driver takes `server_variables` ("NAME=value") too; expects
// it to end with kChildDone.
void expect_child_done_alone(const std::string& name, std::vector<std::string> server_variables = {}) {
  TempDir dir;
  server_variables.push_back("RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH);
  server_variables.push_back("RGPU_NVML_LIBRARY=" CUDA_TEST_DOUBLE_PATH);
  ServerProcess server({"--config", dir.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n\n[[security.tokens]]\ntoken = \"" +
                                                              std::string(kToken) + "\"\nname = \"small\"\nmax_memory = " +
                                                              std::to_string(64 << 20) + "\n"),
                        "--tls", "off"},
                       server_variables);
  const std::string socket = dir.path() + "/client.sock";
  ServerProcess client({"--server", server.address(), "--token", kToken, "--tls", "off", "--socket", socket}, {},
                       "client");
  const pid_t child = start_child(name, {"RGPU_CLIENT_SOCKET=" + socket});
  const std::optional<int> status = wait_for_child(child);
  ASSERT_TRUE(status) << "the application did not end:\n" << server.log();
  EXPECT_EQ(exit_code_of(*status), kChildDone) << server.log();
}

// Contexts made and destroyed do not lift what max_memory leaves uncounted: each context's own
// memory (the double gives each 32 MiB) is the driver's only while the context lives.
TEST_F(CudaE2E, ContextsMadeAndDestroyedDoNotLiftTheQuota) {
  expect_child_done_alone("ContextCyclesThenALoadPastTheQuota", {"CUDA_TEST_DOUBLE_CONTEXT_BYTES=" + std::to_string(32 << 20)});
}

// Memory an application gave back before its first load is not taken for the driver's own: the
// driver's count of the process's memory drops with an array's destruction as with a free.
TEST_F(CudaE2E, AnArrayGoneBeforeTheFirstLoadDoesNotLiftTheQuota) {
  expect_child_done_alone("ArrayGoneThenALoadPastTheQuota");
}

// A process that dies holding GPU memory gets it freed by the server.
TEST_F(CudaE2E, DeadClientsMemoryIsFreed) {
  size_t before = 0, total = 0;
  ASSERT_CU(cuMemGetInfo(&before, &total));
  ASSERT_EQ(run_child("AllocateAndDie"), kChildDone) << "the child did not allocate";
  // Cleanup runs on the server after the disconnect; wait for it with a deadline.
  size_t after = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    ASSERT_CU(cuMemGetInfo(&after, &total));
  } while (after != before && std::chrono::steady_clock::now() < deadline);
  EXPECT_EQ(after, before);
  EXPECT_NE(CudaPath::server_log().find("freed 3 allocations"), std::string::npos);
}

// Waits up to 30 s for the worker of the first CUDA session opened after `from` (an offset in the
// server's log) to end; true when it ended after all its session's work had finished.
bool worker_ends_cleanly_after(size_t from) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    const std::string log = CudaPath::server_log().substr(from);
    const size_t at = log.find("): worker ");
    if (at != std::string::npos) {
      const std::string ended = "worker " + std::to_string(std::stoi(log.substr(at + std::strlen("): worker ")))) + " for ";
      for (size_t line = log.find(ended); line != std::string::npos; line = log.find(ended, line + 1))
        if (log.substr(line, log.find('\n', line) - line).ends_with(" ended"))
          return log.find("did not finish within") == std::string::npos;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

// One host function through this process's session, start to end.
void expect_a_host_function_runs() {
  CUstream stream;
  ASSERT_CU(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  std::atomic<int> runs{0};
  ASSERT_CU(cuLaunchHostFunc(stream, count_run, &runs));
  ASSERT_CU(cuStreamSynchronize(stream));
  EXPECT_EQ(runs.load(), 1);
  EXPECT_CU(cuStreamDestroy(stream));
}

// An application that ends while its host function runs, another queued behind it, leaves the
// server as it was: the server's host function returns, the worker ends with its work finished,
// and other applications' host functions run.
TEST_F(CudaE2E, AnApplicationThatEndsWithHostFunctionsPendingLeavesTheServerHealthy) {
  const size_t from = CudaPath::server_log().size();
  EXPECT_EQ(run_child("HoldsAHostFunction"), kChildDone);
  EXPECT_TRUE(worker_ends_cleanly_after(from)) << CudaPath::server_log().substr(from);
  expect_a_host_function_runs();
}

// A host function that never returns holds up its own application only: another application's
// host functions run meanwhile, and once the holder is killed its worker ends.
TEST_F(CudaE2E, AHostFunctionThatNeverReturnsHoldsOnlyItsApplication) {
  TempDir dir;
  const std::string marker = dir.path() + "/holding";
  const size_t from = CudaPath::server_log().size();
  const pid_t child = start_child("HoldsAHostFunction", {"RGPU_TEST_MARKER=" + marker, "RGPU_TEST_STAY=1"});
  ASSERT_TRUE(appears_within_30s(marker)) << "the child's host function never ran";
  expect_a_host_function_runs();
  kill(child, SIGKILL);
  EXPECT_TRUE(wait_for_child(child));
  EXPECT_TRUE(worker_ends_cleanly_after(from)) << CudaPath::server_log().substr(from);
}

bool g_is_child = false;

// A child's start: the driver initialised and device 0's primary context current (exit codes 1
// and 2 say which failed).
CUcontext enter_primary_context() {
  if (cuInit(0) != CUDA_SUCCESS) _exit(1);
  CUcontext context;
  if (cuDevicePrimaryCtxRetain(&context, 0) != CUDA_SUCCESS || cuCtxSetCurrent(context) != CUDA_SUCCESS) _exit(2);
  return context;
}

// 16 MiB of globals, four contexts made and destroyed, then 56 MiB more: past a 64 MiB quota.
TEST(CudaE2EChild, ContextCyclesThenALoadPastTheQuota) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  const CUcontext primary = enter_primary_context();
  CUmodule first = nullptr, second = nullptr;
  if (cuModuleLoadData(&first, module_with_globals(16).c_str()) != CUDA_SUCCESS) _exit(3);
  for (int i = 0; i < 4; ++i) {
    CUcontext context = nullptr;
    if (cuCtxCreate(&context, nullptr, 0, 0) != CUDA_SUCCESS || cuCtxDestroy(context) != CUDA_SUCCESS) _exit(4);
    if (cuCtxSetCurrent(primary) != CUDA_SUCCESS) _exit(5);
  }
  const CUresult r = cuModuleLoadData(&second, module_with_globals(56).c_str());
  _exit(r == CUDA_ERROR_OUT_OF_MEMORY ? kChildDone : 6);
}

// A 32 MiB array destroyed while a 1 MiB allocation (made after it) lives, then 40 MiB of globals,
// and 24 MiB more: past a 64 MiB quota.
TEST(CudaE2EChild, ArrayGoneThenALoadPastTheQuota) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  enter_primary_context();
  const CUDA_ARRAY_DESCRIPTOR plane{.Width = 4096, .Height = 2048, .Format = CU_AD_FORMAT_FLOAT, .NumChannels = 1};
  CUarray array = nullptr;
  if (cuArrayCreate(&array, &plane) != CUDA_SUCCESS) _exit(3);
  CUdeviceptr kept = 0;
  if (cuMemAlloc(&kept, 1 << 20) != CUDA_SUCCESS) _exit(4);
  if (cuArrayDestroy(array) != CUDA_SUCCESS) _exit(5);
  CUmodule first = nullptr, second = nullptr;
  if (cuModuleLoadData(&first, module_with_globals(40).c_str()) != CUDA_SUCCESS) _exit(6);
  const CUresult r = cuModuleLoadData(&second, module_with_globals(24).c_str());
  _exit(r == CUDA_ERROR_OUT_OF_MEMORY ? kChildDone : 7);
}

TEST(CudaE2EChild, AllocateAndDie) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  enter_primary_context();
  CUdeviceptr d;
  for (int i = 0; i < 3; ++i)
    if (cuMemAlloc(&d, 8 << 20) != CUDA_SUCCESS) _exit(3);
  _exit(kChildDone);  // no cuMemFree, no cleanup: the server must do it
}

TEST(CudaE2EChild, ThreadsOverTheLimit) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  const CUcontext context = enter_primary_context();
  if (cuCtxSynchronize() != CUDA_SUCCESS) _exit(3);
  // One thread after another, each with its own connection and thread on the server.
  int refused = 0;
  for (int i = 0; i < 260; ++i) {
    CUresult result = CUDA_SUCCESS;
    std::thread([&] {
      cuCtxSetCurrent(context);
      result = cuCtxSynchronize();
    }).join();
    if (result == CUDA_ERROR_OUT_OF_MEMORY) ++refused;
    else if (result != CUDA_SUCCESS) _exit(4);
  }
  if (refused == 0) _exit(5);
  if (cuCtxSynchronize() != CUDA_SUCCESS) _exit(6);  // the main thread's calls still run
  _exit(kChildDone);
}

TEST(CudaE2EChild, LargeCopyRoundTrips) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  enter_primary_context();
  const size_t bytes = (96 << 20) + 7;
  std::vector<uint8_t> in(bytes), out(bytes);
  std::mt19937 rng(5);
  for (auto& v : in) v = static_cast<uint8_t>(rng());
  CUdeviceptr d = 0;
  if (cuMemAlloc(&d, bytes) != CUDA_SUCCESS) _exit(3);
  // Twice: the lanes join while the first copy may be under way.
  for (int round = 0; round < 2; ++round) {
    if (cuMemcpyHtoD(d, in.data(), bytes) != CUDA_SUCCESS) _exit(4);
    if (cuMemcpyDtoH(out.data(), d, bytes) != CUDA_SUCCESS) _exit(5);
    if (out != in) _exit(6);
  }
  _exit(kChildDone);
}

TEST(CudaE2EChild, CopiesUntilTheServerGoes) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  enter_primary_context();
  const size_t bytes = 32 << 20;
  std::vector<uint8_t> out(bytes);
  CUdeviceptr d = 0;
  if (cuMemAlloc(&d, bytes) != CUDA_SUCCESS) _exit(3);
  for (int i = 0; i < 100000; ++i) {
    const CUresult r = cuMemcpyDtoH(out.data(), d, bytes);
    if (r != CUDA_SUCCESS) _exit(r == CUDA_ERROR_DEVICE_UNAVAILABLE ? kChildDone : 4);
    if (i == 0) std::fclose(std::fopen(std::getenv("RGPU_TEST_MARKER"), "w"));
  }
  _exit(5);  // the server never went
}

// A host function that holds its stream, another queued behind it; then the process ends (or,
// with RGPU_TEST_STAY, waits to be killed), after creating RGPU_TEST_MARKER when set.
TEST(CudaE2EChild, HoldsAHostFunction) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  enter_primary_context();
  CUstream stream;
  if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) _exit(3);
  static Gate gate;  // never let go
  static std::atomic<int> behind{0};
  if (cuLaunchHostFunc(stream, hold, &gate) != CUDA_SUCCESS || cuLaunchHostFunc(stream, count_run, &behind) != CUDA_SUCCESS)
    _exit(4);
  if (!gate.wait_entered()) _exit(5);
  if (const char* marker = std::getenv("RGPU_TEST_MARKER")) std::fclose(std::fopen(marker, "w"));
  if (std::getenv("RGPU_TEST_STAY")) pause();
  _exit(behind.load() == 0 ? kChildDone : 6);
}

TEST(CudaE2EChild, SeesOnlyDeviceOne) {
  if (!g_is_child) GTEST_SKIP() << "runs only as the child process of a CudaE2E test";
  int count = 0;
  char name[64] = {};
  if (cuInit(0) != CUDA_SUCCESS || cuDeviceGetCount(&count) != CUDA_SUCCESS) _exit(1);
  if (count != 1) _exit(2);
  if (cuDeviceGetName(name, sizeof name, 0) != CUDA_SUCCESS) _exit(3);
  if (std::string(name) != "RGPU CUDA test double 1") _exit(4);
  // Locations name the application's device 0, which is the server's device 1: pools and
  // allocation properties must say so both ways.
  CUcontext context = nullptr;
  if (cuDevicePrimaryCtxRetain(&context, 0) != CUDA_SUCCESS || cuCtxSetCurrent(context) != CUDA_SUCCESS) _exit(5);
  CUmemPoolProps props{};
  props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
  props.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  CUmemoryPool pool = nullptr, current = nullptr, by_device = nullptr;
  CUdeviceptr p = 0;
  if (cuMemPoolCreate(&pool, &props) != CUDA_SUCCESS) _exit(6);
  if (cuMemAllocFromPoolAsync(&p, 4096, pool, nullptr) != CUDA_SUCCESS) _exit(7);  // a pool of this context's device
  if (cuMemGetMemPool(&current, &props.location, CU_MEM_ALLOCATION_TYPE_PINNED) != CUDA_SUCCESS ||
      cuDeviceGetMemPool(&by_device, 0) != CUDA_SUCCESS || current != by_device)
    _exit(8);
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location = {CU_MEM_LOCATION_TYPE_DEVICE, 0};
  CUmemGenericAllocationHandle handle = 0;
  CUmemAllocationProp described{};
  if (cuMemCreate(&handle, 2 << 20, &prop, 0) != CUDA_SUCCESS ||
      cuMemGetAllocationPropertiesFromHandle(&described, handle) != CUDA_SUCCESS || described.location.id != 0)
    _exit(9);
  _exit(kChildDone);
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--rgpu-child") g_is_child = true;
  ::testing::InitGoogleTest(&argc, argv);
  if (!g_is_child) {
    CudaPath::instance = new CudaPath;
    ::testing::AddGlobalTestEnvironment(CudaPath::instance);
  }
  return RUN_ALL_TESTS();
}
