// Opening a session's connection to one PostgreSQL server: connect, TLS as
// configured, StartupMessage, authentication, up to the first ReadyForQuery.
#pragma once

#include <memory>
#include <string>
#include <variant>

#include "protocol/error_fields.h"
#include "protocol/messages/backend_key_data.h"
#include "protocol/messages/startup.h"
#include "proxy/asio.h"
#include "proxy/stream.h"
#include "routing/config.h"

namespace pgshift::proxy {

struct BackendLoginParams {
  std::string_view backend_name;  // "old" or "new", for messages
  const routing::BackendConfig& backend;
  // The client's startup parameters; user and database are replaced by the
  // backend's own when configured.
  const protocol::StartupMessage& client_startup;
  // Used when the backend has no password of its own: the client's
  // [[users]] password, if it has one.
  std::string_view fallback_password;
  asio::ssl::context& tls_context;
  double connect_timeout_s;
};

struct BackendLogin {
  std::unique_ptr<Stream> stream;
  // Everything the server sent after AuthenticationOk, ReadyForQuery
  // included: ParameterStatus, BackendKeyData, notices. The client gets it
  // verbatim.
  std::string greeting;
  protocol::BackendKeyData key;
};

// The backend's own ErrorResponse, or one pgshift raises (connection refused,
// no password, ...), which the client gets as a FATAL error.
using BackendLoginResult = std::variant<BackendLogin, protocol::ErrorFields>;

awaitable<BackendLoginResult> LoginToBackend(const BackendLoginParams& params);

}  // namespace pgshift::proxy
