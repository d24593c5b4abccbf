#include "proxy/catalog_reader.h"

#include "common/strings.h"
#include "protocol/messages/startup.h"
#include "proxy/backend_login.h"
#include "proxy/backend_query.h"
#include "proxy/packet_buffer.h"

namespace pgshift::proxy {

namespace {

struct Wanted {
  const routing::TableConfig* table;
  std::string relation;  // the old or the new name
};

// Reads the columns of `wanted` over one connection to `backend`.
awaitable<void> ReadFrom(const routing::Config& config, asio::ssl::context& tls,
                         std::string_view name, const routing::BackendConfig& backend,
                         const std::vector<Wanted>& wanted, CatalogReadResult& out) {
  if (wanted.empty()) co_return;
  auto fail = [&](const Wanted& w, std::string_view why, bool blocking) {
    out.problems.push_back({w.table->name,
                            StrCat("cannot read the columns of ", w.relation, " on backend ",
                                   name, ": ", why),
                            blocking});
  };
  if (!backend.dbname || !backend.user) {
    for (const Wanted& w : wanted) {
      fail(w, StrCat("backends.", name, " needs dbname and user for pgshift to read its catalog"),
           false);
    }
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
    for (const Wanted& w : wanted) fail(w, error->message(), true);
    co_return;
  }
  Stream& stream = *std::get<BackendLogin>(login).stream;
  PacketBuffer buffer;
  for (const Wanted& w : wanted) {
    auto columns = co_await ReadTableColumns(stream, buffer, w.relation);
    if (columns.ok()) {
      out.catalog[w.relation] = *std::move(columns);
    } else {
      fail(w, MessageOf(columns.status()), true);
    }
  }
  stream.Close();
}

// New tables are read for every table past old-only; old tables where the
// old side still takes writes or mirrors (dual-write to new-primary).
awaitable<void> Read(const routing::Config& config, asio::ssl::context& tls,
                     CatalogReadResult& out) {
  const bool second_server = config.new_backend.has_value();
  std::vector<Wanted> on_old, on_new;
  for (const routing::TableConfig& t : config.tables) {
    if (t.phase == routing::Phase::kOldOnly) continue;
    (second_server ? on_new : on_old).push_back({&t, t.new_name});
    if (t.phase != routing::Phase::kNewOnly) on_old.push_back({&t, t.name});
  }
  co_await ReadFrom(config, tls, "old", config.old_backend, on_old, out);
  if (second_server) co_await ReadFrom(config, tls, "new", *config.new_backend, on_new, out);
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
