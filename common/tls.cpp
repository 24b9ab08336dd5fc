#include "tls.hpp"

#include <cerrno>
#include <cstring>
#include <functional>
#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <fstream>
#include <sstream>

namespace rgpu {

std::string openssl_errors() {
  std::string out;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error queued" : out;
}

namespace {
SslCtxPtr base_context(const SSL_METHOD* method) {
  SslCtxPtr ctx(SSL_CTX_new(method));
  if (!ctx) throw TlsError("cannot create a TLS context: " + openssl_errors());
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  // No kTLS here: a socket keyed in the kernel cannot carry the second handshake of an
  // application's connections (tls_rekey.hpp), whose session is the one offloaded.
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_ciphersuites(ctx.get(), "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
  return ctx;
}
}  // namespace

SslCtxPtr make_server_tls_context(const std::string& cert_path, const std::string& key_path) {
  SslCtxPtr ctx = base_context(TLS_server_method());
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_path.c_str()) != 1)
    throw TlsError("cannot load TLS certificate '" + cert_path + "': " + openssl_errors());
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), key_path.c_str(), SSL_FILETYPE_PEM) != 1)
    throw TlsError("cannot load TLS private key '" + key_path + "': " + openssl_errors());
  if (SSL_CTX_check_private_key(ctx.get()) != 1)
    throw TlsError("TLS private key '" + key_path + "' does not match certificate '" + cert_path + "'");
  return ctx;
}

SslCtxPtr make_client_tls_context() {
  SslCtxPtr ctx = base_context(TLS_client_method());
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  return ctx;
}

namespace {
// Writes `path` through a temporary file beside it, renamed into place once complete.
void write_pem_atomically(const std::string& path, mode_t mode, const char* what, const std::function<bool(FILE*)>& write) {
  const std::string temporary = path + ".new." + std::to_string(::getpid());
  const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) throw TlsError(std::string("cannot write ") + what + " '" + temporary + "': " + std::strerror(errno));
  FILE* file = ::fdopen(fd, "w");
  if (file == nullptr) {
    ::close(fd);
    ::unlink(temporary.c_str());
    throw TlsError(std::string("cannot write ") + what + " '" + temporary + "'");
  }
  const bool written = write(file);
  const bool flushed = std::fflush(file) == 0 && ::fsync(fd) == 0;
  std::fclose(file);
  if (!written || !flushed || ::rename(temporary.c_str(), path.c_str()) != 0) {
    const std::string why = written && flushed ? std::strerror(errno) : openssl_errors();
    ::unlink(temporary.c_str());
    throw TlsError(std::string("cannot write ") + what + " '" + path + "': " + why);
  }
}
}  // namespace

void generate_self_signed(const std::string& cert_path, const std::string& key_path, const std::string& common_name,
                          int days) {
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  if (!key) throw TlsError("cannot generate a P-256 key: " + openssl_errors());
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  if (!cert) throw TlsError("cannot allocate a certificate: " + openssl_errors());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), static_cast<long>(time(nullptr)));
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("RGPU"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name.c_str()),
                             -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    throw TlsError("cannot sign the certificate: " + openssl_errors());

  // Each file appears whole or not at all (a start cut short leaves no half-written key behind).
  write_pem_atomically(key_path, 0600, "TLS key", [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  });
  write_pem_atomically(cert_path, 0644, "TLS certificate", [&](FILE* f) { return PEM_write_X509(f, cert.get()) == 1; });
}

std::string TlsSessionInfo::describe() const {
  std::string ktls = ktls_send && ktls_recv ? "on" : ktls_send ? "send only" : ktls_recv ? "receive only" : "off";
  return version + " " + cipher + ", kernel TLS offload " + ktls;
}

TlsSessionInfo tls_session_info(SSL* ssl) {
  TlsSessionInfo info;
  info.version = SSL_get_version(ssl);
  const SSL_CIPHER* cipher = SSL_get_current_cipher(ssl);
  info.cipher = cipher ? SSL_CIPHER_get_name(cipher) : "?";
  info.ktls_send = BIO_get_ktls_send(SSL_get_wbio(ssl)) > 0;
  info.ktls_recv = BIO_get_ktls_recv(SSL_get_rbio(ssl)) > 0;
  return info;
}

std::vector<uint8_t> tls_channel_binding(SSL* ssl) {
  static constexpr char kLabel[] = "EXPORTER-rgpu-token-binding";
  std::vector<uint8_t> out(32);
  if (SSL_export_keying_material(ssl, out.data(), out.size(), kLabel, sizeof kLabel - 1, nullptr, 0, 0) != 1)
    throw TlsError("TLS exporter failed: " + openssl_errors());
  return out;
}

bool kernel_tls_available() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_available_ulp");
  std::string word;
  while (in >> word)
    if (word == "tls") return true;
  return false;
}

}  // namespace rgpu
