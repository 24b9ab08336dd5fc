// The server's Vulkan executor driven call by call over a real loopback connection, with lavapipe
// as its GPU: malformed or unknown calls get a reason, and the session goes on.
#include <gtest/gtest.h>

#include <functional>
#include <thread>
#include <tuple>

#include "app_protocol.hpp"
#include "server/server.hpp"
#include "session.hpp"
#include "vk_codec.gen.hpp"
#include "vk_commands.gen.hpp"
#include "vulkan_wire.hpp"
#include "wire.hpp"

namespace rgpu {
namespace {

class VulkanServer : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerSettings settings;
    settings.bind = "127.0.0.1";
    settings.port = 0;
    GpuInfo gpu;
    gpu.index = 0;
    gpu.name = "lavapipe";
    gpu.vulkan = true;
    gpu.vulkan_ordinal = 0;
    settings.gpus = {gpu};
    settings.worker_executable = RGPU_BINARY;
    server_ = std::make_unique<Server>(settings);
    server_->start();
    thread_ = std::thread([this] { server_->run(); });
    SessionOptions options;
    options.server = {"127.0.0.1", server_->port()};
    options.tls = TlsMode::Off;  // the server has no certificate
    options.timeout = std::chrono::seconds(20);
    session_ = Session::connect(options);
    SessionOpenMsg open;
    open.gpu_indices = {0};
    session_->open_application_session(AppApi::Vulkan, encode(open));
  }
  void TearDown() override {
    session_.reset();
    server_->stop();
    thread_.join();
  }

  Frame call(uint16_t type, std::span<const uint8_t> payload, uint16_t flags = 0) {
    const uint64_t id = session_->next_request_id();
    session_->channel().send_frame(type, id, payload, flags);
    if (flags & kFrameNoReply) return {};
    for (;;) {
      Frame frame = session_->channel().receive_frame();
      if (frame.header.request_id == id) return frame;
    }
  }

  // A VulkanCall and its reply: the VkResult and the rest (outputs, or the reason of a failure).
  std::pair<VkResult, std::string> vulkan(const WireWriter& payload, uint16_t flags = 0) {
    const Frame reply = call(vk::kMsgVulkanCall, const_cast<WireWriter&>(payload).buffer(), flags);
    if (flags & kFrameNoReply) return {VK_SUCCESS, ""};
    EXPECT_EQ(reply.header.type, vk::kMsgVulkanReply);
    WireReader reader(reply.payload);
    const auto header = reader.get<vk::ReplyHeader>();
    const auto rest = reader.rest();
    return {static_cast<VkResult>(header.result), std::string(rest.begin(), rest.end())};
  }

  // A device (id 77) with one queue of family 0.
  void create_device() {
    const float priority = 1;
    const VkDeviceQueueCreateInfo queue{VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, nullptr, 0, 0, 1, &priority};
    const VkDeviceCreateInfo info{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, nullptr, 0, 1, &queue, 0, nullptr, 0, nullptr,
                                  nullptr};
    WireWriter create;
    create.put(vk::CMD_CreateDevice).put<uint32_t>(0).put<uint64_t>(77);
    vk::put(create, info);
    ASSERT_EQ(vulkan(create).first, VK_SUCCESS);
  }

  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::unique_ptr<Session> session_;
};

TEST_F(VulkanServer, UnknownCommandIsNotForwarded) {
  WireWriter w;
  w.put<uint32_t>(0x12345678);
  const auto [result, why] = vulkan(w);
  EXPECT_EQ(result, VK_ERROR_FEATURE_NOT_PRESENT);
  EXPECT_NE(why.find("is not forwarded by this server"), std::string::npos) << why;
}

TEST_F(VulkanServer, TruncatedCallGetsAReasonAndTheSessionGoesOn) {
  WireWriter truncated;
  truncated.put(vk::CMD_CreateDevice).put<uint32_t>(0);
  const auto [result, why] = vulkan(truncated);
  EXPECT_EQ(result, VK_ERROR_DEVICE_LOST);
  EXPECT_NE(why.find("malformed call"), std::string::npos) << why;
  // The session still answers.
  WireWriter describe;
  describe.put(vk::CMD_DescribePhysicalDevices);
  const auto [described, devices] = vulkan(describe);
  EXPECT_EQ(described, VK_SUCCESS);
  EXPECT_EQ(vk::decode_physical_devices({reinterpret_cast<const uint8_t*>(devices.data()), devices.size()}).size(), 1u);
}

TEST_F(VulkanServer, UnknownHandleInAPipelinedCallFailsTheNextCallThatWaits) {
  WireWriter destroy;
  destroy.put(vk::CMD_vkDestroyBuffer).put<uint64_t>(999).put<uint64_t>(5);
  vulkan(destroy, kFrameNoReply);
  WireWriter pull;
  pull.put(vk::CMD_PullMemory);
  const auto [result, why] = vulkan(pull);
  EXPECT_EQ(result, VK_ERROR_DEVICE_LOST);
  EXPECT_NE(why.find("an earlier call failed: vkDestroyBuffer: malformed call: device 999 is not a live device"),
            std::string::npos)
      << why;
}

