// The rgpu subcommands; each returns the process exit code.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "session.hpp"

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
  // The server's configuration: its certificate's fingerprint is printed for the client's rgpu.toml.
  std::optional<std::string> config;
};
int run_token(const TokenOptions& options);

// Where the server keeps what it makes itself (its certificate when none is configured):
// $STATE_DIRECTORY (systemd), $XDG_STATE_HOME/rgpu or ~/.local/state/rgpu.
std::string server_state_directory();

struct ServerOptions {
  std::optional<uint16_t> port;
  std::optional<std::string> bind;
  std::optional<std::string> cert;
  std::optional<std::string> key;
  std::string config = "rgpu.toml";
  bool config_given = false;  // a missing default rgpu.toml is fine; a missing --config file is an error
  std::optional<std::string> pid_file;
  bool generate_cert = false;  // write a self-signed cert/key pair to --cert/--key first
  std::optional<std::string> tls;  // "on" or "off"
};
int run_server(const ServerOptions& options);

// How `rgpu client` and `rgpu info` reach the servers named on their command line.
struct AccessOptions {
  std::string token;  // --token: visible to every local user in ps; --token-file or RGPU_TOKEN are not
  std::optional<std::string> token_file;
  std::string tls = "auto";
  std::optional<std::string> fingerprint;
  std::optional<std::string> ca;
  std::optional<std::string> known_servers;
};
struct ResolvedAccess {
  std::string token;
  TlsMode tls = TlsMode::Auto;
  ServerTrust trust;
};
// The token (--token, --token-file or RGPU_TOKEN), TLS mode and trust; `known_servers` is the
// configured file (empty: the default). Throws ConfigError with a sentence.
ResolvedAccess resolve_access(const AccessOptions& options, const std::string& known_servers);

struct ClientOptions {
  std::vector<std::string> servers;
  AccessOptions access;
  std::string config = "rgpu.toml";
  bool config_given = false;
  std::optional<std::string> pid_file;
  std::optional<std::string> socket;
  std::optional<uint32_t> keepalive_timeout;  // seconds; replaces [client] keepalive_timeout
};
int run_client(const ClientOptions& options);

struct InfoOptions {
  std::string server;
  AccessOptions access;
};
int run_info(const InfoOptions& options);

// The server's worker process for one application session (started by run_server only).
int run_worker();

}  // namespace rgpu
