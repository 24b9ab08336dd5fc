// rgpu token: a fresh 256-bit token and the rgpu.toml entry that admits it.
#include <cstdio>
#include <sstream>
#include <string>

#include "auth.hpp"
#include "commands.hpp"
#include "config.hpp"

namespace rgpu {

int run_token(const TokenOptions& options) {
  const std::string token = generate_token();
  std::printf("Generated RGPU token for '%s':\n\n  %s\n\nAdd this to your server's rgpu.toml:\n\n", options.name.c_str(),
              token.c_str());
  std::istringstream snippet(token_toml_snippet(token, options.name));
  for (std::string line; std::getline(snippet, line);) std::printf("  %s\n", line.c_str());
  return kExitOk;
}

}  // namespace rgpu
