// The rgpu subcommands; each returns the process exit code.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace rgpu {

// Exit codes shared by the subcommands.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,       // runtime failure (cannot bind, cannot start)
  kExitUsage = 2,         // bad command line or configuration
  kExitUnreachable = 3,   // server unreachable / connection refused
  kExitAuth = 4,          // wrong or missing token
  kExitTls = 5,           // TLS mismatch or TLS failure
  kExitProtocol = 6,      // protocol version mismatch or a malformed answer
  kExitRefused = 7,       // the server refused us (too many clients, forbidden)
};

struct TokenOptions {
  std::string name = "client";
};
int run_token(const TokenOptions& options);

struct ServerOptions {
  std::optional<uint16_t> port;
  std::optional<std::string> bind;
  std::optional<std::string> cert;
  std::optional<std::string> key;
  std::string config = "rgpu.toml";
  bool config_given = false;  // a missing default rgpu.toml is fine; a missing --config file is an error
  std::optional<std::string> pid_file;
  bool generate_cert = false;  // write a self-signed cert/key pair to --cert/--key first
};
int run_server(const ServerOptions& options);

struct ClientOptions {
  std::vector<std::string> servers;
  std::string token;
  std::string tls = "auto";
  std::string config = "rgpu.toml";
  bool config_given = false;
  std::optional<std::string> pid_file;
  std::optional<std::string> socket;
};
int run_client(const ClientOptions& options);

struct InfoOptions {
  std::string server;
  std::string token;
  std::string tls = "auto";
};
int run_info(const InfoOptions& options);

// The server's worker process for one application session (started by run_server only).
int run_worker();

}  // namespace rgpu
