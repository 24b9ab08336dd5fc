// The client daemon's keepalive of a server connection (an application's session connection, a
// bulk lane that receives): a connection that has brought nothing for a third of the timeout is
// pinged, again every third, and one that has brought nothing for the whole timeout is taken as
// gone. Any frame counts, a Pong or an answer.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

namespace rgpu::client {

class Keepalive {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Due { Nothing, Ping, Gone };

  explicit Keepalive(std::chrono::milliseconds timeout = std::chrono::seconds(15)) : timeout_(timeout) {}

  // What the connection needs now, given when it last brought a frame; a Ping is counted as sent.
  Due check(Clock::time_point now, Clock::time_point heard) {
    const auto quiet = now - heard;
    if (quiet >= timeout_) return Due::Gone;
    if (quiet < timeout_ / 3 || now - pinged_ < timeout_ / 3) return Due::Nothing;
    pinged_ = now;
    return Due::Ping;
  }
  // How often check() should run: often enough that the timeout is kept to within a few tenths
  // of a second.
  std::chrono::milliseconds period() const {
    return std::clamp<std::chrono::milliseconds>(timeout_ / 6, std::chrono::milliseconds(100),
                                                  std::chrono::milliseconds(1000));
  }
  // "sent nothing for 3 s though pinged (keepalive_timeout)"
  std::string silence() const {
    char seconds[32];
    std::snprintf(seconds, sizeof seconds, "%g", static_cast<double>(timeout_.count()) / 1000.0);
    return std::string("sent nothing for ") + seconds + " s though pinged (keepalive_timeout)";
  }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  std::chrono::milliseconds timeout_;
  Clock::time_point pinged_{};
};

}  // namespace rgpu::client
