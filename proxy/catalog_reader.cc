#include "proxy/catalog_reader.h"

#include "common/strings.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/packet_buffer.h"

namespace pgshift::proxy {

namespace {

struct Wanted {
  const routing::TableConfig* table;
  std::string relation;  // the old or the new name
  bool is_new = false;
  // An old table in new-only, read only to check INSERTs without a column
  // list: it may be gone.
  bool optional = false;
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
  auto opened = co_await OpenControlConnection(config, backend, name, tls);
  if (!opened.ok()) {
    // Missing settings only keep pgshift from looking; the rest is a fault.
    bool blocking = opened.status().code() != absl::StatusCode::kFailedPrecondition;
    for (const Wanted& w : wanted) fail(w, MessageOf(opened.status()), blocking);
    co_return;
  }
  Stream& stream = **opened;
  PacketBuffer buffer;
  for (const Wanted& w : wanted) {
    std::vector<std::string> generated;
    auto columns = co_await ReadTableColumns(stream, buffer, w.relation, &generated);
    if (columns.ok()) {
      (w.is_new ? out.catalog.new_tables : out.catalog.old_tables)[w.relation] =
          *std::move(columns);
      if (!generated.empty()) {
        (w.is_new ? out.catalog.new_generated : out.catalog.old_generated)[w.relation] =
            std::move(generated);
      }
    } else {
      fail(w, MessageOf(columns.status()), !w.optional);
    }
  }
  // Any overload marked volatile makes the name volatile: the parser alone
  // cannot tell which one a call resolves to.
  auto functions = co_await RunQuery(
      stream, buffer, "SELECT DISTINCT proname FROM pg_catalog.pg_proc WHERE provolatile = 'v'");
  if (functions.ok()) {
    for (const auto& row : functions->rows) {
      if (row[0]) out.catalog.volatile_functions.insert(*row[0]);
    }
  }
  stream.Close();
}

// Both tables of every table past old-only: the old one in new-only only
// for INSERTs without a column list (routing/rewrite.cc).
awaitable<void> Read(const routing::Config& config, asio::ssl::context& tls,
                     CatalogReadResult& out) {
  const bool second_server = config.new_backend.has_value();
  std::vector<Wanted> on_old, on_new;
  for (const routing::TableConfig& t : config.tables) {
    if (t.phase == routing::Phase::kOldOnly) continue;
    (second_server ? on_new : on_old).push_back({&t, t.new_name, true});
    on_old.push_back({&t, t.name, false, t.phase == routing::Phase::kNewOnly});
  }
  co_await ReadFrom(config, tls, "old", config.old_backend, on_old, out);
  if (second_server) co_await ReadFrom(config, tls, "new", *config.new_backend, on_new, out);
}

}  // namespace

CatalogReadResult ReadCatalog(const routing::Config& config, asio::ssl::context& tls) {
  return RunToCompletion<CatalogReadResult>([&]() -> awaitable<CatalogReadResult> {
    CatalogReadResult result;
    co_await Read(config, tls, result);
    co_return result;
  });
}

std::optional<std::string> CannotMove(const CatalogReadResult& read,
                                      const routing::TableConfig& table) {
  for (const CatalogReadResult::Problem& problem : read.problems) {
    if (problem.blocking && problem.table == table.name) {
      return StrCat(table.name, " cannot move to ", routing::PhaseName(table.phase), ": ",
                    problem.reason);
    }
  }
  return std::nullopt;
}

}  // namespace pgshift::proxy
