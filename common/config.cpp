#include "config.hpp"

#include <toml++/toml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "net.hpp"
#include "server_identity.hpp"

namespace rgpu {

const char* transport_name(Transport t) { return t == Transport::Quic ? "quic" : "tcp"; }

const char* gpu_ordering_name(GpuOrdering o) {
  switch (o) {
    case GpuOrdering::LocalFirst: return "LocalFirst";
    case GpuOrdering::RemoteFirst: return "RemoteFirst";
    case GpuOrdering::ByCapability: return "ByCapability";
  }
  return "LocalFirst";
}

namespace {

// Reads one table's keys, remembering which were used so that the rest can be reported.
class Section {
 public:
  Section(const toml::table& table, std::string path, const std::string& source, std::vector<std::string>& warnings)
      : table_(table), path_(std::move(path)), source_(source), warnings_(warnings) {}

  ~Section() {
    for (const auto& [key, node] : table_)
      if (!used_.count(std::string(key.str())))
        warnings_.push_back(source_ + ": unknown key '" + qualified(std::string(key.str())) + "' (ignored)");
  }

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(source_ + ": " + qualified(key) + ": " + what);
  }

  const toml::node* find(const std::string& key) {
    used_.insert(key);
    return table_.get(key);
  }

  std::optional<std::string> string(const std::string& key) {
    const toml::node* node = find(key);
    if (!node) return std::nullopt;
    if (!node->is_string()) fail(key, "must be a string, not " + describe(*node));
    return node->value<std::string>();
  }

  std::optional<bool> boolean(const std::string& key) {
    const toml::node* node = find(key);
    if (!node) return std::nullopt;
    if (!node->is_boolean()) fail(key, "must be true or false, not " + describe(*node));
    return node->value<bool>();
  }

  std::optional<int64_t> integer(const std::string& key, int64_t min, int64_t max) {
    const toml::node* node = find(key);
    if (!node) return std::nullopt;
    if (!node->is_integer()) fail(key, "must be an integer, not " + describe(*node));
    const int64_t value = *node->value<int64_t>();
    if (value < min || value > max)
      fail(key, std::to_string(value) + " is out of range (allowed: " + std::to_string(min) + "-" +
                    std::to_string(max) + ")");
    return value;
  }

  std::optional<std::vector<uint32_t>> indices(const std::string& key) {
    const toml::node* node = find(key);
    if (!node) return std::nullopt;
    const toml::array* array = node->as_array();
    if (!array) fail(key, "must be an array of GPU indices such as [0, 1], not " + describe(*node));
    std::vector<uint32_t> out;
    for (const auto& item : *array) {
      if (!item.is_integer()) fail(key, "GPU indices must be integers, not " + describe(item));
      const int64_t value = *item.value<int64_t>();
      if (value < 0 || value > std::numeric_limits<int32_t>::max())
        fail(key, "GPU index " + std::to_string(value) + " is out of range (allowed: 0-2147483647)");
      out.push_back(static_cast<uint32_t>(value));
    }
    return out;
  }

  template <typename Enum>
  std::optional<Enum> choice(const std::string& key, std::initializer_list<std::pair<const char*, Enum>> allowed) {
    auto text = string(key);
    if (!text) return std::nullopt;
    std::string names;
    for (const auto& [name, value] : allowed) {
      if (*text == name) return value;
      names += names.empty() ? "" : ", ";
      names += std::string("\"") + name + "\"";
    }
    fail(key, "\"" + *text + "\" is not allowed (allowed: " + names + ")");
  }

  const std::string& path() const { return path_; }

