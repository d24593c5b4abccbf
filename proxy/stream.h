// A connection to a client or a backend: plain TCP, or TLS once upgraded.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proxy/asio.h"

namespace pgshift::proxy {

class Stream {
 public:
  explicit Stream(tcp::socket socket);

  awaitable<size_t> ReadSome(asio::mutable_buffer buffer, error_code& ec);
  // Writes all of the buffers; returns the byte count.
  awaitable<size_t> Write(asio::const_buffer buffer, error_code& ec);
  awaitable<size_t> Write(const std::vector<asio::const_buffer>& buffers, error_code& ec);
  // Reads exactly buffer.size() bytes.
  awaitable<size_t> ReadExactly(asio::mutable_buffer buffer, error_code& ec);

  // `prepare`, when given, sets up the connection's SSL object before the
  // handshake (what the peer's certificate must be).
  awaitable<void> TlsHandshake(asio::ssl::context& context,
                               asio::ssl::stream_base::handshake_type type, error_code& ec,
                               const std::function<void(SSL*)>& prepare = nullptr);
  bool tls() const { return tls_ != nullptr; }
  SSL* tls_handle() { return tls_ ? tls_->native_handle() : nullptr; }

  tcp::socket& socket() { return tls_ ? tls_->next_layer() : socket_; }
  // Aborts pending operations; the stream stays open.
  void Cancel();
  // Closes the connection; pending operations complete with an error.
  void Close();
  bool is_open() { return socket().is_open(); }

 private:
  tcp::socket socket_;  // moved into tls_ on upgrade
  std::unique_ptr<asio::ssl::stream<tcp::socket>> tls_;
};

}  // namespace pgshift::proxy
