// The key-sequence guard rail's query: the side that takes writes over
// (new at shadow-read -> new-primary, old on the way back) hands out keys
// from its own sequence, which must be past the keys it already holds (the
// mirror and backfill brought them with the other side's values), or its
// next INSERTs fail on duplicate keys. Run by the proxy at reload and by
// check-config.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "routing/config.h"

namespace pgshift::routing {

struct KeySequenceCheck {
  std::string table;  // the side's table, as configured
  std::string key;    // its key column there
  std::string sql;    // one row: the sequence, its next value, the largest key
};

// None when the key is not one column.
std::optional<KeySequenceCheck> KeySequenceCheckFor(const TableConfig& table, bool on_new);

// Why the sequence is behind (with the setval that fixes it), from the
// query's row; "" when it is not, or there is no sequence behind the key.
std::string KeySequenceBehind(const KeySequenceCheck& check,
                              const std::vector<std::optional<std::string>>& row,
                              std::string_view side);

}  // namespace pgshift::routing
