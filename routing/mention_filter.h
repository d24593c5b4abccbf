// The fast path: a statement that cannot name a configured table skips
// analysis altogether and is forwarded untouched.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "routing/config.h"

namespace pgshift::routing {

// The fast path's test: could this text name a configured table? It looks
// for each table's own name (case-insensitively) anywhere in the text, so it
// errs only toward "maybe": a mention in a string or comment costs a parse,
// never a wrong route. Text with a Unicode-escaped identifier (U&"...") is
// always "maybe", since the name need not appear in it literally, and so is
// a TRUNCATE while a table is mirrored (its CASCADE may reach that table).
class TableMentionFilter {
 public:
  explicit TableMentionFilter(const Config& config);
  // For the configured tables named in `only` (a flip's fenced tables).
  TableMentionFilter(const Config& config, const std::vector<std::string>& only);
  bool MayMention(std::string_view sql) const;

 private:
  void Add(const TableConfig& table);

  std::vector<std::string> names_;  // lower case, unqualified, both old and new names
  // Some table's writes are mirrored: a TRUNCATE may reach it by CASCADE
  // without naming it, so it is always "maybe".
  bool truncate_may_cascade_ = false;
};

}  // namespace pgshift::routing
