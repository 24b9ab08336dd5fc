#include "rgpu_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "net.hpp"

namespace rgpu::test {

namespace {
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Each child gets a configuration and state home of its own (a client's known_servers, a
// server's own certificate) unless the test sets them: tests never read or write the user's.
void use_private_homes(const std::string& dir, const std::vector<std::string>& env) {
  auto given = [&](const std::string& name) {
    for (const auto& e : env)
      if (e.rfind(name + "=", 0) == 0) return true;
    return false;
  };
  if (!given("XDG_CONFIG_HOME")) ::setenv("XDG_CONFIG_HOME", (dir + "/config").c_str(), 1);
  if (!given("XDG_STATE_HOME")) ::setenv("XDG_STATE_HOME", (dir + "/state").c_str(), 1);
}

std::vector<char*> argv_of(std::vector<std::string>& args) {
  std::vector<char*> out;
  for (auto& a : args) out.push_back(a.data());
  out.push_back(nullptr);
  return out;
}

int wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  // pidfd lets us wait with a timeout without polling in a loop.
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd pfd{pidfd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(left.count(), 0))) == 0) ::kill(pid, SIGKILL);
    ::close(pidfd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}
}  // namespace

TempDir::TempDir() {
  char tmpl[] = "/tmp/rgpu-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::file(const std::string& name, const std::string& contents) const {
  std::string path = path_ + "/" + name;
  std::ofstream(path) << contents;
  return path;
}

CommandResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          std::chrono::milliseconds timeout) {
  TempDir dir;
  const std::string out_path = dir.path() + "/out", err_path = dir.path() + "/err";
  std::vector<std::string> full = argv;
  std::vector<std::string> environment = env;
  pid_t pid = ::fork();
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 1);
    ::dup2(err, 2);
    use_private_homes(dir.path(), environment);
    for (auto& e : environment) ::putenv(e.data());
    auto args = argv_of(full);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  CommandResult result;
  result.exit_code = wait_exit(pid, timeout);
  result.out = read_file(out_path);
  result.err = read_file(err_path);
  return result;
}

CommandResult run_rgpu(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  std::vector<std::string> full{RGPU_BINARY};
  full.insert(full.end(), args.begin(), args.end());
  return run_program(full, {}, timeout);
}

ServerProcess::ServerProcess(std::vector<std::string> args, std::vector<std::string> env,
                             const std::string& subcommand) {
  const bool with_listener = subcommand == "server";
  UniqueFd listener;
  if (with_listener) {
    listener = UniqueFd(listen_tcp("127.0.0.1", 0));
    port_ = bound_port(listener.get());
  }

  char tmpl[] = "/tmp/rgpu-server-log-XXXXXX";
  int log_fd = ::mkstemp(tmpl);
  log_path_ = tmpl;

  UniqueFd notify(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string notify_path = log_path_ + ".notify";
  std::strncpy(addr.sun_path, notify_path.c_str(), sizeof addr.sun_path - 1);
  ::unlink(notify_path.c_str());
  if (::bind(notify.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("cannot bind notify socket");

  std::vector<std::string> full{RGPU_BINARY, subcommand};
  full.insert(full.end(), args.begin(), args.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(log_fd, 2);
    ::dup2(log_fd, 1);
    if (with_listener) {
      if (listener.get() == 3) ::fcntl(3, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
      else ::dup2(listener.get(), 3);                    // SD_LISTEN_FDS_START
      ::setenv("LISTEN_FDS", "1", 1);
      ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    }
    ::setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
    use_private_homes(home_.path(), env);
    for (auto& e : env) ::putenv(e.data());
    auto argv = argv_of(full);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);

  pollfd pfd{notify.get(), POLLIN, 0};
  for (;;) {
    if (::poll(&pfd, 1, 20000) <= 0) {
      stop();
      throw std::runtime_error("rgpu " + subcommand + " did not report READY=1 within 20 s; log:\n" + log());
    }
    char buf[512] = {};
    ssize_t n = ::recv(notify.get(), buf, sizeof buf - 1, 0);
    if (n > 0 && std::string(buf, static_cast<size_t>(n)).find("READY=1") != std::string::npos) break;
  }
  ::unlink(notify_path.c_str());
}

ServerProcess::~ServerProcess() {
  stop();
  ::unlink(log_path_.c_str());
}

int ServerProcess::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    exit_code_ = wait_exit(pid_, std::chrono::seconds(10));
    pid_ = -1;
  }
  return exit_code_;
}

std::string ServerProcess::log() const { return read_file(log_path_); }

std::string ServerProcess::fingerprint() const {
  const std::string text = log();
  const std::string label = "key fingerprint ";
  const auto at = text.find(label);
  if (at == std::string::npos) throw std::runtime_error("the server logged no key fingerprint; log:\n" + text);
  return text.substr(at + label.size(), std::strlen("SHA256:") + 64);
}

std::vector<std::string> tls_server_args(const TempDir& dir) {
  const std::string config = dir.file("rgpu.toml", "[server]\nbind = \"127.0.0.1\"\n");
  return {"--config", config, "--cert", dir.path() + "/cert.pem", "--key", dir.path() + "/key.pem", "--generate-cert"};
}

StoppedProcesses::StoppedProcesses(std::vector<pid_t> pids) : pids_(std::move(pids)) {
  for (pid_t pid : pids_) stopped_ = pid > 0 && ::kill(pid, SIGSTOP) == 0 && stopped_;  // never a group
}

void StoppedProcesses::resume() {
  for (pid_t pid : pids_)
    if (pid > 0) ::kill(pid, SIGCONT);
  pids_.clear();
}

}  // namespace rgpu::test
