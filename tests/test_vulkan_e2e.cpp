// The Vulkan path end to end: an unmodified program's loader finds RGPU's ICD (through the
// build-tree manifest), which asks `rgpu client`, which opens a Vulkan session on `rgpu server`,
// whose GPU is Mesa's lavapipe. What the program learns must be what lavapipe itself reports.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>

#include "rgpu_process.hpp"

namespace {

using rgpu::test::CommandResult;
using rgpu::test::run_program;
using rgpu::test::ServerProcess;
using rgpu::test::TempDir;

// Lines of the dump that may differ between lavapipe seen directly and through RGPU.
// - extensions: RGPU advertises only the informational device extensions it supports so far.
const std::set<std::string> kMayDiffer = {"gpu0.extensions"};
const std::set<std::string> kInformationalExtensions = {"VK_KHR_driver_properties", "VK_EXT_pci_bus_info"};

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
    server_ = new ServerProcess({"--config", config}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
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
  for (const auto& extension : words(actual["gpu0.extensions"])) {
    EXPECT_TRUE(kInformationalExtensions.count(extension)) << extension << " is advertised before it is implemented";
    EXPECT_TRUE(words(expected["gpu0.extensions"]).count(extension)) << extension << " is not lavapipe's";
  }
  EXPECT_NE(server_->log().find("Vulkan session for"), std::string::npos) << server_->log();
}

TEST_F(VulkanPath, InstanceCreationFailsWithAReasonWhenTheDaemonIsUnreachable) {
  const CommandResult result = run_program({VULKAN_DUMP}, icd_env(dir_->path() + "/no-daemon.sock"));
  EXPECT_EQ(result.exit_code, 1) << result.out;
  EXPECT_NE(result.err.find("cannot reach the RGPU client daemon at " + dir_->path() + "/no-daemon.sock"),
            std::string::npos)
      << result.err;
}

// vulkaninfo creates a device for every GPU before it prints anything; devices are the next step
// of the Vulkan path, so for now it must get as far as vkCreateDevice and be told plainly that
// device creation is not there: never a device that does nothing.
TEST_F(VulkanPath, VulkaninfoReachesDeviceCreationAndIsRefused) {
  if (std::string(VULKANINFO).empty()) GTEST_SKIP() << "vulkaninfo is not installed";
  const CommandResult result = run_program({VULKANINFO, "--summary"}, icd_env(socket_));
  EXPECT_NE(result.exit_code, 0) << result.out;
  EXPECT_NE(result.err.find("GPU 0: llvmpipe"), std::string::npos) << result.err;
  EXPECT_NE(result.err.find("vkCreateDevice failed with ERROR_FEATURE_NOT_PRESENT"), std::string::npos) << result.err;
}

// Enabled by the step that brings devices: vulkaninfo's summary lists the remote device.
TEST_F(VulkanPath, DISABLED_VulkaninfoSummaryListsTheRemoteDevice) {
  const CommandResult result = run_program({VULKANINFO, "--summary"}, icd_env(socket_));
  ASSERT_EQ(result.exit_code, 0) << result.out << result.err;
  EXPECT_NE(result.out.find("deviceName         = llvmpipe"), std::string::npos) << result.out;
}

}  // namespace