 private:
  std::string qualified(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  static std::string describe(const toml::node& node) {
    std::ostringstream out;
    out << node.type();
    if (node.is_value()) {
      out << " ";
      node.visit([&](auto&& v) { out << v; });
    }
    return out.str();
  }

  const toml::table& table_;
  std::string path_;
  const std::string& source_;
  std::vector<std::string>& warnings_;
  std::set<std::string> used_;
};

const toml::table* subtable(Section& parent, const std::string& key) {
  const toml::node* node = parent.find(key);
  if (!node) return nullptr;
  if (!node->is_table()) parent.fail(key, "must be a table");
  return node->as_table();
}

const toml::array* table_array(Section& parent, const std::string& key) {
  const toml::node* node = parent.find(key);
  if (!node) return nullptr;
  if (!node->is_array_of_tables()) parent.fail(key, "must be an array of tables ([[" + parent.path() + "." + key + "]])");
  return node->as_array();
}

constexpr std::initializer_list<std::pair<const char*, Transport>> kTransports = {{"tcp", Transport::Tcp},
                                                                                   {"quic", Transport::Quic}};

void read_server(Section& s, ServerSection& out) {
  if (auto v = s.string("bind")) {
    if (v->empty()) s.fail("bind", "must not be empty (use \"0.0.0.0\" for every address)");
    out.bind = *v;
  }
  if (auto v = s.integer("port", 1, 65535)) out.port = static_cast<uint16_t>(*v);
  if (auto v = s.integer("server_id", 0, std::numeric_limits<uint32_t>::max())) out.server_id = static_cast<uint32_t>(*v);
  if (auto v = s.integer("max_clients", 1, 1000000)) out.max_clients = static_cast<uint32_t>(*v);
  if (auto v = s.integer("worker_timeout", 1, 86400)) out.worker_timeout = static_cast<uint32_t>(*v);
  if (auto v = s.integer("max_unauthenticated", 1, 100000)) out.max_unauthenticated = static_cast<uint32_t>(*v);
  if (auto v = s.integer("max_unauthenticated_per_address", 1, 100000))
    out.max_unauthenticated_per_address = static_cast<uint32_t>(*v);
  if (auto v = s.choice("transport", kTransports)) out.transport = *v;
  if (auto v = s.choice("tls", {std::pair{"on", true}, std::pair{"off", false}})) out.tls = *v;
  out.cert_path = s.string("cert_path");
  out.key_path = s.string("key_path");
  if (out.cert_path.has_value() != out.key_path.has_value())
    s.fail(out.cert_path ? "cert_path" : "key_path",
           std::string("is set but ") + (out.cert_path ? "key_path" : "cert_path") + " is not (TLS needs both)");
  out.expose_gpus = s.indices("expose_gpus");
}

void read_client(Section& s, ClientSection& out, const std::string& source, std::vector<std::string>& warnings) {
  if (auto v = s.choice("gpu_ordering", {std::pair{"LocalFirst", GpuOrdering::LocalFirst},
                                         std::pair{"RemoteFirst", GpuOrdering::RemoteFirst},
                                         std::pair{"ByCapability", GpuOrdering::ByCapability}}))
    out.gpu_ordering = *v;
  if (auto v = s.boolean("include_local_gpus")) out.include_local_gpus = *v;
  if (auto v = s.integer("bulk_lanes", 0, 16)) out.bulk_lanes = static_cast<uint32_t>(*v);
  if (auto v = s.integer("keepalive_timeout", 2, 3600)) out.keepalive_timeout = static_cast<uint32_t>(*v);
  if (auto v = s.string("known_servers")) {
    if (v->empty() || (*v)[0] != '/') s.fail("known_servers", "must be an absolute path");
    out.known_servers = *v;
  }
  if (const toml::array* servers = table_array(s, "servers")) {
    for (size_t i = 0; i < servers->size(); ++i) {
      Section entry(*servers->get(i)->as_table(), "client.servers[" + std::to_string(i) + "]", source, warnings);
      ClientServerEntry server;
      auto address = entry.string("address");
      if (!address) entry.fail("address", "is missing (host:port of the server)");
      try {
        parse_host_port(*address);
      } catch (const NetError& e) {
        entry.fail("address", e.what());
      }
      server.address = *address;
      server.token = entry.string("token").value_or("");
      if (auto file = entry.string("token_file")) {
        if (!server.token.empty()) entry.fail("token_file", "and token are both set (keep one)");
        try {
          server.token = read_token_file(*file);
        } catch (const ConfigError& e) {
          entry.fail("token_file", e.what());
        }
      }
      if (auto weakness = server.token.empty() ? std::nullopt : token_weakness(server.token))
        entry.fail(entry.string("token_file") ? "token_file" : "token", *weakness);
      if (auto v = entry.string("server_fingerprint")) {
        auto fingerprint = normalize_fingerprint(*v);
        if (!fingerprint) entry.fail("server_fingerprint", "\"" + *v + "\" is not SHA256: followed by 64 hex digits (as `rgpu server` logs it)");
        server.server_fingerprint = *fingerprint;
      }
      server.ca_path = entry.string("ca_path").value_or("");
      if (auto v = entry.choice("transport", kTransports)) server.transport = *v;
      if (auto v = entry.choice("tls", {std::pair{"auto", 0}, std::pair{"on", 1}, std::pair{"off", 2}}))
        server.tls = *v == 0 ? "auto" : *v == 1 ? "on" : "off";
      out.servers.push_back(std::move(server));
    }
  }
}

void read_tokens(Section& security, std::vector<TokenEntry>& out, const std::string& source,
                 std::vector<std::string>& warnings) {
  const toml::array* tokens = table_array(security, "tokens");
  if (!tokens) return;
  std::set<std::string> seen_tokens, seen_names;
  for (size_t i = 0; i < tokens->size(); ++i) {
    Section entry(*tokens->get(i)->as_table(), "security.tokens[" + std::to_string(i) + "]", source, warnings);
    TokenEntry token;
    auto value = entry.string("token");
    if (!value || value->empty()) entry.fail("token", "is missing or empty (make one with `rgpu token`)");
    if (auto weakness = token_weakness(*value)) entry.fail("token", *weakness);
    if (!seen_tokens.insert(*value).second) entry.fail("token", "is the same token as an earlier entry");
    token.token = *value;
    token.name = entry.string("name").value_or("token " + std::to_string(i));
    if (!seen_names.insert(token.name).second) entry.fail("name", "\"" + token.name + "\" is used by an earlier token");
    token.allowed_gpus = entry.indices("allowed_gpus");
    if (auto v = entry.integer("max_memory", 1, std::numeric_limits<int64_t>::max()))
      token.max_memory = static_cast<uint64_t>(*v);
    out.push_back(std::move(token));
  }
}

}  // namespace

Config parse_config(std::string_view toml_text, const std::string& source_name) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw ConfigError(source_name + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": " +
                      std::string(e.description()));
  }
  Config config;
  {
    Section top(root, "", source_name, config.warnings);
    if (const toml::table* server = subtable(top, "server")) {
      Section s(*server, "server", source_name, config.warnings);
      read_server(s, config.server);
    }
    if (const toml::table* client = subtable(top, "client")) {
      Section s(*client, "client", source_name, config.warnings);
      read_client(s, config.client, source_name, config.warnings);
    }
    if (const toml::table* security = subtable(top, "security")) {
      Section s(*security, "security", source_name, config.warnings);
      read_tokens(s, config.tokens, source_name, config.warnings);
    }
  }
  return config;
}

