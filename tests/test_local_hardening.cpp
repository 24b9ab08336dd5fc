// Local peers treated as hostile: an application that tries to shrink its shared-memory ring under
// the client daemon, a socket folder another user could take over, a file that is not the daemon's
// socket, a "daemon" of another user, and a client that names a driver function of its choosing
// in one of RGPU's own calls. Parts that need another uid run when the tests run as root (CI).
#include <cuda.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "app_link.hpp"
#include "app_protocol.hpp"
#include "cuda_wire.hpp"
#include "local_peer.hpp"
#include "rgpu_process.hpp"
#include "session.hpp"
#include "wire.hpp"

namespace {

using rgpu::test::CommandResult;
using rgpu::test::ServerProcess;
using rgpu::test::TempDir;

constexpr uid_t kNobody = 65534;
const char* kToken = "hardening-token-0123456789abcdef0123456789abcdef0123456789abcdef";

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

mode_t mode_of(const std::string& path) {
  struct stat info {};
  EXPECT_EQ(::lstat(path.c_str(), &info), 0) << path;
  return info.st_mode & 07777;
}

bool is_root() { return ::geteuid() == 0; }

// ---------------------------------------------------------------------------------------------
// Shared-memory rings

// An AppWelcome with `memfd` (announcing `ring_size` bytes), as a daemon would send it.
void send_welcome(int fd, int memfd, uint64_t ring_size) {
  rgpu::AppWelcomeMsg welcome;
  welcome.session_id = 1;
  welcome.ring_size = ring_size;
  auto frame = rgpu::encode_frame(static_cast<uint16_t>(rgpu::AppMsg::AppWelcome), 0, rgpu::encode(welcome));
  iovec part{frame.data(), frame.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &part;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &memfd, sizeof memfd);
  ASSERT_EQ(::sendmsg(fd, &msg, 0), static_cast<ssize_t>(frame.size()));
}

// The application's side of the hello, against a "daemon" that already sent `memfd` as the ring.
bool hello_with_ring(int memfd, uint64_t announced, std::string& error) {
  int pair[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  send_welcome(pair[1], memfd, announced);
  rgpu::FrameDecoder decoder(rgpu::kMaxFramePayload, rgpu::kFrameRing);
  rgpu::AppWelcomeMsg welcome;
  int ring_fd = -1;
  const auto hello = rgpu::encode_frame(static_cast<uint16_t>(rgpu::AppMsg::AppHello), 0, rgpu::encode(rgpu::AppHelloMsg{}));
  const bool accepted = rgpu::exchange_hello(pair[0], decoder, hello, welcome, ring_fd, error);
  if (accepted) ::close(ring_fd);
  else EXPECT_EQ(ring_fd, -1) << "a refused ring's descriptor is closed";
  ::close(pair[0]);
  ::close(pair[1]);
  return accepted;
}

TEST(SealedMemfd, CreatedSealedAgainstResizing) {
  std::string error;
  const int fd = rgpu::create_sealed_memfd("test", 1 << 20, error);
  ASSERT_GE(fd, 0) << error;
  const int seals = ::fcntl(fd, F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_EQ(::ftruncate(fd, 4096), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::ftruncate(fd, 2 << 20), -1);
  EXPECT_EQ(::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE), -1) << "the seals themselves are sealed";
  EXPECT_TRUE(rgpu::check_sealed_memfd(fd, 1 << 20, error)) << error;
  ::close(fd);
}

TEST(SealedMemfd, ApplicationRefusesAnUnsealedOrShortRing) {
  const uint64_t size = 1 << 20;
  std::string error;
  // Unsealed: its sender could shrink it under the application's mapping.
  const int plain = ::memfd_create("unsealed", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(plain, size), 0);
  EXPECT_FALSE(hello_with_ring(plain, size, error));
  EXPECT_NE(error.find("not sealed against shrinking and growing"), std::string::npos) << error;
  ::close(plain);

  // Sealed against growing only.
  const int half = ::memfd_create("half-sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_EQ(::ftruncate(half, size), 0);
  ASSERT_EQ(::fcntl(half, F_ADD_SEALS, F_SEAL_GROW), 0);
  EXPECT_FALSE(hello_with_ring(half, size, error));
  EXPECT_NE(error.find("F_SEAL_SHRINK missing"), std::string::npos) << error;
  ::close(half);

  // Sealed, but smaller than the ring size the welcome announces.
  const int short_ring = rgpu::create_sealed_memfd("short", size / 2, error);
  ASSERT_GE(short_ring, 0);
  EXPECT_FALSE(hello_with_ring(short_ring, size, error));
  EXPECT_NE(error.find("less than the " + std::to_string(size) + " bytes it was announced with"), std::string::npos)
      << error;
  ::close(short_ring);

  // Not a memfd at all.
  const int pipe_ends[2] = {-1, -1};
  ASSERT_EQ(::pipe(const_cast<int*>(pipe_ends)), 0);
  EXPECT_FALSE(hello_with_ring(pipe_ends[0], size, error));
  EXPECT_NE(error.find("not a memfd"), std::string::npos) << error;
  ::close(pipe_ends[0]);
  ::close(pipe_ends[1]);

  // As the daemon makes it: accepted.
  const int good = rgpu::create_sealed_memfd("good", size, error);
  ASSERT_GE(good, 0);
  EXPECT_TRUE(hello_with_ring(good, size, error)) << error;
  ::close(good);
}

// A loopback server (one token, kToken) whose CUDA driver is the test double.
std::unique_ptr<ServerProcess> double_server(const TempDir& dir) {
  const std::string config = dir.file("rgpu.toml", std::string("[server]\nbind = \"127.0.0.1\"\n\n") +
                                                       "[[security.tokens]]\ntoken = \"" + kToken + "\"\nname = \"t\"\n");
  return std::make_unique<ServerProcess>(
      std::vector<std::string>{"--config", config, "--tls", "off"},
      std::vector<std::string>{"RGPU_CUDA_LIBRARY=" CUDA_TEST_DOUBLE_PATH, "RGPU_NVML_LIBRARY=" CUDA_TEST_DOUBLE_PATH});
}

// A server running the CUDA test double, and a client daemon using it.
class RingAttack : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = double_server(dir_);
    socket_ = dir_.path() + "/client.sock";
    client_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--server", server_->address(), "--token", kToken, "--tls", "off", "--socket", socket_},
        std::vector<std::string>{}, "client");
  }

