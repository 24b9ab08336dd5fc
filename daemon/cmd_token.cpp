// rgpu token: a fresh 256-bit token and the rgpu.toml entries that admit it (server) and use it
// (client), with the server's key fingerprint when its configuration is given.
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include "auth.hpp"
#include "commands.hpp"
#include "config.hpp"
#include "server_identity.hpp"

namespace rgpu {

namespace {
// The certificate the server with this configuration uses (configured or made by itself).
std::string server_certificate(const std::string& config_path) {
  Config config = load_config_file(config_path);
  if (!config.server.tls) return {};
  if (config.server.cert_path) return *config.server.cert_path;
  return server_state_directory() + "/server-cert.pem";
}

void print_indented(const std::string& text) {
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) std::printf("  %s\n", line.c_str());
}
}  // namespace

int run_token(const TokenOptions& options) {
  std::string fingerprint;
  if (options.config) {
    try {
      const std::string cert = server_certificate(*options.config);
      if (cert.empty()) {
        std::fprintf(stderr, "note: %s sets tls = \"off\": clients must set tls = \"off\" too\n",
                     options.config->c_str());
      } else if (!std::filesystem::exists(cert)) {
        std::fprintf(stderr, "note: %s does not exist yet (the server makes it at its first start); run this "
                             "again after that to print its fingerprint\n", cert.c_str());
      } else {
        fingerprint = certificate_file_fingerprint(cert);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return kExitUsage;
    }
  }
  const std::string token = generate_token();
  std::printf("Generated RGPU token for '%s':\n\n  %s\n\nAdd this to your server's rgpu.toml:\n\n", options.name.c_str(),
              token.c_str());
  print_indented(token_toml_snippet(token, options.name));
  std::printf("\nOn the client, keep the token in a file only you can read (chmod 600) and add to its rgpu.toml:\n\n");
  std::string client = "[[client.servers]]\naddress = \"SERVER:9876\"\ntoken_file = \"/path/to/token\"\n";
  if (!fingerprint.empty()) client += "server_fingerprint = \"" + fingerprint + "\"\n";
  print_indented(client);
  return kExitOk;
}

}  // namespace rgpu
