// Transport benchmark: round-trip latency and throughput of RGPU frames over loopback, plain and
// TLS, through the real server (Ping/Pong), printed next to a raw TCP socket doing the same work
// and the single-core AES-128-GCM rate measured in the same run.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "log.hpp"
#include "server/server.hpp"
#include "session.hpp"
#include "tls.hpp"

namespace {
using Clock = std::chrono::steady_clock;
using rgpu::Frame;
using rgpu::MsgType;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

struct Measure {
  double round_trip_us;  // 64-byte ping
  double gbps;           // 4 MiB pings (both directions count once: the payload size)
};

// Raw TCP: the same exchange (echo of N bytes), no framing, no event loop.
Measure raw_tcp() {
  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  ::listen(listener, 1);
  std::thread echo([listener] {
    int fd = ::accept(listener, nullptr, nullptr);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::vector<char> buf(4 << 20);
    for (;;) {
      uint32_t n;
      if (::recv(fd, &n, 4, MSG_WAITALL) != 4 || n == 0) break;
      if (::recv(fd, buf.data(), n, MSG_WAITALL) != static_cast<ssize_t>(n)) break;
      if (::send(fd, buf.data(), n, 0) != static_cast<ssize_t>(n)) break;
    }
    ::close(fd);
  });
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  auto exchange = [&](std::vector<char>& data) {
    uint32_t n = static_cast<uint32_t>(data.size());
    ::send(fd, &n, 4, MSG_MORE);
    ::send(fd, data.data(), n, 0);
    ::recv(fd, data.data(), n, MSG_WAITALL);
  };
  Measure m{};
  std::vector<char> small(64), large(4 << 20, 'x');
  const int pings = 20000, bulk = 200;
  auto start = Clock::now();
  for (int i = 0; i < pings; ++i) exchange(small);
  m.round_trip_us = seconds_since(start) * 1e6 / pings;
  start = Clock::now();
  for (int i = 0; i < bulk; ++i) exchange(large);
  m.gbps = bulk * double(large.size()) / seconds_since(start) / 1e9;
  uint32_t zero = 0;
  ::send(fd, &zero, 4, 0);
  ::close(fd);
  echo.join();
  ::close(listener);
  return m;
}

Measure rgpu_link(bool tls, const std::string& cert, const std::string& key) {
  rgpu::ServerSettings settings;
  settings.bind = "127.0.0.1";
  settings.port = 0;
  if (tls) {
    settings.cert_path = cert;
    settings.key_path = key;
  }
  rgpu::Server server(settings);
  server.start();
  std::thread loop([&] { server.run(); });
  rgpu::SessionOptions options;
  options.server = {"127.0.0.1", server.port()};
  options.tls = tls ? rgpu::TlsMode::On : rgpu::TlsMode::Off;
  auto session = rgpu::Session::connect(options);
  Measure m{};
  std::vector<uint8_t> small(64), large(4 << 20);
  for (size_t i = 0; i < large.size(); ++i) large[i] = static_cast<uint8_t>(i * 2654435761u >> 24);  // incompressible
  const int pings = 20000, bulk = 200;
  auto start = Clock::now();
  for (int i = 0; i < pings; ++i) session->call(MsgType::Ping, small);
  m.round_trip_us = seconds_since(start) * 1e6 / pings;
  start = Clock::now();
  for (int i = 0; i < bulk; ++i) session->call(MsgType::Ping, large);
  m.gbps = bulk * double(large.size()) / seconds_since(start) / 1e9;
  session.reset();
  server.stop();
  loop.join();
  return m;
}

double aes_gcm_gbps() {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  unsigned char key[16] = {1}, iv[12] = {2}, tag[16];
  std::vector<unsigned char> in(16384, 3), out(16384 + 16);
  int len = 0;
  size_t bytes = 0;
  auto start = Clock::now();
  while (seconds_since(start) < 0.5) {
    EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), nullptr, key, iv);
    EVP_EncryptUpdate(ctx, out.data(), &len, in.data(), static_cast<int>(in.size()));
    EVP_EncryptFinal_ex(ctx, out.data() + len, &len);
    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, 16, tag);
    bytes += in.size();
  }
  EVP_CIPHER_CTX_free(ctx);
  return bytes / seconds_since(start) / 1e9;
}
}  // namespace

int main() {
  rgpu::set_log_level(rgpu::LogLevel::Warn);
  char dir[] = "/tmp/rgpu-bench-XXXXXX";
  if (::mkdtemp(dir) == nullptr) return 1;
  const std::string cert = std::string(dir) + "/cert.pem", key = std::string(dir) + "/key.pem";
  rgpu::generate_self_signed(cert, key, "localhost");

  const Measure raw = raw_tcp();
  const Measure plain = rgpu_link(false, cert, key);
  const Measure tls = rgpu_link(true, cert, key);
  const double aes = aes_gcm_gbps();

  std::printf("%-26s %16s %16s %16s\n", "loopback", "64 B round trip", "4 MiB echo GB/s", "vs raw TCP");
  std::printf("%-26s %13.1f us %16.2f %16s\n", "raw TCP socket", raw.round_trip_us, raw.gbps, "1.00 / 1.00");
  auto row = [&](const char* name, const Measure& m) {
    char ratio[32];
    std::snprintf(ratio, sizeof ratio, "%.2f / %.2f", m.round_trip_us / raw.round_trip_us, m.gbps / raw.gbps);
    std::printf("%-26s %13.1f us %16.2f %16s\n", name, m.round_trip_us, m.gbps, ratio);
  };
  row("RGPU frames, plain", plain);
  row("RGPU frames, TLS 1.3", tls);
  std::printf("single-core AES-128-GCM (OpenSSL): %.2f GB/s; kernel TLS offload %s\n", aes,
              rgpu::kernel_tls_available() ? "available" : "unavailable (user-space TLS)");
  std::remove(cert.c_str());
  std::remove(key.c_str());
  ::rmdir(dir);
  return 0;
}
