// rgpu.toml: the configuration file, parsed with toml++ and validated key by key.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace rgpu {

// A bad value: what() names the file, the key and what is allowed, e.g.
// "rgpu.toml: server.port: 70000 is out of range (1-65535)".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Transport { Tcp, Quic };
enum class GpuOrdering { LocalFirst, RemoteFirst, ByCapability };

const char* transport_name(Transport);
const char* gpu_ordering_name(GpuOrdering);

struct ServerSection {
  std::string bind = "0.0.0.0";
  uint16_t port = 9876;
  uint32_t server_id = 0;
  uint32_t max_clients = 16;
  // Seconds a session's worker process may leave the server's check unanswered before it is
  // ended as hung (its application gets an error saying so).
  uint32_t worker_timeout = 30;
  // Connections that have not authenticated yet, at most, overall and from one address; a new
  // one over either limit ends the oldest (of that address, or overall).
  uint32_t max_unauthenticated = 256;
  uint32_t max_unauthenticated_per_address = 32;
  Transport transport = Transport::Tcp;
  // "on": TLS only, with cert_path/key_path or a certificate the server makes itself in its state
  // directory; "off": plaintext only (clients must say tls = "off" too).
  bool tls = true;
  std::optional<std::string> cert_path;
  std::optional<std::string> key_path;
  std::optional<std::vector<uint32_t>> expose_gpus;  // nullopt: all
};

struct ClientServerEntry {
  std::string address;  // host:port
  std::string token;    // from `token` or read from `token_file`
  Transport transport = Transport::Tcp;
  std::string tls = "auto";  // RGPU extension: "auto", "on" or "off"
  std::string server_fingerprint;  // "SHA256:..." of the server's public key (normalized); empty: none
  std::string ca_path;             // CAs that sign the server's certificate; empty: none
};

struct ClientSection {
  GpuOrdering gpu_ordering = GpuOrdering::LocalFirst;
  bool include_local_gpus = true;
  // RGPU extension: further connections per CUDA application that carry its large host-to-device
  // copies in parallel (0: everything on the application's one connection).
  uint32_t bulk_lanes = 4;
  // Seconds a server's connection for an application may stay silent, though pinged, before the
  // daemon takes the server as gone for that application (its calls then fail).
  uint32_t keepalive_timeout = 15;
  std::string known_servers;  // empty: default_known_servers_path()
  std::vector<ClientServerEntry> servers;
};

struct TokenEntry {
  std::string token;
  std::string name;
  std::optional<std::vector<uint32_t>> allowed_gpus;  // nullopt: all
  std::optional<uint64_t> max_memory;                 // nullopt: unlimited
};

struct Config {
  ServerSection server;
  ClientSection client;
  std::vector<TokenEntry> tokens;  // [[security.tokens]]
  // Unknown keys and other things worth a warning, each naming file and key.
  std::vector<std::string> warnings;
};

// source_name is used in messages ("rgpu.toml", "/etc/rgpu/rgpu.toml").
Config parse_config(std::string_view toml_text, const std::string& source_name);
Config load_config_file(const std::string& path);

// Why a token is too weak to use (nullopt when it is not): shorter than 128 bits as hex digits.
std::optional<std::string> token_weakness(std::string_view token);
// The token in a file (its first line, without surrounding whitespace). Throws ConfigError when
// the file cannot be read, is readable by other users, or holds no token.
std::string read_token_file(const std::string& path);

// The [[security.tokens]] entry for a token, as `rgpu token` prints it (values TOML-escaped).
std::string token_toml_snippet(const std::string& token, const std::string& name);

}  // namespace rgpu
