// Runs the real rgpu binary from tests: one-shot commands, and a server started the way systemd
// starts it (an inherited listening socket, readiness reported through NOTIFY_SOCKET).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace rgpu::test {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs a program (looked up in PATH when argv[0] has no slash) to completion, with `env`
// ("NAME=value") added to this process's environment; killed after `timeout`. Children started
// here or by ServerProcess get XDG_CONFIG_HOME and XDG_STATE_HOME of their own unless `env`
// sets them.
CommandResult run_program(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Runs `rgpu args...` to completion (killed after `timeout`).
CommandResult run_rgpu(const std::vector<std::string>& args,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));

// A scratch directory removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name, const std::string& contents) const;

 private:
  std::string path_;
};

// `rgpu server` arguments for a loopback server with a TLS certificate it generates in `dir`.
std::vector<std::string> tls_server_args(const TempDir& dir);

class ServerProcess {
 public:
  // Starts `rgpu server args...` on a fresh loopback port (an inherited listening socket, as systemd
  // passes it) and waits until it reports READY=1. With another subcommand ("client"), no socket
  // is passed.
  explicit ServerProcess(std::vector<std::string> args, std::vector<std::string> env = {},
                         const std::string& subcommand = "server");
  ~ServerProcess();
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Stops with SIGTERM and returns the exit code.
  int stop();
  // Everything the server logged so far.
  std::string log() const;
  // The key fingerprint a TLS server logged at startup ("SHA256:..."), for clients to pin.
  std::string fingerprint() const;

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string log_path_;
  TempDir home_;  // its XDG_CONFIG_HOME and XDG_STATE_HOME unless the test gives them
  int exit_code_ = -1;
};

// Processes stopped with SIGSTOP for as long as the object lives (a server that hangs), continued
// when it goes, whatever the test's outcome: a stopped server would not end on SIGTERM.
class StoppedProcesses {
 public:
  explicit StoppedProcesses(std::vector<pid_t> pids);
  ~StoppedProcesses() { resume(); }
  StoppedProcesses(const StoppedProcesses&) = delete;
  StoppedProcesses& operator=(const StoppedProcesses&) = delete;
  // Whether every one of them was stopped.
  bool stopped() const { return stopped_; }
  // Continues them (SIGCONT) now.
  void resume();

 private:
  std::vector<pid_t> pids_;
  bool stopped_ = true;
};

}  // namespace rgpu::test