Config load_config_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot read the configuration file: " + std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

std::optional<std::string> token_weakness(std::string_view token) {
  constexpr size_t kMinimum = 32;  // 128 bits as hex digits
  if (token.size() >= kMinimum) return std::nullopt;
  return "the token is " + std::to_string(token.size()) + " characters long; a token needs at least " +
         std::to_string(kMinimum) + " (128 bits as hex digits): make one with `rgpu token`";
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("cannot read token file '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
    throw ConfigError("token file '" + path + "' is open to other users (mode " + mode + "): chmod 600 it");
  }
  std::string line;
  std::getline(in, line);
  const auto first = line.find_first_not_of(" \t\r");
  const auto last = line.find_last_not_of(" \t\r");
  if (first == std::string::npos) throw ConfigError("token file '" + path + "' holds no token on its first line");
  return line.substr(first, last - first + 1);
}

std::string token_toml_snippet(const std::string& token, const std::string& name) {
  // A TOML basic string: quotes, backslashes and control characters escaped.
  auto quoted = [](const std::string& text) {
    std::string out = "\"";
    for (unsigned char c : text) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
      } else if (c < 0x20 || c == 0x7f) {
        char escape[8];
        std::snprintf(escape, sizeof escape, "\\u%04x", c);
        out += escape;
      } else {
        out += static_cast<char>(c);
      }
    }
    return out + "\"";
  };
  return "[[security.tokens]]\ntoken = " + quoted(token) + "\nname = " + quoted(name) + "\n";
}

}  // namespace rgpu