TEST_F(VulkanServer, OutOfRangeDeviceIsRefused) {
  WireWriter create;
  create.put(vk::CMD_CreateDevice).put<uint32_t>(3).put<uint64_t>(77);
  const VkDeviceCreateInfo info{VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, nullptr, 0, 0, nullptr, 0, nullptr, 0, nullptr,
                                nullptr};
  vk::put(create, info);
  const auto [result, why] = vulkan(create);
  EXPECT_EQ(result, VK_ERROR_DEVICE_LOST);
  EXPECT_NE(why.find("device 3 is not one of this session's 1"), std::string::npos) << why;
}

// pNext chains inside chained structs, nested deeper than any real program does: refused.
TEST_F(VulkanServer, DeeplyNestedChainsAreRefused) {
  // Each level: a VkPhysicalDeviceVulkan11Features whose own pNext holds the next level.
  std::function<void(WireWriter&, int)> nest = [&](WireWriter& w, int levels) {
    w.put<uint32_t>(levels > 0 ? 1 : 0);
    if (levels == 0) return;
    w.put<uint32_t>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES);
    w.put<uint32_t>(VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES);
    nest(w, levels - 1);
    for (int i = 0; i < 12; ++i) w.put<uint32_t>(0);
  };
  WireWriter create;
  create.put(vk::CMD_CreateDevice).put<uint32_t>(0).put<uint64_t>(77);
  create.put<uint32_t>(VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO);
  nest(create, 40);
  const auto [result, why] = vulkan(create);
  EXPECT_EQ(result, VK_ERROR_DEVICE_LOST);
  EXPECT_NE(why.find("nested more than 8 deep"), std::string::npos) << why;
}

// A count that would make the server allocate far more than the call's bytes: refused before
// anything is allocated.
TEST_F(VulkanServer, CountsThatWouldNeedTooMuchMemoryAreRefused) {
  create_device();

  const uint32_t writes = 8u << 20;  // 8 Mi VkWriteDescriptorSet: 512 MiB in memory
  WireWriter update;
  update.put(vk::CMD_vkUpdateDescriptorSets).put<uint64_t>(77).put<uint32_t>(writes).put<uint8_t>(1);
  update.put<uint64_t>(writes);
  update.buffer().resize(update.buffer().size() + writes, 0);
  const auto [result, why] = vulkan(update);
  EXPECT_EQ(result, VK_ERROR_DEVICE_LOST);
  EXPECT_NE(why.find("need more than 256 MiB"), std::string::npos) << why;
}


// A pointer the specification does not let be NULL, sent as absent: refused before anything reads
// through it (vkAllocateCommandBuffers took the count of its ids from it: the worker crashed).
TEST_F(VulkanServer, MissingRequiredPointersAreRefused) {
  create_device();
  WireWriter allocate;
  allocate.put(vk::CMD_vkAllocateCommandBuffers).put<uint64_t>(77).put<uint8_t>(0).put<uint64_t>(5);
  auto [result, why] = vulkan(allocate);
  EXPECT_EQ(result, VK_ERROR_DEVICE_LOST);
  EXPECT_NE(why.find("vkAllocateCommandBuffers: pAllocateInfo is missing"), std::string::npos) << why;
  // An array may be absent when its count is 0, not otherwise.
  WireWriter reset;
  reset.put(vk::CMD_vkResetFences).put<uint64_t>(77).put<uint32_t>(1).put<uint8_t>(0);
  std::tie(result, why) = vulkan(reset);
  EXPECT_NE(why.find("vkResetFences: pFences is missing"), std::string::npos) << why;
  WireWriter none;
  none.put(vk::CMD_vkResetFences).put<uint64_t>(77).put<uint32_t>(0).put<uint8_t>(0);
  EXPECT_EQ(vulkan(none).first, VK_SUCCESS);
}

// The ids of new objects are checked before the driver makes them: memory made under an id that
// cannot be tracked was never freed, and its bytes stayed counted against the token.
TEST_F(VulkanServer, NewObjectsNeedNewIds) {
  create_device();
  auto allocate = [&](uint64_t id) {
    WireWriter w;
    w.put(vk::CMD_vkAllocateMemory).put<uint64_t>(77).put<uint8_t>(1);
    vk::put(w, VkMemoryAllocateInfo{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO, nullptr, 4096, 0});
    w.put(id);
    return vulkan(w);
  };
  auto [result, why] = allocate(0);
  EXPECT_EQ(result, VK_ERROR_DEVICE_LOST);
  EXPECT_NE(why.find("an object was created with id 0"), std::string::npos) << why;
  EXPECT_EQ(allocate(5).first, VK_SUCCESS);
  std::tie(result, why) = allocate(5);
  EXPECT_NE(why.find("id 5 is already in use"), std::string::npos) << why;
  std::tie(result, why) = allocate(77);  // the device's own id
  EXPECT_NE(why.find("id 77 is already in use"), std::string::npos) << why;
}

}  // namespace
}  // namespace rgpu