  // A CUDA application's first connection: its socket, and the ring's descriptor in *ring_fd.
  int hello(const std::string& program, int* ring_fd, rgpu::AppWelcomeMsg& welcome) {
    std::string error;
    const int fd = rgpu::connect_unix(socket_, error);
    EXPECT_GE(fd, 0) << error;
    rgpu::AppHelloMsg hello;
    hello.pid = static_cast<uint32_t>(::getpid());
    hello.program = program;
    const auto frame = rgpu::encode_frame(static_cast<uint16_t>(rgpu::AppMsg::AppHello), 0, rgpu::encode(hello));
    EXPECT_TRUE(rgpu::exchange_hello(fd, decoder_, frame, welcome, *ring_fd, error)) << error;
    return fd;
  }

  bool daemon_running() const {
    int status = 0;
    return ::waitpid(client_->pid(), &status, WNOHANG) == 0;
  }

  TempDir dir_;
  std::string socket_;
  rgpu::FrameDecoder decoder_{rgpu::kMaxFramePayload, rgpu::kFrameRing};
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<ServerProcess> client_;
};

// The attack: take the ring the daemon handed over, cut it short, then make the daemon read the
// ring's end (a call whose bytes it sends from there) and write its answer into it. Sealed, the
// ring cannot be cut short: the call is served, and so is the next application.
TEST_F(RingAttack, ApplicationCannotShrinkItsRingUnderTheDaemon) {
  rgpu::AppWelcomeMsg welcome;
  int ring_fd = -1;
  const int fd = hello("shrinker", &ring_fd, welcome);
  ASSERT_GE(fd, 0);
  ASSERT_GE(ring_fd, 0);
  ASSERT_FALSE(welcome.devices.empty()) << client_->log();
  const uint64_t size = welcome.ring_size;
  void* mapped = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, ring_fd, 0);
  ASSERT_NE(mapped, MAP_FAILED);
  auto* ring = static_cast<uint8_t*>(mapped);

  EXPECT_EQ(::ftruncate(ring_fd, static_cast<off_t>(size) * 2), -1) << "the application grew its ring";
  EXPECT_EQ(::ftruncate(ring_fd, 0), -1) << "the application shrank its ring under the daemon";
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(::fcntl(ring_fd, F_ADD_SEALS, F_SEAL_FUTURE_WRITE), -1) << "the application changed the ring's seals";
  struct stat info {};
  ASSERT_EQ(::fstat(ring_fd, &info), 0);
  EXPECT_EQ(static_cast<uint64_t>(info.st_size), size);

  // Calls that make the daemon touch the ring's end: one whose answer it writes there, one whose
  // 1 MiB of arguments it sends from there. Each is answered (the function is unknown to the server).
  const uint64_t in_length = 1 << 20;
  const rgpu::RingSpec answer_at_end{0, 0, size - 4096, 4096};
  const rgpu::RingSpec arguments_at_end{size - in_length, in_length, 0, 4096};
  uint32_t sequence = 0;
  for (const rgpu::RingSpec& spec : {answer_at_end, arguments_at_end}) {
    rgpu::cuda::CallHeader call;
    call.function = rgpu::fnv1a("cuNoSuchFunction");
    call.thread = 1;
    call.sequence = ++sequence;
    std::vector<uint8_t> payload(sizeof spec + sizeof call);
    std::memcpy(payload.data(), &spec, sizeof spec);
    std::memcpy(payload.data() + sizeof spec, &call, sizeof call);
    auto frame = rgpu::encode_frame(rgpu::cuda::kMsgCudaCall, sequence, payload, rgpu::kFrameRing,
                                    rgpu::Compression::Never);
    const iovec part{frame.data(), frame.size()};
    ASSERT_TRUE(rgpu::write_all(fd, {&part, 1}));
    rgpu::Frame answer;
    ASSERT_TRUE(rgpu::read_frame(fd, decoder_, answer, nullptr)) << "the daemon did not answer:\n" << client_->log();
    ASSERT_EQ(answer.header.type, rgpu::cuda::kMsgCudaReply) << "call " << sequence << "\n" << client_->log();
    ASSERT_TRUE(answer.header.flags & rgpu::kFrameRing);
    rgpu::RingSpec placed;
    ASSERT_GE(answer.payload.size(), sizeof placed);
    std::memcpy(&placed, answer.payload.data(), sizeof placed);
    EXPECT_EQ(placed.out_offset, spec.out_offset);
    rgpu::cuda::ReplyHeader reply;
    ASSERT_GE(placed.out_capacity, sizeof reply);
    ASSERT_EQ(::fstat(ring_fd, &info), 0);
    ASSERT_GE(static_cast<uint64_t>(info.st_size), placed.out_offset + sizeof reply) << "the ring was cut short";
    std::memcpy(&reply, ring + placed.out_offset, sizeof reply);
    EXPECT_EQ(reply.result, CUDA_ERROR_NOT_SUPPORTED);
  }

  // The daemon lives on and welcomes the next application.
  EXPECT_TRUE(daemon_running()) << client_->log();
  rgpu::AppWelcomeMsg second;
  int second_ring = -1;
  const int other = hello("next", &second_ring, second);
  EXPECT_GE(second_ring, 0);
  EXPECT_FALSE(second.devices.empty());
  ::close(second_ring);
  ::close(other);
  ::munmap(mapped, size);
  ::close(ring_fd);
  ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// The client daemon's socket folder

