// Each Vulkan application's session runs in a worker process of its own (`rgpu worker`, a child of
// `rgpu server`), on lavapipe: a worker that dies ends only its application, holds no token, goes
// with its application, and counts device memory in its token's shared budget.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rgpu_process.hpp"

namespace {

using namespace std::chrono_literals;
using rgpu::test::ServerProcess;
using rgpu::test::TempDir;

constexpr auto kDeadline = 30s;

// Polls `condition` until it holds (true) or `limit` has passed (false).
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = kDeadline) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// A program running in the background; its output goes to files, read while it runs.
class Program {
 public:
  Program(const std::string& dir, const std::vector<std::string>& args, const std::vector<std::string>& env) {
    static int count = 0;
    const std::string base = dir + "/program" + std::to_string(++count);
    out_ = base + ".out";
    err_ = base + ".err";
    std::vector<std::string> strings = args;
    std::vector<char*> argv;
    for (auto& arg : strings) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<std::string> environment = env;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600), 1);
      ::dup2(::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600), 2);
      for (auto& entry : environment) ::putenv(entry.data());
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Program() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  pid_t pid() const { return pid_; }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }
  bool printed(const std::string& text) const { return contains(out(), text); }
  // The exit status (128 + the signal's number if a signal ended it), or -1 if it is still running
  // after `limit`.
  int wait(std::chrono::milliseconds limit = kDeadline) {
    int status = 0;
    if (!eventually([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; }, limit)) return -1;
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  std::string out_, err_;
};

struct ProcessState {
  char state = '?';
  pid_t parent = 0;
};

// A process's state letter and parent, from /proc/PID/stat (readable even for undumpable ones).
std::optional<ProcessState> process_state(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto end_of_name = stat.rfind(')');
  if (end_of_name == std::string::npos) return std::nullopt;
  std::istringstream rest(stat.substr(end_of_name + 1));
  ProcessState out;
  rest >> out.state >> out.parent;
  return out;
}

bool running(pid_t pid) {
  const auto state = process_state(pid);
  return state && state->state != 'Z' && state->state != 'X';
}

// Every process whose parent is `parent`, zombies included.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* proc = ::opendir("/proc");
  while (dirent* entry = ::readdir(proc)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(entry->d_name));
    if (pid <= 0) continue;
    const auto state = process_state(pid);
    if (state && state->parent == parent) out.push_back(pid);
  }
  ::closedir(proc);
  return out;
}

// This test's `rgpu server` process (a child of this one).
pid_t server_process() {
  for (pid_t child : children_of(::getpid())) {
    const std::string cmdline = read_file("/proc/" + std::to_string(child) + "/cmdline");
    const auto first_end = cmdline.find('\0');
    if (first_end != std::string::npos && cmdline.compare(first_end + 1, 7, "server\0", 7) == 0) return child;
  }
  return -1;
}

size_t open_descriptors(pid_t pid) {
  size_t count = 0;
  DIR* fds = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  while (dirent* entry = ::readdir(fds)) count += entry->d_name[0] != '.';
  ::closedir(fds);
  return count;
}

// The worker of each Vulkan session the server started, in order.
std::vector<pid_t> vulkan_workers(const ServerProcess& server) {
  static const std::regex started(R"(Vulkan session for \S+ on \d+ GPU\(s\): worker (\d+))");
  std::vector<pid_t> out;
  const std::string log = server.log();
  for (std::sregex_iterator it(log.begin(), log.end(), started), end; it != end; ++it)
    out.push_back(static_cast<pid_t>(std::stoi((*it)[1])));
  return out;
}

// The server's line about how the worker ended ("worker 123 for ... ended"), or "".
std::string worker_end_line(const ServerProcess& server, pid_t worker) {
  std::istringstream log(server.log());
  const std::string prefix = "worker " + std::to_string(worker) + " for ";
  for (std::string line; std::getline(log, line);)
    if (contains(line, prefix)) return line.substr(line.find(prefix));
  return "";
}

