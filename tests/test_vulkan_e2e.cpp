// The Vulkan path end to end: an unmodified program's loader finds RGPU's ICD (through the
// build-tree manifest), which asks `rgpu client`, which opens a Vulkan session on `rgpu server`,
// whose GPU is Mesa's lavapipe. What the program learns must be what lavapipe itself reports.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include "app_link.hpp"
#include "rgpu_process.hpp"
#include "vulkan_wire.hpp"

namespace {

using rgpu::test::CommandResult;
using rgpu::test::run_program;
using rgpu::test::ServerProcess;
using rgpu::test::TempDir;

// Lines of the dump that may differ between lavapipe seen directly and through RGPU.
// - extensions: RGPU advertises only the device extensions it forwards.
const std::set<std::string> kMayDiffer = {"gpu0.extensions"};

std::map<std::string, std::string> parse_dump(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto colon = line.find(": ");
    if (colon != std::string::npos) out[line.substr(0, colon)] = line.substr(colon + 2);
  }
  return out;
}

std::set<std::string> words(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string w; in >> w;) out.insert(w);
  return out;
}

class VulkanPath : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    const std::string config = dir_->file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n");
    // The server's loader sees lavapipe only, whatever else this machine has.
    server_ = new ServerProcess({"--config", config, "--tls", "off"}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
    socket_ = dir_->path() + "/client.sock";
    client_ = new ServerProcess({"--server", server_->address(), "--tls", "off", "--socket", socket_}, {}, "client");
  }
  static void TearDownTestSuite() {
    delete client_;
    delete server_;
    delete dir_;
  }

  static std::vector<std::string> icd_env(const std::string& socket) {
    return {"VK_DRIVER_FILES=" RGPU_ICD_MANIFEST, "RGPU_CLIENT_SOCKET=" + socket, "XDG_RUNTIME_DIR=" + dir_->path()};
  }

  static inline TempDir* dir_ = nullptr;
  static inline ServerProcess* server_ = nullptr;
  static inline ServerProcess* client_ = nullptr;
  static inline std::string socket_;
};

TEST_F(VulkanPath, ProgramSeesTheServersDeviceAsLavapipeReportsIt) {
  const CommandResult direct = run_program({VULKAN_DUMP}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  ASSERT_EQ(direct.exit_code, 0) << direct.out << direct.err;
  const CommandResult remote = run_program({VULKAN_DUMP}, icd_env(socket_));
  ASSERT_EQ(remote.exit_code, 0) << remote.out << remote.err << "\nserver:\n" << server_->log();
  auto expected = parse_dump(direct.out);
  auto actual = parse_dump(remote.out);
  ASSERT_EQ(expected["devices"], "1") << "lavapipe alone should show one device:\n" << direct.out;
  ASSERT_EQ(actual["devices"], "1") << remote.out << remote.err;
  EXPECT_NE(actual["gpu0.deviceName"].find("llvmpipe"), std::string::npos) << actual["gpu0.deviceName"];
  // The program's log names the server the device comes from.
  EXPECT_NE(remote.err.find("from server " + server_->address()), std::string::npos) << remote.err;

  size_t compared = 0;
  for (const auto& [key, value] : expected) {
    if (kMayDiffer.count(key)) continue;
    ++compared;
    EXPECT_EQ(actual[key], value) << key << " differs through RGPU";
  }
  // The core Vulkan 1.1-1.3 structs and every core format were among them.
  EXPECT_TRUE(expected.count("gpu0.VkPhysicalDeviceVulkan13Properties"));
  EXPECT_TRUE(expected.count("gpu0.VkPhysicalDeviceVulkan12Features"));
  EXPECT_GT(compared, 250u);
  const auto advertised = words(actual["gpu0.extensions"]);
  for (const auto& extension : advertised)
    EXPECT_TRUE(words(expected["gpu0.extensions"]).count(extension)) << extension << " is not lavapipe's";
  // Extensions with device state or commands are forwarded too, not only informational ones;
  // those RGPU cannot carry (swapchains, external memory) are not offered.
  EXPECT_TRUE(advertised.count("VK_KHR_synchronization2")) << actual["gpu0.extensions"];
  EXPECT_TRUE(advertised.count("VK_KHR_dynamic_rendering")) << actual["gpu0.extensions"];
  EXPECT_FALSE(advertised.count("VK_KHR_swapchain")) << actual["gpu0.extensions"];
  EXPECT_FALSE(advertised.count("VK_KHR_external_memory_fd")) << actual["gpu0.extensions"];
  EXPECT_NE(server_->log().find("Vulkan session for"), std::string::npos) << server_->log();
}

TEST_F(VulkanPath, InstanceCreationFailsWithAReasonWhenTheDaemonIsUnreachable) {
  const CommandResult result = run_program({VULKAN_DUMP}, icd_env(dir_->path() + "/no-daemon.sock"));
  EXPECT_EQ(result.exit_code, 1) << result.out;
  EXPECT_NE(result.err.find("cannot reach the RGPU client daemon at " + dir_->path() + "/no-daemon.sock"),
            std::string::npos)
      << result.err;
}

// vulkaninfo creates a device for every GPU before it prints anything.
TEST_F(VulkanPath, VulkaninfoSummaryListsTheRemoteDevice) {
  if (std::string(VULKANINFO).empty()) GTEST_SKIP() << "vulkaninfo is not installed";
  const CommandResult result = run_program({VULKANINFO, "--summary"}, icd_env(socket_));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("deviceName         = llvmpipe"), std::string::npos) << result.out;
  EXPECT_NE(result.out.find("driverName         = llvmpipe"), std::string::npos) << result.out;
}