// `rgpu client --socket path`, expected to refuse at once.
CommandResult client_with_socket(const std::string& path) {
  return rgpu::test::run_rgpu({"client", "--socket", path}, std::chrono::seconds(10));
}

TEST(SocketFolder, AFolderOfAnotherUserIsRefusedAndLeftAsItIs) {
  if (!is_root()) GTEST_SKIP() << "needs root to give a folder to another user";
  TempDir dir;
  const std::string folder = dir.path() + "/theirs";
  ASSERT_EQ(::mkdir(folder.c_str(), 0755), 0);
  ASSERT_EQ(::chown(folder.c_str(), kNobody, kNobody), 0);
  const CommandResult r = client_with_socket(folder + "/client.sock");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("the socket folder " + folder + " belongs to uid 65534"), std::string::npos) << r.err;
  EXPECT_EQ(mode_of(folder), 0755u) << "the daemon changed another user's folder";
  struct stat info {};
  ASSERT_EQ(::stat(folder.c_str(), &info), 0);
  EXPECT_EQ(info.st_uid, kNobody);
  EXPECT_NE(::access((folder + "/client.sock").c_str(), F_OK), 0);
}

TEST(SocketFolder, AGroupOrWorldWritableFolderIsRefusedAndLeftAsItIs) {
  TempDir dir;
  for (mode_t mode : {mode_t{0770}, mode_t{0707}, mode_t{01777}}) {
    const std::string folder = dir.path() + "/shared-" + std::to_string(mode);
    ASSERT_EQ(::mkdir(folder.c_str(), 0700), 0);
    ASSERT_EQ(::chmod(folder.c_str(), mode), 0);
    const CommandResult r = client_with_socket(folder + "/client.sock");
    EXPECT_NE(r.exit_code, 0) << std::oct << mode;
    EXPECT_NE(r.err.find("is writable by group or others"), std::string::npos) << r.err;
    EXPECT_EQ(mode_of(folder), mode) << "the daemon changed the folder's mode";
  }
}

