#include "server_identity.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "tls.hpp"

namespace rgpu {

namespace {
using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

bool is_ip_address(const std::string& host) {
  unsigned char buf[16];
  return ::inet_pton(AF_INET, host.c_str(), buf) == 1 || ::inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

void verify_with_ca(SSL* ssl, X509* leaf, const HostPort& server, const std::string& ca_path) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  if (!store || X509_STORE_load_file(store.get(), ca_path.c_str()) != 1)
    throw IdentityError("cannot load the CA certificates in ca_path '" + ca_path + "': " + openssl_errors());
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(), X509_STORE_CTX_free);
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), leaf, SSL_get_peer_cert_chain(ssl)) != 1)
    throw IdentityError("cannot set up certificate verification: " + openssl_errors());
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  const int named = is_ip_address(server.host) ? X509_VERIFY_PARAM_set1_ip_asc(param, server.host.c_str())
                                               : X509_VERIFY_PARAM_set1_host(param, server.host.c_str(), 0);
  if (named != 1) throw IdentityError("cannot check the certificate against the name '" + server.host + "'");
  if (X509_verify_cert(ctx.get()) != 1)
    throw IdentityError("the certificate of server " + server.to_string() + " does not verify against ca_path '" +
                        ca_path + "': " + X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
}

// One known-servers line: "host:port SHA256:hex".
struct KnownEntry {
  int line = 0;
  std::string fingerprint;
};

std::optional<KnownEntry> find_known(const std::string& path, const std::string& server) {
  std::ifstream in(path);
  std::string text;
  for (int line = 1; std::getline(in, text); ++line) {
    std::istringstream words(text);
    std::string who, fingerprint;
    if (!(words >> who) || who[0] == '#' || who != server) continue;
    if (!(words >> fingerprint) || !normalize_fingerprint(fingerprint))
      throw IdentityError(path + " line " + std::to_string(line) + ": '" + server +
                          "' has no valid fingerprint (SHA256:<64 hex digits>); fix or remove that line");
    return KnownEntry{line, *normalize_fingerprint(fingerprint)};
  }
  return std::nullopt;
}

// Appends "server fingerprint" under an exclusive lock, unless another connection recorded the
// server meanwhile; returns the entry that is there now.
KnownEntry record_known(const std::string& path, const std::string& server, const std::string& fingerprint) {
  const std::filesystem::path file(path);
  if (file.has_parent_path() && !std::filesystem::exists(file.parent_path())) {
    std::error_code ec;
    std::filesystem::create_directories(file.parent_path(), ec);
    if (ec) throw IdentityError("cannot create " + file.parent_path().string() + " for known servers: " + ec.message());
    ::chmod(file.parent_path().c_str(), 0700);
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) throw IdentityError("cannot write the known-servers file " + path + ": " + std::strerror(errno));
  ::flock(fd, LOCK_EX);
  std::optional<KnownEntry> there = find_known(path, server);
  if (!there) {
    const std::string line = server + " " + fingerprint + "\n";
    if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      const int err = errno;
      ::close(fd);
      throw IdentityError("cannot write the known-servers file " + path + ": " + std::strerror(err));
    }
  }
  ::close(fd);  // releases the lock
  return there ? *there : KnownEntry{0, fingerprint};
}
}  // namespace

std::string public_key_fingerprint(X509* certificate) {
  EVP_PKEY* key = X509_get0_pubkey(certificate);
  if (key == nullptr) throw IdentityError("the certificate has no public key: " + openssl_errors());
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(key, &der);
  if (length <= 0) throw IdentityError("cannot encode the certificate's public key: " + openssl_errors());
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_length = 0;
  const int ok = EVP_Digest(der, static_cast<size_t>(length), digest, &digest_length, EVP_sha256(), nullptr);
  OPENSSL_free(der);
  if (ok != 1) throw IdentityError("cannot hash the certificate's public key: " + openssl_errors());
  std::string out = "SHA256:";
  char hex[3];
  for (unsigned int i = 0; i < digest_length; ++i) {
    std::snprintf(hex, sizeof hex, "%02x", digest[i]);
    out += hex;
  }
  return out;
}

std::string certificate_file_fingerprint(const std::string& cert_path) {
  std::unique_ptr<FILE, decltype(&std::fclose)> file(std::fopen(cert_path.c_str(), "r"), std::fclose);
  if (!file) throw IdentityError("cannot read certificate '" + cert_path + "': " + std::strerror(errno));
  X509Ptr certificate(PEM_read_X509(file.get(), nullptr, nullptr, nullptr), X509_free);
  if (!certificate) throw IdentityError("'" + cert_path + "' holds no PEM certificate: " + openssl_errors());
  return public_key_fingerprint(certificate.get());
}

std::optional<std::string> normalize_fingerprint(std::string_view text) {
  constexpr std::string_view kPrefix = "SHA256:";
  if (text.size() < kPrefix.size()) return std::nullopt;
  for (size_t i = 0; i < kPrefix.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(text[i])) != kPrefix[i]) return std::nullopt;
  std::string hex;
  for (char c : text.substr(kPrefix.size())) {
    if (c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    hex += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 64) return std::nullopt;
  return std::string(kPrefix) + hex;
}

std::string default_known_servers_path() {
  if (const char* config = std::getenv("XDG_CONFIG_HOME"); config != nullptr && config[0] == '/')
    return std::string(config) + "/rgpu/known_servers";
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] == '/')
    return std::string(home) + "/.config/rgpu/known_servers";
  return {};
}

std::string check_server_identity(SSL* ssl, const HostPort& server, const ServerTrust& trust) {
  X509Ptr leaf(SSL_get1_peer_certificate(ssl), X509_free);
  const std::string name = server.to_string();
  if (!leaf) throw IdentityError("server " + name + " presented no certificate");
  const std::string seen = public_key_fingerprint(leaf.get());
  if (!trust.fingerprint.empty()) {
    if (seen != trust.fingerprint)
      throw IdentityError("server " + name + " presents key " + seen + ", not the configured server_fingerprint " +
                          trust.fingerprint + ": refusing it (someone may be intercepting the connection)");
    return "pinned key " + seen;
  }
  if (!trust.ca_path.empty()) {
    verify_with_ca(ssl, leaf.get(), server, trust.ca_path);
    return "certificate signed by a CA in " + trust.ca_path + " for " + server.host;
  }
  if (trust.known_servers.empty())
    throw IdentityError("cannot check the identity of server " + name +
                        ": no server_fingerprint, no ca_path and no known-servers file (HOME is not set)");
  std::optional<KnownEntry> known = find_known(trust.known_servers, name);
  if (!known) {
    if (!trust.trust_on_first_use)
      throw IdentityError("server " + name + " (key " + seen + ") is not in " + trust.known_servers +
                          " and tls = \"on\" trusts no server on first contact: set server_fingerprint = \"" + seen +
                          "\" after checking it with the server's administrator (`rgpu server` logs it)");
    known = record_known(trust.known_servers, name, seen);
    if (known->line == 0) return "first contact: key " + seen + " recorded in " + trust.known_servers;
  }
  if (known->fingerprint != seen)
    throw IdentityError(
        "THE IDENTITY OF SERVER " + name + " HAS CHANGED: it presents key " + seen + ", but " + trust.known_servers +
        (known->line > 0 ? " line " + std::to_string(known->line) : std::string()) + " says " + known->fingerprint +
        ". Someone may be intercepting this connection (a man in the middle), or the server's key was replaced. "
        "Refusing it. If the change is expected, remove that line (or set server_fingerprint to the new key).");
  return "known key " + seen;
}

}  // namespace rgpu
