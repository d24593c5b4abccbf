// The client's named statements, portals and SQL-level PREPAREs, as the
// planner keeps them: where each went and what its plan does, so that a
// Bind, Execute, Describe, EXECUTE or DEALLOCATE follows it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "common/strings.h"
#include "protocol/messages/parse.h"
#include "routing/router.h"

namespace pgshift::proxy {

// A map of a client's records by name whose bytes (names and texts) are
// counted as entries come and go, for client_state_max_bytes. A value may
// change in place only where its counted texts stay the same.
template <typename Value>
class CountedMap {
 public:
  using Map = absl::flat_hash_map<std::string, Value>;
  using iterator = typename Map::iterator;
  using const_iterator = typename Map::const_iterator;

  void Put(std::string_view name, Value value) {
    erase(name);
    bytes_ += name.size() + Bytes(value);
    map_.emplace(std::string(name), std::move(value));
  }
  void erase(std::string_view name) {
    if (auto it = map_.find(ToAbsl(name)); it != map_.end()) erase(it);
  }
  void erase(iterator it) {
    bytes_ -= it->first.size() + Bytes(it->second);
    map_.erase(it);
  }
  void clear() {
    map_.clear();
    bytes_ = 0;
  }
  template <typename Predicate>
  void EraseIf(Predicate erase_it) {
    for (auto it = map_.begin(); it != map_.end();) {
      auto here = it++;
      if (erase_it(*here)) erase(here);
    }
  }
  iterator find(std::string_view name) { return map_.find(ToAbsl(name)); }
  const_iterator find(std::string_view name) const { return map_.find(ToAbsl(name)); }
  iterator end() { return map_.end(); }
  const_iterator begin() const { return map_.begin(); }
  const_iterator end() const { return map_.end(); }
  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  size_t bytes() const { return bytes_; }

 private:
  Map map_;
  size_t bytes_ = 0;
};

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
  using Map = CountedMap<Prepared>;

  // The entry named `name`, or one that sends to old untouched (where an
  // unknown name fails as it would directly).
  static Prepared Find(const Map& map, std::string_view name) {
    auto it = map.find(name);
    return it == map.end() ? Prepared{} : it->second;
  }

  // The client's transaction ended: PostgreSQL drops its portals with it.
  void EndTransaction() { portals.clear(); }

  size_t bytes() const { return statements.bytes() + portals.bytes() + sql_prepared.bytes(); }
  // Some statement prepared by name (Parse or PREPARE), which a DEALLOCATE
  // may name.
  bool any_named() const {
    return !sql_prepared.empty() || statements.size() > (statements.find("") != statements.end());
  }

  Map statements;
  Map portals;
  CountedMap<SqlPrepared> sql_prepared;
};

// What a record holds for client_state_max_bytes: its texts (its plan is
// the plan cache's).
inline size_t Bytes(const ClientStatements::Prepared& p) {
  return sizeof(p) + (p.parse ? sizeof(protocol::Parse) + p.parse->sql.size() : 0) +
         (p.bind ? p.bind->size() : 0);
}
inline size_t Bytes(const ClientStatements::SqlPrepared& p) { return sizeof(p) + p.sql.size(); }

}  // namespace pgshift::proxy
