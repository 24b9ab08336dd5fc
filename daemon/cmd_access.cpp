// How `rgpu client` and `rgpu info` reach a server: the token, the TLS mode and whom to trust.
#include <cstdlib>

#include "commands.hpp"
#include "config.hpp"
#include "server_identity.hpp"

namespace rgpu {

ResolvedAccess resolve_access(const AccessOptions& options, const std::string& known_servers) {
  ResolvedAccess out;
  const char* from_env = std::getenv("RGPU_TOKEN");
  const int sources = !options.token.empty() + options.token_file.has_value() + (from_env != nullptr && *from_env);
  if (sources > 1) throw ConfigError("give the token one way: --token, --token-file or RGPU_TOKEN");
  if (options.token_file) {
    out.token = read_token_file(*options.token_file);
  } else if (from_env != nullptr && *from_env) {
    out.token = from_env;
  } else {
    out.token = options.token;
  }
  if (!out.token.empty())
    if (auto weakness = token_weakness(out.token)) throw ConfigError(*weakness);
  out.tls = parse_tls_mode(options.tls).value_or(TlsMode::Auto);
  if (options.fingerprint) {
    auto fingerprint = normalize_fingerprint(*options.fingerprint);
    if (!fingerprint)
      throw ConfigError("--server-fingerprint: \"" + *options.fingerprint +
                        "\" is not SHA256: followed by 64 hex digits (as `rgpu server` logs it)");
    out.trust.fingerprint = *fingerprint;
  }
  out.trust.ca_path = options.ca.value_or("");
  out.trust.known_servers = options.known_servers.value_or(known_servers.empty() ? default_known_servers_path()
                                                                                 : known_servers);
  if (out.tls == TlsMode::Off && (!out.trust.fingerprint.empty() || !out.trust.ca_path.empty()))
    throw ConfigError("--tls off cannot check a server fingerprint or CA: those need TLS");
  return out;
}

}  // namespace rgpu
