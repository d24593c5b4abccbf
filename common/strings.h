// String helpers that work on std::string_view. Debian's abseil is built
// with its own absl::string_view, which does not convert from
// std::string_view, so the project concatenates and splits here and converts
// at the few abseil calls that need it.
#pragma once

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace pgshift {

inline absl::string_view ToAbsl(std::string_view s) { return {s.data(), s.size()}; }
inline std::string_view ToStd(absl::string_view s) { return {s.data(), s.size()}; }
inline std::string_view MessageOf(const absl::Status& s) { return ToStd(s.message()); }

namespace strings_internal {

inline void Append(std::string& out, std::string_view s) { out.append(s); }
inline void Append(std::string& out, absl::string_view s) { out.append(s.data(), s.size()); }
inline void Append(std::string& out, const char* s) { out.append(s); }
inline void Append(std::string& out, const std::string& s) { out.append(s); }
inline void Append(std::string& out, char c) = delete;  // ambiguous: a digit or a letter?
template <typename T>
  requires(std::integral<T> && !std::same_as<T, char> && !std::same_as<T, bool>)
void Append(std::string& out, T v) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}
inline void Append(std::string& out, double v) {
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, res.ptr);
}

}  // namespace strings_internal

template <typename... Args>
std::string StrCat(const Args&... args) {
  std::string out;
  (strings_internal::Append(out, args), ...);
  return out;
}

inline std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string_view::npos ? s.npos : end - start));
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return parts;
}

template <typename T>
  requires std::integral<T>
bool ParseInt(std::string_view s, T& out) {
  auto res = std::from_chars(s.data(), s.data() + s.size(), out);
  return res.ec == std::errc() && res.ptr == s.data() + s.size() && !s.empty();
}

// Whether `text` contains `lower` (all lower case) in any case.
inline bool ContainsIgnoreCase(std::string_view text, std::string_view lower) {
  auto folded = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
  return std::search(text.begin(), text.end(), lower.begin(), lower.end(),
                     [&](char a, char b) { return folded(a) == b; }) != text.end();
}

// Lower-case hex digits, two per byte.
inline std::string HexOf(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) {
    hex += kDigits[b >> 4];
    hex += kDigits[b & 15];
  }
  return hex;
}

// `text` as a SQL string literal. An escape string reads the same whatever
// standard_conforming_strings says, so no session setting has to change
// for pgshift's own queries.
inline std::string QuoteLiteral(std::string_view text) {
  std::string out = "E'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out.push_back(c);
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

// A size as PostgreSQL's pg_size_pretty writes it ("512 bytes", "300 MB"):
// the unit steps up (by 1024) from 10240 of the one below, rounding half up.
inline std::string PrettySize(uint64_t bytes) {
  static constexpr std::string_view kUnits[] = {"bytes", "kB", "MB", "GB", "TB"};
  size_t unit = 0;
  uint64_t value = bytes;
  while (value >= 10240 && unit + 1 < std::size(kUnits)) {
    value = (value + 512) / 1024;
    ++unit;
  }
  return StrCat(value, " ", kUnits[unit]);
}

}  // namespace pgshift
