#include "proxy/packet_buffer.h"

#include <cstring>

namespace pgshift::proxy {

PacketBuffer::PacketBuffer(size_t initial) : capacity_(0), initial_(initial) {}

asio::mutable_buffer PacketBuffer::PrepareRead() {
  if (!storage_) {  // allocated on first use: a connection may never be read
    storage_.reset(new char[initial_]);
    capacity_ = initial_;
  }
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (capacity_ > initial_) {  // a large message has passed; give the memory back
      storage_.reset(new char[initial_]);
      capacity_ = initial_;
    }
  }
  if (capacity_ - end_ < capacity_ / 4 && begin_ > 0) {
    std::memmove(storage_.get(), storage_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == capacity_) {
    // Only a message that must be seen whole fills the buffer; its header
    // has already been checked against the size limit.
    std::unique_ptr<char[]> bigger(new char[capacity_ * 2]);
    std::memcpy(bigger.get(), storage_.get() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    storage_ = std::move(bigger);
    capacity_ *= 2;
  }
  return asio::buffer(storage_.get() + end_, capacity_ - end_);
}

void PacketBuffer::Consume(size_t n) {
  begin_ += n;
  if (begin_ == end_) begin_ = end_ = 0;
}

}  // namespace pgshift::proxy
