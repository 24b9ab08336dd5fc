// The client's handshake against a peer that answers what the test tells it to.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "frame.hpp"
#include "loopback_listener.hpp"
#include "messages.hpp"
#include "net.hpp"
#include "session.hpp"

namespace rgpu {
namespace {

// Accepts one connection on a loopback port, sends `answer`, and waits for the client to close.
class ScriptedPeer {
 public:
  explicit ScriptedPeer(std::vector<uint8_t> answer) {
    thread_ = std::thread([this, answer = std::move(answer)] {
      UniqueFd fd = listener_.accept();
      if (!fd) return;
      ::send(fd.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
      ::shutdown(fd.get(), SHUT_WR);
      char sink[256];
      while (::recv(fd.get(), sink, sizeof sink, 0) > 0) {
      }
    });
  }
  ~ScriptedPeer() {
    listener_.stop();
    thread_.join();
  }
  HostPort address() const { return listener_.address(); }

 private:
  test::LoopbackListener listener_;
  std::thread thread_;
};

// A server that answers StartTls with an Error whose payload does not decode: the client says the
// server sent a malformed message (a SessionError), as for any other malformed handshake.
TEST(ClientHandshake, MalformedErrorAnswerIsASessionError) {
  std::vector<uint8_t> error = encode(ErrorMsg{ErrorCode::TlsUnavailable, "no TLS here"});
  error[4] = 0xff;  // the message's length, far past the payload
  ScriptedPeer peer(encode_frame(static_cast<uint16_t>(MsgType::Error), 0, error));
  SessionOptions options;
  options.server = peer.address();
  options.tls = TlsMode::On;
  options.timeout = std::chrono::seconds(5);
  try {
    Session::connect(options);
    FAIL() << "the handshake succeeded";
  } catch (const SessionError& e) {
    EXPECT_EQ(e.kind(), SessionError::Kind::Protocol) << e.what();
    EXPECT_NE(std::string(e.what()).find("malformed Error"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace rgpu
