// FrameLink over a real socket pair and io_uring: frames in order, large frames received straight
// into memory a bulk sink provides, the usual path when the sink declines, and a connection handed
// over to a link on another loop thread.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <functional>
#include <future>
#include <numeric>
#include <thread>

#include "channel.hpp"
#include "event_loop.hpp"
#include "frame_link.hpp"

namespace rgpu {
namespace {

std::vector<uint8_t> pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> bytes(size);
  for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 12));
  return bytes;
}

struct Received {
  uint16_t type;
  std::vector<uint8_t> body;
  bool bulk;
};

class FrameLinkBulk : public ::testing::Test {
 protected:
  // Sends `frames` from one end with a plain writer thread; the other end is a FrameLink with
  // `sink`. Returns what the link delivered, in order.
  std::vector<Received> exchange(const std::vector<std::vector<uint8_t>>& frames, FrameLink::BulkSink sink) {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    EventLoop loop;
    std::vector<Received> received;
    bool done = false;
    auto link = std::make_shared<FrameLink>(loop, UniqueFd(fds[0]), "test");
    if (sink) link->set_bulk_sink(std::move(sink), 64 * 1024);
    link->start(FrameLink::Callbacks{
        .on_frame =
            [&](Frame&& frame) {
              auto body = frame.body();
              received.push_back({frame.header.type, {body.begin(), body.end()}, frame.bulk.owner != nullptr});
              if (received.size() == frames.size()) loop.stop();
            },
        .on_close =
            [&](const std::string& reason) {
              if (done) return;
              ADD_FAILURE() << "link closed: " << reason;
              loop.stop();
            },
        .on_malformed = {},
    });
    std::thread writer([&] {
      for (const auto& frame : frames) {
        size_t sent = 0;
        while (sent < frame.size()) {
          ssize_t n = ::write(fds[1], frame.data() + sent, frame.size() - sent);
          ASSERT_GT(n, 0);
          sent += static_cast<size_t>(n);
        }
      }
    });
    loop.run();
    writer.join();
    done = true;
    link->close("done");
    ::close(fds[1]);
    return received;
  }
};

TEST_F(FrameLinkBulk, LargeFramesLandInSinkMemoryInOrder) {
  const auto small1 = pattern(100, 1), large = pattern(3 << 20, 2), small2 = pattern(10, 3), large2 = pattern(70000, 4);
  std::vector<std::vector<uint8_t>> frames = {
      encode_frame(1, 1, small1, 0, Compression::Never), encode_frame(2, 2, large, 0, Compression::Never),
      encode_frame(3, 3, small2, 0, Compression::Never), encode_frame(4, 4, large2, 0, Compression::Never)};
  std::vector<std::shared_ptr<std::vector<uint8_t>>> handed_out;
  auto received = exchange(frames, [&](const FrameHeader& header) {
    auto memory = std::make_shared<std::vector<uint8_t>>(header.payload_len + 5);
    handed_out.push_back(memory);
    return BulkPayload{*memory, memory};
  });
  ASSERT_EQ(received.size(), 4u);
  EXPECT_EQ(received[0].type, 1);
  EXPECT_FALSE(received[0].bulk);
  EXPECT_EQ(received[0].body, small1);
  EXPECT_TRUE(received[1].bulk);
  EXPECT_EQ(received[1].body, large);
  EXPECT_FALSE(received[2].bulk);
  EXPECT_EQ(received[2].body, small2);
  EXPECT_TRUE(received[3].bulk);
  EXPECT_EQ(received[3].body, large2);
  ASSERT_EQ(handed_out.size(), 2u);
  EXPECT_TRUE(std::equal(large.begin(), large.end(), handed_out[0]->begin()));
}

TEST_F(FrameLinkBulk, DecliningSinkAndCompressedFramesTakeTheUsualPath) {
  const auto large = pattern(1 << 20, 5);
  std::vector<uint8_t> compressible(1 << 20, 0x42);
  std::vector<std::vector<uint8_t>> frames = {encode_frame(1, 1, large, 0, Compression::Never),
                                              encode_frame(2, 2, compressible, 0, Compression::IfWorthIt)};
  int asked = 0;
  auto received = exchange(frames, [&](const FrameHeader&) {
    ++asked;
    return BulkPayload{};
  });
  ASSERT_EQ(received.size(), 2u);
  EXPECT_EQ(asked, 1);  // the compressed frame is never offered
  EXPECT_FALSE(received[0].bulk);
  EXPECT_EQ(received[0].body, large);
  EXPECT_EQ(received[1].body, compressible);
}

TEST_F(FrameLinkBulk, SinkMemoryTooSmallIsNotUsed) {
  const auto large = pattern(200000, 6);
  std::vector<std::vector<uint8_t>> frames = {encode_frame(1, 1, large, 0, Compression::Never)};
  auto received = exchange(frames, [&](const FrameHeader& header) {
    auto memory = std::make_shared<std::vector<uint8_t>>(header.payload_len - 1);
    return BulkPayload{*memory, memory};
  });
  ASSERT_EQ(received.size(), 1u);
  EXPECT_FALSE(received[0].bulk);
  EXPECT_EQ(received[0].body, large);
}

