#include "proxy/stream.h"

#include <boost/asio/read.hpp>

namespace pgshift::proxy {

Stream::Stream(tcp::socket socket) : socket_(std::move(socket)) {
  error_code ignored;
  socket_.set_option(tcp::no_delay(true), ignored);
  socket_.non_blocking(true, ignored);  // for Write's immediate attempt
}

// Reads return asio's own awaitables rather than being coroutines: every
// relayed message passes through them.
awaitable<size_t> Stream::ReadSome(asio::mutable_buffer buffer, error_code& ec) {
  if (tls_) return tls_->async_read_some(buffer, WithError(ec));
  return socket_.async_read_some(buffer, WithError(ec));
}

awaitable<size_t> Stream::Write(asio::const_buffer buffer, error_code& ec) {
  std::vector<asio::const_buffer> buffers{buffer};
  co_return co_await Write(buffers, ec);
}

awaitable<size_t> Stream::Write(const std::vector<asio::const_buffer>& buffers, error_code& ec) {
  if (tls_) co_return co_await asio::async_write(*tls_, buffers, WithError(ec));
  // The relay's writes almost always fit the socket buffer: write at once,
  // without a trip through the scheduler, and wait only for what is left.
  size_t written = socket_.write_some(buffers, ec);
  if (!ec && written == asio::buffer_size(buffers)) co_return written;
  if (ec && ec != asio::error::would_block) co_return written;
  ec.clear();
  size_t skip = written;
  std::vector<asio::const_buffer> rest;
  for (const asio::const_buffer& b : buffers) {
    if (skip >= b.size()) {
      skip -= b.size();
    } else {
      rest.push_back(b + skip);
      skip = 0;
    }
  }
  co_return written + co_await asio::async_write(socket_, rest, WithError(ec));
}

awaitable<size_t> Stream::ReadExactly(asio::mutable_buffer buffer, error_code& ec) {
  if (tls_) return asio::async_read(*tls_, buffer, WithError(ec));
  return asio::async_read(socket_, buffer, WithError(ec));
}

awaitable<void> Stream::TlsHandshake(asio::ssl::context& context,
                                     asio::ssl::stream_base::handshake_type type, error_code& ec,
                                     const std::function<void(SSL*)>& prepare) {
  tls_ = std::make_unique<asio::ssl::stream<tcp::socket>>(std::move(socket_), context);
  if (prepare) prepare(tls_->native_handle());
  return tls_->async_handshake(type, WithError(ec));
}

void Stream::Cancel() {
  error_code ignored;
  socket().cancel(ignored);
}

void Stream::Close() {
  error_code ignored;
  socket().shutdown(tcp::socket::shutdown_both, ignored);
  socket().close(ignored);
}

}  // namespace pgshift::proxy
