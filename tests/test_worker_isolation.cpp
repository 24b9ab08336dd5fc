// What running each application session in a worker process of its own buys: a worker that dies
// ends its application only; a context a kernel made unusable, device memory and the server's
// tokens stay out of other sessions. Each test starts its own `rgpu server` (the CUDA driver test
// double as its driver) and a `rgpu client` daemon per token. Applications are fresh processes
// of this program (the IsolationApp tests, run with --rgpu-child) that report lines to the test
// on descriptor 3 and read its instructions from descriptor 4.
#include <cuda.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "net.hpp"
#include "rgpu_process.hpp"
#include "session.hpp"

namespace {

using rgpu::UniqueFd;
using rgpu::test::ServerProcess;
using rgpu::test::TempDir;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr int kDone = 42;  // an application's exit code when everything it checked held
constexpr int kReportFd = 3, kInstructionFd = 4;

const char* kModule =
    "RGPU-CUDA-TEST-DOUBLE-MODULE\n"
    "vector_add_f32\n"
    "fill_u32\n"
    "sleep_ms\n"
    "device_assert\n";

// What HoldsAMarker keeps in device memory.
const std::string kMarker = "RGPU worker scan marker 7f3a91c2e05d";

bool g_is_child = false;

std::string random_token() {
  std::random_device device;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (int i = 0; i < 64; ++i) token += kHex[device() % 16];
  return token;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Polls `condition` until it holds or `timeout` passes; whether it held.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 30s) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
}

// A process's state letter (R, S, D, Z, ...) from /proc/PID/stat, '?' when it is gone.
char state_of(pid_t pid) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const size_t end = stat.rfind(')');
  return end == std::string::npos || end + 2 >= stat.size() ? '?' : stat[end + 2];
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string stat = read_text(entry.path() / "stat");
    const size_t end = stat.rfind(')');
    if (end == std::string::npos) continue;
    std::istringstream fields(stat.substr(end + 2));
    char state = 0;
    pid_t ppid = 0;
    if (fields >> state >> ppid && ppid == parent) children.push_back(std::stoi(name));
  }
  return children;
}

