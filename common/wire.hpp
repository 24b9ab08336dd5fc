// Little-endian payload encoding with a bounds check on every read.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

static_assert(std::endian::native == std::endian::little, "RGPU's wire format assumes a little-endian host");

namespace rgpu {

// Thrown when a payload is shorter than its fields claim or a length is past its limit.
class WireError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t kMaxWireString = 64 * 1024;

// Ids of calls on the wire: FNV-1a (32-bit) of the call's name, so both ends agree by name.
inline constexpr uint32_t fnv1a(const char* s) {
  uint32_t h = 0x811C9DC5u;
  while (*s) h = (h ^ static_cast<uint8_t>(*s++)) * 0x01000193u;
  return h;
}

class WireWriter {
 public:
  WireWriter() = default;
  explicit WireWriter(std::vector<uint8_t>& out) : external_(&out) {}

  template <typename T>
    requires std::is_trivially_copyable_v<T>
  WireWriter& put(const T& value) {
    append(&value, sizeof value);
    return *this;
  }
  WireWriter& bytes(const void* data, size_t size) {
    append(data, size);
    return *this;
  }
  // u32 length + bytes.
  WireWriter& blob(std::span<const uint8_t> data) {
    put<uint32_t>(static_cast<uint32_t>(data.size()));
    append(data.data(), data.size());
    return *this;
  }
  WireWriter& str(std::string_view text) {
    put<uint32_t>(static_cast<uint32_t>(text.size()));
    append(text.data(), text.size());
    return *this;
  }
  std::vector<uint8_t>& buffer() { return external_ ? *external_ : own_; }
  std::vector<uint8_t> take() { return std::move(buffer()); }

 private:
  void append(const void* data, size_t size) {
    auto& buf = buffer();
    const auto* p = static_cast<const uint8_t*>(data);
    buf.insert(buf.end(), p, p + size);
  }
  std::vector<uint8_t> own_;
  std::vector<uint8_t>* external_ = nullptr;
};

class WireReader {
 public:
  explicit WireReader(std::span<const uint8_t> data, const char* what = "payload") : data_(data), what_(what) {}

  template <typename T>
    requires std::is_trivially_copyable_v<T>
  T get() {
    T value;
    std::memcpy(&value, take(sizeof value), sizeof value);
    return value;
  }
  std::span<const uint8_t> bytes(size_t size) { return {take(size), size}; }
  std::span<const uint8_t> blob(uint32_t max_size) {
    auto size = get<uint32_t>();
    if (size > max_size)
      throw WireError(std::string(what_) + ": field of " + std::to_string(size) + " bytes is over its limit of " +
                      std::to_string(max_size));
    return bytes(size);
  }
  std::string str(uint32_t max_size = kMaxWireString) {
    auto span = blob(max_size);
    return {reinterpret_cast<const char*>(span.data()), span.size()};
  }
  size_t remaining() const { return data_.size() - offset_; }
  std::span<const uint8_t> rest() { return bytes(remaining()); }
  // A decoder calls this last: trailing bytes mean the peer and we disagree on the layout.
  void expect_end() const {
    if (remaining() != 0)
      throw WireError(std::string(what_) + ": " + std::to_string(remaining()) + " unexpected trailing bytes");
  }

 private:
  const uint8_t* take(size_t size) {
    if (size > remaining())
      throw WireError(std::string(what_) + ": truncated (needs " + std::to_string(size) + " more bytes, " +
                      std::to_string(remaining()) + " left)");
    const uint8_t* p = data_.data() + offset_;
    offset_ += size;
    return p;
  }
  std::span<const uint8_t> data_;
  size_t offset_ = 0;
  const char* what_;
};

}  // namespace rgpu