TEST(SocketFolder, ARegularFileAtTheSocketPathIsNotDeleted) {
  TempDir dir;
  const std::string path = dir.file("client.sock", "precious");
  const CommandResult r = client_with_socket(path);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(path + " exists and is not a stale socket of this user (it is a regular file"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(read_text(path), "precious");
}

// A socket file left at `path`, owned by `uid`.
void leave_socket(const std::string& path, uid_t uid) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
  ::close(fd);
  if (uid != ::geteuid()) {
    ASSERT_EQ(::lchown(path.c_str(), uid, uid), 0);
  }
}

TEST(SocketFolder, AnotherUsersSocketIsNotDeleted) {
  if (!is_root()) GTEST_SKIP() << "needs root to give a socket to another user";
  TempDir dir;
  const std::string path = dir.path() + "/client.sock";
  leave_socket(path, kNobody);
  const CommandResult r = client_with_socket(path);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("is not a stale socket of this user (it is a socket of uid 65534"), std::string::npos) << r.err;
  struct stat info {};
  ASSERT_EQ(::lstat(path.c_str(), &info), 0) << "another user's socket was removed";
  EXPECT_EQ(info.st_uid, kNobody);
}

// What the checks allow: a stale socket of this user is replaced; missing folders are made 0700.
TEST(SocketFolder, OwnStaleSocketIsReplacedAndNewFoldersAre0700) {
  TempDir dir;
  const std::string stale = dir.path() + "/client.sock";
  leave_socket(stale, ::geteuid());
  {
    ServerProcess client({"--socket", stale}, {}, "client");
    std::string error;
    const int fd = rgpu::connect_unix(stale, error);
    EXPECT_GE(fd, 0) << error;
    ::close(fd);
  }
  const std::string nested = dir.path() + "/run/rgpu/client.sock";
  ServerProcess client({"--socket", nested}, {}, "client");
  EXPECT_EQ(mode_of(dir.path() + "/run"), 0700u);
  EXPECT_EQ(mode_of(dir.path() + "/run/rgpu"), 0700u);
  EXPECT_EQ(mode_of(nested), 0600u);
}

// ---------------------------------------------------------------------------------------------
// Who is at the other end of the socket