// vulkaninfo's JSON profile (properties, limits, features, formats, queue families, memory) is
// lavapipe's own, value for value; only what belongs to extensions RGPU does not offer is absent.
TEST_F(VulkanPath, VulkaninfoJsonMatchesLavapipe) {
  if (std::string(VULKANINFO).empty()) GTEST_SKIP() << "vulkaninfo is not installed";
  const std::string direct_file = dir_->path() + "/direct.json", remote_file = dir_->path() + "/remote.json";
  const CommandResult direct =
      run_program({VULKANINFO, "--json", "-o", direct_file}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  ASSERT_EQ(direct.exit_code, 0) << direct.err;
  const CommandResult remote = run_program({VULKANINFO, "--json", "-o", remote_file}, icd_env(socket_));
  ASSERT_EQ(remote.exit_code, 0) << remote.err;
  const auto expected = nlohmann::json::parse(std::ifstream(direct_file));
  const auto actual = nlohmann::json::parse(std::ifstream(remote_file));
  const auto& extensions = actual["capabilities"]["device"]["extensions"];
  ASSERT_FALSE(extensions.empty());
  size_t compared = 0, absent = 0;
  std::vector<std::string> differences;
  // Walks lavapipe's document: every value RGPU shows must be the same; a missing key is allowed
  // only under an extension name, a struct name, or a format's extension struct.
  std::function<void(const nlohmann::json&, const nlohmann::json&, const std::string&)> walk =
      [&](const nlohmann::json& want, const nlohmann::json& got, const std::string& path) {
        if (want.is_object()) {
          for (const auto& [key, value] : want.items()) {
            if (!got.contains(key)) {
              ++absent;
              const bool extension_part = key.rfind("VK_", 0) == 0 && path.find("/extensions") != std::string::npos;
              const bool struct_part = key.rfind("VkPhysicalDevice", 0) == 0 || key.rfind("VkSubpass", 0) == 0;
              if (!extension_part && !struct_part) differences.push_back(path + "/" + key + " is missing");
              continue;
            }
            walk(value, got[key], path + "/" + key);
          }
          return;
        }
        ++compared;
        if (want != got) differences.push_back(path + ": " + want.dump() + " vs " + got.dump());
      };
  walk(expected, actual, "");
  for (const auto& d : differences) ADD_FAILURE() << d;
  EXPECT_GT(compared, 1000u) << "values compared";
  // Every extension RGPU offers is one lavapipe has.
  for (const auto& [name, version] : extensions.items())
    EXPECT_TRUE(expected["capabilities"]["device"]["extensions"].contains(name)) << name;
}

// A real compute program (storage buffers, descriptor sets, push constants, specialization,
// dispatches, barriers, mapped memory rewritten between submissions, coherent and flushed
// memory) prints the same results through RGPU as on lavapipe directly.
TEST_F(VulkanPath, ComputeProgramGetsLavapipesResults) {
#ifndef VULKAN_COMPUTE
  GTEST_SKIP() << "built without glslangValidator: no compute program";
#else
  const CommandResult direct = run_program({VULKAN_COMPUTE}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  ASSERT_EQ(direct.exit_code, 0) << direct.out << direct.err;
  // Once with the kernel's write tracking (where it has it), once comparing all mapped memory.
  for (const char* tracking : {"kernel", "compare"}) {
    auto env = icd_env(socket_);
    env.push_back(std::string("RGPU_VK_WRITE_TRACKING=") + tracking);
    const CommandResult remote = run_program({VULKAN_COMPUTE}, env);
    ASSERT_EQ(remote.exit_code, 0) << tracking << remote.out << remote.err << "\nserver:\n" << server_->log();
    EXPECT_EQ(remote.out, direct.out) << tracking;
    EXPECT_NE(remote.out.find("PASS"), std::string::npos) << remote.out;
  }
#endif
}

// Offscreen rendering, with a render pass and with dynamic rendering: the same pixels.
TEST_F(VulkanPath, RenderProgramGetsLavapipesPixels) {
#ifndef VULKAN_RENDER
  GTEST_SKIP() << "built without glslangValidator: no render program";
#else
  for (const std::vector<std::string>& args : {std::vector<std::string>{VULKAN_RENDER},
                                               std::vector<std::string>{VULKAN_RENDER, "--dynamic-rendering"}}) {
    const CommandResult direct = run_program(args, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
    ASSERT_EQ(direct.exit_code, 0) << direct.out << direct.err;
    const CommandResult remote = run_program(args, icd_env(socket_));
    ASSERT_EQ(remote.exit_code, 0) << remote.out << remote.err << "\nserver:\n" << server_->log();
    EXPECT_EQ(remote.out, direct.out) << args.back();
    EXPECT_NE(remote.out.find("hash 0x"), std::string::npos) << remote.out;
  }
#endif
}

// Threads that wait (a timeline semaphore, a fence) while the main thread goes on calling and
// only then signals: the waits do not hold up the other threads' calls.
TEST_F(VulkanPath, WaitingThreadsDoNotHoldUpTheOthers) {
  const CommandResult direct = run_program({VULKAN_THREADS}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  ASSERT_EQ(direct.exit_code, 0) << direct.out << direct.err;
  const CommandResult remote = run_program({VULKAN_THREADS}, icd_env(socket_));
  ASSERT_EQ(remote.exit_code, 0) << remote.out << remote.err << "\nserver:\n" << server_->log();
  EXPECT_EQ(remote.out, direct.out);
}

// A program that exits without destroying anything: the server destroys its device and objects
// when the connection closes, and the next program is served as before.
TEST_F(VulkanPath, ServerReleasesWhatAVanishedProgramLeft) {
#ifndef VULKAN_COMPUTE
  GTEST_SKIP() << "built without glslangValidator: no compute program";
#else
  const CommandResult leaving = run_program({VULKAN_COMPUTE, "--exit-without-cleanup"}, icd_env(socket_));
  ASSERT_EQ(leaving.exit_code, 0) << leaving.out << leaving.err;
  EXPECT_NE(leaving.out.find("PASS (exiting without cleanup)"), std::string::npos) << leaving.out;
  // The session closes once the server has seen the connection go; its log line says what it
  // freed. Wait for it with a deadline.
  std::string log;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    log = server_->log();
  } while (log.find("released 1 device(s)") == std::string::npos && std::chrono::steady_clock::now() < deadline);
  EXPECT_NE(log.find("released 1 device(s) and "), std::string::npos) << log;
  const CommandResult next = run_program({VULKAN_COMPUTE}, icd_env(socket_));
  EXPECT_EQ(next.exit_code, 0) << next.out << next.err;
#endif
}

// A server (lavapipe) with one token, and a client daemon that uses it.
// An application that gives back a ring slot it was never given is told so and cut off; the
// daemon goes on serving the others.
TEST_F(VulkanPath, DaemonRefusesAForgedRingRelease) {
  std::string error;
  const int fd = rgpu::connect_unix(socket_, error);
  ASSERT_GE(fd, 0) << error;
  rgpu::AppHelloMsg hello;
  hello.pid = static_cast<uint32_t>(::getpid());
  hello.program = "forger";
  hello.api = rgpu::AppApi::Vulkan;
  rgpu::FrameDecoder decoder(rgpu::kMaxFramePayload, rgpu::kFrameRing);
  rgpu::AppWelcomeMsg welcome;
  int ring_fd = -1;
  const auto hello_frame = rgpu::encode_frame(static_cast<uint16_t>(rgpu::AppMsg::AppHello), 0, rgpu::encode(hello));
  ASSERT_TRUE(rgpu::exchange_hello(fd, decoder, hello_frame, welcome, ring_fd, error)) << error;
  ::close(ring_fd);
  const uint64_t slot = rgpu::vk::vulkan_ring_layout(welcome.ring_size).incoming_base;
  const auto forged = rgpu::encode_frame(static_cast<uint16_t>(rgpu::AppMsg::RingRelease), 0,
                                         rgpu::encode(rgpu::RingReleaseMsg{slot, 16}));
  const iovec part{const_cast<uint8_t*>(forged.data()), forged.size()};
  ASSERT_TRUE(rgpu::write_all(fd, {&part, 1}));
  rgpu::Frame answer;
  ASSERT_TRUE(rgpu::read_frame(fd, decoder, answer, nullptr));
  ASSERT_EQ(answer.header.type, static_cast<uint16_t>(rgpu::MsgType::Error));
  EXPECT_NE(rgpu::decode_error(answer.payload).message.find("RingRelease of ring offset " + std::to_string(slot)),
            std::string::npos)
      << rgpu::decode_error(answer.payload).message;
  EXPECT_FALSE(rgpu::read_frame(fd, decoder, answer, nullptr)) << "the connection stays open";
  ::close(fd);
  const CommandResult after = run_program({VULKAN_DUMP}, icd_env(socket_));
  EXPECT_EQ(after.exit_code, 0) << after.err << "\nclient daemon:\n" << client_->log();
}

struct TokenSetup {
  explicit TokenSetup(const std::string& token_settings)
      : server({"--config", dir.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n\n[[security.tokens]]\ntoken = \"" +
                                                      std::string(kToken) + "\"\n" + token_settings),
                "--tls", "off"},
               {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST}),
        client({"--server", server.address(), "--tls", "off", "--token", kToken, "--socket", dir.path() + "/client.sock"},
               {}, "client") {}
  std::vector<std::string> env() const {
    return {"VK_DRIVER_FILES=" RGPU_ICD_MANIFEST, "RGPU_CLIENT_SOCKET=" + dir.path() + "/client.sock",
            "XDG_RUNTIME_DIR=" + dir.path()};
  }
  static constexpr const char* kToken = "vk-token-0123456789abcdef0123456789abcdef0123456789abcdef012345678";
  TempDir dir;
  ServerProcess server;
  ServerProcess client;
};

// A token limited to GPUs the server does not have sees no Vulkan device at all.
TEST(VulkanTokens, AllowedGpusHideTheOthers) {
  TokenSetup setup("name = \"limited\"\nallowed_gpus = [7]\n");
  const CommandResult result = run_program({VULKAN_DUMP}, setup.env());
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_EQ(parse_dump(result.out)["devices"], "0") << result.out;
  // It was the limited token that was refused the GPU, not a failed connection.
  EXPECT_NE(setup.server.log().find("as 'limited'"), std::string::npos) << setup.server.log();
}

// Over TLS (the client daemon's default when the server has a certificate) the same program
// gets the same results.
TEST(VulkanTls, ComputeProgramOverTls) {
#ifndef VULKAN_COMPUTE
  GTEST_SKIP() << "built without glslangValidator: no compute program";
#else
  TempDir dir;
  ServerProcess server(rgpu::test::tls_server_args(dir), {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  const std::string socket = dir.path() + "/client.sock";
  ServerProcess client({"--server", server.address(), "--socket", socket}, {}, "client");
  const CommandResult direct = run_program({VULKAN_COMPUTE}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  const CommandResult remote = run_program(
      {VULKAN_COMPUTE}, {"VK_DRIVER_FILES=" RGPU_ICD_MANIFEST, "RGPU_CLIENT_SOCKET=" + socket, "XDG_RUNTIME_DIR=" + dir.path()});
  ASSERT_EQ(remote.exit_code, 0) << remote.out << remote.err << "\nclient:\n" << client.log();
  EXPECT_EQ(remote.out, direct.out);
  EXPECT_NE(server.log().find("TLS with 127.0.0.1"), std::string::npos) << server.log();
#endif
}

// The server vanishes while a program works: the program's next calls fail with
// VK_ERROR_DEVICE_LOST and a reason, and the client daemon stays up for the next program.
TEST(VulkanVanishedServer, ProgramGetsDeviceLostAndTheDaemonGoesOn) {
  TempDir dir;
  const std::string config = dir.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n");
  auto server = std::make_unique<ServerProcess>(std::vector<std::string>{"--config", config, "--tls", "off"},
                                                std::vector<std::string>{"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  const std::string address = server->address();
  const std::string socket = dir.path() + "/client.sock";
  ServerProcess client({"--server", server->address(), "--tls", "off", "--socket", socket}, {}, "client");
  const std::vector<std::string> env = {"VK_DRIVER_FILES=" RGPU_ICD_MANIFEST, "RGPU_CLIENT_SOCKET=" + socket,
                                        "XDG_RUNTIME_DIR=" + dir.path()};
  CommandResult bench;
  std::thread program([&] { bench = run_program({VULKAN_BENCH}, env, std::chrono::seconds(120)); });
  // Once the program has its device (with a deadline), the server goes: the bench has seconds of
  // work ahead of it then.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (server->log().find("created a device") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::yield();
  server.reset();
  program.join();
  // The program fails (where it next asks something: a command returning VK_ERROR_DEVICE_LOST, or
  // one that cannot return an error and leaves its answer empty), and the ICD's log says why.
  EXPECT_EQ(bench.exit_code, 1) << bench.out << bench.err;
  EXPECT_NE(bench.err.find("VK_ERROR_DEVICE_LOST (-4) the connection to the GPU server is lost: server " + address),
            std::string::npos)
      << bench.err;
  // The daemon is still there: the next program is told plainly that there is no server.
  const CommandResult next = run_program({VULKAN_DUMP}, env);
  EXPECT_NE(next.exit_code, 0) << next.out;
  EXPECT_NE(next.err.find("no GPU server: "), std::string::npos) << next.err;
}

// A token's max_memory bounds what its programs allocate (with its CUDA programs), and the heaps
// they are shown are no larger.
TEST(VulkanTokens, MaxMemoryLimitsAllocations) {
  TokenSetup setup("name = \"small\"\nmax_memory = 524288\n");
  const std::vector<std::string> env = setup.env();
  const CommandResult dump = run_program({VULKAN_DUMP}, env);
  ASSERT_EQ(dump.exit_code, 0) << dump.err;
  // A heap: 8 bytes of size (little-endian), then flags. 524288 = 0x80000.
  EXPECT_EQ(parse_dump(dump.out)["gpu0.memoryHeap0"].substr(0, 16), "0000080000000000") << dump.out;
#ifdef VULKAN_COMPUTE
  // The compute program's three 256 KiB buffers do not fit in 512 KiB.
  const CommandResult compute = run_program({VULKAN_COMPUTE}, env);
  EXPECT_EQ(compute.exit_code, 1) << compute.out;
  EXPECT_NE(compute.err.find("vkAllocateMemory returned -2"), std::string::npos) << compute.err;
#endif
}

// The Vulkan bench checks every readback against what it uploaded.
TEST_F(VulkanPath, BenchUploadsAndReadsBackThroughRgpu) {
  const CommandResult remote = run_program({VULKAN_BENCH, "--quick"}, icd_env(socket_));
  ASSERT_EQ(remote.exit_code, 0) << remote.out << remote.err << "\nserver:\n" << server_->log();
  EXPECT_NE(remote.out.find("submit+wait median"), std::string::npos) << remote.out;
}

}  // namespace
