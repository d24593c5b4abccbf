// The bytes to pass on from one read: views into the read buffer, merged
// where adjacent so that many small messages become one write, plus
// messages pgshift wrote itself (rewritten or replaced), kept until clear().
#pragma once

#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/asio.h"

namespace pgshift::proxy {

class ForwardList {
 public:
  ForwardList() = default;
  // Moving keeps the owned strings where they are (the deque's nodes move
  // whole); a copy would leave the buffers pointing into the original.
  ForwardList(ForwardList&&) = default;
  ForwardList& operator=(ForwardList&&) = default;
  ForwardList(const ForwardList&) = delete;
  ForwardList& operator=(const ForwardList&) = delete;

  void Add(std::string_view bytes) {
    if (bytes.empty()) return;
    if (!buffers_.empty()) {
      auto& last = buffers_.back();
      const char* end = static_cast<const char*>(last.data()) + last.size();
      if (end == bytes.data()) {
        last = asio::const_buffer(last.data(), last.size() + bytes.size());
        return;
      }
    }
    buffers_.emplace_back(bytes.data(), bytes.size());
  }
  // A deque keeps each string where it is as more are added.
  void AddOwned(std::string bytes) {
    owned_.push_back(std::move(bytes));
    buffers_.emplace_back(owned_.back().data(), owned_.back().size());
  }
  void clear() {
    buffers_.clear();
    owned_.clear();
  }
  bool empty() const { return buffers_.empty(); }
  const std::vector<asio::const_buffer>& buffers() const { return buffers_; }

 private:
  std::vector<asio::const_buffer> buffers_;
  std::deque<std::string> owned_;
};

}  // namespace pgshift::proxy
