// The bytes read from one side and not yet passed on. Small while a session
// is idle; grows only while a message that must be seen whole is arriving,
// and shrinks back afterwards.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "proxy/asio.h"

namespace pgshift::proxy {

class PacketBuffer {
 public:
  static constexpr size_t kInitialSize = 16 * 1024;

  explicit PacketBuffer(size_t initial = kInitialSize);

  // Unconsumed bytes.
  std::string_view data() const { return {storage_.get() + begin_, end_ - begin_}; }
  bool empty() const { return begin_ == end_; }

  // Space to read into, compacting or growing as needed.
  asio::mutable_buffer PrepareRead();
  void Commit(size_t n) { end_ += n; }
  void Consume(size_t n);

 private:
  std::unique_ptr<char[]> storage_;
  size_t capacity_;
  size_t initial_;
  size_t begin_ = 0;
  size_t end_ = 0;
};

}  // namespace pgshift::proxy
