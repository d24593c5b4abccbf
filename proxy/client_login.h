// The client side of a connection's start, shared by sessions and the admin
// console: encryption negotiation, the startup packet, and authentication
// against [[users]] by the configured method.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "protocol/error_fields.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/startup.h"
#include "proxy/asio.h"
#include "proxy/packet_buffer.h"
#include "proxy/server.h"
#include "proxy/stats.h"
#include "proxy/stream.h"

namespace pgshift::proxy {

// What a client opens with, once encryption is settled.
using ClientStart = std::variant<protocol::StartupMessage, protocol::CancelRequest>;

class ClientLogin {
 public:
  ClientLogin(Stream& stream, PacketBuffer& buffer, std::string_view address, Stats& stats)
      : stream_(stream), buffer_(buffer), address_(address), stats_(stats) {}

  // Answers SSLRequest ('S' with a handshake when `tls` is set, else 'N') and
  // GSSENCRequest ('N'), then returns the StartupMessage (as 3.0) or
  // CancelRequest. nullopt when the client left, sent what is no startup
  // packet (closed without a word, as the postmaster does) or was failed.
  awaitable<std::optional<ClientStart>> ReadStartup(asio::ssl::context* tls);

  // Authenticates `user` by `method` (default: settings' auth_method);
  // false after failing the client.
  awaitable<bool> Authenticate(const Settings& settings, const std::string& user,
                               std::optional<routing::AuthMethod> method = std::nullopt);

  // A FATAL ErrorResponse, then the connection is closed.
  awaitable<void> Fail(protocol::ErrorFields error);
  awaitable<void> Send(std::string_view bytes);
  // False once a write to the client failed.
  bool writable() const { return writable_; }

 private:
  // Sends an authentication request. Callers pass a named object: GCC 12
  // miscompiles aggregate temporaries inside co_await.
  awaitable<void> Ask(const protocol::Authentication& request);
  // Answers a 3.x startup above 3.0, or with "_pq_." options, with
  // NegotiateProtocolVersion and makes it 3.0 without them; false when the
  // client is gone.
  awaitable<bool> NegotiateVersion(protocol::StartupMessage& start);
  awaitable<bool> AuthenticateMd5(const std::string& user, const routing::UserConfig* entry);
  awaitable<bool> AuthenticateScram(const Settings& settings, const std::string& user,
                                    const routing::UserConfig* entry);
  // The payload of the client's next 'p' message; nullopt once the client
  // is gone or has been rejected for a malformed message.
  awaitable<std::optional<std::string>> ReadAuthResponse(std::string_view method);
  // Logs the failed login and fails the client.
  awaitable<void> RejectLogin(std::string_view code, std::string message, std::string_view method,
                              std::string_view reason);

  Stream& stream_;
  PacketBuffer& buffer_;
  std::string_view address_;
  Stats& stats_;
  std::string user_;
  bool writable_ = true;
};

// PostgreSQL's FATAL error with `code` and `message`.
protocol::ErrorFields Fatal(std::string_view code, std::string_view message);

}  // namespace pgshift::proxy
