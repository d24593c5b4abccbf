#include "proxy/catalog_reader.h"

#include "common/strings.h"
#include "protocol/messages/startup.h"
#include "proxy/backend_login.h"
#include "proxy/backend_query.h"
#include "proxy/packet_buffer.h"

namespace pgshift::proxy {

namespace {

awaitable<void> Read(const routing::Config& config, asio::ssl::context& tls,
                     CatalogReadResult& out) {
  std::vector<const routing::TableConfig*> tables;
  for (const routing::TableConfig& t : config.tables) {
    if (t.phase != routing::Phase::kOldOnly) tables.push_back(&t);
  }
  if (tables.empty()) co_return;
  const bool second_server = config.new_backend.has_value();
  const routing::BackendConfig& backend = second_server ? *config.new_backend : config.old_backend;
  const std::string_view name = second_server ? "new" : "old";
  auto fail_all = [&](std::string_view why, bool blocking) {
    for (const routing::TableConfig* t : tables) {
      out.problems.push_back({t->name,
                              StrCat("cannot read the columns of ", t->new_name, " on backend ",
                                     name, ": ", why),
                              blocking});
    }
  };
  if (!backend.dbname || !backend.user) {
    fail_all(StrCat("backends.", name, " needs dbname and user for pgshift to read its catalog"),
             false);
    co_return;
  }
  protocol::StartupMessage startup;
  startup.Set("user", *backend.user);
  startup.Set("database", *backend.dbname);
  startup.Set("application_name", "pgshift catalog");
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
    fail_all(error->message(), true);
    co_return;
  }
  Stream& stream = *std::get<BackendLogin>(login).stream;
  PacketBuffer buffer;
  for (const routing::TableConfig* t : tables) {
    auto columns = co_await ReadTableColumns(stream, buffer, t->new_name);
    if (columns.ok()) {
      out.catalog[t->new_name] = *std::move(columns);
    } else {
      out.problems.push_back({t->name, StrCat("cannot read the columns of ", t->new_name,
                                              " on backend ", name, ": ",
                                              MessageOf(columns.status())),
                              true});
    }
  }
  stream.Close();
}

}  // namespace

CatalogReadResult ReadCatalog(const routing::Config& config, asio::ssl::context& tls) {
  CatalogReadResult result;
  asio::io_context context;
  asio::co_spawn(context, Read(config, tls, result), asio::detached);
  context.run();
  return result;
}

}  // namespace pgshift::proxy