// Frames queued together leave together (several per system call): all arrive, in order, and each
// borrowed payload is released once it has been sent; a release that sends on the same link
// queues its frame behind the others.
TEST(FrameLinkSend, ManyQueuedFramesArriveInOrderAndBorrowedBytesAreReleased) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  EventLoop loop;
  auto link = std::make_shared<FrameLink>(loop, UniqueFd(fds[0]), "test");
  link->start(FrameLink::Callbacks{.on_frame = [](Frame&&) {}, .on_close = [](const std::string&) {}, .on_malformed = {}});
  const size_t count = 300;  // more than one sendmsg takes; then one more, sent by a release
  const size_t borrowed_count = count / 2 + 1;
  std::vector<std::vector<uint8_t>> borrowed(count + 1);
  size_t released = 0;
  std::function<void(size_t)> send_borrowed = [&](size_t i) {
    borrowed[i] = pattern(1 + i * 37 % 5000, static_cast<uint8_t>(i));
    FrameHeader header;
    header.type = static_cast<uint16_t>(i);
    header.request_id = i;
    header.payload_len = static_cast<uint32_t>(borrowed[i].size());
    std::vector<uint8_t> head(kFrameHeaderSize);
    std::memcpy(head.data(), &header, kFrameHeaderSize);
    link->send_borrowed(std::move(head), borrowed[i], [&, i] {
      if (i == 1) send_borrowed(count);
      if (++released == borrowed_count) loop.stop();  // the last frame has left
    });
  };
  for (size_t i = 0; i < count; ++i) {
    if (i % 2 == 0) {
      link->send(encode_frame(static_cast<uint16_t>(i), i, pattern(1 + i * 37 % 5000, static_cast<uint8_t>(i)), 0,
                              Compression::Never));
    } else {
      send_borrowed(i);
    }
  }
  loop.after(std::chrono::seconds(20), [&](int) {
    if (released < borrowed_count) ADD_FAILURE() << "only " << released << " borrowed frames left in 20 s";
    ::shutdown(fds[0], SHUT_RDWR);  // ends the reader's wait too
    loop.stop();
  });
  std::thread reader([&, fd = fds[1]] {
    BlockingChannel channel{UniqueFd(fd)};
    try {
      for (size_t i = 0; i <= count; ++i) {
        const Frame frame = channel.receive_frame();
        EXPECT_EQ(frame.header.type, i);
        EXPECT_EQ(frame.payload, pattern(1 + i * 37 % 5000, static_cast<uint8_t>(i)));
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "reading the frames: " << e.what();
    }
  });
  loop.run();
  reader.join();
  EXPECT_EQ(released, borrowed_count);
  link->close("done");
}

// The first link answers a frame, then gives the connection away: its answer leaves first, the
// frames sent behind the one that asked arrive at the new link on the other loop, which goes on.
TEST(FrameLinkHandover, QueuedAnswerLeavesAndUnreadFramesFollowTheConnection) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  UniqueFd peer(fds[1]);
  EventLoop first_loop, second_loop;
  std::thread second_thread([&] { second_loop.run(); });
  std::shared_ptr<FrameLink> second;
  std::promise<std::vector<uint16_t>> second_got;
  std::vector<uint16_t> got;  // on second_loop's thread
  bool first_closed = false;

  auto first = std::make_shared<FrameLink>(first_loop, UniqueFd(fds[0]), "test");
  first->start(FrameLink::Callbacks{
      .on_frame =
          [&](Frame&& frame) {
            ASSERT_EQ(frame.header.type, 1);
            first->send(encode_frame(100, 0, {}, 0, Compression::Never));
            first->hand_over([&](FrameLink::Handover connection) {
              EXPECT_EQ(connection.unread.size(), 2 * kFrameHeaderSize + 6);  // frames 2 and 3
              auto handed = std::make_shared<FrameLink::Handover>(std::move(connection));
              second_loop.post([&, handed] {
                second = std::make_shared<FrameLink>(second_loop, std::move(handed->fd), "test");
                second->prime(handed->unread);
                second->start(FrameLink::Callbacks{
                    .on_frame =
                        [&](Frame&& frame) {
                          got.push_back(frame.header.type);
                          if (got.size() == 3) {
                            second->send(encode_frame(101, 0, {}, 0, Compression::Never));
                            second_got.set_value(got);
                          }
                        },
                    .on_close = [](const std::string&) {},
                    .on_malformed = {},
                });
              });
              first_loop.stop();
            });
          },
      .on_close = [&](const std::string&) { first_closed = true; },
      .on_malformed = {},
  });
  BlockingChannel channel(std::move(peer));
  std::vector<uint8_t> burst;
  for (uint16_t type : {1, 2, 3}) {
    auto frame = encode_frame(type, 0, std::vector<uint8_t>(3, static_cast<uint8_t>(type)), 0, Compression::Never);
    burst.insert(burst.end(), frame.begin(), frame.end());
  }
  channel.write_all(burst);
  first_loop.run();
  EXPECT_FALSE(first_closed);
  EXPECT_TRUE(first->closed());
  EXPECT_EQ(channel.receive_frame().header.type, 100);
  channel.send_frame(4, 0, {}, 0, Compression::Never);
  auto future = second_got.get_future();
  EXPECT_EQ(future.get(), (std::vector<uint16_t>{2, 3, 4}));
  EXPECT_EQ(channel.receive_frame().header.type, 101);
  second_loop.post([&] { second->close("done"); second.reset(); });
  second_loop.stop();
  second_thread.join();
}

}  // namespace
}  // namespace rgpu
