// The columns of the migrating tables, read from the catalog of the server
// that holds them, at start and on every reload: rewriting expands `*` from
// the new tables' columns, and mirroring copies the columns both sides have.
// Also the names of volatile functions, which shadow reads must not call.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "proxy/asio.h"
#include "routing/config.h"
#include "routing/router.h"

namespace pgshift::proxy {

struct CatalogReadResult {
  routing::Catalog catalog;
  struct Problem {
    std::string table;   // as the application names it
    std::string reason;  // names the new table, the backend and why
    // The table is missing or its server unreachable, rather than pgshift
    // lacking the settings to look.
    bool blocking = true;
    // A column transform the catalogs refuse (a column, function or type
    // that is not there): no statement could be mirrored, so pgshift
    // neither starts nor reloads with it.
    bool transform = false;
  };
  std::vector<Problem> problems;
};

// Connects with each backend's configured credentials (it needs `dbname`
// and `user`) and reads the columns of the new and the old table of every
// table past old-only (an old table missing in new-only is no fault), and
// checks their column transforms: each expression is evaluated over no
// rows where its row is (and on one database, put into its column), and
// every column new needs filled is.
// Blocks the calling thread for at most the connect timeouts.
CatalogReadResult ReadCatalog(const routing::Config& config, asio::ssl::context& tls);

// The problems with column transforms, as one message; empty when none.
// With `running`, only those of tables whose transforms or phase differ
// there: a problem the running configuration already has (a column
// dropped under it since) fails that table's mirrored writes, and does
// not hold back a reload that steps other tables.
std::string TransformProblems(const CatalogReadResult& read,
                              const routing::Config* running = nullptr,
                              const routing::Config* next = nullptr);

// Why `table` (in the phase it would enter) cannot move with `read`: its
// new table missing or its server unreachable. Nothing when it can.
std::optional<std::string> CannotMove(const CatalogReadResult& read,
                                      const routing::TableConfig& table);

}  // namespace pgshift::proxy
