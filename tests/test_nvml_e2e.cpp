// NVML on a client machine in CI: RGPU's libnvidia-ml.so.1, dlopened as PyTorch and pynvml do,
// asks a real `rgpu client` daemon, which asks a real `rgpu server`, whose main process reads the
// CUDA driver TEST DOUBLE's NVML (the double's numbers follow from what its processes hold).
// Two client daemons stand for two users of one server: each sees its own applications only.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "app_link.hpp"
#include "frame.hpp"
#include "messages.hpp"
#include "nvml_abi.hpp"
#include "nvml_snapshot.hpp"
#include "rgpu_process.hpp"
#include "session.hpp"

namespace {

using rgpu::nvml::Return;
using rgpu::test::ServerProcess;
using rgpu::test::TempDir;

const char* kToken = "nvml-token-0123456789abcdef0123456789abcdef0123456789abcdef012345";
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kDeviceMemory = 80 * kGiB;  // the double's
constexpr uint64_t kReserved = 512ull << 20;
const char* kUuid0 = "GPU-52475055-2d64-6f75-626c-652d00000000";  // "RGPU-double-" and the ordinal
const char* kUuid1 = "GPU-52475055-2d64-6f75-626c-652d00000001";

// A server on the double and two client daemons ("A", this test process's, and "B").
class NvmlPath : public ::testing::Environment {
 public:
  void SetUp() override {
    dir_ = std::make_unique<TempDir>();
    const std::string config = dir_->file("rgpu.toml", std::string("[server]\nbind = \"127.0.0.1\"\n\n") +
                                                           "[[security.tokens]]\ntoken = \"" + kToken +
                                                           "\"\nname = \"nvml\"\n");
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--config", config},
        std::vector<std::string>{"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH, "RGPU_NVML_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
    socket_a = dir_->path() + "/a.sock";
    socket_b = dir_->path() + "/b.sock";
    for (const std::string* socket : {&socket_a, &socket_b})
      clients_.push_back(std::make_unique<ServerProcess>(
          std::vector<std::string>{"--server", server_->address(), "--token", kToken, "--socket", *socket},
          std::vector<std::string>{}, "client"));
    setenv("RGPU_CLIENT_SOCKET", socket_a.c_str(), 1);
  }
  void TearDown() override {
    clients_.clear();
    server_.reset();
  }
  static rgpu::SessionOptions session_options() {
    rgpu::SessionOptions options;
    options.server = rgpu::parse_host_port(instance->server_->address());
    options.token = kToken;
    options.trust.fingerprint = instance->server_->fingerprint();
    return options;
  }
  static std::string client_log(size_t i) { return instance->clients_[i]->log(); }
  static inline NvmlPath* instance = nullptr;
  std::string socket_a, socket_b;

 private:
  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<ServerProcess> server_;
  std::vector<std::unique_ptr<ServerProcess>> clients_;
};

// nvml_app holding device memory until the object goes (its input closes).
class HeldApp {
 public:
  HeldApp(const std::string& socket, uint64_t bytes) {
    int in[2], out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe");
    const std::string amount = std::to_string(bytes);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::close(in[1]);
      ::close(out[0]);
      ::setenv("RGPU_CLIENT_SOCKET", socket.c_str(), 1);
      ::execl(NVML_APP_PATH, NVML_APP_PATH, "hold", amount.c_str(), RGPU_NVML_PATH, nullptr);
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    input_ = in[1];
    output_ = ::fdopen(out[0], "r");
    char line[128] = {};
    if (output_ && std::fgets(line, sizeof line, output_)) std::sscanf(line, "ready %d", &app_pid_);
  }
  ~HeldApp() {
    ::close(input_);
    if (output_) std::fclose(output_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  pid_t pid() const { return app_pid_; }  // 0 when it did not get ready

 private:
  pid_t pid_ = -1;
  pid_t app_pid_ = 0;
  int input_ = -1;
  FILE* output_ = nullptr;
};

struct QueryResult {
  int exit_code = -1;
  pid_t self = 0;
  std::vector<std::pair<pid_t, uint64_t>> processes;
  std::string out, err;
};

QueryResult run_query(const std::string& socket, uint64_t bytes) {
  auto run = rgpu::test::run_program({NVML_APP_PATH, "query", std::to_string(bytes), RGPU_NVML_PATH},
                                     {"RGPU_CLIENT_SOCKET=" + socket});
  QueryResult result;
  result.exit_code = run.exit_code;
  result.out = run.out;
  result.err = run.err;
  std::istringstream lines(run.out);
  for (std::string word; lines >> word;) {
    if (word == "self") lines >> result.self;
    if (word == "process") {
      pid_t pid = 0;
      uint64_t used = 0;
      lines >> pid >> used;
      result.processes.emplace_back(pid, used);
    }
  }
  return result;
}

// RGPU's libnvidia-ml.so.1 in this process (daemon A), as an application loads it.
class Nvml {
 public:
  Nvml() : handle_(::dlopen(RGPU_NVML_PATH, RTLD_NOW | RTLD_LOCAL)) {}
  ~Nvml() {
    if (handle_) ::dlclose(handle_);
  }
  template <typename Fn>
  Fn get(const char* name) const {
    return reinterpret_cast<Fn>(handle_ ? ::dlsym(handle_, name) : nullptr);
  }
  bool loaded() const { return handle_ != nullptr; }

 private:
  void* handle_;
};

// The library's view is fetched at nvmlInit, and the daemon's is fetched anew when one of its own
// sessions opened since: each test starts what it needs first, then starts NVML.
class NvmlE2E : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(nvml_.loaded()) << ::dlerror(); }
  void start() {
    ASSERT_EQ(nvml_.get<Return (*)()>("nvmlInit_v2")(), 0);
    started_ = true;
    ASSERT_EQ(nvml_.get<Return (*)(unsigned, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByIndex_v2")(0, &device0_), 0);
  }
  void TearDown() override {
    if (started_) {
      EXPECT_EQ(nvml_.get<Return (*)()>("nvmlShutdown")(), 0);
    }
  }
  std::string text(const char* function, rgpu::nvml::Device device, Return* result = nullptr) {
    char buffer[128] = {};
    Return r = nvml_.get<rgpu::nvml::TextFn>(function)(device, buffer, sizeof buffer);
    if (result) *result = r;
    return r == 0 ? buffer : "";
  }
  Nvml nvml_;
  bool started_ = false;
  rgpu::nvml::Device device0_ = nullptr;
};

TEST_F(NvmlE2E, DevicesAreThePoolsWithTheServersNames) {
  start();
  unsigned count = 0;
  ASSERT_EQ(nvml_.get<Return (*)(unsigned*)>("nvmlDeviceGetCount_v2")(&count), 0);
  EXPECT_EQ(count, 2u);
  EXPECT_EQ(text("nvmlDeviceGetName", device0_), "RGPU CUDA test double 0");
  EXPECT_EQ(text("nvmlDeviceGetUUID", device0_), kUuid0);
  EXPECT_EQ(text("nvmlDeviceGetSerial", device0_), "1653220000000");
  Return part = 0;
  text("nvmlDeviceGetBoardPartNumber", device0_, &part);
  EXPECT_EQ(part, rgpu::nvml::kErrorNotSupported) << "the server's NVML has none: its answer comes through";

  rgpu::nvml::Device by_uuid = nullptr, by_bus = nullptr, by_short_bus = nullptr, one = nullptr;
  ASSERT_EQ(nvml_.get<Return (*)(unsigned, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByIndex_v2")(1, &one), 0);
  ASSERT_EQ(nvml_.get<Return (*)(const char*, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByUUID")(kUuid1, &by_uuid), 0);
  EXPECT_EQ(by_uuid, one);
  rgpu::nvml::PciInfo pci{};
  ASSERT_EQ(nvml_.get<rgpu::nvml::PciInfoFn>("nvmlDeviceGetPciInfo_v3")(one, &pci), 0);
  EXPECT_STREQ(pci.bus_id, "00000000:43:00.0");
  EXPECT_EQ(pci.bus, 0x43u);
  EXPECT_EQ(pci.pci_device_id, 0x233010DEu);
  auto by_bus_id = nvml_.get<Return (*)(const char*, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByPciBusId_v2");
  ASSERT_EQ(by_bus_id(pci.bus_id, &by_bus), 0);
  ASSERT_EQ(by_bus_id("0000:43:00.0", &by_short_bus), 0);
  EXPECT_EQ(by_bus, one);
  EXPECT_EQ(by_short_bus, one);
  unsigned index = 9;
  ASSERT_EQ(nvml_.get<rgpu::nvml::UintFn>("nvmlDeviceGetIndex")(one, &index), 0);
  EXPECT_EQ(index, 1u);

  rgpu::nvml::Device none = nullptr;
  EXPECT_EQ(nvml_.get<Return (*)(const char*, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByUUID")("GPU-nope", &none),
            rgpu::nvml::kErrorNotFound);
  EXPECT_EQ(by_bus_id("not a bus id", &none), rgpu::nvml::kErrorInvalidArgument);
  EXPECT_EQ(nvml_.get<Return (*)(unsigned, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByIndex_v2")(2, &none),
            rgpu::nvml::kErrorInvalidArgument);
  char name[8];  // too small for the name
  EXPECT_EQ(nvml_.get<rgpu::nvml::TextFn>("nvmlDeviceGetName")(device0_, name, sizeof name),
            rgpu::nvml::kErrorInsufficientSize);
  auto bogus = reinterpret_cast<rgpu::nvml::Device>(&count);
  EXPECT_EQ(text("nvmlDeviceGetName", bogus, &part), "");
  EXPECT_EQ(part, rgpu::nvml::kErrorInvalidArgument) << "a handle that is not one of ours is refused, not followed";
}

TEST_F(NvmlE2E, DriverVersionsAndStaticFactsComeFromTheServer) {
  start();
  char version[80] = {};
  ASSERT_EQ(nvml_.get<rgpu::nvml::SystemTextFn>("nvmlSystemGetDriverVersion")(version, sizeof version), 0);
  EXPECT_STREQ(version, "580.00.00-test-double");
  int cuda = 0;
  ASSERT_EQ(nvml_.get<rgpu::nvml::SystemIntFn>("nvmlSystemGetCudaDriverVersion_v2")(&cuda), 0);
  EXPECT_EQ(cuda, 13000);
  int major = 0, minor = -1;
  ASSERT_EQ(nvml_.get<rgpu::nvml::IntPairFn>("nvmlDeviceGetCudaComputeCapability")(device0_, &major, &minor), 0);
  EXPECT_EQ(major, 9);
  EXPECT_EQ(minor, 0);
  unsigned max_sm = 0, temperature = 0, limit = 0, fan = 0;
  ASSERT_EQ(nvml_.get<rgpu::nvml::UintOfFn>("nvmlDeviceGetMaxClockInfo")(device0_, 1, &max_sm), 0);
  EXPECT_EQ(max_sm, 1980u);
  ASSERT_EQ(nvml_.get<rgpu::nvml::UintOfFn>("nvmlDeviceGetTemperature")(device0_, 0, &temperature), 0);
  EXPECT_EQ(temperature, 31u);
  ASSERT_EQ(nvml_.get<rgpu::nvml::UintFn>("nvmlDeviceGetEnforcedPowerLimit")(device0_, &limit), 0);
  EXPECT_EQ(limit, 700000u);
  EXPECT_EQ(nvml_.get<rgpu::nvml::UintFn>("nvmlDeviceGetFanSpeed")(device0_, &fan), rgpu::nvml::kErrorNotSupported);
  int compute_mode = -1;
  ASSERT_EQ(nvml_.get<rgpu::nvml::IntFn>("nvmlDeviceGetComputeMode")(device0_, &compute_mode), 0);
  EXPECT_EQ(compute_mode, 0);
}

// Memory, utilization, clocks and power follow what the applications on device 0 hold: this
// user's and another user's; of the processes, only this user's application is listed.
TEST_F(NvmlE2E, StateFollowsTheDevicesButAnotherUsersProcessesStayHidden) {
  constexpr uint64_t kOwn = 3 * kGiB, kOthers = 1 * kGiB, kHeld = kOwn + kOthers;
  HeldApp other(NvmlPath::instance->socket_b, kOthers);
  HeldApp own(NvmlPath::instance->socket_a, kOwn);
  ASSERT_GT(other.pid(), 0) << NvmlPath::client_log(1);
  ASSERT_GT(own.pid(), 0) << NvmlPath::client_log(0);
  start();

  rgpu::nvml::MemoryV2 memory{};
  memory.version = rgpu::nvml::kMemoryV2Version;
  auto memory_v2 = nvml_.get<rgpu::nvml::MemoryV2Fn>("nvmlDeviceGetMemoryInfo_v2");
  ASSERT_EQ(memory_v2(device0_, &memory), 0);
  EXPECT_EQ(memory.total, kDeviceMemory);
  EXPECT_EQ(memory.reserved, kReserved);
  EXPECT_EQ(memory.used, kHeld);
  EXPECT_EQ(memory.free, kDeviceMemory - kReserved - kHeld);
  rgpu::nvml::Memory v1{};
  ASSERT_EQ(nvml_.get<rgpu::nvml::MemoryFn>("nvmlDeviceGetMemoryInfo")(device0_, &v1), 0);
  EXPECT_EQ(v1.used, kHeld + kReserved) << "the first version's used memory includes the reserved";
  rgpu::nvml::MemoryV2 wrong{};
  wrong.version = 1;
  EXPECT_EQ(memory_v2(device0_, &wrong), 25) << "NVML_ERROR_ARGUMENT_VERSION_MISMATCH";

  rgpu::nvml::Utilization utilization{};
  ASSERT_EQ(nvml_.get<rgpu::nvml::UtilizationFn>("nvmlDeviceGetUtilizationRates")(device0_, &utilization), 0);
  EXPECT_EQ(utilization.gpu, 50u);  // two processes on it, a quarter each
  EXPECT_EQ(utilization.memory, kHeld * 100 / kDeviceMemory);
  unsigned clock = 0, power = 0;
  int pstate = -1;
  ASSERT_EQ(nvml_.get<rgpu::nvml::UintOfFn>("nvmlDeviceGetClockInfo")(device0_, 0, &clock), 0);
  EXPECT_EQ(clock, 1980u);
  ASSERT_EQ(nvml_.get<rgpu::nvml::UintFn>("nvmlDeviceGetPowerUsage")(device0_, &power), 0);
  EXPECT_EQ(power, 310000u);
  ASSERT_EQ(nvml_.get<rgpu::nvml::IntFn>("nvmlDeviceGetPerformanceState")(device0_, &pstate), 0);
  EXPECT_EQ(pstate, 0);

  auto processes = nvml_.get<rgpu::nvml::GetComputeRunningProcessesFn>("nvmlDeviceGetComputeRunningProcesses_v3");
  unsigned count = 0;
  EXPECT_EQ(processes(device0_, &count, nullptr), rgpu::nvml::kErrorInsufficientSize);
  ASSERT_EQ(count, 1u) << "another user's application (and every server worker) must not be listed";
  rgpu::nvml::ProcessInfo info{};
  ASSERT_EQ(processes(device0_, &count, &info), 0);
  EXPECT_EQ(info.pid, static_cast<unsigned>(own.pid()));
  EXPECT_EQ(info.used_gpu_memory, kOwn);
  rgpu::nvml::ProcessInfoV1 old[2]{};
  count = 2;
  ASSERT_EQ(nvml_.get<Return (*)(rgpu::nvml::Device, unsigned*, rgpu::nvml::ProcessInfoV1*)>(
                "nvmlDeviceGetComputeRunningProcesses")(device0_, &count, old),
            0);
  ASSERT_EQ(count, 1u);
  EXPECT_EQ(old[0].pid, static_cast<unsigned>(own.pid()));
  rgpu::nvml::Device one = nullptr;
  ASSERT_EQ(nvml_.get<Return (*)(unsigned, rgpu::nvml::Device*)>("nvmlDeviceGetHandleByIndex_v2")(1, &one), 0);
  count = 0;
  EXPECT_EQ(processes(one, &count, nullptr), 0);
  EXPECT_EQ(count, 0u) << "nothing runs on device 1";
}

// nvidia-smi's private table: a device's bus id by index, and its processes in the table's own
// entries (this user's only, as the public lists).
TEST_F(NvmlE2E, ThePrivateTableNvidiaSmiUsesAnswersBusIdsAndProcesses) {
  constexpr uint64_t kOwn = 2 * kGiB, kOthers = 1 * kGiB;
  HeldApp other(NvmlPath::instance->socket_b, kOthers);
  HeldApp own(NvmlPath::instance->socket_a, kOwn);
  ASSERT_GT(other.pid(), 0) << NvmlPath::client_log(1);
  ASSERT_GT(own.pid(), 0) << NvmlPath::client_log(0);
  start();
  const uint8_t id[16] = {0xc4, 0xfe, 0x3e, 0x6c, 0xc9, 0x8f, 0x6c, 0x4e, 0xa3, 0x27, 0xee, 0x69, 0x6e, 0x12, 0xf7, 0xc4};
  auto get_table = nvml_.get<Return (*)(const void**, const void*)>("nvmlInternalGetExportTable");
  const void* table = nullptr;
  const uint8_t unknown_id[16] = {1};
  EXPECT_EQ(get_table(&table, unknown_id), rgpu::nvml::kErrorNotSupported);
  ASSERT_EQ(get_table(&table, id), 0);
  auto* slots = static_cast<void* const*>(table);
  ASSERT_GT(reinterpret_cast<size_t>(slots[0]), 648u) << "nvidia-smi wants a table longer than 648 bytes";

  char bus[34] = {};
  char expected[32] = {};
  rgpu::nvml::PciInfo pci{};
  ASSERT_EQ(nvml_.get<Return (*)(rgpu::nvml::Device, rgpu::nvml::PciInfo*)>("nvmlDeviceGetPciInfo_v3")(device0_, &pci), 0);
  std::snprintf(expected, sizeof expected, "%s", pci.bus_id_legacy);
  auto bus_id = reinterpret_cast<Return (*)(unsigned, char*, unsigned)>(slots[81]);
  ASSERT_EQ(bus_id(0, bus, sizeof bus), 0);
  EXPECT_STREQ(bus, expected);
  EXPECT_EQ(bus_id(0, bus, 4), rgpu::nvml::kErrorInsufficientSize);
  EXPECT_NE(bus_id(99, bus, sizeof bus), 0);

  constexpr size_t kEntry = 4128;
  std::vector<uint8_t> entries(kEntry * 4, 0xee);
  unsigned count = 4;
  auto compute = reinterpret_cast<Return (*)(rgpu::nvml::Device, unsigned*, uint8_t*)>(slots[213]);
  ASSERT_EQ(compute(device0_, &count, entries.data()), 0);
  ASSERT_EQ(count, 1u) << "another user's application must not be listed";
  uint32_t pid = 0;
  uint64_t memory = 0;
  std::memcpy(&pid, entries.data(), 4);
  std::memcpy(&memory, entries.data() + 8, 8);
  EXPECT_EQ(pid, static_cast<uint32_t>(own.pid()));
  EXPECT_EQ(memory, kOwn);
  EXPECT_NE(std::string(reinterpret_cast<const char*>(entries.data() + 32)).find("nvml_app"), std::string::npos);
  count = 0;
  EXPECT_EQ(compute(device0_, &count, entries.data()), rgpu::nvml::kErrorInsufficientSize);
  EXPECT_EQ(count, 1u);
  count = 4;
  auto graphics = reinterpret_cast<Return (*)(rgpu::nvml::Device, unsigned*, uint8_t*)>(slots[214]);
  ASSERT_EQ(graphics(device0_, &count, entries.data()), 0);
  EXPECT_EQ(count, 0u);
  auto unknown = reinterpret_cast<Return (*)()>(slots[100]);
  EXPECT_EQ(unknown(), rgpu::nvml::kErrorNotSupported);
}

// An application sees itself with the memory it holds, and the other applications of its own
// user, never another user's.
TEST_F(NvmlE2E, ApplicationsSeeTheirOwnProcessesOnly) {
  constexpr uint64_t kOthers = 1 * kGiB, kOwn = 2 * kGiB;
  HeldApp other(NvmlPath::instance->socket_b, kOthers);
  ASSERT_GT(other.pid(), 0) << NvmlPath::client_log(1);

  QueryResult a = run_query(NvmlPath::instance->socket_a, kOwn);
  ASSERT_EQ(a.exit_code, 0) << a.out << a.err;
  ASSERT_EQ(a.processes.size(), 1u) << a.out;
  EXPECT_EQ(a.processes[0].first, a.self);
  EXPECT_EQ(a.processes[0].second, kOwn);

  QueryResult b = run_query(NvmlPath::instance->socket_b, kOwn);
  ASSERT_EQ(b.exit_code, 0) << b.out << b.err;
  std::set<pid_t> seen;
  for (auto [pid, used] : b.processes) seen.insert(pid);
  EXPECT_EQ(seen, (std::set<pid_t>{b.self, other.pid()})) << b.out;
  EXPECT_EQ(seen.count(a.self), 0u);
}

TEST_F(NvmlE2E, UnansweredEntryPointsAreExportedAndRefused) {
  start();
  std::ifstream list(NVML_UNSUPPORTED_DEF);
  size_t checked = 0;
  for (std::string line; std::getline(list, line);) {
    const auto open = line.find("NVML_UNSUPPORTED(");
    if (open != 0) continue;
    const std::string name = line.substr(17, line.size() - 18);
    auto fn = nvml_.get<Return (*)()>(name.c_str());
    ASSERT_NE(fn, nullptr) << name << " is not exported";
    EXPECT_EQ(fn(), rgpu::nvml::kErrorNotSupported) << name;
    ++checked;
  }
  EXPECT_GT(checked, 200u);
  auto error_string = nvml_.get<const char* (*)(Return)>("nvmlErrorString");
  EXPECT_STREQ(error_string(rgpu::nvml::kErrorNotSupported), "Not Supported");
  EXPECT_STREQ(error_string(12345), "Unknown Error");
}

TEST(NvmlStart, WithoutADaemonInitSaysTheDriverIsNotLoaded) {
  auto run = rgpu::test::run_program({NVML_APP_PATH, "init", RGPU_NVML_PATH},
                                     {"RGPU_CLIENT_SOCKET=/nonexistent/rgpu/client.sock"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  EXPECT_EQ(run.out, "nvmlInit_v2 9\n");  // NVML_ERROR_DRIVER_NOT_LOADED
  EXPECT_NE(run.err.find("cannot reach the RGPU client daemon"), std::string::npos) << run.err;
}

TEST(NvmlServer, ShowsNoProcessOfSessionsTheAskerDoesNotName) {
  HeldApp other(NvmlPath::instance->socket_b, 1 * kGiB);
  ASSERT_GT(other.pid(), 0);
  auto session = rgpu::Session::connect(NvmlPath::session_options());
  const rgpu::NvmlSnapshotMsg snapshot = session->nvml_snapshot({0x1234, 0});
  ASSERT_EQ(snapshot.gpus.size(), 2u);
  EXPECT_EQ(snapshot.gpus[0][rgpu::NvmlText::Uuid].text, kUuid0);
  for (const auto& gpu : snapshot.gpus) EXPECT_TRUE(gpu.processes.empty());
  EXPECT_EQ(snapshot.gpus[0][rgpu::NvmlValue::MemoryUsed].value, 1 * kGiB) << "the device's own numbers are not hidden";
  // A malformed question is refused with the reason, and the connection goes on.
  const uint8_t short_payload[] = {5, 0, 0, 0, 1};
  try {
    session->call(rgpu::kMsgNvmlQuery, short_payload);
    ADD_FAILURE() << "a truncated NvmlQuery was answered";
  } catch (const rgpu::RemoteError& e) {
    EXPECT_EQ(e.code(), rgpu::ErrorCode::MalformedFrame);
  }
  EXPECT_EQ(session->nvml_snapshot({}).gpus.size(), 2u);
}

// An application's malformed NVML question gets the reason and its connection ends; the daemon
// goes on answering others.
TEST(NvmlDaemon, RefusesMalformedQuestionsAndGoesOn) {
  for (const uint16_t type : {rgpu::kMsgAppNvmlQuery, uint16_t{0x1234}}) {
    std::string error;
    const int fd = rgpu::connect_unix(NvmlPath::instance->socket_a, error);
    ASSERT_GE(fd, 0) << error;
    const uint8_t junk[] = {1, 2, 3};
    // First a good question, then a malformed one on the same connection.
    auto good = rgpu::encode_frame(rgpu::kMsgAppNvmlQuery, 1, {}, 0, rgpu::Compression::Never);
    auto bad = rgpu::encode_frame(type, 2, junk, 0, rgpu::Compression::Never);
    rgpu::FrameDecoder decoder;
    rgpu::Frame answer;
    iovec part{good.data(), good.size()};
    ASSERT_TRUE(rgpu::write_all(fd, {&part, 1}));
    ASSERT_TRUE(rgpu::read_frame(fd, decoder, answer, nullptr));
    ASSERT_EQ(answer.header.type, rgpu::kMsgAppNvmlSnapshot);
    EXPECT_EQ(answer.header.request_id, 1u);
    EXPECT_EQ(rgpu::decode_nvml_snapshot(answer.payload).gpus.size(), 2u);
    part = {bad.data(), bad.size()};
    ASSERT_TRUE(rgpu::write_all(fd, {&part, 1}));
    ASSERT_TRUE(rgpu::read_frame(fd, decoder, answer, nullptr));
    EXPECT_EQ(answer.header.type, static_cast<uint16_t>(rgpu::MsgType::Error));
    EXPECT_NE(rgpu::decode_error(answer.payload).message.find("only empty NvmlQuery frames"), std::string::npos);
    EXPECT_FALSE(rgpu::read_frame(fd, decoder, answer, nullptr)) << "the connection must end";
    ::close(fd);
  }
  auto again = rgpu::test::run_program({NVML_APP_PATH, "init", RGPU_NVML_PATH},
                                       {"RGPU_CLIENT_SOCKET=" + NvmlPath::instance->socket_a});
  EXPECT_EQ(again.out, "nvmlInit_v2 0\n") << again.err;
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  NvmlPath::instance = new NvmlPath;
  ::testing::AddGlobalTestEnvironment(NvmlPath::instance);
  return RUN_ALL_TESTS();
}
