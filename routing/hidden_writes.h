// The ways a migrating table is written without a statement naming it,
// which row mirroring cannot see: a foreign key's ON DELETE / ON UPDATE
// action from its parent, enabled triggers (on the table, but for BEFORE
// ROW ones, whose change is in the row mirrored; or whose function is
// known to depend on it), rules, and views over it that take writes. The catalog query and
// what its rows mean; the proxy (at reload and start) and check-config run
// it.
#pragma once

#include <pg_query/pg_query.pb-c.h>

#include <optional>
#include <string>
#include <vector>

#include "routing/config.h"

namespace pgshift::routing {

struct HiddenWritePath {
  std::string what;    // e.g. "trigger audit on public.posts"
  std::string remedy;  // what the operator can do about it
};

// One row per path: kind, description, and for a foreign key its parent
// ("schema.name"). `table` as configured ("schema.name").
std::string HiddenWritePathsSql(const std::string& table);

// The paths those rows name, leaving out a foreign key whose parent is
// mirrored too (its deletes reach both sides, and cascade on each). The
// rows are from new's catalog when `on_new`.
std::vector<HiddenWritePath> HiddenWritePathsOf(
    const Config& config, const std::vector<std::vector<std::optional<std::string>>>& rows,
    bool on_new);

// "trigger a on public.t (disable it on one side ...); rule ..."
std::string DescribeHiddenWritePaths(const std::vector<HiddenWritePath>& paths);

// TRUNCATE ... CASCADE empties the tables whose foreign keys reference the
// ones it names: while a table is mirrored it may be one of them, emptied
// on one side. Why `stmt` is refused, if it is.
std::optional<std::string> TruncateCascadeRefusal(const PgQuery__Node* stmt, const Config& config);

}  // namespace pgshift::routing
