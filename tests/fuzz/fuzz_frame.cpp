// libFuzzer target: a byte stream through FrameDecoder, then every message decoder on each payload.
// Input: byte 0 picks the feeding pattern (bits 1-7: chunk size - 1; bit 0: a 1 MiB per-link limit),
// the rest is the stream. Only FrameError and WireError may come out; anything else is a bug.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "frame.hpp"
#include "messages.hpp"
#include "round_trip.hpp"
#include "wire.hpp"

namespace {

void decode_messages(std::span<const uint8_t> payload) {
  using rgpu::fuzz::round_trip;
  round_trip(payload, rgpu::decode_hello);
  round_trip(payload, rgpu::decode_challenge);
  round_trip(payload, rgpu::decode_auth_response);
  round_trip(payload, rgpu::decode_welcome);
  round_trip(payload, rgpu::decode_error);
  round_trip(payload, rgpu::decode_gpu_list);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = (data[0] >> 1) + 1u;
  const uint32_t limit = (data[0] & 1) ? (1u << 20) : rgpu::kMaxFramePayload;
  const std::span<const uint8_t> stream(data + 1, size - 1);

  rgpu::FrameDecoder decoder(limit);
  try {
    for (size_t pos = 0; pos < stream.size(); pos += chunk) {
      decoder.feed(stream.subspan(pos, std::min(chunk, stream.size() - pos)));
      while (auto frame = decoder.next()) {
        if (frame->payload.size() > limit || (frame->header.flags & rgpu::kFrameCompressed)) std::abort();
        decode_messages(frame->payload);
      }
    }
  } catch (const rgpu::FrameError&) {
  }
  return 0;
}
