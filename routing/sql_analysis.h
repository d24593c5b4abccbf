// What a SQL statement is and which tables it reads and writes, from
// PostgreSQL's own parser (libpg_query), never from patterns on the text.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace pgshift::routing {

enum class StatementKind {
  kRead,         // SELECT, VALUES, DECLARE ... CURSOR FOR SELECT
  kInsert,
  kUpdate,
  kDelete,
  kMerge,
  kCopy,
  kTruncate,
  kDdl,          // CREATE, ALTER, DROP, SELECT INTO, ...
  kTransaction,  // BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ...
  kSession,      // SET, SHOW, PREPARE, EXECUTE, DEALLOCATE, LISTEN, ...
  kOther,
};
std::string_view StatementKindName(StatementKind kind);

struct StatementInfo {
  StatementKind kind = StatementKind::kOther;
  // Schema-qualified table names ("public.channels"); unqualified names are
  // taken to be in public, the default search_path. A table written by the
  // statement (INSERT/UPDATE/DELETE/MERGE/COPY FROM/TRUNCATE target, DDL
  // subject) is in `writes` and not also in `reads`; CTE names are not tables.
  std::set<std::string> reads;
  std::set<std::string> writes;
  // The functions it calls by name (the last part of the name, as the
  // parser folded it): a shadow read must not call a volatile one.
  std::set<std::string> functions;
  // This statement's own text, for routing a multi-statement query part by part.
  std::string sql;
};

// Analyses every statement of `sql`. A syntax error comes back as an
// InvalidArgument status with PostgreSQL's message; the proxy passes such
// text on so that the server reports it in its own words.
absl::StatusOr<std::vector<StatementInfo>> AnalyzeSql(std::string_view sql);

// A single statement that makes, runs or drops an SQL-level prepared
// statement, and its name ("" for DEALLOCATE ALL and DISCARD ALL).
struct PreparedStatementUse {
  enum Kind { kPrepare, kExecute, kDeallocate } kind = kExecute;
  std::string name;
};
std::optional<PreparedStatementUse> PreparedStatementUseOf(std::string_view sql);

class ParseTree;
// The same, for text already parsed; entry i is statement i of the tree.
std::vector<StatementInfo> AnalyzeTree(const ParseTree& tree);

}  // namespace pgshift::routing
