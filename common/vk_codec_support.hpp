// What the generated Vulkan codecs (gen/vk_commands.py) build on: handles as wire ids, the arena
// that decoded structs live in, and the checks every length read from the wire goes through.
#pragma once

#define VK_NO_PROTOTYPES
#include <vulkan/vulkan.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "wire.hpp"

namespace rgpu::vk {

inline constexpr uint32_t kMaxChainLength = 64;
// pNext chains inside chained structs, at most this deep.
inline constexpr int kMaxChainDepth = 8;
// What one decoded call may occupy in memory (its structs, arrays and strings).
inline constexpr uint64_t kMaxCallMemory = 256ull << 20;

// A handle (dispatchable or not) as the u64 it travels as. The ICD's handles are its ids.
template <typename Handle>
uint64_t to_wire(Handle h) {
  if constexpr (std::is_pointer_v<Handle>) return reinterpret_cast<uint64_t>(h);
  else return static_cast<uint64_t>(h);
}
template <typename Handle>
Handle from_wire(uint64_t value) {
  if constexpr (std::is_pointer_v<Handle>) return reinterpret_cast<Handle>(value);
  else return static_cast<Handle>(value);
}

// A count or size member as a number; an enum is copied, never loaded as the enum (from the wire
// it may hold any value, and loading one outside the enum would be undefined behaviour).
template <typename T>
uint64_t number(const T& value) {
  if constexpr (std::is_enum_v<T>) {
    std::underlying_type_t<T> raw;
    std::memcpy(&raw, &value, sizeof raw);
    return static_cast<uint64_t>(raw);
  } else {
    return static_cast<uint64_t>(value);
  }
}

// Memory for one decoded call: everything is released together when the call is done.
class Arena {
 public:
  template <typename T>
  T* make(uint64_t n) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (n == 0) return nullptr;
    return static_cast<T*>(allocate(n * sizeof(T)));
  }
  template <typename T>
  const T* copy_bytes(std::span<const uint8_t> bytes) {
    if (bytes.empty()) return nullptr;
    void* p = allocate(bytes.size());
    std::memcpy(p, bytes.data(), bytes.size());
    return static_cast<const T*>(p);
  }
  const char* copy_string(const std::string& s) {
    char* p = static_cast<char*>(allocate(s.size() + 1));
    std::memcpy(p, s.c_str(), s.size() + 1);
    return p;
  }
  void clear() {
    blocks_.clear();
    used_ = 0;
  }

 private:
  void* allocate(uint64_t size) {
    if (size > kMaxCallMemory - used_)
      throw WireError("the call's arguments need more than " + std::to_string(kMaxCallMemory >> 20) + " MiB");
    used_ += size;
    // Zeroed, and aligned for any Vulkan struct.
    blocks_.emplace_back(new (std::align_val_t{16}) uint8_t[size]());
    return blocks_.back().get();
  }
  uint64_t used_ = 0;
  struct Free {
    void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t{16}); }
  };
  std::vector<std::unique_ptr<uint8_t[], Free>> blocks_;
};

// The server's map from wire ids to the driver's handles; throws WireError for an id that is not
// an object of `type` in this session. 0 is VK_NULL_HANDLE.
class HandleResolver {
 public:
  virtual ~HandleResolver() = default;
  virtual uint64_t resolve(uint64_t id, VkObjectType type) = 0;
  // The same for an object the call only reads from (the source of a transfer).
  virtual uint64_t resolve_source(uint64_t id, VkObjectType type) { return resolve(id, type); }
};

struct DecodeContext {
  Arena& arena;
  HandleResolver& handles;
  int chain_depth = 0;
};

// Counts one level of pNext chain decoding; refuses chains nested too deep.
class ChainDepth {
 public:
  explicit ChainDepth(DecodeContext& ctx) : ctx_(ctx) {
    if (++ctx_.chain_depth > kMaxChainDepth) {
      --ctx_.chain_depth;
      throw WireError("pNext chains nested more than " + std::to_string(kMaxChainDepth) + " deep");
    }
  }
  ~ChainDepth() { --ctx_.chain_depth; }
  ChainDepth(const ChainDepth&) = delete;
  ChainDepth& operator=(const ChainDepth&) = delete;

 private:
  DecodeContext& ctx_;
};

// A count read from the wire, refused when the rest of the payload cannot hold that many
// elements of at least `min_size` bytes (so a bad count cannot make a huge allocation).
inline uint64_t checked_count(const WireReader& r, uint64_t n, uint64_t min_size) {
  if (min_size != 0 && n > r.remaining() / min_size)
    throw WireError("a count of " + std::to_string(n) + " is more than the payload holds");
  return n;
}

inline constexpr uint64_t kMaxAnswerBytes = 48ull << 20;
// Room for an answer the driver writes (query results, cache data): bounded by what one reply carries.
inline uint64_t checked_answer(uint64_t n, uint64_t size) {
  if (size != 0 && n > kMaxAnswerBytes / size)
    throw WireError("an answer of " + std::to_string(n) + " elements is over the limit of one reply");
  return n;
}

// Logs (once per type) a struct of a pNext chain that this build cannot send; it is left out.
void skipped_chain_struct(VkStructureType type);

// A struct's sType as the number it holds (which, from the wire, need not be a valid enumerator).
inline uint32_t structure_type(const void* s) {
  uint32_t type;
  std::memcpy(&type, s, sizeof type);
  return type;
}

inline void* find_in_chain(void* next, uint32_t type) {
  for (auto* s = static_cast<VkBaseOutStructure*>(next); s != nullptr; s = s->pNext)
    if (structure_type(s) == type) return s;
  return nullptr;
}

// VkWriteDescriptorSet and VkDescriptorSetLayoutBinding members that the spec says are ignored
// (and may hold anything) for other descriptor types.
inline bool writes_images(uint64_t t) {
  return t == VK_DESCRIPTOR_TYPE_SAMPLER || t == VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER ||
         t == VK_DESCRIPTOR_TYPE_SAMPLED_IMAGE || t == VK_DESCRIPTOR_TYPE_STORAGE_IMAGE ||
         t == VK_DESCRIPTOR_TYPE_INPUT_ATTACHMENT;
}
inline bool writes_buffers(uint64_t t) {
  return t == VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER || t == VK_DESCRIPTOR_TYPE_STORAGE_BUFFER ||
         t == VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER_DYNAMIC || t == VK_DESCRIPTOR_TYPE_STORAGE_BUFFER_DYNAMIC;
}
inline bool writes_texel_buffers(uint64_t t) {
  return t == VK_DESCRIPTOR_TYPE_UNIFORM_TEXEL_BUFFER || t == VK_DESCRIPTOR_TYPE_STORAGE_TEXEL_BUFFER;
}
inline bool takes_immutable_samplers(uint64_t t) {
  return t == VK_DESCRIPTOR_TYPE_SAMPLER || t == VK_DESCRIPTOR_TYPE_COMBINED_IMAGE_SAMPLER;
}

}  // namespace rgpu::vk
