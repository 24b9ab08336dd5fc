#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "app_protocol.hpp"
#include "frame.hpp"
#include "messages.hpp"
#include "wire.hpp"

// Records the largest single allocation while a LargestAllocation is alive, so that a test can show
// that a decoder refuses a huge count or length before it allocates for it.
namespace {
std::atomic<bool> g_track_allocations{false};
std::atomic<size_t> g_largest_allocation{0};
}  // namespace

void* operator new(size_t size) {
  if (g_track_allocations.load(std::memory_order_relaxed)) {
    size_t seen = g_largest_allocation.load(std::memory_order_relaxed);
    while (size > seen && !g_largest_allocation.compare_exchange_weak(seen, size)) {
    }
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
// Not inlined: GCC would otherwise see free() on a pointer from operator new (-Wmismatched-new-delete).
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace rgpu {
namespace {

using ::testing::HasSubstr;
using Bytes = std::vector<uint8_t>;

class LargestAllocation {
 public:
  LargestAllocation() {
    g_largest_allocation = 0;
    g_track_allocations = true;
  }
  ~LargestAllocation() { g_track_allocations = false; }
  size_t bytes() const { return g_largest_allocation; }
};

template <size_t N>
std::array<uint8_t, N> pattern(uint8_t seed) {
  std::array<uint8_t, N> a{};
  for (size_t i = 0; i < N; ++i) a[i] = static_cast<uint8_t>(seed * 31 + i * 7);
  return a;
}

template <typename T>
void patch(Bytes& data, size_t offset, T value) {
  ASSERT_LE(offset + sizeof value, data.size());
  std::memcpy(data.data() + offset, &value, sizeof value);
}

template <typename F>
void expect_wire_error(F&& action, const std::string& needle) {
  try {
    action();
    ADD_FAILURE() << "no WireError; expected one mentioning \"" << needle << "\"";
  } catch (const WireError& e) {
    EXPECT_THAT(e.what(), HasSubstr(needle));
  }
}

HelloMsg sample_hello() {
  HelloMsg m;
  m.min_version = 1;
  m.max_version = 0x0203;
  m.client_nonce = pattern<32>(1);
  m.client_name = "rgpu client on host-α";
  return m;
}

ChallengeMsg sample_challenge() {
  ChallengeMsg m;
  m.version = 7;
  m.server_id = 0xdeadbeef;
  m.auth_required = true;
  m.server_nonce = pattern<32>(2);
  m.server_name = "gpu-box-3";
  return m;
}

AuthResponseMsg sample_auth_response() {
  AuthResponseMsg m;
  m.client_mac = pattern<32>(3);
  return m;
}

WelcomeMsg sample_welcome() {
  WelcomeMsg m;
  m.server_mac = pattern<32>(4);
  m.token_name = "ci-runners";
  m.allowed_gpus = {0, 3, 0xffffffff};
  m.max_memory = 0x0123456789abcdefull;
  return m;
}

ErrorMsg sample_error() {
  ErrorMsg m;
  m.code = ErrorCode::TooManyClients;
  m.message = "too many clients (16 of 16)";
  return m;
}

GpuInfo sample_gpu(uint32_t i) {
  GpuInfo g;
  g.index = i;
  g.name = "NVIDIA H100 80GB HBM3 #" + std::to_string(i);
  g.type = static_cast<GpuType>(i % 5);
  g.vram_bytes = (uint64_t{80} << 30) + i;
  g.cuda = i % 2 == 0;
  g.vulkan = i % 3 != 0;
  g.cuda_ordinal = static_cast<int32_t>(i) - 1;
  g.vulkan_ordinal = -static_cast<int32_t>(i) - 2;
  g.compute_major = 9;
  g.compute_minor = i;
  g.uuid = pattern<16>(static_cast<uint8_t>(10 + i));
  g.pci_bus_id = "0000:3b:0" + std::to_string(i) + ".0";
  g.vulkan_api_version = (1u << 22) | (3u << 12) | 280;
  g.vendor_id = 0x10de;
  g.device_id = 0x2330 + i;
  g.driver = "NVIDIA 550.54.15";
  return g;
}

GpuListMsg sample_gpu_list() {
  GpuListMsg m;
  m.server_id = 0x01020304;
  for (uint32_t i = 0; i < 5; ++i) m.gpus.push_back(sample_gpu(i));
  return m;
}

void expect_same_gpu(const GpuInfo& a, const GpuInfo& b) {
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.vram_bytes, b.vram_bytes);
  EXPECT_EQ(a.cuda, b.cuda);
  EXPECT_EQ(a.vulkan, b.vulkan);
  EXPECT_EQ(a.cuda_ordinal, b.cuda_ordinal);
  EXPECT_EQ(a.vulkan_ordinal, b.vulkan_ordinal);
  EXPECT_EQ(a.compute_major, b.compute_major);
  EXPECT_EQ(a.compute_minor, b.compute_minor);
  EXPECT_EQ(a.uuid, b.uuid);
  EXPECT_EQ(a.pci_bus_id, b.pci_bus_id);
  EXPECT_EQ(a.vulkan_api_version, b.vulkan_api_version);
  EXPECT_EQ(a.vendor_id, b.vendor_id);
  EXPECT_EQ(a.device_id, b.device_id);
  EXPECT_EQ(a.driver, b.driver);
}

// ---- Round trips ----

TEST(MessagesRoundTrip, Hello) {
  const HelloMsg in = sample_hello();
  const Bytes wire = encode(in);
  // The first four bytes (min and max version) never change layout.
  ASSERT_GE(wire.size(), 4u);
  EXPECT_EQ(wire[0], 1);
  EXPECT_EQ(wire[1], 0);
  EXPECT_EQ(wire[2], 3);
  EXPECT_EQ(wire[3], 2);
  const HelloMsg out = decode_hello(wire);
  EXPECT_EQ(out.min_version, in.min_version);
  EXPECT_EQ(out.max_version, in.max_version);
  EXPECT_EQ(out.client_nonce, in.client_nonce);
  EXPECT_EQ(out.client_name, in.client_name);
}

TEST(MessagesRoundTrip, Challenge) {
  for (bool auth : {true, false}) {
    ChallengeMsg in = sample_challenge();
    in.auth_required = auth;
    const ChallengeMsg out = decode_challenge(encode(in));
    EXPECT_EQ(out.version, in.version);
    EXPECT_EQ(out.server_id, in.server_id);
    EXPECT_EQ(out.auth_required, auth);
    EXPECT_EQ(out.server_nonce, in.server_nonce);
    EXPECT_EQ(out.server_name, in.server_name);
  }
}

TEST(MessagesRoundTrip, AuthResponse) {
  const AuthResponseMsg in = sample_auth_response();
  const Bytes wire = encode(in);
  EXPECT_EQ(wire.size(), 32u);
  EXPECT_EQ(decode_auth_response(wire).client_mac, in.client_mac);
}

TEST(MessagesRoundTrip, Welcome) {
  const WelcomeMsg in = sample_welcome();
  const WelcomeMsg out = decode_welcome(encode(in));
  EXPECT_EQ(out.server_mac, in.server_mac);
  EXPECT_EQ(out.token_name, in.token_name);
  EXPECT_EQ(out.allowed_gpus, in.allowed_gpus);
  EXPECT_EQ(out.max_memory, in.max_memory);

  const WelcomeMsg open = decode_welcome(encode(WelcomeMsg{}));
  EXPECT_EQ(open.server_mac, Mac{});
  EXPECT_TRUE(open.token_name.empty());
  EXPECT_TRUE(open.allowed_gpus.empty());
  EXPECT_EQ(open.max_memory, 0u);
}

TEST(MessagesRoundTrip, Error) {
  const ErrorMsg in = sample_error();
  const ErrorMsg out = decode_error(encode(in));
  EXPECT_EQ(out.code, in.code);
  EXPECT_EQ(out.message, in.message);
}

TEST(MessagesRoundTrip, GpuListWithSeveralGpus) {
  const GpuListMsg in = sample_gpu_list();
  const GpuListMsg out = decode_gpu_list(encode(in));
  EXPECT_EQ(out.server_id, in.server_id);
  ASSERT_EQ(out.gpus.size(), in.gpus.size());
  for (size_t i = 0; i < in.gpus.size(); ++i) {
    SCOPED_TRACE(i);
    expect_same_gpu(out.gpus[i], in.gpus[i]);
  }
}

TEST(MessagesRoundTrip, GpuListEmptyAndAtLimit) {
  EXPECT_TRUE(decode_gpu_list(encode(GpuListMsg{})).gpus.empty());
  GpuListMsg full;
  full.gpus.resize(kMaxGpusPerServer);
  EXPECT_EQ(decode_gpu_list(encode(full)).gpus.size(), kMaxGpusPerServer);
}

TEST(MessagesRoundTrip, NamesAtLengthLimit) {
  HelloMsg hello = sample_hello();
  hello.client_name.assign(kMaxNameLength, 'n');
  EXPECT_EQ(decode_hello(encode(hello)).client_name, hello.client_name);
  ErrorMsg error = sample_error();
  error.message.assign(kMaxWireString, 'e');
  EXPECT_EQ(decode_error(encode(error)).message, error.message);
}

// ---- Every decoder against truncation and trailing bytes ----

struct Case {
  const char* name;
  Bytes wire;
  std::function<void(std::span<const uint8_t>)> decode;
};

std::vector<Case> all_messages() {
  return {
      {"Hello", encode(sample_hello()), [](auto d) { decode_hello(d); }},
      {"Challenge", encode(sample_challenge()), [](auto d) { decode_challenge(d); }},
      {"AuthResponse", encode(sample_auth_response()), [](auto d) { decode_auth_response(d); }},
      {"Welcome", encode(sample_welcome()), [](auto d) { decode_welcome(d); }},
      {"Error", encode(sample_error()), [](auto d) { decode_error(d); }},
      {"GpuList", encode(sample_gpu_list()), [](auto d) { decode_gpu_list(d); }},
  };
}

TEST(MessagesMalformed, TruncatedAtEveryByte) {
  for (const Case& c : all_messages()) {
    SCOPED_TRACE(c.name);
    ASSERT_NO_THROW(c.decode(c.wire));
    for (size_t len = 0; len < c.wire.size(); ++len) {
      SCOPED_TRACE(len);
      expect_wire_error([&] { c.decode(std::span(c.wire).first(len)); }, std::string(c.name) + ": truncated");
    }
  }
}

TEST(MessagesMalformed, TrailingBytes) {
  for (const Case& c : all_messages()) {
    SCOPED_TRACE(c.name);
    for (size_t extra : {1, 4, 100}) {
      Bytes wire = c.wire;
      wire.resize(wire.size() + extra, 0);
      expect_wire_error([&] { c.decode(wire); },
                        std::string(c.name) + ": " + std::to_string(extra) + " unexpected trailing bytes");
    }
  }
}

// ---- Counts and lengths past their limits ----

TEST(MessagesMalformed, GpuListHugeCountRejectedBeforeAllocating) {
  for (uint32_t count : {kMaxGpusPerServer + 1, 1000000u, 0xffffffffu}) {
    Bytes wire = encode(sample_gpu_list());
    patch<uint32_t>(wire, 4, count);
    LargestAllocation largest;
    expect_wire_error([&] { decode_gpu_list(wire); }, std::to_string(count) + " GPUs is over the limit");
    EXPECT_LT(largest.bytes(), 4096u);
  }
}

TEST(MessagesMalformed, WelcomeHugeCountRejectedBeforeAllocating) {
  WelcomeMsg welcome = sample_welcome();
  Bytes wire = encode(welcome);
  const size_t count_offset = 32 + 4 + welcome.token_name.size();
  for (uint32_t count : {kMaxGpusPerServer + 1, 1000000u, 0xffffffffu}) {
    patch<uint32_t>(wire, count_offset, count);
    LargestAllocation largest;
    expect_wire_error([&] { decode_welcome(wire); }, "allowed GPUs is over the limit");
    EXPECT_LT(largest.bytes(), 4096u);
  }
}

TEST(MessagesMalformed, StringLengthOverLimitRejectedBeforeAllocating) {
  struct StringCase {
    const char* name;
    Bytes wire;
    size_t length_offset;
    uint32_t limit;
    std::function<void(std::span<const uint8_t>)> decode;
  };
  const std::vector<StringCase> cases{
      {"Hello", encode(sample_hello()), 36, kMaxNameLength, [](auto d) { decode_hello(d); }},
      {"Challenge", encode(sample_challenge()), 39, kMaxNameLength, [](auto d) { decode_challenge(d); }},
      {"Welcome", encode(sample_welcome()), 32, kMaxNameLength, [](auto d) { decode_welcome(d); }},
      {"Error", encode(sample_error()), 4, kMaxWireString, [](auto d) { decode_error(d); }},
      {"GpuList", encode(sample_gpu_list()), 12, kMaxNameLength, [](auto d) { decode_gpu_list(d); }},
  };
  for (const StringCase& c : cases) {
    SCOPED_TRACE(c.name);
    for (uint32_t length : {c.limit + 1, 0x7fffffffu, 0xffffffffu}) {
      Bytes wire = c.wire;
      patch<uint32_t>(wire, c.length_offset, length);
      LargestAllocation largest;
      expect_wire_error([&] { c.decode(wire); }, std::string(c.name) + ": field of " + std::to_string(length) +
                                                     " bytes is over its limit of " + std::to_string(c.limit));
      EXPECT_LT(largest.bytes(), 4096u);
    }
  }
}

// GpuList layout: server_id u32, count u32, then per GPU: index u32, name (u32 + bytes), type u8,
// vram u64, cuda u8, vulkan u8, ...
size_t first_gpu_type_offset(const GpuListMsg& m) { return 4 + 4 + 4 + 4 + m.gpus[0].name.size(); }

TEST(MessagesMalformed, BadBoolByte) {
  Bytes challenge = encode(sample_challenge());
  for (uint8_t value : {uint8_t{2}, uint8_t{0xff}}) {
    patch<uint8_t>(challenge, 6, value);
    expect_wire_error([&] { decode_challenge(challenge); },
                      "Challenge.auth_required: boolean field holds " + std::to_string(value));
  }

  const GpuListMsg list = sample_gpu_list();
  const size_t cuda_offset = first_gpu_type_offset(list) + 1 + 8;
  for (auto [offset, field] : {std::pair{cuda_offset, "GpuList.cuda"}, std::pair{cuda_offset + 1, "GpuList.vulkan"}}) {
    Bytes wire = encode(list);
    ASSERT_LE(wire[offset], 1);
    patch<uint8_t>(wire, offset, 2);
    expect_wire_error([&] { decode_gpu_list(wire); }, std::string(field) + ": boolean field holds 2");
  }
}

TEST(MessagesMalformed, UnknownGpuType) {
  const GpuListMsg list = sample_gpu_list();
  const size_t offset = first_gpu_type_offset(list);
  for (uint8_t type : {uint8_t{5}, uint8_t{0x80}, uint8_t{0xff}}) {
    Bytes wire = encode(list);
    patch<uint8_t>(wire, offset, type);
    expect_wire_error([&] { decode_gpu_list(wire); }, "unknown GPU type " + std::to_string(type));
  }
  for (uint8_t type = 0; type <= static_cast<uint8_t>(GpuType::Cpu); ++type) {
    Bytes wire = encode(list);
    patch<uint8_t>(wire, offset, type);
    EXPECT_EQ(decode_gpu_list(wire).gpus[0].type, static_cast<GpuType>(type));
  }
}

TEST(MessagesNames, KnownAndUnknown) {
  EXPECT_STREQ(msg_type_name(static_cast<uint16_t>(MsgType::GpuList)), "GpuList");
  EXPECT_STREQ(msg_type_name(0x7777), "unknown");
  EXPECT_STREQ(error_code_name(ErrorCode::AuthFailed), "authentication failed");
  EXPECT_STREQ(error_code_name(static_cast<ErrorCode>(999)), "unknown error");
  EXPECT_STREQ(gpu_type_name(GpuType::DiscreteGpu), "DiscreteGpu");
}

// The client daemon's check of a ring frame's RingSpec, at the edges of the ring and the frame.
TEST(AppProtocol, RingSpecInsideTheRing) {
  constexpr uint64_t ring = 1u << 20;
  EXPECT_TRUE(ring_spec_fits(RingSpec{0, ring, 0, ring}, ring, 0));
  EXPECT_TRUE(ring_spec_fits(RingSpec{ring, 0, ring, 0}, ring, 0));
  EXPECT_FALSE(ring_spec_fits(RingSpec{ring + 1, 0, 0, 0}, ring, 0));
  EXPECT_FALSE(ring_spec_fits(RingSpec{1, ring, 0, 0}, ring, 0));
  EXPECT_FALSE(ring_spec_fits(RingSpec{0, 0, 8, ring}, ring, 0));
  // Offset and length that wrap around 2^64 are outside too.
  EXPECT_FALSE(ring_spec_fits(RingSpec{16, ~uint64_t{0} - 8, 0, 0}, ring, 0));
  EXPECT_FALSE(ring_spec_fits(RingSpec{0, 0, ~uint64_t{0}, 2}, ring, 0));
  // The frame to the server: inline bytes and ring bytes, at most kMaxFramePayload.
  constexpr uint64_t big = uint64_t{kMaxFramePayload} * 2;
  EXPECT_TRUE(ring_spec_fits(RingSpec{0, kMaxFramePayload - 10, 0, 0}, big, 10));
  EXPECT_FALSE(ring_spec_fits(RingSpec{0, kMaxFramePayload - 9, 0, 0}, big, 10));
  EXPECT_FALSE(ring_spec_fits(RingSpec{0, 0, 0, 0}, big, uint64_t{kMaxFramePayload} + 1));
}

}  // namespace
}  // namespace rgpu
