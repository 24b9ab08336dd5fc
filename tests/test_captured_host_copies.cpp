// A hostile server's answers for captured copies: only the host memory the application gave a
// copy during a capture is written or read.
#include "captured_host_copies.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

namespace {
using rgpu::cuda::HostFunctionKind;
using rgpu::cuda::HostFunctionPollAnswer;
using rgpu::cuda::note_possible_captured_copy;
using rgpu::cuda::relay_captured_copy;

uint64_t address_of(const void* p) { return reinterpret_cast<uint64_t>(p); }

HostFunctionPollAnswer write_answer(const void* at, std::vector<uint8_t> bytes) {
  HostFunctionPollAnswer answer;
  answer.reached = true;
  answer.kind = HostFunctionKind::WriteToHost;
  answer.address = address_of(at);
  answer.size = bytes.size();
  answer.bytes = std::move(bytes);
  return answer;
}

HostFunctionPollAnswer read_answer(const void* at, uint64_t size) {
  HostFunctionPollAnswer answer;
  answer.reached = true;
  answer.kind = HostFunctionKind::ReadFromHost;
  answer.address = address_of(at);
  answer.size = size;
  return answer;
}

TEST(CapturedHostCopies, AGivenDestinationIsWritten) {
  std::array<uint8_t, 8> destination{};
  note_possible_captured_copy(HostFunctionKind::WriteToHost, address_of(destination.data()), destination.size());
  std::vector<uint8_t> read;
  ASSERT_TRUE(relay_captured_copy(write_answer(destination.data(), {1, 2, 3, 4, 5, 6, 7, 8}), read));
  EXPECT_EQ(destination, (std::array<uint8_t, 8>{1, 2, 3, 4, 5, 6, 7, 8}));
  EXPECT_TRUE(read.empty());
}

TEST(CapturedHostCopies, AForgedDestinationIsNotWritten) {
  constexpr std::array<uint8_t, 16> kSecret = [] {
    std::array<uint8_t, 16> a{};
    a.fill(0x5a);
    return a;
  }();
  std::array<uint8_t, 16> secret = kSecret;
  std::array<uint8_t, 8> destination{};
  note_possible_captured_copy(HostFunctionKind::WriteToHost, address_of(destination.data()), destination.size());
  std::vector<uint8_t> read;
  // Memory no copy was given, a given destination overrun, and the same range named for reading.
  EXPECT_FALSE(relay_captured_copy(write_answer(secret.data(), std::vector<uint8_t>(16, 0xee)), read));
  EXPECT_FALSE(relay_captured_copy(write_answer(destination.data(), std::vector<uint8_t>(9, 0xee)), read));
  EXPECT_FALSE(relay_captured_copy(write_answer(destination.data() + 1, std::vector<uint8_t>(4, 0xee)), read));
  EXPECT_FALSE(relay_captured_copy(read_answer(destination.data(), destination.size()), read));
  EXPECT_EQ(secret, kSecret);
  EXPECT_EQ(destination, (std::array<uint8_t, 8>{}));
  EXPECT_TRUE(read.empty());
}

TEST(CapturedHostCopies, AnAnswerWhoseBytesDoNotMatchItsSizeIsNotWritten) {
  std::array<uint8_t, 8> destination{};
  note_possible_captured_copy(HostFunctionKind::WriteToHost, address_of(destination.data()), destination.size());
  HostFunctionPollAnswer answer = write_answer(destination.data(), {9, 9, 9, 9});
  answer.size = destination.size();
  std::vector<uint8_t> read;
  EXPECT_FALSE(relay_captured_copy(answer, read));
  EXPECT_EQ(destination, (std::array<uint8_t, 8>{}));
}

TEST(CapturedHostCopies, OnlyAGivenSourceIsRead) {
  const std::array<uint8_t, 4> source{7, 8, 9, 10};
  const std::array<uint8_t, 32> secret{42};
  note_possible_captured_copy(HostFunctionKind::ReadFromHost, address_of(source.data()), source.size());
  std::vector<uint8_t> read;
  EXPECT_FALSE(relay_captured_copy(read_answer(secret.data(), secret.size()), read));
  EXPECT_TRUE(read.empty());
  EXPECT_FALSE(relay_captured_copy(read_answer(source.data(), source.size() + 1), read));
  EXPECT_TRUE(read.empty());
  ASSERT_TRUE(relay_captured_copy(read_answer(source.data(), source.size()), read));
  EXPECT_EQ(read, (std::vector<uint8_t>{7, 8, 9, 10}));
  // Part of a given source, from its start, is read too (a copy captured again with fewer bytes).
  ASSERT_TRUE(relay_captured_copy(read_answer(source.data(), 2), read));
  EXPECT_EQ(read, (std::vector<uint8_t>{7, 8}));
}

}  // namespace