std::string random_token() {
  std::random_device random;
  std::string token = "isolation-";
  for (int i = 0; i < 64; ++i) token += "0123456789abcdef"[random() % 16];
  return token;
}

enum class Tls { Off, On };

// A server on lavapipe with `tokens_toml` (none: open), and a client daemon that uses `token`
// (with `client_options` on its command line).
struct Rig {
  explicit Rig(const std::string& tokens_toml = "", const std::string& token = "", Tls tls = Tls::Off,
               const std::vector<std::string>& client_options = {})
      : server(server_args(dir, tokens_toml, tls), {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST}),
        client(client_args(server, dir.path() + "/client.sock", token, tls, client_options), {}, "client") {}

  static std::vector<std::string> server_args(const TempDir& dir, const std::string& tokens_toml, Tls tls) {
    std::vector<std::string> args{"--config", dir.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n\n" + tokens_toml)};
    if (tls == Tls::On)
      args.insert(args.end(), {"--cert", dir.path() + "/cert.pem", "--key", dir.path() + "/key.pem", "--generate-cert"});
    else
      args.insert(args.end(), {"--tls", "off"});
    return args;
  }
  static std::vector<std::string> client_args(const ServerProcess& server, const std::string& socket,
                                              const std::string& token, Tls tls,
                                              const std::vector<std::string>& options) {
    std::vector<std::string> args{"--server", server.address(), "--tls", tls == Tls::On ? "on" : "off", "--socket", socket};
    args.insert(args.end(), options.begin(), options.end());
    if (tls == Tls::On) args.insert(args.end(), {"--server-fingerprint", server.fingerprint()});
    if (!token.empty()) args.insert(args.end(), {"--token", token});
    return args;
  }
  std::vector<std::string> env() const {
    return {"VK_DRIVER_FILES=" RGPU_ICD_MANIFEST, "RGPU_CLIENT_SOCKET=" + dir.path() + "/client.sock",
            "XDG_RUNTIME_DIR=" + dir.path()};
  }
  std::unique_ptr<Program> start(const std::vector<std::string>& args) const {
    std::vector<std::string> argv{VULKAN_GATED};
    argv.insert(argv.end(), args.begin(), args.end());
    return std::make_unique<Program>(dir.path(), argv, env());
  }
  std::string gate(const std::string& name) const { return dir.path() + "/" + name + ".gate"; }
  void open(const std::string& gate) const { dir.file(gate.substr(gate.rfind('/') + 1), ""); }

  TempDir dir;
  ServerProcess server;
  ServerProcess client;
};

// Starts `vulkan_gated args...` and waits until it prints `mark`; returns it with its worker.
std::pair<std::unique_ptr<Program>, pid_t> start_with_worker(const Rig& rig, const std::vector<std::string>& args,
                                                             const std::string& mark) {
  const size_t before = vulkan_workers(rig.server).size();
  auto program = rig.start(args);
  const bool marked = eventually([&] { return program->printed(mark) || !running(program->pid()); });
  EXPECT_TRUE(marked && program->printed(mark)) << program->out() << program->err() << "\nserver:\n" << rig.server.log();
  const auto workers = vulkan_workers(rig.server);
  EXPECT_EQ(workers.size(), before + 1) << rig.server.log();
  return {std::move(program), workers.empty() ? -1 : workers.back()};
}

std::string direct_compute_output() {
  const auto direct = rgpu::test::run_program({VULKAN_GATED, "compute"}, {"VK_DRIVER_FILES=" LAVAPIPE_MANIFEST});
  EXPECT_EQ(direct.exit_code, 0) << direct.out << direct.err;
  EXPECT_TRUE(contains(direct.out, "at the gate\n") && contains(direct.out, "PASS\n")) << direct.out;
  return direct.out;
}

// A worker killed by `signal` mid-run ends its application only: one started before goes on to
// lavapipe's results, one started after works, the server is still there.
void worker_death_ends_only_its_application(int signal) {
  const std::string name = std::string("SIG") + sigabbrev_np(signal);
  const std::string expected = direct_compute_output();
  Rig rig;
  auto [victim, victim_worker] = start_with_worker(rig, {"compute", "--gate", rig.gate("victim")}, "at the gate");
  auto [survivor, survivor_worker] =
      start_with_worker(rig, {"compute", "--gate", rig.gate("survivor")}, "at the gate");
  ASSERT_GT(victim_worker, 0);
  ASSERT_GT(survivor_worker, 0);
  ASSERT_NE(victim_worker, survivor_worker);
  const pid_t server_pid = process_state(victim_worker).value().parent;
  EXPECT_EQ(process_state(survivor_worker).value().parent, server_pid) << "workers are children of the server";

  // The victim dispatches in a loop at its gate, which stays shut: only the kill ends it.
  ASSERT_EQ(::kill(victim_worker, signal), 0);
  const int victim_exit = victim->wait();
  EXPECT_EQ(victim_exit, 1) << victim->out() << victim->err();
  const std::string victim_err = victim->err();
  EXPECT_TRUE(contains(victim_err, "VK_ERROR_DEVICE_LOST")) << victim_err;
  EXPECT_TRUE(contains(victim_err, "the GPU server's worker for this application was killed by " + name)) << victim_err;
  EXPECT_FALSE(contains(victim->out(), "PASS")) << victim->out();
  EXPECT_TRUE(eventually([&] { return !worker_end_line(rig.server, victim_worker).empty(); }));
  EXPECT_TRUE(contains(worker_end_line(rig.server, victim_worker), "was killed by " + name))
      << rig.server.log();

  // A third application, while the survivor still waits at its gate.
  auto third = rig.start({"compute"});
  EXPECT_EQ(third->wait(), 0) << third->out() << third->err() << "\nserver:\n" << rig.server.log();
  EXPECT_EQ(third->out(), expected);

  EXPECT_TRUE(running(survivor_worker));
  EXPECT_TRUE(running(survivor->pid()));
  rig.open(rig.gate("survivor"));
  EXPECT_EQ(survivor->wait(), 0) << survivor->out() << survivor->err() << "\nserver:\n" << rig.server.log();
  EXPECT_EQ(survivor->out(), expected);

  EXPECT_TRUE(running(server_pid));
  EXPECT_EQ(rig.server.stop(), 0) << rig.server.log();
}

TEST(VulkanWorkers, KilledBySigsegvEndsOnlyItsApplication) { worker_death_ends_only_its_application(SIGSEGV); }

TEST(VulkanWorkers, KilledBySigkillEndsOnlyItsApplication) { worker_death_ends_only_its_application(SIGKILL); }

// What scan_memory found.
struct Scan {
  size_t bytes = 0;                // read
  std::vector<std::string> found;  // needles that occur
  std::string error;
};

// Reads every readable mapping of `pid` (through /proc/PID/mem) and says which needles occur.
Scan scan_memory(pid_t pid, const std::vector<std::string>& needles) {
  Scan scan;
  const std::string proc = "/proc/" + std::to_string(pid);
  const int mem = ::open((proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) {
    scan.error = proc + "/mem: " + std::strerror(errno);
    return scan;
  }
  size_t longest = 0;
  for (const auto& needle : needles) longest = std::max(longest, needle.size());
  constexpr size_t kChunk = 1 << 20;
  std::vector<char> buffer(longest + kChunk);
  std::istringstream maps(read_file(proc + "/maps"));
  for (std::string line; std::getline(maps, line);) {
    uint64_t start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3 || perms[0] != 'r') continue;
    size_t kept = 0;  // the previous chunk's tail, for a needle that spans two chunks
    for (uint64_t at = start; at < end;) {
      const ssize_t got = ::pread(mem, buffer.data() + kept, std::min<uint64_t>(kChunk, end - at), static_cast<off_t>(at));
      if (got <= 0) break;  // [vvar] and the like cannot be read
      scan.bytes += static_cast<size_t>(got);
      at += static_cast<uint64_t>(got);
      const std::string_view seen(buffer.data(), kept + static_cast<size_t>(got));
      for (const auto& needle : needles)
        if (seen.find(needle) != std::string_view::npos &&
            std::find(scan.found.begin(), scan.found.end(), needle) == scan.found.end())
          scan.found.push_back(needle);
      const size_t keep = std::min(seen.size(), longest - 1);
      std::memmove(buffer.data(), buffer.data() + seen.size() - keep, keep);
      kept = keep;
    }
  }
  ::close(mem);
  return scan;
}

bool can_trace_others() {
  std::istringstream status(read_file("/proc/self/status"));
  for (std::string line; std::getline(status, line);)
    if (line.rfind("CapEff:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> 19) & 1;  // CAP_SYS_PTRACE
  return false;
}

// On lavapipe device memory is the worker's own host memory, which a shader following a raw
// device address could read: no token may be in it. The main process holds them (the scan works).
void tokens_are_not_in_a_workers_memory(Tls tls) {
  if (!can_trace_others())
    GTEST_SKIP() << "workers are not dumpable: reading their memory needs CAP_SYS_PTRACE (run as root)";
  const std::string first = random_token(), second = random_token();
  Rig rig("[[security.tokens]]\nname = \"first\"\ntoken = \"" + first + "\"\n\n[[security.tokens]]\n"
          "name = \"second\"\ntoken = \"" + second + "\"\n",
          first, tls);
  auto [program, worker] = start_with_worker(rig, {"compute", "--gate", rig.gate("scan")}, "at the gate");
  ASSERT_GT(worker, 0);
  ASSERT_TRUE(running(worker));
  const pid_t server_pid = process_state(worker).value().parent;

  const Scan in_worker = scan_memory(worker, {first, second});
  EXPECT_TRUE(in_worker.error.empty()) << in_worker.error;
  EXPECT_GT(in_worker.bytes, size_t{16} << 20) << "the worker's memory was hardly read";
  EXPECT_TRUE(in_worker.found.empty()) << in_worker.found.size() << " token(s) in worker " << worker << "'s memory";
  EXPECT_TRUE(running(worker)) << "the worker ended during the scan";

  const Scan in_server = scan_memory(server_pid, {first, second});
  EXPECT_TRUE(in_server.error.empty()) << in_server.error;
  EXPECT_EQ(in_server.found.size(), 2u) << "the main server process holds both tokens; the scan missed them";

  rig.open(rig.gate("scan"));
  EXPECT_EQ(program->wait(), 0) << program->out() << program->err();
  if (tls == Tls::On) {
    EXPECT_TRUE(contains(rig.server.log(), "TLS with 127.0.0.1")) << rig.server.log();
  }
}

TEST(VulkanWorkers, TokensAreNotInAWorkersMemory) { tokens_are_not_in_a_workers_memory(Tls::Off); }

TEST(VulkanWorkers, TokensAreNotInAWorkersMemoryOverTls) { tokens_are_not_in_a_workers_memory(Tls::On); }

// After its application has gone (`end` ends it), the server has no worker left and says so.
void worker_ends_with_its_application(const std::function<void(const Rig&, Program&)>& end, int expected_exit) {
  Rig rig;
  const pid_t server_pid = server_process();
  ASSERT_GT(server_pid, 0);
  // A session first: what the main process keeps for good (the token's memory budget) is made then.
  auto first = rig.start({"compute"});
  ASSERT_EQ(first->wait(), 0) << first->out() << first->err();
  ASSERT_TRUE(eventually([&] { return !worker_end_line(rig.server, vulkan_workers(rig.server).at(0)).empty(); }));
  const size_t descriptors = open_descriptors(server_pid);
  auto [program, worker] = start_with_worker(rig, {"compute", "--gate", rig.gate("end")}, "at the gate");
  ASSERT_GT(worker, 0);
  auto is_child = [&] {
    const auto children = children_of(server_pid);
    return std::find(children.begin(), children.end(), worker) != children.end();
  };
  ASSERT_TRUE(is_child());
  // Beside it, at most a spare worker waits for the next session.
  EXPECT_LE(children_of(server_pid).size(), 2u);
  end(rig, *program);
  EXPECT_EQ(program->wait(), expected_exit) << program->out() << program->err();
  EXPECT_TRUE(eventually([&] { return !is_child(); })) << "the worker remains\n" << rig.server.log();
  EXPECT_TRUE(eventually([&] { return !worker_end_line(rig.server, worker).empty(); })) << rig.server.log();
  const std::string line = worker_end_line(rig.server, worker);
  EXPECT_EQ(line.substr(line.size() - std::min<size_t>(line.size(), 6)), " ended") << line;
  // Nothing of the session stays open in the main process (its socket, the worker's pidfd and
  // control channel). Fewer is fine: the client daemon's first connection may still have been open.
  EXPECT_TRUE(eventually([&] { return open_descriptors(server_pid) <= descriptors; }))
      << open_descriptors(server_pid) << " descriptors open, " << descriptors << " before the session";
  EXPECT_TRUE(running(server_pid));
}

TEST(VulkanWorkers, WorkerEndsWhenItsApplicationExits) {
  worker_ends_with_its_application([](const Rig& rig, Program&) { rig.open(rig.gate("end")); }, 0);
}

TEST(VulkanWorkers, WorkerEndsWhenItsApplicationIsKilled) {
  worker_ends_with_its_application([](const Rig&, Program& program) { ::kill(program.pid(), SIGKILL); },
                                   128 + SIGKILL);
}

// A token's max_memory bounds what all its applications hold together, and what an application
// held is free again once it has gone (it exits without freeing anything).
TEST(VulkanWorkers, MaxMemoryIsSharedByATokensApplications) {
  const std::string token = random_token();
  Rig rig("[[security.tokens]]\nname = \"budget\"\ntoken = \"" + token + "\"\nmax_memory = 67108864\n", token);
  auto [first, first_worker] = start_with_worker(rig, {"allocate", "40", "--gate", rig.gate("first")}, "holding");
  EXPECT_TRUE(first->printed("allocate 40 MiB: VK_SUCCESS\n")) << first->out();
  // 40 + 40 MiB is past the limit; 40 + 16 is not.
  auto [second, second_worker] =
      start_with_worker(rig, {"allocate", "40", "16", "--gate", rig.gate("second")}, "holding");
  EXPECT_EQ(second->out(), "allocate 40 MiB: VK_ERROR_OUT_OF_DEVICE_MEMORY\nallocate 16 MiB: VK_SUCCESS\nholding\n")
      << second->err();

  rig.open(rig.gate("first"));
  EXPECT_EQ(first->wait(), 0) << first->err();
  ASSERT_TRUE(eventually([&] { return !worker_end_line(rig.server, first_worker).empty(); })) << rig.server.log();
  auto third = rig.start({"allocate", "40"});
  EXPECT_EQ(third->wait(), 0) << third->err();
  EXPECT_EQ(third->out(), "allocate 40 MiB: VK_SUCCESS\nholding\n") << rig.server.log();

  rig.open(rig.gate("second"));
  EXPECT_EQ(second->wait(), 0) << second->err();
}

// ---- a server that stops answering ----

// The milliseconds in the program's "vkWaitForFences: RESULT after N ms" line; -1 without one.
long long waited_ms(const std::string& output) {
  static const std::regex line(R"(vkWaitForFences: \S+ after (\d+) ms)");
  std::smatch match;
  return std::regex_search(output, match, line) ? std::stoll(match[1]) : -1;
}

// Starts `vulkan_gated wait TIMEOUT` and, once it is at its gate, stops the server with SIGSTOP
// (its main process and the program's worker, as a hung host or a network that silently drops
// everything would look; `stopped` continues them when it goes), then lets the program submit
// work and wait for its fence. Null if the program has no worker.
std::unique_ptr<Program> waiting_on_a_stopped_server(const Rig& rig, const std::string& timeout,
                                                     std::optional<rgpu::test::StoppedProcesses>& stopped) {
  auto [program, worker] = start_with_worker(rig, {"wait", timeout, "--gate", rig.gate("wait")}, "at the gate");
  if (worker <= 0) return nullptr;
  stopped.emplace(std::vector<pid_t>{rig.server.pid(), worker});
  EXPECT_TRUE(stopped->stopped());
  rig.open(rig.gate("wait"));
  return std::move(program);
}

// A server that stops closes nothing. The client daemon's
// keepalive takes the silence for the server's end: a program waiting for a fence without a
// timeout gets VK_ERROR_DEVICE_LOST saying so, and once the server runs again the daemon, still
// there, serves the next program.
TEST(VulkanKeepalive, AStoppedServerEndsAnEndlessFenceWaitWithDeviceLost) {
  Rig rig("", "", Tls::Off, {"--keepalive-timeout", "3"});
  {
    std::optional<rgpu::test::StoppedProcesses> stopped;
    const auto program = waiting_on_a_stopped_server(rig, "forever", stopped);
    ASSERT_TRUE(program);
    // Program::wait gives up after 30 s: the wait must end long before, by the keepalive.
    EXPECT_EQ(program->wait(), 0) << program->out() << program->err() << "\nclient:\n" << rig.client.log();
    EXPECT_TRUE(contains(program->out(), "vkWaitForFences: VK_ERROR_DEVICE_LOST after ")) << program->out();
    const std::string silence = "server " + rig.server.address() + " sent nothing for 3 s though pinged (keepalive_timeout)";
    EXPECT_TRUE(contains(program->err(), "the connection to the GPU server is lost: " + silence)) << program->err();
    EXPECT_TRUE(contains(rig.client.log(), silence)) << rig.client.log();
  }
  auto next = rig.start({"compute"});
  EXPECT_EQ(next->wait(), 0) << next->out() << next->err() << "\nclient:\n" << rig.client.log();
  EXPECT_TRUE(contains(next->out(), "PASS")) << next->out();
}

// A wait with a timeout returns by that timeout (and a second for the answer's way) even when the
// server stopped answering, long before the keepalive (here a minute) would end the session.
TEST(VulkanKeepalive, AStoppedServerEndsATimedFenceWaitByItsTimeout) {
  Rig rig("", "", Tls::Off, {"--keepalive-timeout", "60"});
  std::optional<rgpu::test::StoppedProcesses> stopped;
  const auto program = waiting_on_a_stopped_server(rig, "2000", stopped);
  ASSERT_TRUE(program);
  EXPECT_EQ(program->wait(), 0) << program->out() << program->err();
  EXPECT_TRUE(contains(program->out(), "vkWaitForFences: VK_TIMEOUT after ")) << program->out();
  const long long waited = waited_ms(program->out());
  EXPECT_GE(waited, 2000) << program->out();    // not before its timeout
  EXPECT_LT(waited, 15000) << program->out();   // nor until the keepalive
  EXPECT_TRUE(contains(program->err(), "no answer from the GPU server within the wait's timeout")) << program->err();
}

// A wait that lasts longer than keepalive_timeout on a server that is well (a fence nothing
// signals, waited for 7 s with a keepalive of 2 s) is answered by the server, and the session
// goes on: the worker answers the daemon's pings while the wait runs.
TEST(VulkanKeepalive, ALongWaitOnAWellServerOutlastsTheKeepalive) {
  Rig rig("", "", Tls::Off, {"--keepalive-timeout", "2"});
  auto program = rig.start({"idle-wait", "7000"});
  EXPECT_EQ(program->wait(), 0) << program->out() << program->err() << "\nclient:\n" << rig.client.log();
  EXPECT_TRUE(contains(program->out(), "idle wait: VK_TIMEOUT\n")) << program->out();
  EXPECT_TRUE(contains(program->out(), "PASS\n")) << program->out();
  EXPECT_FALSE(contains(program->err(), "no answer from the GPU server")) << program->err();
  EXPECT_FALSE(contains(rig.client.log(), "keepalive_timeout")) << rig.client.log();
}

}  // namespace
