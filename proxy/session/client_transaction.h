// The client's transaction as pgshift follows it: as the client was last
// told, as the statements it has sent since will leave it, and what each
// server is to it.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "protocol/message_type.h"
#include "routing/router.h"

namespace pgshift::proxy {

// What a server is to the client's current transaction. One server at most
// takes its writes (a commit cannot be atomic across two); with mirroring
// across servers the other holds their mirror, prepared before the
// writer's COMMIT and committed after it.
enum class TransactionRole : uint8_t {
  kNone,    // nothing written there in this transaction (it may have joined it)
  kWriter,  // the client's writes
  kMirror,  // mirrored rows of them, still to be committed
};

struct ClientTransaction {
  // Until every reply to the statements sent since has come.
  enum class Sent : uint8_t {
    kAsReported,  // nothing sent changes it
    kBegun,       // a BEGIN was sent ahead of its reply
    kEnded,       // a COMMIT or ROLLBACK was
  };

  // In a transaction as the client's statements planned so far leave it:
  // a BEGIN sent ahead of its reply (pgjdbc sends it in the batch of the
  // first statement) makes what follows part of the client's transaction.
  bool open() const {
    switch (sent) {
      case Sent::kBegun: return true;
      case Sent::kEnded: return false;
      case Sent::kAsReported: break;
    }
    return reported != protocol::TransactionStatus::kIdle;
  }

  // The roles' transitions: the client wrote on `server`; the mirror of
  // its writes is on `server`; that mirror was committed or rolled back.
  void Wrote(routing::BackendId server) { role(server) = TransactionRole::kWriter; }
  void Mirrored(routing::BackendId server) { role(server) = TransactionRole::kMirror; }
  void MirrorEnded(routing::BackendId server) {
    if (role(server) == TransactionRole::kMirror) role(server) = TransactionRole::kNone;
  }
  bool wrote(routing::BackendId server) const {
    return roles[static_cast<int>(server)] == TransactionRole::kWriter;
  }
  bool mirrors(routing::BackendId server) const {
    return roles[static_cast<int>(server)] == TransactionRole::kMirror;
  }

  // The transaction ended on every server: what was kept of it goes.
  void End() {
    roles = {};
    commit_requested = false;
    written_tables.clear();
  }

  // As the client was last told (its last ReadyForQuery).
  protocol::TransactionStatus reported = protocol::TransactionStatus::kIdle;
  Sent sent = Sent::kAsReported;
  // Indexed by routing::BackendId.
  std::array<TransactionRole, 2> roles{};
  // It ends with a COMMIT: its setting changes stand.
  bool commit_requested = false;
  // Migrating tables written in it: their shadow reads are skipped (the
  // other side cannot see those writes).
  std::vector<routing::TableCounters*> written_tables;
  // Queries split between servers: the last one whose part failed (its
  // later parts are skipped).
  uint64_t failed_group = 0;

 private:
  TransactionRole& role(routing::BackendId server) { return roles[static_cast<int>(server)]; }
};

}  // namespace pgshift::proxy
