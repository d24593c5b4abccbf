#include "proxy/control_connection.h"

#include "common/strings.h"
#include "protocol/messages/startup.h"
#include "proxy/backend_login.h"

namespace pgshift::proxy {

awaitable<absl::StatusOr<std::unique_ptr<Stream>>> OpenControlConnection(
    const routing::Config& config, const routing::BackendConfig& backend, std::string_view name,
    asio::ssl::context& tls, std::string_view options) {
  if (!backend.dbname || !backend.user) {
    co_return absl::FailedPreconditionError(
        StrCat("backends.", name, " needs dbname and user for pgshift to connect on its own"));
  }
  protocol::StartupMessage startup;
  startup.Set("user", *backend.user);
  startup.Set("database", *backend.dbname);
  startup.Set("application_name", "pgshift");
  if (!options.empty()) startup.Set("options", options);
  const routing::UserConfig* user = config.FindUser(*backend.user);
  BackendLoginParams params{
      .backend_name = name,
      .backend = backend,
      .client_startup = startup,
      .fallback_password = user ? std::string_view(user->password) : std::string_view(),
      .tls_context = tls,
      .connect_timeout_s = config.proxy.connect_timeout_s,
  };
  BackendLoginResult login = co_await LoginToBackend(params);
  if (auto* error = std::get_if<protocol::ErrorFields>(&login)) {
    co_return absl::UnavailableError(std::string(error->message()));
  }
  co_return std::move(std::get<BackendLogin>(login).stream);
}

}  // namespace pgshift::proxy
