// Transaction control as the session must know it: what each statement
// does to the client's transaction (a mirror's two-phase commit, savepoints
// on both servers), and a Query that mixes it with other statements, split
// so that each can be followed on its own.
#pragma once

#include <pg_query/pg_query.pb-c.h>

#include <string>
#include <vector>

#include "routing/parse_tree.h"
#include "routing/sql_analysis.h"

namespace pgshift::routing {

// What a single transaction-control statement does.
enum class TransactionKind {
  kNone,
  kBegin,     // BEGIN, START TRANSACTION
  kCommit,    // COMMIT, END
  kRollback,  // ROLLBACK, ABORT
  kSavepoint,
  kPrepare,           // PREPARE TRANSACTION
  kCommitPrepared,    // COMMIT PREPARED
  kRollbackPrepared,  // ROLLBACK PREPARED
  kRelease,           // RELEASE SAVEPOINT
  kRollbackTo,        // ROLLBACK TO SAVEPOINT
};

// One statement of a Query that is sent on its own (Plan::statements): its
// text as the client wrote it, and what it does to the transaction (kNone:
// a run of statements that are not transaction control, kept together).
struct QueryStatement {
  std::string sql;
  TransactionKind transaction = TransactionKind::kNone;
};

TransactionKind TransactionKindOf(PgQuery__TransactionStmtKind kind);

// COMMIT, ROLLBACK and PREPARE TRANSACTION end the transaction block.
inline bool EndsTransaction(TransactionKind kind) {
  return kind == TransactionKind::kCommit || kind == TransactionKind::kRollback ||
         kind == TransactionKind::kPrepare;
}

// With a second server, a Query holding transaction control and other
// statements: each transaction-control statement alone, and the runs of
// others between them, as the client wrote them (empty for any other Query).
std::vector<QueryStatement> SplitAtTransactionControl(const ParseTree& tree,
                                                      const std::vector<StatementInfo>& infos);

}  // namespace pgshift::routing