// A server with the CUDA test double and the given tokens ("tenant0", "tenant1", ...), and a
// client daemon for each token, with `client_config` as its configuration file; TLS unless `plain`.
class Cluster {
 public:
  explicit Cluster(const std::vector<std::string>& tokens, unsigned max_clients = 16,
                   const std::string& client_config = "", bool plain = false)
      : tokens_(tokens), plain_(plain) {
    std::string config = "[server]\nbind = \"127.0.0.1\"\nmax_clients = " + std::to_string(max_clients) + "\n";
    if (plain) config += "tls = \"off\"\n";
    for (size_t i = 0; i < tokens.size(); ++i)
      config += "\n[[security.tokens]]\ntoken = \"" + tokens[i] + "\"\nname = \"tenant" + std::to_string(i) + "\"\n";
    server_ = std::make_unique<ServerProcess>(std::vector<std::string>{"--config", dir_.file("rgpu.toml", config)},
                                              std::vector<std::string>{"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
    const std::string client_file = dir_.file("client.toml", client_config);
    for (size_t i = 0; i < tokens.size(); ++i) {
      sockets_.push_back(dir_.path() + "/client" + std::to_string(i) + ".sock");
      clients_.push_back(std::make_unique<ServerProcess>(
          std::vector<std::string>{"--config", client_file, "--server", server_->address(), "--token", tokens[i],
                                   "--socket", sockets_[i], "--tls", plain ? "off" : "auto"},
          std::vector<std::string>{}, "client"));
    }
  }
  // A connection of this test's own to the server, authenticated with token `i`.
  std::unique_ptr<rgpu::Session> connect(size_t i) const {
    rgpu::SessionOptions options;
    options.server = rgpu::parse_host_port(server_->address());
    options.token = tokens_[i];
    if (plain_) options.tls = rgpu::TlsMode::Off;
    options.trust.known_servers = dir_.path() + "/known_servers";  // the server's key met first here
    return rgpu::Session::connect(options);
  }
  // RGPU_CLIENT_SOCKET for an application of token `i`.
  std::string socket_variable(size_t i) const { return "RGPU_CLIENT_SOCKET=" + sockets_[i]; }
  pid_t server_pid() const { return server_->pid(); }
  std::string server_address() const { return server_->address(); }
  std::string server_log() const { return server_->log(); }
  std::string logs() const {
    std::string all = "server:\n" + server_->log();
    for (const auto& client : clients_) all += "\nclient:\n" + client->log();
    return all;
  }
  // The worker of each CUDA session, in the order the sessions opened.
  std::vector<pid_t> workers() const {
    static const std::regex opened(R"(CUDA session for \S+ on \d+ GPU\(s\): worker (\d+))");
    const std::string log = server_->log();
    std::vector<pid_t> pids;
    for (std::sregex_iterator it(log.begin(), log.end(), opened), end; it != end; ++it)
      pids.push_back(std::stoi((*it)[1]));
    return pids;
  }
  // Whether the server logged a line that says `fate` about worker `pid`.
  bool logged_fate(pid_t pid, const std::string& fate) const {
    std::istringstream lines(server_->log());
    const std::string start = "worker " + std::to_string(pid) + " for ";
    for (std::string line; std::getline(lines, line);)
      if (line.find(start) != std::string::npos && line.ends_with(fate)) return true;
    return false;
  }
  bool server_running() const {
    const char state = state_of(server_->pid());
    return state != '?' && state != 'Z';
  }

 private:
  TempDir dir_;
  std::vector<std::string> tokens_;
  bool plain_ = false;
  std::unique_ptr<ServerProcess> server_;
  std::vector<std::string> sockets_;
  std::vector<std::unique_ptr<ServerProcess>> clients_;
};

// An application: this program running the IsolationApp test `name`, with `variables`
// ("NAME=value") added to its environment; its stdout and stderr go to a file.
class App {
 public:
  App(const std::string& name, std::vector<std::string> variables) {
    int reports[2], instructions[2];
    if (::pipe2(reports, O_CLOEXEC) != 0 || ::pipe2(instructions, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
    output_path_ = dir_.path() + "/output";
    const std::string filter = "--gtest_filter=IsolationApp." + name;
    pid_ = ::fork();
    if (pid_ == 0) {
      const int output = ::open(output_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      ::dup2(output, 1);
      ::dup2(output, 2);
      // Out of the way first: either end may be descriptor 3 or 4 already.
      const int report = ::fcntl(reports[1], F_DUPFD, 10), instruction = ::fcntl(instructions[0], F_DUPFD, 10);
      ::dup2(report, kReportFd);
      ::dup2(instruction, kInstructionFd);
      for (std::string& variable : variables) ::putenv(variable.data());
      ::execl("/proc/self/exe", "/proc/self/exe", filter.c_str(), "--rgpu-child", nullptr);
      ::_exit(127);
    }
    ::close(reports[1]);
    ::close(instructions[0]);
    reports_ = UniqueFd(reports[0]);
    instructions_ = UniqueFd(instructions[1]);
  }
  ~App() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }

  // The next line the application reports; "<ended>" or "<timed out>" when none comes.
  std::string hear(std::chrono::milliseconds timeout = 30s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (const size_t end = heard_.find('\n'); end != std::string::npos) {
        std::string line = heard_.substr(0, end);
        heard_.erase(0, end + 1);
        return line;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      pollfd ready{reports_.get(), POLLIN, 0};
      if (left <= 0 || ::poll(&ready, 1, static_cast<int>(left)) == 0) return "<timed out>";
      char buffer[256];
      const ssize_t n = ::read(reports_.get(), buffer, sizeof buffer);
      if (n <= 0) return "<ended>";
      heard_.append(buffer, static_cast<size_t>(n));
    }
  }
  void tell(const std::string& line) {
    const std::string text = line + "\n";
    ASSERT_EQ(::write(instructions_.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  // Its exit code (128 + signal when killed); -1 when it did not end in time (it is killed then).
  int wait(std::chrono::milliseconds timeout = 60s) {
    int status = 0;
    if (!eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, timeout)) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  std::string output() const { return "application output:\n" + read_text(output_path_); }

 private:
  TempDir dir_;
  std::string output_path_;
  pid_t pid_ = -1;
  UniqueFd reports_, instructions_;
  std::string heard_;
};

// Every readable mapping of process `pid`, read through /proc/PID/mem, searched for each needle.
struct MemoryScan {
  size_t bytes_read = 0;
  std::vector<bool> found;
};

MemoryScan scan_memory(pid_t pid, const std::vector<std::string>& needles) {
  MemoryScan scan;
  scan.found.assign(needles.size(), false);
  size_t longest = 0;
  for (const auto& needle : needles) longest = std::max(longest, needle.size());
  const UniqueFd mem(::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
  if (!mem) return scan;
  std::istringstream maps(read_text("/proc/" + std::to_string(pid) + "/maps"));
  constexpr size_t kChunk = 4 << 20;
  std::vector<char> buffer(kChunk + longest);
  for (std::string line; std::getline(maps, line);) {
    uint64_t start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3 || perms[0] != 'r') continue;
    size_t carried = 0;  // the previous chunk's tail, so that a needle across two chunks is seen
    for (uint64_t at = start; at < end; at += kChunk) {
      const size_t want = std::min<uint64_t>(kChunk, end - at);
      const ssize_t n = ::pread(mem.get(), buffer.data() + carried, want, static_cast<off_t>(at));
      if (n <= 0) {  // pages the kernel will not read (device memory, guard pages)
        carried = 0;
        continue;
      }
      scan.bytes_read += static_cast<size_t>(n);
      const auto first = buffer.begin(), last = buffer.begin() + static_cast<ptrdiff_t>(carried + n);
      for (size_t i = 0; i < needles.size(); ++i)
        if (!scan.found[i] &&
            std::search(first, last, std::boyer_moore_horspool_searcher(needles[i].begin(), needles[i].end())) != last)
          scan.found[i] = true;
      carried = static_cast<size_t>(n) < want ? 0 : std::min<size_t>(longest - 1, carried + n);
      std::copy(last - static_cast<ptrdiff_t>(carried), last, buffer.begin());
    }
  }
  return scan;
}

std::string hex_decoded(const std::string& hex) {
  std::string bytes;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return bytes;
}

bool has_capability(int capability) {
  std::istringstream status(read_text("/proc/self/status"));
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("CapEff:")) return (std::stoull(line.substr(7), nullptr, 16) >> capability) & 1;
  return false;
}

// ---- the tests ----------------------------------------------------------------------------------

void expect_a_killed_worker_ends_only_its_application(int signal, const std::string& signal_name) {
  Cluster cluster({random_token()});
  App bystander("WorksWhenTold", {cluster.socket_variable(0)});
  ASSERT_EQ(bystander.hear(), "ready") << bystander.output() << cluster.logs();
  App victim("SynchronizesBehindALongKernel", {cluster.socket_variable(0)});
  ASSERT_EQ(victim.hear(), "synchronizing") << victim.output() << cluster.logs();
  const std::vector<pid_t> workers = cluster.workers();
  ASSERT_EQ(workers.size(), 2u) << cluster.logs();
  const pid_t victim_worker = workers[1];
  // Its call has gone out and it sleeps, waiting for the answer (the kernel runs for a minute).
  ASSERT_TRUE(eventually([&] { return state_of(victim.pid()) == 'S'; })) << victim.output();

  ASSERT_EQ(::kill(victim_worker, signal), 0);
  EXPECT_EQ(victim.hear(), "synchronize CUDA_ERROR_DEVICE_UNAVAILABLE") << victim.output() << cluster.logs();
  EXPECT_EQ(victim.hear(), "allocate CUDA_ERROR_DEVICE_UNAVAILABLE") << victim.output();
  EXPECT_EQ(victim.wait(), kDone) << victim.output();
  EXPECT_THAT(victim.output(), ::testing::HasSubstr("the connection to the GPU server is lost: the GPU server's worker "
                                                    "for this application was killed by " + signal_name));
  EXPECT_TRUE(eventually([&] { return cluster.logged_fate(victim_worker, "was killed by " + signal_name); }))
      << cluster.logs();

  bystander.tell("go");
  EXPECT_EQ(bystander.wait(), kDone) << bystander.output() << cluster.logs();
  App later("Works", {cluster.socket_variable(0)});
  EXPECT_EQ(later.wait(), kDone) << later.output() << cluster.logs();
  EXPECT_TRUE(cluster.server_running()) << cluster.logs();
}

TEST(WorkerIsolation, AWorkerKilledBySigsegvEndsOnlyItsApplication) {
  expect_a_killed_worker_ends_only_its_application(SIGSEGV, "SIGSEGV");
}

TEST(WorkerIsolation, AWorkerKilledBySigkillEndsOnlyItsApplication) {
  expect_a_killed_worker_ends_only_its_application(SIGKILL, "SIGKILL");
}

// A device-side assert leaves its context unusable (every call there fails, as on a real GPU);
// an application running meanwhile and the next one are not touched by it.
TEST(WorkerIsolation, AStickyErrorPoisonsNoOtherApplication) {
  Cluster cluster({random_token()});
  App bystander("WorksWhenTold", {cluster.socket_variable(0)});
  ASSERT_EQ(bystander.hear(), "ready") << bystander.output() << cluster.logs();
  App asserting("AssertsOnTheDevice", {cluster.socket_variable(0)});
  EXPECT_EQ(asserting.hear(), "synchronize CUDA_ERROR_ASSERT") << asserting.output() << cluster.logs();
  EXPECT_EQ(asserting.hear(), "allocate CUDA_ERROR_ASSERT") << asserting.output();
  EXPECT_EQ(asserting.hear(), "load CUDA_ERROR_ASSERT") << asserting.output();
  EXPECT_EQ(asserting.wait(), kDone) << asserting.output();
  const std::vector<pid_t> workers = cluster.workers();
  ASSERT_EQ(workers.size(), 2u) << cluster.logs();
  EXPECT_TRUE(eventually([&] { return cluster.logged_fate(workers[1], "ended"); })) << cluster.logs();

  bystander.tell("go");
  EXPECT_EQ(bystander.wait(), kDone) << bystander.output() << cluster.logs();
  App next("Works", {cluster.socket_variable(0)});
  EXPECT_EQ(next.wait(), kDone) << next.output() << cluster.logs();
}

// A device pointer means nothing in another token's session: reading, filling and freeing it
// there fail, and its owner's data stays as it was.
TEST(WorkerIsolation, ADevicePointerOfAnotherTokensSessionIsRefused) {
  Cluster cluster({random_token(), random_token()});
  App owner("OwnsMemory", {cluster.socket_variable(0)});
  const std::string pointer = owner.hear();
  ASSERT_TRUE(pointer.starts_with("pointer ")) << pointer << owner.output() << cluster.logs();
  App intruder("TouchesForeignMemory", {cluster.socket_variable(1)});
  intruder.tell(pointer.substr(8));
  EXPECT_THAT(intruder.hear(), ::testing::MatchesRegex("copy CUDA_ERROR_[A-Z_]+ untouched")) << intruder.output();
  EXPECT_THAT(intruder.hear(), ::testing::MatchesRegex("fill (CUDA_SUCCESS CUDA_ERROR_[A-Z_]+|CUDA_ERROR_[A-Z_]+ [A-Z_]+)"))
      << intruder.output();
  EXPECT_THAT(intruder.hear(), ::testing::MatchesRegex("free (CUDA_SUCCESS CUDA_ERROR_[A-Z_]+|CUDA_ERROR_[A-Z_]+ [A-Z_]+)"))
      << intruder.output();
  EXPECT_EQ(intruder.wait(), kDone) << intruder.output() << cluster.logs();
  owner.tell("check");
  EXPECT_EQ(owner.hear(), "intact") << owner.output() << cluster.logs();
  EXPECT_EQ(owner.wait(), kDone) << owner.output();
}

// The server's tokens never reach a worker's memory (it is started by exec, with nothing of the
// main process's), while the main process, which checks them, holds them.
TEST(WorkerIsolation, NoWorkerHoldsATokensBytes) {
  if (!has_capability(CAP_SYS_PTRACE))
    GTEST_SKIP() << "reading a worker's memory (it is not dumpable) needs CAP_SYS_PTRACE: run as root";
  const std::vector<std::string> tokens{random_token(), random_token()};
  Cluster cluster(tokens);
  App first("HoldsAMarker", {cluster.socket_variable(0)});
  ASSERT_EQ(first.hear(), "ready") << first.output() << cluster.logs();
  App second("HoldsAMarker", {cluster.socket_variable(1)});
  ASSERT_EQ(second.hear(), "ready") << second.output() << cluster.logs();
  const std::vector<pid_t> workers = cluster.workers();
  ASSERT_EQ(workers.size(), 2u) << cluster.logs();

  // The marker, in the device memory (host memory of the test double) of both workers, shows that
  // the scan sees a worker's memory; the tokens are looked for as text and as the bytes they spell.
  const std::vector<std::string> needles{kMarker, tokens[0], hex_decoded(tokens[0]), tokens[1], hex_decoded(tokens[1])};
  for (pid_t worker : workers) {
    const MemoryScan scan = scan_memory(worker, needles);
    EXPECT_TRUE(scan.found[0]) << "the scan of worker " << worker << " missed the marker (" << scan.bytes_read
                               << " bytes read)";
    for (size_t i = 1; i < needles.size(); ++i)
      EXPECT_FALSE(scan.found[i]) << "worker " << worker << " holds token " << (i - 1) / 2
                                  << (i % 2 ? " as text" : " as bytes");
  }
  const MemoryScan server = scan_memory(cluster.server_pid(), needles);
  EXPECT_TRUE(server.found[1] && server.found[3]) << "the scan does not find the tokens in the server's main process";

  first.tell("done");
  second.tell("done");
  EXPECT_EQ(first.wait(), kDone) << first.output();
  EXPECT_EQ(second.wait(), kDone) << second.output();
}

// Many applications of several tokens at once each get right results; afterwards every worker is
// gone and every place among max_clients is free again.
TEST(WorkerIsolation, ManyApplicationsOfManyTokensAtOnce) {
  constexpr size_t kTokens = 4, kPerToken = 8;
  constexpr unsigned kMaxClients = 40;
  std::vector<std::string> tokens;
  for (size_t i = 0; i < kTokens; ++i) tokens.push_back(random_token());
  // No bulk lanes: a lane takes a place among max_clients from its accept until it joins its
  // session, so the lanes of applications that start together could take the places of sessions.
  Cluster cluster(tokens, kMaxClients, "[client]\nbulk_lanes = 0\n");
  std::vector<std::unique_ptr<App>> apps;
  for (size_t i = 0; i < kTokens * kPerToken; ++i)
    apps.push_back(std::make_unique<App>(
        "Works", std::vector<std::string>{cluster.socket_variable(i % kTokens), "RGPU_TEST_SEED=" + std::to_string(i)}));
  for (size_t i = 0; i < apps.size(); ++i)
    EXPECT_EQ(apps[i]->wait(120s), kDone) << "application " << i << "\n" << apps[i]->output() << cluster.logs();
  EXPECT_EQ(cluster.workers().size(), apps.size()) << cluster.logs();
  // The sessions' workers are gone; what children remain are spares, waiting for sessions to come.
  const std::vector<pid_t> workers = cluster.workers();
  auto sessions_workers_left = [&] {
    size_t left = 0;
    for (pid_t child : children_of(cluster.server_pid())) left += std::count(workers.begin(), workers.end(), child);
    return left;
  };
  ASSERT_TRUE(eventually([&] { return sessions_workers_left() == 0; }))
      << sessions_workers_left() << " workers remain\n" << cluster.logs();
  EXPECT_LE(children_of(cluster.server_pid()).size(), 2u) << "more spare workers than kinds of session";

  // A worker gives its place back as it is reaped: all of them are free, and no more than that.
  std::vector<std::unique_ptr<rgpu::Session>> connections;
  for (unsigned i = 0; i < kMaxClients; ++i) {
    try {
      connections.push_back(cluster.connect(i % kTokens));
    } catch (const std::exception& e) {
      FAIL() << "connection " << i << " of " << kMaxClients << ": " << e.what() << "\n" << cluster.logs();
    }
  }
  // Authenticated connections over max_clients may only join a running session (a bulk lane);
  // anything else is refused.
  try {
    cluster.connect(0)->call(rgpu::MsgType::ListGpus);
    ADD_FAILURE() << "a connection over max_clients was served";
  } catch (const rgpu::RemoteError& e) {
    EXPECT_THAT(e.what(), ::testing::HasSubstr("server is full"));
  }
  connections.clear();
  ASSERT_TRUE(eventually([&] {
    try {
      return !cluster.connect(0)->call(rgpu::MsgType::ListGpus).payload.empty();
    } catch (const std::exception&) {
      return false;  // the server has not seen the connections close yet
    }
  })) << cluster.logs();

  App later("Works", {cluster.socket_variable(0)});
  EXPECT_EQ(later.wait(), kDone) << later.output() << cluster.logs();
}

// ---- a server that stops answering -------------------------------------------------------------

// A server that stops (SIGSTOP of its main process and the application's worker, as a hung host or
// a network that silently drops everything would look) closes nothing: the client daemon's
// keepalive (keepalive_timeout = 3 in its rgpu.toml) takes the silence for the server's end. The
// application waiting in cuCtxSynchronize gets CUDA_ERROR_DEVICE_UNAVAILABLE, and so do its later
// calls and a thread it starts after; once the server runs again, the daemon, still there, serves
// the next application.
TEST(WorkerIsolation, AStoppedServerFailsAWaitingSynchronizeAfterTheKeepalive) {
  Cluster cluster({random_token()}, 16, "[client]\nkeepalive_timeout = 3\n");
  App app("SynchronizesBehindALongKernel", {cluster.socket_variable(0)});
  ASSERT_EQ(app.hear(), "synchronizing") << app.output() << cluster.logs();
  const std::vector<pid_t> workers = cluster.workers();
  ASSERT_EQ(workers.size(), 1u) << cluster.logs();
  // Its call has gone out and it sleeps, waiting for the answer (the kernel runs for a minute).
  ASSERT_TRUE(eventually([&] { return state_of(app.pid()) == 'S'; })) << app.output();
  {
    rgpu::test::StoppedProcesses stopped({cluster.server_pid(), workers[0]});
    ASSERT_TRUE(stopped.stopped());
    // App::hear gives up after 30 s: the keepalive must have ended the wait long before.
    EXPECT_EQ(app.hear(), "synchronize CUDA_ERROR_DEVICE_UNAVAILABLE") << app.output() << cluster.logs();
    EXPECT_EQ(app.hear(), "allocate CUDA_ERROR_DEVICE_UNAVAILABLE") << app.output();
    EXPECT_EQ(app.hear(), "another thread CUDA_ERROR_DEVICE_UNAVAILABLE") << app.output();
    EXPECT_EQ(app.wait(), kDone) << app.output();
    const std::string silence =
        "server " + cluster.server_address() + " sent nothing for 3 s though pinged (keepalive_timeout)";
    EXPECT_THAT(app.output(), ::testing::HasSubstr("the connection to the GPU server is lost: " + silence));
    EXPECT_THAT(cluster.logs(), ::testing::HasSubstr(silence));
  }
  App next("Works", {cluster.socket_variable(0)});
  EXPECT_EQ(next.wait(), kDone) << next.output() << cluster.logs();
}

// A kernel that runs longer than keepalive_timeout (7 s, with a keepalive of 2 s) on a server that
// is well does not end its session: the worker answers the daemon's pings from its event loop while
// the kernel runs, and those on its bulk lanes from theirs (unencrypted lanes here, which the
// daemon pings too).
TEST(WorkerIsolation, ALongKernelOnAWellServerOutlastsTheKeepalive) {
  Cluster cluster({random_token()}, 16, "[client]\nkeepalive_timeout = 2\n", /*plain=*/true);
  App app("SynchronizesBehindASevenSecondKernel", {cluster.socket_variable(0)});
  EXPECT_EQ(app.hear(), "synchronize CUDA_SUCCESS") << app.output() << cluster.logs();
  EXPECT_EQ(app.wait(), kDone) << app.output() << cluster.logs();
  EXPECT_THAT(cluster.logs(), ::testing::Not(::testing::HasSubstr("keepalive_timeout")));
  EXPECT_THAT(cluster.logs(), ::testing::HasSubstr("bulk lane from"));
  EXPECT_THAT(cluster.logs(), ::testing::Not(::testing::HasSubstr(" lost: ")));
}

// ---- the applications ---------------------------------------------------------------------------

#define ASSERT_CU(call) ASSERT_EQ((call), CUDA_SUCCESS) << #call

void report(const std::string& line) {
  const std::string text = line + "\n";
  if (::write(kReportFd, text.data(), text.size()) != static_cast<ssize_t>(text.size())) ::_exit(91);
}

// The test's next instruction; an application whose test has gone ends.
std::string instruction() {
  std::string line;
  char c = 0;
  while (::read(kInstructionFd, &c, 1) == 1) {
    if (c == '\n') return line;
    line += c;
  }
  ::_exit(92);
}

std::string error_name(CUresult result) {
  const char* name = nullptr;
  return cuGetErrorName(result, &name) == CUDA_SUCCESS ? name : "CUresult " + std::to_string(result);
}

void enter_primary_context() {
  ASSERT_CU(cuInit(0));
  CUcontext context;
  ASSERT_CU(cuDevicePrimaryCtxRetain(&context, 0));
  ASSERT_CU(cuCtxSetCurrent(context));
}

// A few allocations, copies both ways (one large enough to go over the bulk lanes) and kernels,
// every result checked; the data depends on `seed`.
void work(unsigned seed) {
  CUmodule module;
  ASSERT_CU(cuModuleLoadData(&module, kModule));
  CUfunction add, fill;
  ASSERT_CU(cuModuleGetFunction(&add, module, "vector_add_f32"));
  ASSERT_CU(cuModuleGetFunction(&fill, module, "fill_u32"));
  unsigned n = 4096 + seed;
  std::vector<float> a(n), b(n), c(n);
  for (unsigned i = 0; i < n; ++i) a[i] = static_cast<float>(seed + i), b[i] = 2.0f * i;
  CUdeviceptr da, db, dc;
  ASSERT_CU(cuMemAlloc(&da, n * 4));
  ASSERT_CU(cuMemAlloc(&db, n * 4));
  ASSERT_CU(cuMemAlloc(&dc, n * 4));
  ASSERT_CU(cuMemcpyHtoD(da, a.data(), n * 4));
  ASSERT_CU(cuMemcpyHtoD(db, b.data(), n * 4));
  void* add_args[] = {&da, &db, &dc, &n};
  ASSERT_CU(cuLaunchKernel(add, (n + 127) / 128, 1, 1, 128, 1, 1, 0, nullptr, add_args, nullptr));
  ASSERT_CU(cuMemcpyDtoH(c.data(), dc, n * 4));
  for (unsigned i = 0; i < n; ++i) ASSERT_EQ(c[i], a[i] + b[i]) << i;

  unsigned value = 0xC0DE0000 + seed;
  unsigned long long count = n;
  void* fill_args[] = {&dc, &value, &count};
  ASSERT_CU(cuLaunchKernel(fill, 16, 1, 1, 128, 1, 1, 0, nullptr, fill_args, nullptr));
  std::vector<unsigned> filled(n);
  ASSERT_CU(cuMemcpyDtoH(filled.data(), dc, n * 4));
  ASSERT_EQ(std::count(filled.begin(), filled.end(), value), static_cast<long>(n));

  const size_t bytes = (3 << 20) + seed;
  std::vector<uint8_t> in(bytes), out(bytes);
  std::mt19937 random(seed);
  for (auto& v : in) v = static_cast<uint8_t>(random());
  CUdeviceptr large;
  ASSERT_CU(cuMemAlloc(&large, bytes));
  ASSERT_CU(cuMemcpyHtoD(large, in.data(), bytes));
  ASSERT_CU(cuMemcpyDtoH(out.data(), large, bytes));
  ASSERT_TRUE(in == out) << "the large copy came back different";

  for (CUdeviceptr d : {da, db, dc, large}) ASSERT_CU(cuMemFree(d));
  ASSERT_CU(cuModuleUnload(module));
}

#define APPLICATION(name)                                                                     \
  void name##_body();                                                                         \
  TEST(IsolationApp, name) {                                                                  \
    if (!g_is_child) GTEST_SKIP() << "runs only as an application of a WorkerIsolation test"; \
    name##_body();                                                                            \
    if (!HasFailure()) ::_exit(kDone);                                                        \
  }                                                                                           \
  void name##_body()

APPLICATION(Works) {
  enter_primary_context();
  const char* seed = std::getenv("RGPU_TEST_SEED");
  work(seed ? static_cast<unsigned>(std::atoi(seed)) : 1);
}

// Holds data on the device while the test does something else, then checks it and works.
APPLICATION(WorksWhenTold) {
  enter_primary_context();
  std::vector<uint32_t> kept(1 << 16), back(1 << 16);
  for (size_t i = 0; i < kept.size(); ++i) kept[i] = static_cast<uint32_t>(i * 2654435761u);
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, kept.size() * 4));
  ASSERT_CU(cuMemcpyHtoD(d, kept.data(), kept.size() * 4));
  report("ready");
  ASSERT_EQ(instruction(), "go");
  ASSERT_CU(cuMemcpyDtoH(back.data(), d, back.size() * 4));
  ASSERT_TRUE(back == kept) << "the data kept on the device changed";
  ASSERT_CU(cuMemFree(d));
  work(7);
}

// Launches a kernel that runs `ms` milliseconds.
void launch_sleep(unsigned ms) {
  CUmodule module;
  ASSERT_CU(cuModuleLoadData(&module, kModule));
  CUfunction sleep;
  ASSERT_CU(cuModuleGetFunction(&sleep, module, "sleep_ms"));
  void* args[] = {&ms};
  ASSERT_CU(cuLaunchKernel(sleep, 1, 1, 1, 1, 1, 1, 0, nullptr, args, nullptr));
}

// Waits for a kernel that runs a minute (its worker is killed or stopped meanwhile); then a call of
// a thread that starts after.
APPLICATION(SynchronizesBehindALongKernel) {
  enter_primary_context();
  launch_sleep(60000);
  report("synchronizing");
  report("synchronize " + error_name(cuCtxSynchronize()));
  CUdeviceptr d;
  report("allocate " + error_name(cuMemAlloc(&d, 4096)));
  CUcontext context = nullptr;
  ASSERT_CU(cuCtxGetCurrent(&context));
  CUresult later = CUDA_SUCCESS;
  std::thread([&] {
    cuCtxSetCurrent(context);
    CUdeviceptr more;
    later = cuMemAlloc(&more, 4096);
  }).join();
  report("another thread " + error_name(later));
}

// Waits for a kernel that runs 7 s, then works on.
APPLICATION(SynchronizesBehindASevenSecondKernel) {
  enter_primary_context();
  launch_sleep(7000);
  report("synchronize " + error_name(cuCtxSynchronize()));
  work(5);
}

APPLICATION(AssertsOnTheDevice) {
  enter_primary_context();
  CUmodule module;
  ASSERT_CU(cuModuleLoadData(&module, kModule));
  CUfunction assert_kernel;
  ASSERT_CU(cuModuleGetFunction(&assert_kernel, module, "device_assert"));
  ASSERT_CU(cuLaunchKernel(assert_kernel, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr));
  report("synchronize " + error_name(cuCtxSynchronize()));
  CUdeviceptr d;
  report("allocate " + error_name(cuMemAlloc(&d, 4096)));
  CUmodule another;
  report("load " + error_name(cuModuleLoadData(&another, kModule)));
}

APPLICATION(OwnsMemory) {
  enter_primary_context();
  std::vector<uint8_t> data(1 << 20), back(1 << 20);
  std::mt19937 random(3);
  for (auto& v : data) v = static_cast<uint8_t>(random());
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, data.size()));
  ASSERT_CU(cuMemcpyHtoD(d, data.data(), data.size()));
  std::ostringstream pointer;
  pointer << "pointer 0x" << std::hex << d;
  report(pointer.str());
  ASSERT_EQ(instruction(), "check");
  ASSERT_CU(cuMemcpyDtoH(back.data(), d, back.size()));
  report(back == data ? "intact" : "changed");
  ASSERT_CU(cuMemFree(d));
}

// Uses another session's device pointer; a pipelined call's error may come with the next call
// that waits, so that one is reported with it. Then works with its own memory: only then, since
// every worker's driver (the test double) hands out the same addresses, and its own first
// allocation would have the foreign pointer's value.
APPLICATION(TouchesForeignMemory) {
  enter_primary_context();
  const CUdeviceptr foreign = std::stoull(instruction(), nullptr, 16);
  std::vector<uint8_t> seen(4096, 0xEE);
  const CUresult copy = cuMemcpyDtoH(seen.data(), foreign, seen.size());
  const bool untouched = std::count(seen.begin(), seen.end(), 0xEE) == static_cast<long>(seen.size());
  report("copy " + error_name(copy) + (untouched ? " untouched" : " written"));
  const CUresult fill = cuMemsetD8(foreign, 0x5A, 4096);
  report("fill " + error_name(fill) + " " + error_name(cuCtxSynchronize()));
  const CUresult free = cuMemFree(foreign);
  report("free " + error_name(free) + " " + error_name(cuCtxSynchronize()));
  work(11);
}

// Keeps a marker in device memory until told.
APPLICATION(HoldsAMarker) {
  enter_primary_context();
  CUdeviceptr d;
  ASSERT_CU(cuMemAlloc(&d, 4096));
  ASSERT_CU(cuMemcpyHtoD(d, kMarker.data(), kMarker.size()));
  report("ready");
  ASSERT_EQ(instruction(), "done");
  ASSERT_CU(cuMemFree(d));
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--rgpu-child") g_is_child = true;
  ::testing::InitGoogleTest(&argc, argv);
  const int result = RUN_ALL_TESTS();
  if (g_is_child) {  // an application that failed: skip the driver's teardown
    std::fflush(stdout);
    ::_exit(result == 0 ? 93 : result);
  }
  return result;
}