TEST(PeerCredentials, CheckedAgainstTheExpectedUid) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  std::string error;
  EXPECT_TRUE(rgpu::check_peer_uid(pair[0], ::geteuid(), error)) << error;
  EXPECT_FALSE(rgpu::check_peer_uid(pair[0], ::geteuid() + 1, error));
  EXPECT_NE(error.find("runs as uid " + std::to_string(::geteuid()) + ", not as uid " + std::to_string(::geteuid() + 1)),
            std::string::npos)
      << error;
  ::close(pair[0]);
  ::close(pair[1]);
  // Not a unix socket: no credentials, refused.
  const int pipe_ends[2] = {-1, -1};
  ASSERT_EQ(::pipe(const_cast<int*>(pipe_ends)), 0);
  EXPECT_FALSE(rgpu::check_peer_uid(pipe_ends[0], ::geteuid(), error));
  ::close(pipe_ends[0]);
  ::close(pipe_ends[1]);
}

// A listener of uid 65534 at `path` (the child binds as root, then listens as nobody: a socket's
// credentials are its listener's). Killed with the object.
class ForeignListener {
 public:
  explicit ForeignListener(const std::string& path) {
    int ready[2];
    if (::pipe(ready) != 0) throw std::runtime_error("pipe");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(ready[0]);
      const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::chmod(path.c_str(), 0666) != 0 ||
          ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0 || ::listen(fd, 8) != 0)
        ::_exit(1);
      const char ok = 1;
      if (::write(ready[1], &ok, 1) != 1) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char ok = 0;
    const bool started = ::read(ready[0], &ok, 1) == 1;
    ::close(ready[0]);
    if (!started) throw std::runtime_error("the listener of uid 65534 did not start");
  }
  ~ForeignListener() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

 private:
  pid_t pid_ = -1;
};

