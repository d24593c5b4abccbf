// The client's named statements, portals and SQL-level PREPAREs, as the
// planner keeps them: where each went and what its plan does, so that a
// Bind, Execute, Describe, EXECUTE or DEALLOCATE follows it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "common/strings.h"
#include "protocol/messages/parse.h"
#include "routing/router.h"

namespace pgshift::proxy {

struct ClientStatements {
  // Where a prepared statement or portal lives and what it does.
  struct Prepared {
    routing::BackendId server = routing::BackendId::kOld;
    routing::PlanPtr plan;  // null: the fast path, nothing configured touched
    // A portal of a shadowed read in the sample: its Bind, for the
    // shadow's parameters.
    std::shared_ptr<const std::string> bind;
    // A named statement: the client's Parse, and the settings generation
    // its plan was made under, so that it is prepared again after a reload.
    std::shared_ptr<const protocol::Parse> parse;
    uint64_t generation = 0;
  };
  // An SQL-level PREPARE of a statement on configured tables: where it
  // went, its plan and text, and the settings generation it was planned
  // under, so that EXECUTE and DEALLOCATE follow it and a reload prepares
  // it again.
  struct SqlPrepared {
    routing::BackendId server = routing::BackendId::kOld;
    routing::PlanPtr plan;
    std::string sql;  // the client's PREPARE
    uint64_t generation = 0;
  };
  using Map = absl::flat_hash_map<std::string, Prepared>;

  // The entry named `name`, or one that sends to old untouched (where an
  // unknown name fails as it would directly).
  static Prepared Find(const Map& map, std::string_view name) {
    auto it = map.find(ToAbsl(name));
    return it == map.end() ? Prepared{} : it->second;
  }

  // The client's transaction ended: PostgreSQL drops its portals with it.
  void EndTransaction() { portals.clear(); }

  Map statements;
  Map portals;
  absl::flat_hash_map<std::string, SqlPrepared> sql_prepared;
};

}  // namespace pgshift::proxy
