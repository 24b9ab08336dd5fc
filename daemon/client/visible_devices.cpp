#include "visible_devices.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>

namespace rgpu::client {

std::string uuid_text(const std::array<uint8_t, 16>& u) {
  char text[64];
  std::snprintf(text, sizeof text,
                "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1], u[2], u[3],
                u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
  return text;
}

namespace {
std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

// Pool position of one entry, or -1 when it selects nothing (which ends the list).
long resolve(const std::string& entry, const std::vector<GpuInfo>& pool) {
  if (entry.empty()) return -1;
  if (std::isdigit(static_cast<unsigned char>(entry[0]))) {
    long value = -1;
    auto [end, ec] = std::from_chars(entry.data(), entry.data() + entry.size(), value);
    if (ec != std::errc() || end != entry.data() + entry.size()) return -1;
    return value < static_cast<long>(pool.size()) ? value : -1;
  }
  const std::string wanted = lower(entry);
  if (wanted.rfind("gpu-", 0) != 0 || wanted.size() <= 4) return -1;
  long found = -1;
  for (size_t i = 0; i < pool.size(); ++i) {
    if (lower(uuid_text(pool[i].uuid)).rfind(wanted, 0) != 0) continue;
    if (found >= 0) return -1;  // ambiguous prefix
    found = static_cast<long>(i);
  }
  return found;
}
}  // namespace

std::vector<size_t> select_visible(const std::string& value, const std::vector<GpuInfo>& pool) {
  std::vector<size_t> out;
  size_t start = 0;
  while (start <= value.size()) {
    const size_t comma = value.find(',', start);
    const std::string entry = trim(value.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    const long position = resolve(entry, pool);
    if (position < 0) break;
    if (std::find(out.begin(), out.end(), static_cast<size_t>(position)) == out.end())
      out.push_back(static_cast<size_t>(position));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

}  // namespace rgpu::client