TEST(PeerCredentials, ApplicationLibrariesRefuseADaemonOfAnotherUser) {
  if (!is_root()) GTEST_SKIP() << "needs root to run a listener as another user";
  TempDir dir;
  const std::string path = dir.path() + "/client.sock";
  ForeignListener listener(path);

  // The connect path both libraries use.
  std::string error;
  bool refused = false;
  EXPECT_EQ(rgpu::connect_unix(path, error, &refused), -1);
  EXPECT_TRUE(refused);
  EXPECT_NE(error.find("runs as uid 65534, not as uid 0"), std::string::npos) << error;

  // The CUDA interpose library (linked into this test as its libcuda.so.1), in a process of its own.
  const std::string log = dir.path() + "/cuda.log";
  const pid_t child = ::fork();
  if (child == 0) {
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ::dup2(out, 2);
    ::setenv("RGPU_CLIENT_SOCKET", path.c_str(), 1);
    int count = -1;
    const bool ok = cuInit(0) == CUDA_ERROR_NO_DEVICE && cuDeviceGetCount(&count) == CUDA_ERROR_NOT_INITIALIZED;
    ::_exit(ok ? 42 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 42) << read_text(log);
  const std::string cuda_log = read_text(log);
  EXPECT_NE(cuda_log.find("refusing the RGPU client daemon at " + path), std::string::npos) << cuda_log;
  EXPECT_NE(cuda_log.find("runs as uid 65534"), std::string::npos) << cuda_log;

#ifdef VULKAN_DUMP
  // The Vulkan ICD, through the loader.
  const CommandResult vulkan = rgpu::test::run_program(
      {VULKAN_DUMP}, {"VK_DRIVER_FILES=" RGPU_ICD_MANIFEST, "RGPU_CLIENT_SOCKET=" + path, "XDG_RUNTIME_DIR=" + dir.path()});
  EXPECT_NE(vulkan.exit_code, 0) << vulkan.out;
  EXPECT_NE(vulkan.err.find("refusing the RGPU client daemon at " + path), std::string::npos) << vulkan.err;
#endif
}

// The daemon serves its own user only: an application of uid 65534 is told so and cut off.
TEST(PeerCredentials, DaemonRefusesAnApplicationOfAnotherUser) {
  if (!is_root()) GTEST_SKIP() << "needs root to run an application as another user";
  TempDir dir;
  const std::string path = dir.path() + "/client.sock";
  ServerProcess client({"--socket", path}, {}, "client");
  // Let uid 65534 reach the socket at all: the folder and socket modes are the first fence.
  ASSERT_EQ(::chmod(dir.path().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  int answer_pipe[2];
  ASSERT_EQ(::pipe(answer_pipe), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(answer_pipe[0]);
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(2);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(3);
    rgpu::FrameDecoder decoder(rgpu::kMaxFramePayload, rgpu::kFrameRing);
    rgpu::AppWelcomeMsg welcome;
    int ring_fd = -1;
    std::string error;
    const auto hello =
        rgpu::encode_frame(static_cast<uint16_t>(rgpu::AppMsg::AppHello), 0, rgpu::encode(rgpu::AppHelloMsg{}));
    const bool welcomed = rgpu::exchange_hello(fd, decoder, hello, welcome, ring_fd, error);
    const std::string said = welcomed ? "welcomed" : error;
    if (::write(answer_pipe[1], said.data(), said.size()) < 0) ::_exit(5);
    ::_exit(welcomed ? 4 : 0);
  }
  ::close(answer_pipe[1]);
  std::string said;
  char buffer[512];
  for (ssize_t n; (n = ::read(answer_pipe[0], buffer, sizeof buffer)) > 0;) said.append(buffer, static_cast<size_t>(n));
  ::close(answer_pipe[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << said;
  EXPECT_NE(said.find("the daemon refused: this RGPU client daemon serves another user"), std::string::npos) << said;
  EXPECT_NE(client.log().find("refusing an application connection"), std::string::npos) << client.log();
  EXPECT_NE(client.log().find("runs as uid 65534, not as uid 0"), std::string::npos) << client.log();
}

// ---------------------------------------------------------------------------------------------
// RGPU's own CUDA calls take values from fixed sets only

class FixedSets : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = double_server(dir_);
    rgpu::SessionOptions options;
    options.server = rgpu::parse_host_port(server_->address());
    options.token = kToken;
    options.tls = rgpu::TlsMode::Off;
    session_ = rgpu::Session::connect(options);
    session_->channel().send_frame(rgpu::kMsgCudaOpen, session_->next_request_id(),
                                   rgpu::encode(rgpu::SessionOpenMsg{{0}}));
    ASSERT_EQ(session_->channel().receive_frame().header.type, rgpu::kMsgCudaOpened);
  }

  // One call of `function` with `args`, answered: its result.
  CUresult call(uint32_t function, rgpu::WireWriter& args) {
    rgpu::cuda::CallHeader header;
    header.function = function;
    header.thread = 1;
    header.sequence = ++sequence_;
    std::vector<uint8_t> payload(sizeof header);
    std::memcpy(payload.data(), &header, sizeof header);
    payload.insert(payload.end(), args.buffer().begin(), args.buffer().end());
    const uint64_t id = session_->next_request_id();
    session_->channel().send_frame(rgpu::cuda::kMsgCudaCall, id, payload);
    const rgpu::Frame answer = session_->channel().receive_frame();
    EXPECT_EQ(answer.header.type, rgpu::cuda::kMsgCudaReply);
    EXPECT_EQ(answer.header.request_id, id);
    rgpu::cuda::ReplyHeader reply;
    if (answer.payload.size() < sizeof reply) return CUDA_ERROR_UNKNOWN;
    std::memcpy(&reply, answer.payload.data(), sizeof reply);
    return static_cast<CUresult>(reply.result);
  }

  // rgpu.Memcpy2D of a rectangle between arrays, naming copy function `function`; no context is
  // current, so a call that reaches the test double is answered CUDA_ERROR_INVALID_CONTEXT.
  CUresult rectangle(uint32_t function, uint8_t mode = rgpu::cuda::kCopyOnServer, uint8_t dims = 2) {
    CUDA_MEMCPY2D copy{};
    copy.srcMemoryType = CU_MEMORYTYPE_ARRAY;
    copy.dstMemoryType = CU_MEMORYTYPE_ARRAY;
    copy.WidthInBytes = 16;
    copy.Height = 1;
    rgpu::WireWriter args;
    args.put(function).put<uint64_t>(0).put(mode).put(dims).bytes(&copy, sizeof copy);
    return call(rgpu::cuda::FN_rgpuMemcpy2D, args);
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<rgpu::Session> session_;
  uint32_t sequence_ = 0;
};

TEST_F(FixedSets, Memcpy2DRefusesACopyFunctionOutsideItsSet) {
  // A driver function's id (what the call carried before): never called, whatever it is.
  const uint32_t synchronize = rgpu::fnv1a("cuCtxSynchronize");
  EXPECT_EQ(rectangle(synchronize), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(rectangle(0), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(rectangle(static_cast<uint32_t>(rgpu::cuda::CopyFunction::Memcpy3DAsyncPtsz) + 1), CUDA_ERROR_INVALID_VALUE);
  // A 2D descriptor for a 3D copy, and a mode of none of the three.
  EXPECT_EQ(rectangle(static_cast<uint32_t>(rgpu::cuda::CopyFunction::Memcpy3D)), CUDA_ERROR_INVALID_VALUE);
  EXPECT_EQ(rectangle(static_cast<uint32_t>(rgpu::cuda::CopyFunction::Memcpy2D), 7), CUDA_ERROR_INVALID_VALUE);
  const std::string log = server_->log();
  EXPECT_NE(log.find("rgpu.Memcpy2D with copy function " + std::to_string(synchronize)), std::string::npos) << log;
  EXPECT_NE(log.find("rgpu.Memcpy2D with copy function 11 "), std::string::npos) << log;
  EXPECT_NE(log.find("rgpu.Memcpy2D with a 2-dimensional descriptor for cuMemcpy3D_v2"), std::string::npos) << log;
  EXPECT_NE(log.find("rgpu.Memcpy2D with mode 7 "), std::string::npos) << log;
  // In the set, the call reaches the driver, which answers for itself.
  EXPECT_EQ(rectangle(static_cast<uint32_t>(rgpu::cuda::CopyFunction::Memcpy2D)), CUDA_ERROR_INVALID_CONTEXT);
  EXPECT_EQ(rectangle(static_cast<uint32_t>(rgpu::cuda::CopyFunction::Memcpy2DAsync)), CUDA_ERROR_INVALID_CONTEXT);
}

TEST_F(FixedSets, OtherOwnCallsRefuseValuesOutsideTheirSets) {
  const uint32_t free_fn = rgpu::fnv1a("cuMemFree_v2");
  rgpu::WireWriter to_device;
  to_device.put(free_fn).put<uint64_t>(0x1000).put<uint64_t>(0).put<uint64_t>(0).put<uint32_t>(0);
  EXPECT_EQ(call(rgpu::cuda::FN_rgpuMemcpyHtoD, to_device), CUDA_ERROR_INVALID_VALUE);
  rgpu::WireWriter to_host;
  to_host.put(free_fn).put<uint64_t>(0x1000).put<uint64_t>(4).put<uint64_t>(0).put<uint64_t>(0);
  EXPECT_EQ(call(rgpu::cuda::FN_rgpuMemcpyDtoH, to_host), CUDA_ERROR_INVALID_VALUE);
  rgpu::WireWriter tensor_map;
  tensor_map.put(free_fn);
  EXPECT_EQ(call(rgpu::cuda::FN_rgpuTensorMap, tensor_map), CUDA_ERROR_INVALID_VALUE);
  rgpu::WireWriter launch;
  launch.put(free_fn);
  EXPECT_EQ(call(rgpu::cuda::FN_rgpuLaunch, launch), CUDA_ERROR_INVALID_VALUE);
  rgpu::WireWriter link_add;
  link_add.put<uint64_t>(0).put<uint32_t>(CU_JIT_NUM_INPUT_TYPES).str("x");
  EXPECT_EQ(call(rgpu::cuda::FN_rgpuLinkAdd, link_add), CUDA_ERROR_INVALID_VALUE);
  const std::string log = server_->log();
  for (const char* name : {"rgpu.MemcpyHtoD with copy function", "rgpu.MemcpyDtoH with copy function",
                           "rgpu.TensorMap with function", "rgpu.Launch with launch function",
                           "rgpu.LinkAdd with input type"})
    EXPECT_NE(log.find(name), std::string::npos) << name << "\n" << log;
}

}  // namespace
